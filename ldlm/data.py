"""Text datasets in: a Hugging Face dataset id or a local txt/csv/json/jsonl/parquet file
or folder, loaded with `datasets`, reduced to the list of usable texts of one column.

Rows that are None, not strings or empty after stripping are skipped and counted (a
blank line in a txt file is not a sample); the caller reports the count.

The texts stay in the dataset's memory-mapped Arrow file and are read on demand
(`ArrowTexts`): memory does not grow with the row count beyond an index of 8 bytes a row.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ldlm.errors import InputError, first_line
from ldlm.files import missing, symlink_loop
from ldlm.recipe import SPLIT, TEXT_COLUMN

_BLOCK = 16384  # rows read from the Arrow column at a time

# file extension -> datasets builder
_BUILDERS = {
    ".txt": "text",
    ".text": "text",
    ".csv": "csv",
    ".tsv": "csv",
    ".json": "json",
    ".jsonl": "json",
    ".parquet": "parquet",
}


class ArrowTexts(Sequence):
    """The kept texts of an Arrow string column, read on demand: `index[i]` is the column row
    of text i. Integers give a str, slices a list; equal to any sequence of the same texts."""

    def __init__(self, column, index: np.ndarray):
        self.column, self.index = column, index  # pyarrow ChunkedArray (memory-mapped), (n,) int64

    def __len__(self) -> int:
        return len(self.index)

    def _take(self, rows: np.ndarray) -> list[str]:
        if not len(rows):
            return []
        lo, hi = int(rows[0]), int(rows[-1]) + 1
        if 0 <= hi - lo <= 2 * len(rows) + 1024:  # a dense run (the usual case): a zero-copy slice
            values = self.column.slice(lo, hi - lo).to_pylist()
            return [values[r - lo] for r in rows.tolist()]
        import pyarrow as pa

        return self.column.take(pa.array(rows, pa.int64())).to_pylist()

    def __getitem__(self, i):
        if isinstance(i, slice):
            return self._take(self.index[i])
        return self._take(self.index[[i]])[0]

    def __iter__(self) -> Iterator[str]:
        for start in range(0, len(self.index), _BLOCK):
            yield from self._take(self.index[start : start + _BLOCK])

    def __eq__(self, other) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None

    def __repr__(self) -> str:
        return f"ArrowTexts({len(self)} texts)"


class RowIndex(Sequence):
    """Dataset row numbers as a compact int64 array that compares like a list of ints."""

    def __init__(self, rows: np.ndarray):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i].tolist()

    def __eq__(self, other) -> bool:
        if not isinstance(other, Sequence | np.ndarray) or isinstance(other, str | bytes):
            return NotImplemented
        return len(self) == len(other) and bool(np.array_equal(self.rows, np.asarray(other)))

    __hash__ = None


@dataclass
class TextRows:
    """The usable texts of one dataset column, in dataset order."""

    texts: Sequence[str]  # the kept texts (a list, or ArrowTexts read on demand)
    source: str  # what the user named: a path or a hub id
    split: str
    column: str
    skipped: int = 0  # rows dropped for being None, empty or not strings
    conditions: list[str] | None = None  # optional second column, aligned with texts
    source_index: Sequence[int] = field(default_factory=list)  # dataset row of each text

    def digest(self) -> str:
        """A content hash of the texts (identifies the data a store was made from)."""
        h = hashlib.sha256()
        for t in self.texts:
            h.update(t.encode("utf-8"))
            h.update(b"\0")
        return h.hexdigest()[:16]


def _looks_like_path(data: str) -> bool:
    # hub ids look like "name" or "org/name"; paths start with / . ~ or have an extension
    return (
        data.startswith(("/", ".", "~", "file://"))
        or data.count("/") > 1
        or "\\" in data
        or Path(data).suffix.lower() in _BUILDERS
    )


def _load(data: str, split: str, name: str = "DATA"):
    import datasets

    path = Path(data)
    try:
        if path.is_file() and path.stat().st_size == 0:
            raise InputError(f"{name} {data!r} is empty (0 bytes); give a file with one text per line "
                             "(or a csv, json, jsonl or parquet file)")
        if path.is_file():
            builder = _BUILDERS.get(path.suffix.lower())
            if builder is None:
                raise InputError(
                    f"{name} {data!r} has extension {path.suffix!r}, which ldlm cannot read; "
                    f"use one of {', '.join(sorted(_BUILDERS))} or a dataset folder"
                )
            kwargs = {"delimiter": "\t"} if path.suffix.lower() == ".tsv" else {}
            dd = datasets.load_dataset(builder, data_files=str(path), **kwargs)
        elif path.is_dir():
            dd = datasets.load_dataset(str(path))
        elif _looks_like_path(data) or symlink_loop(path) is not None:
            raise InputError(f"{name} {data!r} {missing(path)}; give an existing file or folder")
        else:
            dd = datasets.load_dataset(data)
    except InputError:
        raise
    except Exception as exc:  # datasets raises many types for unreadable input
        first = first_line(exc)
        hint = (
            "check the file is valid"
            if path.exists()
            else "check the id, or run with a connection (HF_HUB_OFFLINE is "
            f"{os.environ.get('HF_HUB_OFFLINE', 'unset')})"
        )
        raise InputError(f"could not load {name} {data!r}: {first}; {hint}") from exc
    if split not in dd:
        raise InputError(
            f"split {split!r} not in {name} {data!r}; available: {', '.join(dd)} (use --split)"
        )
    return dd[split]


def load_texts(
    data: str,
    *,
    text_column: str = TEXT_COLUMN,
    split: str = SPLIT,
    limit: int | None = None,
    condition_column: str | None = None,
    condition_flag: str = "--condition-column",
    name: str = "DATA",
) -> TextRows:
    """Load one text column of DATA, skipping unusable rows; `limit` caps the kept rows.
    `condition_flag`: the option that named `condition_column`, for the error that it is missing;
    `name`: how messages name the input (the option it came from, e.g. --references)."""
    if limit is not None and limit < 1:
        raise InputError(f"--limit {limit} must be at least 1; omit it to use every row")
    ds = _load(data, split, name)
    for col, flag in ((text_column, "--text-column"), (condition_column, condition_flag)):
        if col is not None and col not in ds.column_names:
            raise InputError(
                f"column {col!r} not in {name} {data!r}; columns: "
                f"{', '.join(ds.column_names)} (use {flag})"
            )
    arrow = ds.with_format("arrow")  # columns as pyarrow arrays: memory-mapped, no Python objects
    column = arrow[text_column]
    kept: list[np.ndarray] = []
    found, skipped = 0, 0
    for start in range(0, len(column), _BLOCK):  # one block of rows in memory at a time
        values = column.slice(start, _BLOCK).to_pylist()
        usable = np.fromiter((isinstance(v, str) and bool(v.strip()) for v in values), bool,
                             len(values))
        rows = np.flatnonzero(usable) + start
        if limit is not None and found + len(rows) >= limit:
            rows = rows[: limit - found]
            skipped += int(rows[-1] + 1 - start - len(rows)) if len(rows) else len(values)
            kept.append(rows)
            found += len(rows)
            break
        skipped += len(values) - len(rows)
        kept.append(rows)
        found += len(rows)
    index = np.concatenate(kept) if kept else np.zeros(0, np.int64)
    texts = ArrowTexts(column, index)  # np.flatnonzero gives int64 already
    kept_conds = None
    if condition_column:
        kept_conds = [str(c) for c in arrow[condition_column].take(index).to_pylist()]
    if not texts:
        raise InputError(
            f"{name} {data!r} has no usable text in column {text_column!r} of split {split!r} "
            f"({skipped} rows empty or not strings); point --text-column at the text"
        )
    return TextRows(
        texts=texts,
        source=data,
        split=split,
        column=text_column,
        skipped=skipped,
        conditions=kept_conds,
        source_index=RowIndex(index),
    )


def read_lines(path: str | Path, option: str, what: str) -> list[str]:
    """The non-blank lines of a UTF-8 text file given to `option` (e.g. --init-file), stripped;
    a one-line InputError when it is missing, not UTF-8 or holds none."""
    p = Path(path)
    if not p.is_file():
        why = missing(p) if symlink_loop(p) is not None else "does not exist or is not a file"
        raise InputError(f"{option} {str(path)!r} {why}; give a text file "
                         f"with one {what} per line")
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise InputError(f"{option} {str(path)!r} is not UTF-8 text (byte {exc.start}); save it as "
                         f"UTF-8, one {what} per line") from exc
    values = [line.strip() for line in lines if line.strip()]
    if not values:
        raise InputError(f"{option} {str(path)!r} holds no {what}; put one per line")
    return values
