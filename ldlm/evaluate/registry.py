"""The metrics of `ldlm evaluate` and what they need: adding one is an entry in METRICS.

A metric scores one row of one repeat (N texts, see `Row`) from the inputs it names in
`needs`, and is measured wherever the row has them. The inputs a model makes of each text
(MAUVE features, token NLLs, a topic classifier's class) are READINGS: the evaluator reads
every drawn text once and hands each row its values. A model-based metric is a reading and a
metric here, and its model's code in `models`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ldlm.evaluate import models
from ldlm.metrics import Tokenization, distinct_n, diversity, memorisation
from ldlm.progress import Reporter


@dataclass(frozen=True)
class Settings:
    """How an evaluation computes, as its metrics and readings see it."""

    tokenize: Tokenization  # the tokens of the n-gram metrics
    num_buckets: int | Literal["auto"]  # MAUVE's histogram bins ("auto": a tenth of the texts)
    batch_size: int  # texts per forward pass of the feature model
    device: str  # where the models run
    reporter: Reporter  # the models' progress


class Row:
    """One row of one repeat as the metrics see it: N texts and what the evaluation has of them."""

    def __init__(self, texts: list[str], seed: int, settings: Settings, inputs: dict[str, Any]):
        self.texts = texts  # the N texts scored
        self.seed = seed  # the repeat's seed
        self.settings = settings
        # need -> value: per text of the row, each reading ("features", "nll", "classes"); per
        # text of a yardstick, "yardstick.<reading>" and "others.<reading>"; the group's
        # "label"; "train", the training texts' 4-grams, stripped texts and word 3-gram model
        self.inputs = inputs
        self._mem: dict | None = None

    def memorisation(self) -> dict:
        """Mem (4-gram) and copy rate against the training texts, computed once for both."""
        if self._mem is None:
            grams, train_set, _ = self.inputs["train"]
            self._mem = memorisation(self.texts, tokenize=self.settings.tokenize, train_grams=grams,
                                     train_set=train_set)
        return self._mem


@dataclass(frozen=True)
class Metric:
    """One row of the evaluation table: what it needs, how it is computed and shown."""

    key: str  # the JSON key
    label: str  # the short label (markdown tables, one-line summaries)
    compute: Callable[[Row], float]
    needs: tuple[str, ...] = ()  # inputs of the row (see `Row.inputs`); without one: not measured
    digits: int = 3  # decimals shown
    describe: Callable[[Any], str] | None = None  # the table label, given the Evaluation


def _mauve(against: str) -> Callable[[Row], float]:
    def compute(r: Row) -> float:
        return models.mauve_from_features(np.stack(r.inputs["features"]), np.stack(r.inputs[against]),
                                          seed=r.seed, num_buckets=r.settings.num_buckets)
    return compute


def _perplexity(r: Row) -> float:
    nll = r.inputs["nll"]
    return models.perplexity_of(np.array([a for a, _ in nll]), np.array([c for _, c in nll]))


def _accuracy(r: Row) -> float:
    return float(np.mean([c == r.inputs["label"] for c in r.inputs["classes"]]))


# every metric, in table order
METRICS: tuple[Metric, ...] = (
    Metric("mauve", "MAUVE", _mauve("yardstick.features"), needs=("features", "yardstick.features"),
           describe=lambda e: f"MAUVE ({e.mauve_features})"),
    Metric("mauve_other", "MAUVE (others)", _mauve("others.features"), needs=("features", "others.features")),
    Metric("diversity", "Div", lambda r: diversity(r.texts, r.settings.tokenize),
           describe=lambda e: f"Div ({e.tokenize} tokens)"),
    Metric("distinct_1", "dist-1", lambda r: distinct_n(r.texts, 1, r.settings.tokenize),
           describe=lambda e: f"dist-1 ({e.tokenize} tokens)"),
    Metric("distinct_2", "dist-2", lambda r: distinct_n(r.texts, 2, r.settings.tokenize),
           describe=lambda e: f"dist-2 ({e.tokenize} tokens)"),
    Metric("mem_4gram", "Mem (4-gram)", lambda r: r.memorisation()["mem_4gram"], needs=("train",),
           describe=lambda e: f"Mem (4-grams in train, {e.tokenize} tokens)"),
    Metric("copy_rate", "Copy rate", lambda r: r.memorisation()["copy_rate"], needs=("train",),
           describe=lambda e: "Copy rate (exact train copies)"),
    Metric("train_lm_ppl", "3-gram PPL", lambda r: r.inputs["train"][2].perplexity(r.texts), needs=("train",),
           digits=1, describe=lambda e: "PPL per word under a Kneser-Ney 3-gram model of the training texts"),
    Metric("perplexity", "Gen PPL", _perplexity, needs=("nll",), digits=1,
           describe=lambda e: f"Gen PPL ({e.ppl_model})"),
    Metric("words", "Words/text", lambda r: float(np.mean([len(t.split()) for t in r.texts])), digits=1),
    Metric("accuracy", "Class acc.", _accuracy, needs=("classes", "label")),
)
LABELS = {m.key: m.label for m in METRICS}  # metric key -> short label, in table order
DIGITS = {m.key: m.digits for m in METRICS}  # metric key -> decimals shown


@dataclass(frozen=True)
class Reading:
    """What a model makes of each text: computed once per text, shared by every repeat and group."""

    name: str  # its key in the evaluator's models and in the metrics' `needs`
    parts: tuple[str, ...]  # the parts of a draw it reads: the rows ("model", "reference"), yardsticks
    read: Callable[[Any, list[str], Settings], list]  # (model, texts, settings) -> one value per text
    describe: Callable[[Any, Settings], str] = lambda model, s: str(model)  # the model, in words
    needs_references: bool = False  # read only where there are references (to compare against)


# every model an evaluation can read texts with, in the order they read
READINGS: tuple[Reading, ...] = (
    Reading("features", ("model", "reference", "yardstick", "others"),
            lambda m, texts, s: list(models.text_features(texts, m, s.batch_size, s.device,
                                                          reporter=s.reporter)),
            describe=lambda m, s: models.load_feature_model(m, device=s.device).describe(),
            needs_references=True),
    Reading("nll", ("model", "reference"), lambda m, texts, s: list(zip(*models.text_nll(
        texts, m, batch_size=16, device=s.device, reporter=s.reporter), strict=True))),
    Reading("classes", ("model", "reference"), lambda m, texts, s: list(m.predict(texts)),
            describe=lambda m, s: m.name),
)


def reading(name: str) -> Reading:
    """The reading called `name`."""
    for r in READINGS:
        if r.name == name:
            return r
    raise ValueError(f"Unknown reading {name!r}; the readings: {', '.join(r.name for r in READINGS)}")
