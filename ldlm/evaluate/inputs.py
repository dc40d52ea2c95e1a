"""Reading what `ldlm evaluate` scores: generated texts (plain lines or `ldlm decode --format
jsonl` records), reference groups for paired BLEU, and latents for the Frechet distance."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from ldlm.errors import InputError
from ldlm.files import missing


@dataclass
class Generated:
    texts: list[str]  # one generated text per line / record
    source: str  # the path, or "stdin"
    references: list[str] | None = None  # per text, the "reference" field of JSONL records
    conditions: list[str] | None = None  # per text, the "condition" field of JSONL records


def _parse_jsonl(lines: list[str], source: str) -> Generated:
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise InputError(f"{source} line {i + 1} is not JSON, but the file looks like JSON lines; "
                             "give one text per line or `ldlm decode --format jsonl` output") from exc
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise InputError(f"{source} line {i + 1} has no string field 'text'; JSON lines need "
                             "one {\"text\": ...} object per line")
        records.append(record)

    def field(name: str) -> list[str] | None:
        if all(name in r and r[name] is not None for r in records):
            return [str(r[name]) for r in records]
        return None

    return Generated([r["text"] for r in records], source, field("reference"), field("condition"))


def read_generated(path: str | None, stdin: TextIO | None = None) -> Generated:
    """GENERATED: a text file (one text per line), a JSONL file, or '-' / None for stdin."""
    if path in (None, "-"):
        fh = stdin or sys.stdin
        if fh.isatty():
            raise InputError("no GENERATED texts: give a file (one text per line) or pipe them in, "
                             "e.g. `ldlm decode ... | ldlm evaluate - --references REFS`")
        raw = fh.read()
        source = "stdin"
    else:
        p = Path(path)
        if not p.is_file():
            raise InputError(f"GENERATED {path!r} {'is a folder' if p.is_dir() else missing(p)};"
                             " give a file with one text per line, or '-' for stdin")
        try:
            raw = p.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"GENERATED {path!r} is not UTF-8 text; give one text per line") from exc
        source = repr(path)
    lines = raw.splitlines()
    first = next((x for x in lines if x.strip()), "")
    if first.lstrip().startswith("{") and '"text"' in first:
        gen = _parse_jsonl(lines, source)
    else:
        gen = Generated([x.strip() for x in lines], source)
    if not gen.texts or not any(t.strip() for t in gen.texts):
        raise InputError(f"GENERATED {source} holds no text; give one generated text per line")
    return gen


def group_references(texts: list[str], keys: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Distinct keys in first-seen order, and the references of each key."""
    groups: dict[str, list[str]] = {}
    for text, key in zip(texts, keys, strict=True):
        groups.setdefault(key, []).append(text)
    return list(groups), groups


def paired_groups(gen: Generated, ref_texts: list[str] | None, ref_keys: list[str] | None,
                  ) -> list[list[str]]:
    """Per generated text, its references for paired BLEU.

    With keys (a group column): a generated text whose record names a condition gets every
    reference of that key; otherwise line i gets the i-th distinct key's references. Without
    keys: line i against reference row i. Without references: the records' own "reference".
    """
    n = len(gen.texts)
    if ref_texts is None:
        if gen.references is None:
            raise InputError("--paired needs --references, or GENERATED as JSON lines with a "
                             "'reference' field (`ldlm decode --format jsonl` of a store)")
        return [[r] for r in gen.references]
    if ref_keys is None:
        if len(ref_texts) != n:
            raise InputError(f"--paired: GENERATED has {n} texts but --references has "
                             f"{len(ref_texts)}; pair them line by line, or group references "
                             "with --group-column")
        return [[r] for r in ref_texts]
    order, groups = group_references(ref_texts, ref_keys)
    if gen.conditions is not None:
        missing = [c for c in gen.conditions if c not in groups]
        if missing:
            raise InputError(f"--paired: condition {missing[0]!r} of GENERATED has no reference "
                             "in --references under --group-column; check both name the same key")
        return [groups[c] for c in gen.conditions]
    if len(order) != n:
        raise InputError(f"--paired: GENERATED has {n} texts but --references has {len(order)} "
                         "distinct --group-column values; give one generated text per value, in "
                         "first-seen order")
    return [groups[k] for k in order]


def read_latents(path: str, flag: str) -> tuple[np.ndarray, str | None]:
    """All latents (n, k, d) of a latent file or store, and the latent space they name."""
    from ldlm.latent_file import open_latents

    if not path or path == "-":
        raise InputError(f"{flag} needs a latent file or store path (stdin is for GENERATED)")
    source = open_latents(path)
    frames = [x for x, _ in source.frames]
    if not frames:
        raise InputError(f"{flag} {path!r} holds no latents")
    return np.concatenate(frames), source.latent_space
