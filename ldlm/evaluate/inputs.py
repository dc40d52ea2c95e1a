"""What `ldlm evaluate` scores, read and checked: generated texts (plain lines or `ldlm decode
--format jsonl` records), reference groups for paired BLEU, latents for the Frechet distance,
and `evaluate_sources`, the command as a library function: it loads its inputs, checks that
they go together and chooses the evaluation (all texts, or per class)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from ldlm.errors import InputError
from ldlm.evaluate.by_class import ClassEvaluation, evaluate_classes, load_topic_classifier
from ldlm.evaluate.protocol import Evaluation, evaluate_texts
from ldlm.files import missing
from ldlm.recipe import SPLIT, TEXT_COLUMN


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


@dataclass
class Sources:
    """What `ldlm evaluate` reads: files or hub datasets, and the columns to take from them."""

    generated: str | None  # GENERATED: one text per line, `ldlm decode --format jsonl` output, or '-' (stdin)
    references: str | None = None  # human texts of the same kind: the MAUVE yardstick, the reference row
    train: str | None = None  # the training texts: memorisation and copy rate
    human: str | None = None  # held-out human texts for the reference row
    column: str = TEXT_COLUMN  # the text column of references, train and human
    split: str = SPLIT  # the split of hub datasets
    paired: bool = False  # also corpus BLEU of text i against its references
    group_column: str | None = None  # with paired: the references' group column (E2E: mr)
    latents: str | None = None  # generated latents (file or store) for the latent Frechet distance
    reference_latents: str | None = None  # reference latents (a store) for the same
    class_column: str | None = None  # score per class: the class column of references
    classifier: str | None = None  # with class_column: a topic classifier folder (class accuracy)

    def record(self) -> dict:
        """The inputs as the JSON result names them."""
        out = {"generated": self.generated, "references": self.references, "train": self.train}
        if self.class_column is None:
            return out | {"human": self.human, "column": self.column, "split": self.split}
        return out | {"column": self.column, "split": self.split, "class_column": self.class_column,
                      "classifier": self.classifier}


def evaluate_sources(sources: Sources, device: str | None = None, **options) -> Evaluation | ClassEvaluation:
    """What `ldlm evaluate` does: read `sources`, check that they go together, and score them
    with `evaluate_texts`, or per class with `evaluate_classes` (`sources.class_column`).

    device: None picks CUDA when there is one; options: the scoring options of those
    functions (num_samples, seeds, mauve_features, ppl_model, reference_row, tokenize,
    batch_size, reporter). Returns their Evaluation or ClassEvaluation.
    """
    s = sources
    if s.group_column and not s.paired:
        raise InputError("--group-column only applies with --paired; add --paired or drop it")
    if options.get("batch_size", 1) < 1:
        raise InputError(f"--batch-size {options['batch_size']} must be at least 1")
    if s.class_column is not None:
        return _by_class(s, device, options)
    if s.classifier is not None:
        raise InputError("--classifier scores class accuracy, which needs --class-column (the class "
                         "column of --references); add it or drop --classifier")
    from ldlm.data import load_texts
    from ldlm.distributed import pick_device

    gen = read_generated(s.generated)
    refs = load_texts(s.references, text_column=s.column, split=s.split, condition_column=s.group_column,
                      condition_flag="--group-column", name="--references") if s.references else None
    if s.group_column and refs is None:
        raise InputError("--group-column needs --references (the file that holds that column)")
    train = _texts(s.train, s, "--train")
    human = _texts(s.human, s, "--human")
    pairs = None
    if s.paired:
        pairs = paired_groups(gen, refs.texts if refs else None, refs.conditions if refs else None)
    elif gen.references is not None:  # decoded from a store: BLEU against the source texts
        pairs = paired_groups(gen, None, None)
    latents = reference_latents = None
    if (s.latents is None) != (s.reference_latents is None):
        raise InputError("the latent Frechet distance needs both --latents and --reference-latents")
    if s.latents is not None:
        latents, space = read_latents(s.latents, "--latents")
        reference_latents, ref_space = read_latents(s.reference_latents, "--reference-latents")
        if space and ref_space and space != ref_space:
            raise InputError(f"--latents live in latent space {space} but --reference-latents in "
                             f"{ref_space}; the distance needs latents of one autoencoder")
    return evaluate_texts(gen.texts, refs.texts if refs else None, train, paired_references=pairs,
                          human_texts=human, latents=latents, reference_latents=reference_latents,
                          device=pick_device(device), **options)


def _by_class(s: Sources, device: str | None, options: dict) -> ClassEvaluation:
    """The per-class evaluation of `evaluate_sources`."""
    from ldlm.data import load_texts
    from ldlm.distributed import pick_device

    for flag, value in (("--paired", s.paired or None), ("--group-column", s.group_column),
                        ("--human", s.human), ("--ppl-model", options.pop("ppl_model", None)),
                        ("--latents", s.latents), ("--reference-latents", s.reference_latents)):
        if value is not None:
            raise InputError(f"{flag} does not apply to the per-class evaluation (--class-column); "
                             f"drop {flag}, or run `ldlm evaluate` without --class-column for it")
    gen = read_generated(s.generated)
    device = pick_device(device)
    if gen.conditions is None:
        raise InputError(f"GENERATED {gen.source} has no 'condition' field on every record, so the asked "
                         "class of each text is unknown; give `ldlm sample --condition CLASS ... | ldlm "
                         "decode --format jsonl` output (or JSON lines with 'text' and 'condition')")
    if not s.references:
        raise InputError("--class-column names the class column of --references; add --references "
                         "(human texts with their classes, e.g. the test split)")
    refs = load_texts(s.references, text_column=s.column, split=s.split, condition_column=s.class_column,
                      condition_flag="--class-column")
    train = load_texts(s.train, text_column=s.column, split=s.split).texts if s.train else None
    topic = load_topic_classifier(s.classifier) if s.classifier is not None else None
    return evaluate_classes(gen.texts, gen.conditions, list(refs.texts), refs.conditions, train,
                            classifier=topic, device=device, **options)


def _texts(path: str | None, s: Sources, flag: str) -> list[str] | None:
    """The texts of --train or --human (None when not given)."""
    from ldlm.data import load_texts

    return load_texts(path, text_column=s.column, split=s.split, name=flag).texts if path else None
