"""Rotated `checkpoint-<step>/` folders written atomically, for the stages that train.

A checkpoint is written into a hidden temporary sibling, finished with a small JSON file
that names what it belongs to, and renamed into place in one step: a folder named
`checkpoint-<step>` is always whole. `--resume` takes the newest one; leftovers of a
killed write (hidden `.checkpoint-*.tmp*` folders) are removed by the next run.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from safetensors import SafetensorError

from ldlm.atomic import remove_path, replace_path
from ldlm.distributed import Ranks
from ldlm.errors import InputError, LdlmError, RuntimeFailure, first_line


def list_checkpoints(folder: Path, marker: str) -> list[Path]:
    """The whole checkpoints in `folder` (those holding `marker`), oldest step first."""
    found = [p for p in Path(folder).glob("checkpoint-*")
             if p.is_dir() and p.name.split("-")[-1].isdigit() and (p / marker).is_file()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def remove_leftovers(folder: Path) -> None:
    """Delete hidden temporary folders a killed run left in `folder`."""
    for pattern in (".checkpoint-*.tmp*", ".checkpoint-*.old-*", ".final.tmp-*"):
        for tmp in Path(folder).glob(pattern):
            shutil.rmtree(tmp, ignore_errors=True)


def write_checkpoint(folder: Path, step: int, marker: str, record: dict,
                     fill: Callable[[Path], None], keep: int, group: Ranks | None = None) -> Path:
    """Write `checkpoint-<step>` atomically: `fill(tmp)` writes the states, then `marker`
    (the JSON `record`) goes last; the oldest checkpoints beyond `keep` are removed.

    Under a multi-process launch (`group`), every process calls this: each one's `fill`
    writes its share (accelerate's `save_state` writes the model once and one RNG file per
    process), and only the main process touches the folders.
    """
    group = group or Ranks()
    target = Path(folder) / f"checkpoint-{step}"
    tmp = Path(folder) / f".checkpoint-{step}.tmp"
    if group.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
    group.wait()
    try:
        fill(tmp)
        group.wait()
        if group.is_main:
            (tmp / marker).write_text(json.dumps({"step": step, **record}, indent=2))
            replace_path(tmp, target)
    except LdlmError:
        raise
    except (OSError, RuntimeError, SafetensorError) as exc:  # torch's writer reports a full disk
        raise _write_failure(exc, target) from exc  # as a RuntimeError ("unexpected pos ...")
    finally:
        if group.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
    if group.is_main:
        for old in list_checkpoints(folder, marker)[:-keep]:
            remove_path(old)  # renamed away first: a kill mid-delete leaves no torn checkpoint
    group.wait()
    return target


def _write_failure(exc: BaseException, target: Path) -> RuntimeFailure:
    """One line for a checkpoint that could not be written, with the free space beside it (a
    full disk is the usual cause, and torch's writer does not say so)."""
    try:
        free = f"{shutil.disk_usage(target.parent).free / 2**20:.1f} MiB free there"
    except OSError:
        free = "free space unknown"
    return RuntimeFailure(f"cannot write {str(target)!r} ({type(exc).__name__}: {first_line(exc, 120)}; "
                          f"{free}); free space or check the folder, then rerun with --resume: the "
                          "checkpoints before it are whole")


def find_checkpoint(folder: Path, resume: str, marker: str) -> Path:
    """The checkpoint to resume from: the newest whole one in `folder` ("latest"), or the
    folder named (a path, or a name inside `folder`)."""
    if resume == "latest":
        found = list_checkpoints(folder, marker)
        if not found:
            raise InputError(f"--resume: {str(folder)!r} has no checkpoint-<step> folder; start "
                             "without --resume")
        return found[-1]
    path = Path(resume)
    if not path.is_dir() and (Path(folder) / resume).is_dir():
        path = Path(folder) / resume
    if not (path / marker).is_file():
        raise InputError(f"--resume-from {resume!r} is not a checkpoint folder of this command (no "
                         f"{marker}); give a checkpoint-<step> folder")
    return path


def check_same(ckpt: Path, marker: str, identity: dict, optional: tuple[str, ...] = ()) -> dict:
    """The checkpoint's record, after checking it matches `identity` key by key; the keys in
    `optional` are compared only where the checkpoint has them (checkpoints older than the key)."""
    try:
        saved = json.loads((ckpt / marker).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"checkpoint {str(ckpt)!r} has an unreadable {marker}; resume from "
                         "another checkpoint-<step> with --resume-from") from exc
    if not isinstance(saved, dict):
        raise InputError(f"checkpoint {str(ckpt)!r} has a damaged {marker}; resume from another "
                         "checkpoint-<step> with --resume-from")
    for key, want in identity.items():
        if key in optional and key not in saved:
            continue
        have = saved.get(key)
        if json.dumps(have, sort_keys=True) != json.dumps(want, sort_keys=True):
            fix = _FIXES.get(key, "rerun with the checkpoint's settings")
            raise InputError(
                f"checkpoint {str(ckpt)!r} was made with {key} {have!r}, but this run has "
                f"{want!r}; {fix} or use a new --out"
            )
    return saved


_FIXES = {"store": "pass the store it was trained on"}  # what to do when a key differs
