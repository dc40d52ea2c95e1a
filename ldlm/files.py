"""An artefact's own small files, read and written so that damage is one line, not an exception.

- `missing`: why a path is not there ("does not exist", or "is a symlink loop"), for the
  messages of every input check; `symlink_loop` finds the looping part of a path.
- `read_json`: the one reader of an artefact's JSON files (run config, classifier record,
  checkpoint state): unreadable, not JSON, or not the JSON type wanted is one error naming the
  file and the fix.
- `own_file`: a file that belongs to a folder (a run's metrics log, its samples), refused when a
  symlink would lead a write out of the folder.
- `append_line` / `read_log`: the append-only JSON-lines log of a run (metrics.jsonl); a torn
  last line (a kill mid-write) is repaired before anything is appended, and skipped when read.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

from ldlm.errors import InputError, LdlmError, RuntimeFailure, first_line


def symlink_loop(path: str | os.PathLike) -> Path | None:
    """The shortest leading part of `path` that is a symlink loop, else None."""
    path = Path(path)
    for part in (*reversed(path.parents), path):
        try:
            os.stat(part)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return part
        except ValueError:  # an embedded NUL byte
            return None
    return None


def missing(path: str | os.PathLike) -> str:
    """Why `path` is not there, as a message's predicate: "does not exist", or, for a path
    through a symlink that leads back to itself, "is a symlink loop (...)"."""
    loop = symlink_loop(path)
    if loop is None:
        return "does not exist"
    where = "" if Path(loop) == Path(path) else f" at {str(loop)!r}"
    return f"is a symlink loop{where} (a link that leads back to itself); fix or remove the link"


def check_no_loop(path: str | os.PathLike, flag: str) -> None:
    """InputError when `path` (an output or input named by `flag`) runs through a symlink loop."""
    if symlink_loop(path) is not None:
        raise InputError(f"{flag} {str(path)!r} {missing(path)}, or give another path")


def read_json(path: str | os.PathLike, owner: str, fix: str, want: type = dict,
              error: type[LdlmError] = RuntimeFailure):
    """The JSON value in `path`, which must be a `want` (dict: a JSON object); anything else
    (unreadable, not UTF-8, not JSON, cut short, another JSON type) is `error` naming the file,
    `owner` (e.g. "run 'runs/a'") and `fix`."""
    path = Path(path)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{owner} has no {path.name} (it {missing(path)}); {fix}") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise error(f"{owner} has a damaged {path.name} ({first_line(exc, 100)}); {fix}") from exc
    if not isinstance(value, want):
        names = {dict: "a JSON object", list: "a JSON list"}
        raise error(f"{owner} has a damaged {path.name} (a JSON {type(value).__name__}, not "
                    f"{names.get(want, want.__name__)}); {fix}")
    return value


def own_file(folder: str | os.PathLike, relative: str, owner: str) -> Path:
    """`folder/relative`, a file the folder's owner writes, refused (InputError) when it or a
    folder on the way is a symlink: a write through it would land outside the folder."""
    folder = Path(folder)
    path = folder
    for part in Path(relative).parts:
        path = path / part
        if path.is_symlink():
            raise InputError(f"{str(path)!r} is a symlink (to {os.readlink(path)!r}), but it belongs to "
                             f"{owner}, which writes it; remove the link (move the file it points to "
                             "into its place if you want to keep it)")
    return path


def repair_log(path: Path) -> int:
    """Cut a torn last line (no newline at its end: a write cut short) off the JSON-lines log
    `path`, or end a whole last record with its newline; returns the bytes removed."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0
    if size == 0:
        return 0
    with open(path, "rb+") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) == b"\n":
            return 0
        tail_start = max(0, size - (1 << 20))
        fh.seek(tail_start)
        tail = fh.read()
        cut = tail.rfind(b"\n") + 1  # 0: no newline in the tail read
        last = tail[cut:]
        try:
            if isinstance(json.loads(last.decode("utf-8")), dict):
                fh.seek(0, os.SEEK_END)
                fh.write(b"\n")
                return 0
        except (UnicodeDecodeError, ValueError, RecursionError):
            pass
        fh.truncate(tail_start + cut)
        return len(last)


def append_line(folder: Path, name: str, record: dict, owner: str) -> None:
    """Append `record` as one JSON line to the log `folder/name` (created if absent), never
    through a symlink, after repairing a torn last line."""
    path = own_file(folder, name, owner)
    repair_log(path)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o644)
    with os.fdopen(fd, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


def read_log(path: Path, owner: str, fix: str) -> list[dict]:
    """The records of a JSON-lines log; a torn last line is skipped (the next append repairs
    it), damage anywhere else is a RuntimeFailure naming the line and `fix`."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise RuntimeFailure(f"{owner} has an unreadable {path.name} ({first_line(exc)}); {fix}") from exc
    records = []
    numbered = [(i, line) for i, line in enumerate(lines, 1) if line.strip()]
    for n, (i, line) in enumerate(numbered):
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            record = None
        if not isinstance(record, dict):
            if n == len(numbered) - 1:  # a torn last line
                break
            raise RuntimeFailure(f"{owner} has a damaged {path.name} (line {i} is not a JSON object); "
                                 f"{fix}")
        records.append(record)
    return records


__all__ = ["append_line", "check_no_loop", "missing", "own_file", "read_json", "read_log", "repair_log",
           "symlink_loop"]
