"""Class-conditional generation scored per class (AG News: four topics).

For each class c that the generated texts ask for, every repeat (one seed) draws N of the
texts generated for c, and a random order of c's references: the first N are c's MAUVE
yardstick, the next N (disjoint) the human row, held-out texts of c scored exactly like the
model's. Both rows get:

    MAUVE (own)      against c's yardstick;
    MAUVE (others)   against N references drawn from the other classes (it should be far
                     lower than the own-class figure: the texts are about c, not about anything);
    Div, dist-n, Mem, copy rate, words/text   as `evaluate_texts` computes them;
    class accuracy   the fraction of the row that an independent topic classifier assigns to c.

One N serves every class (the smallest class sets it), so that the classes' MAUVE figures
compare; the "mean" rows average the classes per repeat. Beside them stands the classifier's
accuracy on every reference (human texts it never trained on): the ceiling of class accuracy.
The protocol is `evaluate_texts`' own (`protocol.Evaluator`), over one group of texts per
class; features and predictions are computed once per text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from ldlm.errors import InputError
from ldlm.evaluate.models import MINILM
from ldlm.evaluate.protocol import ROWS, Evaluator, Group, check_texts, figures_of, summarise
from ldlm.evaluate.registry import METRICS
from ldlm.metrics import Tokenization
from ldlm.progress import SILENT, Reporter

# what a class's row reports, in table order: key -> short label (no perplexity: per class,
# the texts are too few for it to say much)
CLASS_LABELS = {m.key: "MAUVE (own)" if m.key == "mauve" else m.label
                for m in METRICS if m.key != "perplexity"}


class TopicClassifier(Protocol):
    """What class accuracy needs of a classifier: its classes and a prediction per text."""

    labels: list[str]  # the classes it was trained on
    name: str  # what it is, in words (shown beside its figures)

    def predict(self, texts: list[str]) -> list[str]:  # one class of `labels` per text
        ...


class NgramTopicClassifier:
    """`ldlm train-classifier`'s model of a label store, as a topic classifier: the class
    with the highest logit (word n-grams 1-3 and one linear layer)."""

    def __init__(self, model, path: str):
        self.model = model  # a ConditionClassifier trained on label conditions
        self.labels = list(model.spec.labels)
        self.name = f"n-gram classifier {path} (trained on column {model.spec.column!r})"

    def predict(self, texts: list[str], batch_size: int = 512) -> list[str]:
        import torch

        out: list[str] = []
        with torch.no_grad():
            for start in range(0, len(texts), batch_size):
                best = self.model.logits(list(texts[start:start + batch_size])).argmax(1)  # (B,)
                out.extend(self.labels[int(i)] for i in best)
        return out


def load_topic_classifier(path: str) -> NgramTopicClassifier:
    """The classifier saved by `ldlm train-classifier` in `path`, which must be trained on
    class labels (a store encoded with `--condition-column COL`, the default label type)."""
    from ldlm.classifier import ConditionClassifier

    model = ConditionClassifier.from_pretrained(path)
    spec = model.spec
    if spec.type != "label":
        raise InputError(f"classifier {str(path)!r} was trained on conditioning texts (column "
                         f"{spec.column!r}), not class labels; train one on a store encoded with "
                         "--condition-column CLASS_COLUMN (--condition-type label)")
    return NgramTopicClassifier(model, str(path))


@dataclass
class ClassEvaluation:
    """What `evaluate_classes` measured; `as_dict()` is the JSON the CLI prints."""

    classes: list[str]  # the classes scored (those the generated texts ask for), in first-seen order
    num_samples: int  # N texts per side per class per repeat
    seeds: list[int]  # one repeat per seed
    rows: dict[str, dict[str, dict[str, list[float]]]]  # class -> "model"/"reference" -> metric -> per seed
    counts: dict[str, dict[str, int]]  # class -> pool sizes: generated, references, other_references
    mauve_features: str | None = None  # the feature model MAUVE used, in words (None: no MAUVE)
    tokenize: str = "words"  # how the n-gram metrics cut texts into tokens
    classifier: str | None = None  # the topic classifier of class accuracy, in words
    ceiling: dict | None = None  # the classifier on every reference: {"accuracy", "texts", "per_class"}
    train_texts: int | None = None  # training texts of Mem and the copy rate (None: not given)
    notes: list[str] = field(default_factory=list)  # what was skipped and why

    @property
    def mean_rows(self) -> dict[str, dict[str, list[float]]]:
        """"model"/"reference" -> metric -> per seed: the mean over the classes of each repeat
        (a metric only where every class has it)."""
        out: dict[str, dict[str, list[float]]] = {}
        for row in ROWS:
            per_class = [self.rows[c].get(row) for c in self.classes]
            if not per_class or any(r is None for r in per_class):
                continue
            keys = [k for k in CLASS_LABELS if all(k in r for r in per_class)]
            out[row] = {k: [float(np.mean(v)) for v in zip(*(r[k] for r in per_class), strict=True)]
                        for k in keys}
        return out

    def summary(self, cls: str | None, row: str, metric: str) -> tuple[float, float] | None:
        """(mean, std over the repeats) of one metric of one class (None: the mean over the classes)."""
        rows = self.mean_rows if cls is None else self.rows.get(cls, {})
        return summarise(rows.get(row, {}).get(metric))

    def as_dict(self) -> dict:
        return {"classes": self.classes, "num_samples": self.num_samples, "seeds": self.seeds,
                "counts": self.counts, "mauve_features": self.mauve_features, "tokenize": self.tokenize,
                "classifier": self.classifier, "ceiling": self.ceiling, "train_texts": self.train_texts,
                "per_class": {c: figures_of(self.rows[c]) for c in self.classes},
                "mean": figures_of(self.mean_rows), "notes": self.notes}

    @classmethod
    def from_dict(cls, d: dict) -> ClassEvaluation:
        """Rebuild an evaluation from `as_dict()` output (e.g. a saved JSON file)."""
        rows = {c: {row: {k: list(m["values"]) for k, m in metrics.items()} for row, metrics in r.items()}
                for c, r in d["per_class"].items()}
        return cls(classes=list(d["classes"]), num_samples=d["num_samples"], seeds=list(d["seeds"]),
                   rows=rows, counts={c: dict(v) for c, v in d.get("counts", {}).items()},
                   mauve_features=d.get("mauve_features"), tokenize=d.get("tokenize", "words"),
                   classifier=d.get("classifier"), ceiling=d.get("ceiling"),
                   train_texts=d.get("train_texts"), notes=list(d.get("notes", [])))

    def __str__(self) -> str:
        parts = []
        for c in [*self.classes, None]:
            figures = []
            for key in ("mauve", "mauve_other", "accuracy"):
                s = self.summary(c, "model", key)
                if s is not None:
                    figures.append(f"{CLASS_LABELS[key]} {s[0]:.3f}")
            parts.append(f"{'mean' if c is None else c}: " + ", ".join(figures))
        ceiling = f"; classifier ceiling {self.ceiling['accuracy']:.3f}" if self.ceiling else ""
        return f"N={self.num_samples} per class x {len(self.seeds)} seeds; " + "; ".join(parts) + ceiling


def _shown(values: list[str], limit: int = 12) -> str:
    return ", ".join(values[:limit]) + (", ..." if len(values) > limit else "")


def evaluate_classes(
    generated: Sequence[str],
    generated_classes: Sequence[str],
    references: Sequence[str],
    reference_classes: Sequence[str],
    train_texts: Sequence[str] | None = None,
    *,
    classifier: TopicClassifier | None = None,
    num_samples: int | None = None,
    seeds: int | Sequence[int] = 3,
    mauve_features: str | None = MINILM,
    reference_row: bool = True,
    tokenize: Tokenization = "words",
    num_buckets: int | Literal["auto"] = "auto",
    batch_size: int = 64,
    device: str = "cpu",
    models: dict[str, Any] | None = None,
    reporter: Reporter = SILENT,
) -> ClassEvaluation:
    """Score class-conditional texts per class (see the module docstring).

    generated / generated_classes: the model's texts and the class each was asked for;
    references / reference_classes: human texts and their classes (the yardsticks, the human
    rows and the classifier's ceiling); train_texts: memorisation and copy rate; classifier:
    class accuracy (e.g. `load_topic_classifier(CLF_DIR)`). mauve_features None skips MAUVE.
    Default N: the smallest class's generated texts, at most half its references.
    models: the models of more readings (reading name -> model, see `registry.READINGS`).
    """
    gen = check_texts(generated, "GENERATED")
    refs = check_texts(references, "references")
    gen_cls = [str(c) for c in generated_classes]
    ref_cls = [str(c) for c in reference_classes]
    if len(gen_cls) != len(gen):
        raise InputError(f"{len(gen)} generated texts but {len(gen_cls)} classes; give one class per text")
    if len(ref_cls) != len(refs):
        raise InputError(f"{len(refs)} references but {len(ref_cls)} classes; give one class per reference")
    known = list(dict.fromkeys(ref_cls))  # the references' classes, first-seen order
    by_ref: dict[str, list[int]] = {c: [] for c in known}
    for i, c in enumerate(ref_cls):
        by_ref[c].append(i)
    by_gen: dict[str, list[int]] = {}
    for i, c in enumerate(gen_cls):
        if c not in by_ref:
            raise InputError(f"generated text {i + 1} asks for class {c!r}, which no reference has "
                             f"(the references' classes: {_shown(known)}); give references of "
                             "that class or check the class column")
        by_gen.setdefault(c, []).append(i)
    classes = [c for c in known if c in by_gen]
    if classifier is not None:
        missing = [c for c in known if c not in set(classifier.labels)]
        if missing:
            raise InputError(f"classifier {classifier.name} knows the classes "
                             f"{_shown(list(classifier.labels))}, not {_shown(missing)} of the "
                             "references; train it on texts of the same classes")
    groups = []
    for c in classes:
        others = np.asarray([i for i, k in enumerate(ref_cls) if k != c])
        groups.append(Group(np.asarray(by_gen[c]), np.asarray(by_ref[c]),
                            others if len(others) >= 2 else None, label=c, references_first=True))
    ev = Evaluator(gen, refs, groups, train_texts=train_texts, num_samples=num_samples, seeds=seeds,
                   models={"features": mauve_features, "classes": classifier, **(models or {})},
                   reference_row=reference_row, tokenize=tokenize, num_buckets=num_buckets,
                   batch_size=batch_size, device=device, reporter=reporter)
    n = ev.num_samples
    if n < 2:
        raise InputError(f"class {min(classes, key=lambda c: len(by_gen[c]))!r} has too few texts for "
                         "N >= 2 per side; give at least 2 generated texts and 4 references per class")
    notes: list[str] = []
    if len(known) > len(classes):
        notes.append(f"no generated text asks for {_shown([c for c in known if c not in by_gen])}: "
                     "those references only serve as other classes")
    if caveat := ev.mauve_caveat():
        notes.append(caveat)
    if len(known) < 2:
        notes.append("no MAUVE (others): the references hold one class")
    short_row = [g.label for g in groups if reference_row and not ev.has_reference_row(g)]
    if short_row:
        notes.append(f"no human row for {_shown(short_row)}: it needs {2 * n} references of the class "
                     "(N for the yardstick, N for the row); lower --num-samples")

    rows = dict(zip(classes, ev.run(), strict=True))
    ceiling = None
    if classifier is not None:  # the classifier on every reference
        right = np.array([p == c for p, c in zip(ev.read("classes", "references"), ref_cls, strict=True)])
        ceiling = {"accuracy": float(right.mean()), "texts": len(refs),
                   "per_class": {c: float(right[by_ref[c]].mean()) for c in known}}
    counts = {c: {"generated": len(by_gen[c]), "references": len(by_ref[c]),
                  "other_references": len(refs) - len(by_ref[c])} for c in classes}
    return ClassEvaluation(classes=classes, num_samples=n, seeds=ev.seeds, rows=rows, counts=counts,
                           mauve_features=ev.described.get("features"), tokenize=tokenize,
                           classifier=ev.described.get("classes"), ceiling=ceiling,
                           train_texts=len(ev.train_texts) if ev.train_texts else None, notes=notes)


__all__ = ["CLASS_LABELS", "ClassEvaluation", "NgramTopicClassifier", "TopicClassifier",
           "evaluate_classes", "load_topic_classifier"]
