"""Conditions: what a conditional run generates text about, and how it is encoded.

A condition is a class label or a conditioning text (E2E's meaning representation). The
spec is built once from the training column at encode time, stored in the store's
attributes, copied into the run, and used again by `sample` to encode user conditions:

    label: a categorical vocabulary; a condition is its index (N,), the learned null
           condition is index `len(labels)`.
    text:  a token vocabulary (0 <pad>, 1 <null>, 2 <unk>, then the tokens by frequency);
           a condition is `max_length` token ids (N, L), padded with 0. A structured text
           `key[value], key[value], ...` (E2E's MRs) has one token per `key[value]` slot
           (79 in E2E train, all of dev/test's among them); any other text is split into
           words and punctuation. The null condition
           is the single token <null>. The tokens are embedded and encoded by a small
           transformer inside the denoiser, trained jointly with it. (Measured on E2E: the
           autoencoder's own latents of an MR keep only part of its slot values, because
           the autoencoder was trained on references, not MRs; see the README.)

This module is data only (no torch): the vocabulary, the encoding and slot parsing. How a
denoiser is guided by a condition is `ldlm.guidance`; choosing among decoded candidates by
their slots is `ldlm.mbr`.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

from ldlm.errors import InputError

ConditionType = Literal["label", "text"]
PAD, NULL, UNK = 0, 1, 2
SPECIALS = ["<pad>", "<null>", "<unk>"]
MAX_TEXT_TOKENS = 128  # condition texts longer than this are truncated
MAX_LABELS = 1000  # more distinct values than this is not a label column: use --condition-type text
_WORD = re.compile(r"\w+|[^\w\s]")
_KEY_END = re.compile(r"[,\[\]]")  # a slot's key runs up to the first of these
_SPACE = re.compile(r"\s*")


def _slots(text: str) -> list[tuple[str, str]] | None:
    """The (key, value) pairs of `key[value], key[value], ...`, or None when `text` is not
    entirely slots. A key is 1+ characters other than `,[]`, a value anything up to the first
    `]`, whitespace may follow a slot. One left-to-right pass: linear time on any input (the
    regular expression this replaces backtracked exponentially on `"name[x], " * 24`)."""
    slots: list[tuple[str, str]] = []
    pos = 0
    while True:
        stop = _KEY_END.search(text, pos)
        if stop is None or stop.start() == pos or stop.group() != "[":
            return None
        close = text.find("]", stop.end())
        if close < 0:
            return None
        slots.append((text[pos:stop.start()], text[stop.end():close]))
        pos = _SPACE.match(text, close + 1).end()
        if pos == len(text):
            return slots
        if text[pos] != ",":
            return None
        pos += 1


def _slot_token(key: str, value: str) -> str:
    # key and value stripped; an all-whitespace key keeps its last character, as before
    return f"{key.strip() or key[-1]}[{value.strip()}]"


def tokenize_condition(text: str) -> list[str]:
    """'name[The Eagle], food[Thai]' -> ['name[The Eagle]', 'food[Thai]'] (one token per slot);
    other texts -> words and single punctuation marks."""
    slots = _slots(text)
    if slots is not None:
        return [_slot_token(k, v) for k, v in slots]
    return _WORD.findall(text)


def texts_as_labels(values: list[str], column: str) -> str | None:
    """A warning when a column about to become class labels looks like conditioning texts:
    more than one distinct value per 10 rows (over 20 of them), or values that are mostly
    `key[value], ...` slot lists. As labels each such value is a class of its own, and
    `sample --condition` then knows only those exact strings. None when it looks like labels."""
    labels = set(values)
    structured = sum(len(_slots(v) or ()) >= 2 for v in labels)
    many = len(labels) > 20 and len(labels) * 10 > len(values)
    if not many and structured * 2 < len(labels):
        return None
    kind = "key[value] texts" if structured * 2 >= len(labels) else "values"
    return (f"--condition-column {column!r} has {len(labels)} distinct {kind} in {len(values)} rows, "
            "each a class of its own that `sample --condition` must match exactly; if they are "
            "conditioning texts (such as E2E's MRs), pass --condition-type text")


@dataclass
class ConditionSpec:
    """The condition vocabulary of a store and of the runs trained on it."""

    type: ConditionType  # label | text
    column: str  # the dataset column the conditions came from
    labels: list[str] = field(default_factory=list)  # label: the classes, in index order
    vocab: list[str] = field(default_factory=list)  # text: the token vocabulary (specials first)
    max_length: int = 0  # text: tokens per condition

    # ----- building and (de)serialising ------------------------------------------------
    @classmethod
    def build(cls, values: list[str], column: str, type: str = "label") -> ConditionSpec:
        """The spec of a training column: sorted labels, or a word vocabulary by frequency."""
        if type not in ("label", "text"):
            raise InputError(f"--condition-type {type!r} is not one of label, text")
        if not values:
            raise InputError(f"condition column {column!r} has no values")
        if type == "label":
            labels = sorted(set(values))
            if len(labels) > MAX_LABELS:
                raise InputError(
                    f"condition column {column!r} has {len(labels)} distinct values, more than "
                    f"{MAX_LABELS} labels; pass --condition-type text for conditioning texts"
                )
            return cls("label", column, labels=labels)
        counts: Counter = Counter()
        longest = 1
        for v in values:
            tokens = tokenize_condition(v)
            counts.update(tokens)
            longest = max(longest, len(tokens))
        words = sorted(counts, key=lambda w: (-counts[w], w))
        return cls("text", column, vocab=SPECIALS + words, max_length=min(longest, MAX_TEXT_TOKENS))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ConditionSpec:
        return cls(d["type"], d["column"], list(d.get("labels") or []), list(d.get("vocab") or []),
                   int(d.get("max_length") or 0))

    # ----- sizes ------------------------------------------------------------------------
    def model_options(self) -> dict:
        """The denoiser constructor arguments this spec needs."""
        if self.type == "label":
            return {"condition_type": "label", "condition_classes": len(self.labels)}
        return {"condition_type": "text", "condition_classes": len(self.vocab),
                "condition_length": self.max_length}

    # ----- encoding ---------------------------------------------------------------------
    def encode(self, values: list[str], strict: bool = True) -> np.ndarray:
        """Label: indices (n,) int32; text: token ids (n, max_length) int32.

        strict: an unknown label is an InputError (sample); text has <unk> for unknown words.
        """
        if self.type == "label":
            index = {v: i for i, v in enumerate(self.labels)}
            out = np.empty(len(values), np.int32)
            for i, v in enumerate(values):
                if v not in index:
                    shown = ", ".join(self.labels[:10]) + (", ..." if len(self.labels) > 10 else "")
                    raise InputError(f"unknown condition label {v!r}; the run knows {len(self.labels)} "
                                     f"labels: {shown}")
                out[i] = index[v]
            return out
        index = {w: i for i, w in enumerate(self.vocab)}
        out = np.zeros((len(values), self.max_length), np.int32)
        for i, v in enumerate(values):
            if not isinstance(v, str) or not v.strip():
                raise InputError(f"condition number {i + 1} is empty; give a non-empty condition text")
            ids = [index.get(w, UNK) for w in tokenize_condition(v)][: self.max_length]
            out[i, : len(ids)] = ids
        return out

    def null(self, n: int) -> np.ndarray:
        """n null conditions, shaped like `encode`'s output."""
        if self.type == "label":
            return np.full(n, len(self.labels), np.int32)
        out = np.zeros((n, self.max_length), np.int32)
        out[:, 0] = NULL
        return out


def read_condition_file(path) -> list[str]:
    """Conditions, one per line (blank lines skipped)."""
    from ldlm.data import read_lines

    return read_lines(path, "--condition-file", "condition")


def encode_conditions(spec: ConditionSpec | None, values: list[str], run_name: str) -> np.ndarray:
    """Encode user conditions for a run with condition spec `spec` (None: an unconditional
    run); one-line errors for an unconditional run, no condition or an unknown label."""
    if spec is None:
        raise InputError(f"run {run_name!r} is unconditional (trained without --conditional), so it "
                         "takes no --condition/--condition-file; drop them or train with --conditional")
    if not values:
        raise InputError("no condition given; pass --condition VALUE or --condition-file FILE")
    values = list(values)
    if spec.type == "label":  # name the kind of conditions the run knows, and how to pass them
        bad = next((i for i, v in enumerate(values) if v not in spec.labels), None)
        if bad is not None:
            v = values[bad]
            shown = ", ".join(spec.labels[:10]) + (", ..." if len(spec.labels) > 10 else "")
            trained = (f"run {run_name!r} was trained with the class labels of column {spec.column!r} "
                       f"({len(spec.labels)}: {shown})")
            how = "pass one of them with --condition LABEL, or one per line in --condition-file"
            if len(v.split()) > max(len(x.split()) for x in spec.labels) + 1:
                raise InputError(f"condition {bad + 1} {_clip(v)!r} is a text, but {trained}, not "
                                 f"conditioning texts; {how}")
            raise InputError(f"unknown condition label {_clip(v)!r}; {trained}; {how}")
        return spec.encode(values)
    encoded = spec.encode(values)  # (n, L) token ids
    blank = next((i for i, row in enumerate(encoded) if np.isin(row, (PAD, UNK)).all()), None)
    if blank is not None:
        known = ", ".join(spec.vocab[len(SPECIALS):len(SPECIALS) + 3])
        raise InputError(f"condition {blank + 1} {_clip(values[blank])!r} shares no token with the "
                         f"conditions run {run_name!r} was trained with (texts of column "
                         f"{spec.column!r}, tokens such as {known}), so it says nothing to the run; "
                         "pass a conditioning text like those with --condition TEXT, not a class label")
    return encoded


def _clip(value: str, limit: int = 60) -> str:
    return value if len(value) <= limit else value[:limit - 3] + "..."


def slot_values(condition: str) -> list[str]:
    """The values of a structured condition: 'name[The Eagle], food[Thai]' -> ['The Eagle', 'Thai'];
    [] for any other text."""
    return [v.strip() for _, v in _slots(condition) or [] if v.strip()]


def _mentions(text: str, value: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(value)}(?!\w)", text, flags=re.IGNORECASE) is not None


def slot_errors(text: str, condition: str, known: set[str]) -> int:
    """How far a text strays from a structured condition: the condition's values it does not
    state, plus the other `known` values (of the run's slot vocabulary) it states anyway."""
    own = {v.lower() for v in slot_values(condition)}
    missing = sum(not _mentions(text, v) for v in own)
    extra = sum(_mentions(text, v) for v in known - own)
    return missing + extra


def known_slot_values(spec: ConditionSpec) -> set[str]:
    """Every slot value of a text spec's vocabulary, lower-cased (empty for labels or words)."""
    return {v.lower() for token in spec.vocab for v in slot_values(token)}


__all__ = ["ConditionSpec", "encode_conditions", "known_slot_values", "read_condition_file",
           "slot_errors", "slot_values", "texts_as_labels", "tokenize_condition", "PAD", "NULL", "UNK",
           "SPECIALS"]
