"""Text datasets in: a Hugging Face dataset id or a local txt/csv/json/jsonl/parquet file
or folder, loaded with `datasets`, reduced to the list of usable texts of one column.

Rows that are None, not strings or empty after stripping are skipped and counted (a
blank line in a txt file is not a sample); the caller reports the count.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from ldlm.errors import InputError, first_line

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


@dataclass
class TextRows:
    """The usable texts of one dataset column, in dataset order."""

    texts: list[str]  # the kept texts
    source: str  # what the user named: a path or a hub id
    split: str
    column: str
    skipped: int = 0  # rows dropped for being None, empty or not strings
    conditions: list[str] | None = None  # optional second column, aligned with texts
    source_index: list[int] = field(default_factory=list)  # dataset row of each text

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


def _load(data: str, split: str):
    import datasets

    path = Path(data)
    try:
        if path.is_file():
            builder = _BUILDERS.get(path.suffix.lower())
            if builder is None:
                raise InputError(
                    f"DATA {data!r} has extension {path.suffix!r}, which ldlm cannot read; "
                    f"use one of {', '.join(sorted(_BUILDERS))} or a dataset folder"
                )
            kwargs = {"delimiter": "\t"} if path.suffix.lower() == ".tsv" else {}
            dd = datasets.load_dataset(builder, data_files=str(path), **kwargs)
        elif path.is_dir():
            dd = datasets.load_dataset(str(path))
        elif _looks_like_path(data):
            raise InputError(f"DATA {data!r} does not exist; give an existing file or folder")
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
        raise InputError(f"could not load DATA {data!r}: {first}; {hint}") from exc
    if split not in dd:
        raise InputError(
            f"split {split!r} not in DATA {data!r}; available: {', '.join(dd)} (use --split)"
        )
    return dd[split]


def load_texts(
    data: str,
    *,
    text_column: str = "text",
    split: str = "train",
    limit: int | None = None,
    condition_column: str | None = None,
) -> TextRows:
    """Load one text column of DATA, skipping unusable rows; `limit` caps the kept rows."""
    if limit is not None and limit < 1:
        raise InputError(f"--limit {limit} must be at least 1; omit it to use every row")
    ds = _load(data, split)
    for col, flag in ((text_column, "--text-column"), (condition_column, "--condition-column")):
        if col is not None and col not in ds.column_names:
            raise InputError(
                f"column {col!r} not in DATA {data!r}; columns: "
                f"{', '.join(ds.column_names)} (use {flag})"
            )
    column = ds[text_column]
    conds = ds[condition_column] if condition_column else None
    texts: list[str] = []
    kept_conds: list[str] = []
    index: list[int] = []
    skipped = 0
    for i, value in enumerate(column):
        if limit is not None and len(texts) >= limit:
            break
        if not isinstance(value, str) or not value.strip():
            skipped += 1
            continue
        texts.append(value)
        index.append(i)
        if conds is not None:
            kept_conds.append(str(conds[i]))
    if not texts:
        raise InputError(
            f"DATA {data!r} has no usable text in column {text_column!r} of split {split!r} "
            f"({skipped} rows empty or not strings); point --text-column at the text"
        )
    return TextRows(
        texts=texts,
        source=data,
        split=split,
        column=text_column,
        skipped=skipped,
        conditions=kept_conds if conds is not None else None,
        source_index=index,
    )
