"""Write-then-rename helpers so that a killed or failed run never leaves a torn artefact."""

from __future__ import annotations

import errno
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
def made_parents(target: str | os.PathLike) -> Iterator[None]:
    """Create the missing folders above `target`; when the body fails, remove again those of
    them it left empty, so that a failed write leaves no empty folder behind."""
    target = Path(target)
    made = [p for p in target.parents if not p.exists()]  # the deepest first
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        for folder in made:
            try:
                folder.rmdir()
            except OSError:  # not empty (something else was written there) or gone
                break
        raise


_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # what a write into a full disk raises


@contextmanager
def removed_on_failure(folder: str | os.PathLike, keep: Callable[[Path], bool]) -> Iterator[None]:
    """For an output folder that a command fills over time (a run and its checkpoints): when
    the body fails and `folder` did not exist before it, remove it and the parents made for it,
    unless `keep(folder)` says it holds finished work (a checkpoint to resume from)."""
    folder = Path(folder)
    made = [p for p in (folder, *folder.parents) if not p.exists()]  # the deepest first
    try:
        yield
    except BaseException:
        if made and not keep(folder):
            remove_path(folder)
            for parent in made[1:]:
                try:
                    parent.rmdir()
                except OSError:
                    break
        raise


def _named(exc: OSError, tmp: Path, target: Path) -> OSError:
    """`exc` naming `target` where it names the temporary file, or, for a full disk, no file
    at all (a failed write() names nothing)."""
    if exc.filename == str(tmp) or (exc.filename is None and exc.errno in _FULL):
        return OSError(exc.errno, exc.strerror or str(exc), str(target))
    return exc


@contextmanager
def atomic_directory(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces `target` in one rename.

    On any error the temporary folder is removed and `target` is left as it was.
    """
    target = Path(target)
    with made_parents(target):
        tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            yield tmp
            replace_path(tmp, target)
        except OSError as exc:
            raise _named(exc, tmp, target) from exc
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
    with made_parents(target):
        tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
                yield fh
                fh.flush()
                os.fsync(fh.fileno())
            tmp.replace(target)
        except OSError as exc:
            raise _named(exc, tmp, target) from exc
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
