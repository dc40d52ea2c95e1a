"""The one guard every command runs on its output path before any work starts.

An output path is refused when writing there would lose or corrupt something:

- it is an input of the same command (`decode X.ldlm --out X.ldlm`), lies inside one
  (`sample RUN --out RUN/ldlm_run.json`), or, for an output folder that may be replaced
  whole, holds one;
- it lies inside an ldlm artefact (a latent store, a diffusion run, an autoencoder, a condition
  classifier): those folders belong to the command that made them;
- it is an existing artefact of another kind (`train --out STORE`, `decode --out OLD.ldlm`: a
  latent file is an artefact as a store is), of the same kind where the command replaces it and
  no --overwrite was given (`sample --out OLD.zarr`, `sample --out OLD.ldlm`), or a folder of
  other files where the command writes a folder it may replace whole;
- it runs through a symlink loop, or cannot be written at all (`ldlm.atomic.check_output_path`).

`-` as an output is standard output: the commands that write a stream take it and call no guard.

Replacing is the writers' part and is atomic on local paths (`ldlm.atomic`): the old artefact
stays whole until the new one is.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from ldlm.atomic import check_output_path
from ldlm.errors import InputError
from ldlm.files import check_no_loop

# "latents": a latent file (sample, interpolate); "text": a text or JSON file (decode, evaluate
# --json), which ldlm cannot tell from anyone else's and so replaces; "file": the same as "text"
Kind = Literal["latents", "text", "file", "folder", "store", "run", "autoencoder", "classifier"]
FILE_KINDS = ("latents", "text", "file")

# the files that mark each kind of ldlm folder; the owners define them too (ldlm.run.RUN_FILE,
# ldlm.classifier.CLASSIFIER_FILE, the trainers' CHECKPOINT_FILEs; tests/test_hostile.py checks
# that they agree), and this module stays importable from any of them
MARKERS = {"run": "ldlm_run.json", "classifier": "ldlm_classifier.json"}
CHECKPOINT_MARKERS = {"ldlm_checkpoint.json": "run", "ldlm_autoencoder_checkpoint.json": "autoencoder"}
NAMES = {"store": "a latent store", "run": "a diffusion run", "autoencoder": "an autoencoder",
         "classifier": "a condition classifier", "latents": "a latent file", "text": "a text file",
         "file": "a text file", "folder": "a folder"}


def _is_latent_file(p: Path) -> bool:
    from ldlm.latent_file import MAGIC

    try:
        with open(p, "rb") as fh:
            return fh.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def artefact_kind(path: str | os.PathLike) -> str | None:
    """The kind of ldlm artefact at `path`: "latents" for a latent file (by its magic bytes), the
    kind of an ldlm folder ("store" for any zarr group), else None. A folder that holds only the
    checkpoints of an unfinished training is of that training's kind."""
    p = Path(path)
    if p.is_file():
        return "latents" if _is_latent_file(p) else None
    if not p.is_dir():
        return None
    if (p / "zarr.json").is_file():
        return "store"
    for kind, marker in MARKERS.items():
        if (p / marker).is_file():
            return kind
    from ldlm.autoencoder import is_autoencoder_dir

    if is_autoencoder_dir(p):
        return "autoencoder"
    for ckpt in p.glob("checkpoint-*"):
        for marker, kind in CHECKPOINT_MARKERS.items():
            if (ckpt / marker).is_file():
                return kind
    return None


def is_stdout(path: object) -> bool:
    """True for `-`, which every --out that writes a stream takes as standard output."""
    return path is not None and str(path) == "-"


def _local(value: object) -> Path | None:
    """An input as a resolved local path; None for none, stdin and URLs."""
    from ldlm.store import is_url, store_location

    if value is None or str(value) in ("", "-"):
        return None
    from ldlm.files import symlink_loop

    location = store_location(str(value))
    if is_url(location) or symlink_loop(location) is not None:  # a loop: its reader says so
        return None
    return Path(location).resolve()


def check_output(path: str | os.PathLike, flag: str, kind: Kind, inputs: dict[str, object] | None = None,
                 overwrite: bool | None = None) -> None:
    """Refuse `path` (InputError, one line) where writing `kind` there would lose or corrupt
    something (see the module docstring).

    inputs: what the command reads, {name in messages: path or None}, e.g. {"LATENTS": path}.
    overwrite: where `path` already holds an artefact of `kind`: True replaces it, False refuses
    (the command replaces only with --overwrite), None leaves it to the command (a resume).
    """
    from ldlm.store import is_url, store_exists, store_location

    where = store_location(str(path))
    if is_url(where):  # a store on object storage: only its own name can be checked
        for name, value in (inputs or {}).items():
            if value is not None and store_location(str(value)).rstrip("/") == where.rstrip("/"):
                raise InputError(f"{flag} {where!r} is also {name}, which this command reads; write "
                                 "to another path")
        if overwrite is False and store_exists(where):
            raise InputError(f"{flag} {where!r} already exists; pass --overwrite to replace it, or "
                             "give another path")
        return
    p = Path(where)
    check_no_loop(p, flag)  # before resolve(), which a loop makes raise RuntimeError
    check_output_path(p, flag, folder=kind not in FILE_KINDS)
    target = p.resolve()
    for name, value in (inputs or {}).items():
        src = _local(value)
        if src is None:
            continue
        if src == target:
            raise InputError(f"{flag} {str(path)!r} is also {name}, which this command reads; write "
                             "to another path")
        if src in target.parents:
            raise InputError(f"{flag} {str(path)!r} is inside {name} {str(value)!r}, which this "
                             "command reads; write outside it")
        if kind not in (*FILE_KINDS, "run") and target in src.parents:
            raise InputError(f"{flag} {str(path)!r} holds {name} {str(value)!r}, which this command "
                             "reads and replacing the folder would delete; give another folder")
    for parent in target.parents:
        owner = artefact_kind(parent)
        if owner is not None:
            raise InputError(f"{flag} {str(path)!r} is inside {NAMES[owner]} ({str(parent)!r}), which "
                             "belongs to the command that made it; write outside it")
    have = artefact_kind(target)
    if have is not None and have != kind:
        raise InputError(f"{flag} {str(path)!r} is {NAMES[have]}, not {NAMES[kind]}; writing there "
                         "would destroy it: give another path")
    if (have is None and kind in ("store", "autoencoder", "classifier") and target.is_dir()
            and any(not entry.name.startswith(".") for entry in target.iterdir())):
        raise InputError(f"{flag} {str(path)!r} is a folder of other files, not {NAMES[kind]}; "
                         "give a new or empty folder")
    if have is not None and overwrite is False:
        holds = "is already" if kind in FILE_KINDS else "already holds"
        raise InputError(f"{flag} {str(path)!r} {holds} {NAMES[have]}; pass --overwrite to "
                         "replace it (the old one stays until the new one is whole), or give another "
                         "path")


__all__ = ["FILE_KINDS", "Kind", "artefact_kind", "check_output", "is_stdout"]
