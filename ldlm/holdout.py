"""Which rows a trainer holds out for the figures it reports: every hold-out goes through here
(`holdout`), by one of two named policies.

"spaced" (`train-autoencoder`, `train-classifier`): rows are held out evenly over the whole data
(every step-th row), not at its end: a corpus or store sorted by class or by source (AG News'
`train.csv` is sorted by class) would otherwise hold out one class only, and the figure would
describe that class alone. With labels, the rows are spread within each class and each class
holds out its share of them (stratified), so that a corpus whose classes repeat in a period
(A, B, A, B, ...) cannot land every held-out row on one class either.

"last" (`ldlm train`, and `adapt-decoder`, which reads the run's): the last rows of a store,
which lets a store larger than memory stream its training rows as one contiguous range.

How many rows: `train-autoencoder` holds out --eval-rows; a store's trainers (`ldlm train`,
`train-classifier`) hold out `holdout_rows`: at most --eval-rows and 5% of the store, none for a
tiny one. Every split is deterministic: the same data gives the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

Policy = Literal["spaced", "last"]
POLICIES = ("spaced", "last")


def holdout(n: int, eval_rows: int, policy: Policy, labels=None) -> tuple[Sequence[int], Sequence[int]]:
    """Deterministic (training, held-out) row indices of `n` rows, each in order, `eval_rows` of
    them held out under `policy` (the module docstring): "spaced" (`spaced_holdout`; `labels`
    stratify it) or "last" (two ranges: the first rows, then the last `eval_rows`)."""
    if policy == "last":
        held = max(0, min(eval_rows, n))
        return range(n - held), range(n - held, n)
    if policy == "spaced":
        return spaced_holdout(n, eval_rows, labels)
    raise ValueError(f"Unknown hold-out policy {policy!r}; use one of {', '.join(POLICIES)}")


def holdout_rows(rows: int, eval_rows: int) -> int:
    """How many rows a store's trainers hold out: min(eval_rows, 5%), none for tiny stores."""
    held = min(eval_rows, rows // 20)
    return held if held >= 2 else 0


def spaced_holdout(n: int, eval_rows: int, labels=None) -> tuple[list[int], list[int]]:
    """Deterministic (train, held-out) row indices, each sorted, for `n` rows: `eval_rows` rows
    held out evenly over the data (every step-th row), none when there are fewer than 4 rows.

    `labels` (n,) or (n, L): stratified: each class (a distinct label, or row of L) holds out its
    share of `eval_rows` (largest remainders), spread over its own rows, and keeps at least one
    training row."""
    if n < 4 or eval_rows < 1:
        return list(range(n)), []
    if labels is None:
        step = max(2, n // eval_rows)
        held = list(range(0, n, step))[:eval_rows]
    else:
        held = _stratified(np.asarray(labels), min(eval_rows, n // 2))
    held_set = set(held)
    return [i for i in range(n) if i not in held_set], held


def _stratified(labels: np.ndarray, eval_rows: int) -> list[int]:
    flat = labels.reshape(len(labels), -1)
    _, cls = np.unique(flat, axis=0, return_inverse=True)
    cls = cls.reshape(-1)
    counts = np.bincount(cls)
    exact = eval_rows * counts / len(cls)
    share = np.floor(exact).astype(int)
    for c in np.argsort(-(exact - share), kind="stable")[: eval_rows - int(share.sum())]:
        share[c] += 1  # largest remainders
    share = np.minimum(share, counts - 1)  # every class keeps a training row
    held: list[int] = []
    for c, k in enumerate(share):
        rows = np.flatnonzero(cls == c)
        held.extend(int(rows[int(j * len(rows) / k)]) for j in range(k))
    return sorted(held)


def classes(labels) -> int:
    """How many distinct classes (labels, or rows of label tokens) `labels` holds."""
    labels = np.asarray(labels)
    return len(np.unique(labels.reshape(len(labels), -1), axis=0)) if len(labels) else 0


__all__ = ["POLICIES", "Policy", "classes", "holdout", "holdout_rows", "spaced_holdout"]
