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
Features and predictions are computed once per distinct text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

from ldlm.errors import InputError
from ldlm.evaluate import models
from ldlm.evaluate.protocol import METRICS, _check_pool, _Repeat, _seed_list
from ldlm.metrics import TOKENIZATIONS, Tokenization, train_ngrams
from ldlm.progress import SILENT, Reporter

ROWS = ("model", "reference")  # the generated texts, the held-out human texts of the class
# what a row reports, in table order: key -> short label
CLASS_LABELS = {
    "mauve": "MAUVE (own)", "mauve_other": "MAUVE (others)",
    **{m.key: m.label for m in METRICS if m.key not in ("mauve", "perplexity")},
    "accuracy": "Class acc.",
}
_NGRAM_METRICS = tuple(m for m in METRICS if m.key not in ("mauve", "perplexity"))


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
        values = rows.get(row, {}).get(metric)
        if not values:
            return None
        return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0

    def as_dict(self) -> dict:
        def rows_of(source: dict[str, dict[str, list[float]]]) -> dict:
            return {row: {k: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1
                              else 0.0, "values": list(v)} for k, v in metrics.items()}
                    for row, metrics in source.items()}

        return {"classes": self.classes, "num_samples": self.num_samples, "seeds": self.seeds,
                "counts": self.counts, "mauve_features": self.mauve_features, "tokenize": self.tokenize,
                "classifier": self.classifier, "ceiling": self.ceiling, "train_texts": self.train_texts,
                "per_class": {c: rows_of(self.rows[c]) for c in self.classes},
                "mean": rows_of(self.mean_rows), "notes": self.notes}

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


def _choose_n(num_samples: int | None, gen: dict[str, list[int]], refs: dict[str, list[int]],
              split_refs: bool) -> int:
    """One N for every class: as given (checked against each class's pools), else the smallest
    class's generated texts, capped by its references (by half when they also give the human row)."""
    if num_samples is None:
        return min(min(len(gen[c]), max(len(refs[c]) // 2, 1) if split_refs else len(refs[c]))
                   for c in gen)
    if num_samples < 2:
        raise InputError(f"--num-samples {num_samples} must be at least 2")
    for c in gen:
        for pool, what in ((gen[c], "generated texts"), (refs[c], "references")):
            if len(pool) < num_samples:
                raise InputError(f"--num-samples {num_samples} but class {c!r} has only {len(pool)} "
                                 f"{what}; lower --num-samples to at most {len(pool)} or give more texts")
    return num_samples


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
    mauve_features: str | None = models.MINILM,
    reference_row: bool = True,
    tokenize: Tokenization = "words",
    num_buckets: int | Literal["auto"] = "auto",
    batch_size: int = 64,
    device: str = "cpu",
    reporter: Reporter = SILENT,
) -> ClassEvaluation:
    """Score class-conditional texts per class (see the module docstring).

    generated / generated_classes: the model's texts and the class each was asked for;
    references / reference_classes: human texts and their classes (the yardsticks, the human
    rows and the classifier's ceiling); train_texts: memorisation and copy rate; classifier:
    class accuracy (e.g. `load_topic_classifier(CLF_DIR)`). mauve_features None skips MAUVE.
    Default N: the smallest class's generated texts, at most half its references.
    """
    gen = _check_pool(generated, "GENERATED")
    refs = _check_pool(references, "references")
    gen_cls = [str(c) for c in generated_classes]
    ref_cls = [str(c) for c in reference_classes]
    if len(gen_cls) != len(gen):
        raise InputError(f"{len(gen)} generated texts but {len(gen_cls)} classes; give one class per text")
    if len(ref_cls) != len(refs):
        raise InputError(f"{len(refs)} references but {len(ref_cls)} classes; give one class per reference")
    if tokenize not in TOKENIZATIONS:
        raise InputError(f"tokenize {tokenize!r} is not one of {', '.join(TOKENIZATIONS)}")
    if mauve_features in (None, "none", ""):
        mauve_features = None
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
    seed_list = _seed_list(seeds)
    n = _choose_n(num_samples, by_gen, by_ref, split_refs=reference_row)
    if n < 2:
        raise InputError(f"class {min(classes, key=lambda c: len(by_gen[c]))!r} has too few texts for "
                         "N >= 2 per side; give at least 2 generated texts and 4 references per class")
    notes: list[str] = []
    if len(known) > len(classes):
        notes.append(f"no generated text asks for {_shown([c for c in known if c not in by_gen])}: "
                     "those references only serve as other classes")
    if mauve_features is not None and n < 100:
        notes.append(f"MAUVE on {n} texts per side is noisy; the field uses 1,000 or more")
    if len(known) < 2:
        notes.append("no MAUVE (others): the references hold one class")

    # the draws of every repeat, fixed before anything is computed: (seed, class) -> row -> indices
    plans: dict[tuple[int, str], dict[str, np.ndarray]] = {}
    short_row = []
    for s in seed_list:
        rng = np.random.default_rng(s)
        for c in classes:
            own = np.asarray(by_ref[c])
            perm = rng.permutation(own)
            plan = {"model": np.sort(rng.choice(by_gen[c], n, replace=False)), "yard": perm[:n]}
            if reference_row:
                if len(own) >= 2 * n:
                    plan["reference"] = perm[n:2 * n]
                elif c not in short_row:
                    short_row.append(c)
            others = np.asarray([i for i, k in enumerate(ref_cls) if k != c])
            if len(others) >= 2:
                plan["others"] = rng.choice(others, min(n, len(others)), replace=False)
            plans[s, c] = plan
    if short_row:
        notes.append(f"no human row for {_shown(short_row)}: it needs {2 * n} references of the class "
                     "(N for the yardstick, N for the row); lower --num-samples")

    def texts_of(key: str, idx) -> list[str]:
        return [(gen if key == "model" else refs)[int(i)] for i in idx]

    # features and predictions: once per distinct text
    needed = sorted({t for p in plans.values() for k, idx in p.items() for t in texts_of(k, idx)})
    feats: dict[str, np.ndarray] = {}
    feature_name = None
    if mauve_features is not None:
        feature_name = models.load_feature_model(mauve_features, device=device).describe()
        feats = dict(zip(needed, models.text_features(needed, mauve_features, batch_size, device,
                                                      reporter=reporter), strict=True))
    predicted: dict[str, str] = {}
    ceiling = None
    if classifier is not None:
        distinct = sorted(set(needed) | set(refs))
        predicted = dict(zip(distinct, classifier.predict(distinct), strict=True))
        right = np.array([predicted[t] == c for t, c in zip(refs, ref_cls, strict=True)])
        ceiling = {"accuracy": float(right.mean()), "texts": len(refs),
                   "per_class": {c: float(right[by_ref[c]].mean()) for c in known}}

    grams = train_set = None
    if train_texts is not None:
        train_texts = _check_pool(train_texts, "training texts")
        grams = train_ngrams(train_texts, 4, tokenize)
        train_set = {t.strip() for t in train_texts}

    rows: dict[str, dict[str, dict[str, list[float]]]] = {c: {} for c in classes}
    for r, s in enumerate(seed_list):
        reporter.log(f"repeat {r + 1}/{len(seed_list)} (seed {s}): {len(classes)} classes, "
                     f"{n} texts per side")
        for c in classes:
            plan = plans[s, c]
            yard = np.stack([feats[t] for t in texts_of("yard", plan["yard"])]) if feats else None
            other = (np.stack([feats[t] for t in texts_of("others", plan["others"])])
                     if feats and "others" in plan else None)
            for row in ROWS:
                if row not in plan:
                    continue
                texts = texts_of(row, plan[row])
                values = rows[c].setdefault(row, {})
                if feats:
                    p = np.stack([feats[t] for t in texts])
                    values.setdefault("mauve", []).append(
                        models.mauve_from_features(p, yard, seed=s, num_buckets=num_buckets))
                    if other is not None:
                        values.setdefault("mauve_other", []).append(
                            models.mauve_from_features(p, other, seed=s, num_buckets=num_buckets))
                repeat = _Repeat(texts, tokenize, seed=s, grams=grams, train_set=train_set)
                for metric in _NGRAM_METRICS:
                    value = metric.compute(repeat)
                    if value is not None:
                        values.setdefault(metric.key, []).append(value)
                if predicted:
                    values.setdefault("accuracy", []).append(
                        float(np.mean([predicted[t] == c for t in texts])))

    counts = {c: {"generated": len(by_gen[c]), "references": len(by_ref[c]),
                  "other_references": len(refs) - len(by_ref[c])} for c in classes}
    return ClassEvaluation(classes=classes, num_samples=n, seeds=seed_list, rows=rows, counts=counts,
                           mauve_features=feature_name, tokenize=tokenize,
                           classifier=classifier.name if classifier is not None else None,
                           ceiling=ceiling, train_texts=len(train_texts) if train_texts else None,
                           notes=notes)


__all__ = ["CLASS_LABELS", "ClassEvaluation", "NgramTopicClassifier", "TopicClassifier",
           "evaluate_classes", "load_topic_classifier"]
