"""Write-then-rename helpers so that a killed or failed run never leaves a torn artefact."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ldlm.errors import InputError


def replace_path(src: Path, dst: Path) -> None:
    """Move folder `src` onto `dst`; an existing `dst` is renamed aside first, then removed."""
    old = None
    if dst.exists():
        old = dst.parent / f".{dst.name}.old-{uuid.uuid4().hex[:8]}"
        dst.rename(old)
    src.rename(dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def remove_path(path: Path) -> None:
    """Delete folder `path` so that no half-deleted folder is ever left under its name: it is
    renamed to a hidden sibling first, then removed."""
    path = Path(path)
    if not path.exists():
        return
    old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
    path.rename(old)
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_directory(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces `target` in one rename.

    On any error the temporary folder is removed and `target` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        replace_path(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def publish(folder: Path, fill: Callable[[Path], None], marker: str) -> None:
    """Write a finished model into `folder` beside what is already there (its checkpoints):
    `fill(tmp)` writes every file into a hidden temporary subfolder, then each is renamed into
    place, `marker` (the file that says the folder holds a whole model) removed first and moved
    in last. A kill at any point leaves no marker beside a torn model."""
    folder = Path(folder)
    tmp = folder / f".final.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        fill(tmp)
        (folder / marker).unlink(missing_ok=True)
        for item in sorted(tmp.iterdir(), key=lambda p: p.name == marker):
            if item.is_dir():
                replace_path(item, folder / item.name)
            else:
                os.replace(item, folder / item.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def atomic_file(target: str | os.PathLike, mode: str = "wb") -> Iterator:
    """Open a temporary sibling file for writing; rename it onto `target` on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(target)
    finally:
        if tmp.exists():
            tmp.unlink()


def check_output_path(path: str | os.PathLike, flag: str, folder: bool = False) -> None:
    """Refuse, before any work, an output path that cannot be written: one inside a file, a
    folder where a file is wanted (or the reverse), or one under a read-only folder."""
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        want = "a folder" if folder else "a file"
        raise InputError(f"{flag} {str(path)!r} exists and is not {want}; give another path")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"{flag} {str(path)!r} is inside {str(parent)!r}, which is a file, not a "
                         "folder; give another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{flag} {str(path)!r} cannot be written: {str(parent)!r} is read-only for "
                         "this user; give a path in a writable folder")
