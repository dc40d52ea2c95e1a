"""The field's protocol: N generated texts against N references, repeated over seeds.

Each repeat (one seed) draws, without replacement, N texts from the generated pool and a
random order of the reference pool: its first N texts are the yardstick MAUVE compares
against, the next N (disjoint) are the "reference" row, human texts scored exactly like
the model's (or N texts drawn from `human_texts` when given). Every metric is reported as
the mean and standard deviation over the repeats.

`Evaluator` runs the protocol over groups of texts: one group of all of them
(`evaluate_texts`), or one group per class (`by_class`), with one N for every group. What a
model makes of a text (the READINGS of `registry`: MAUVE features, token NLLs, a topic
classifier's class) is computed once per text and reused by every repeat; every metric of
`registry.METRICS` is measured wherever a row has what it needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ldlm.errors import InputError
from ldlm.evaluate import registry
from ldlm.evaluate.models import MINILM
from ldlm.evaluate.registry import LABELS, Reading, Row, Settings
from ldlm.metrics import TOKENIZATIONS, Tokenization, corpus_bleu, frechet_distance, train_ngrams
from ldlm.progress import SILENT, Reporter

ROWS = ("model", "reference")  # a group's rows: its generated texts, held-out human texts scored alike


@dataclass(frozen=True)
class Group:
    """Texts scored together: generated texts and the references they are measured against."""

    generated: np.ndarray  # indices into the generated texts
    references: np.ndarray | None = None  # indices into the references: the yardstick, then the reference row
    others: np.ndarray | None = None  # indices into the references: a second yardstick (the other classes)
    label: str | None = None  # the class the texts were asked for (class accuracy); None: no class
    # a repeat draws this group's references before its generated texts: the per-class order,
    # kept so that every seed still draws the texts it drew before the two evaluators were one
    references_first: bool = False


def summarise(values: Sequence[float] | None) -> tuple[float, float] | None:
    """(mean, std) of one metric over the repeats (std 0.0 for one repeat), or None."""
    if not values:
        return None
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return float(np.mean(values)), std


def figures_of(rows: dict[str, dict[str, list[float]]]) -> dict:
    """Rows as the JSON shows them: row -> metric -> mean, std and the values per repeat."""
    out: dict = {}
    for row, metrics in rows.items():
        out[row] = {}
        for key, values in metrics.items():
            mean, std = summarise(values)
            out[row][key] = {"mean": mean, "std": std, "values": values}
    return out


def seed_list(seeds: int | Sequence[int]) -> list[int]:
    """The seeds of the repeats: 0..S-1 for a number S, else the seeds given."""
    if isinstance(seeds, int):
        if seeds < 1:
            raise InputError(f"--seeds {seeds} must be at least 1 (the number of repeats)")
        return list(range(seeds))
    out = [int(s) for s in seeds]
    if not out:
        raise InputError("seeds is empty; give at least one seed")
    return out


def check_texts(texts: Sequence[str] | None, what: str) -> list[str] | None:
    """`texts` as a list, refused (InputError) when empty or holding anything but strings."""
    if texts is None:
        return None
    texts = list(texts)
    if not texts:
        raise InputError(f"{what} is empty; give at least one text")
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise InputError(f"{what} item {bad[0]} is {type(texts[bad[0]]).__name__}, not a string")
    return texts


class Evaluator:
    """The protocol over groups of texts (see the module docstring).

    Construction checks the pools and the settings, sets N and fixes every repeat's draws;
    `run()` reads the drawn texts with the models and scores every row of every repeat.
    models: reading name -> its model (see `registry.READINGS`: "features" a feature model
    name, "nll" a causal LM, "classes" a topic classifier); caches: reading name -> {text:
    value}, read and filled, to share one model's readings between evaluations.
    """

    def __init__(self, generated: Sequence[str], references: Sequence[str] | None,
                 groups: Sequence[Group] | None = None, *, human: Sequence[str] | None = None,
                 train_texts: Sequence[str] | None = None, num_samples: int | None,
                 seeds: int | Sequence[int], models: dict[str, Any], caches: dict[str, dict] | None = None,
                 reference_row: bool, tokenize: Tokenization, num_buckets: int | Literal["auto"],
                 batch_size: int, device: str, reporter: Reporter = SILENT):
        self.generated = check_texts(generated, "GENERATED")
        self.references = check_texts(references, "references")
        self.human = check_texts(human, "human texts")
        if tokenize not in TOKENIZATIONS:
            raise InputError(f"tokenize {tokenize!r} is not one of {', '.join(TOKENIZATIONS)}")
        # a model of None is not read; nor is the feature model "none" (the CLI's word for no MAUVE)
        self.models = {k: m for k, m in models.items()
                       if m is not None and not (k == "features" and m in ("none", ""))}
        self.caches = caches or {}
        self.reference_row = reference_row
        self.settings = Settings(tokenize, num_buckets, batch_size, device, reporter)
        self.seeds = seed_list(seeds)
        self.groups = list(groups) if groups is not None else [self._everything()]
        self.num_samples = self._choose_n(num_samples)
        self.train_texts = check_texts(train_texts, "training texts")
        self.draws = []  # per repeat, per group: part -> indices into its pool
        for s in self.seeds:
            rng = np.random.default_rng(s)
            self.draws.append([self._draw(rng, g) for g in self.groups])
        self.described: dict[str, str] = {}  # reading name -> its model, in words (once read)
        self.values: dict[str, dict[str, dict[int, Any]]] = {}  # reading -> pool -> index -> value

    @property
    def pools(self) -> dict[str, list[str] | None]:
        return {"generated": self.generated, "references": self.references, "human": self.human}

    def _everything(self) -> Group:
        refs = self.references
        return Group(np.arange(len(self.generated)), None if refs is None else np.arange(len(refs)))

    def _choose_n(self, num_samples: int | None) -> int:
        """N: as given (checked against every pool), else the most every group allows: its
        generated texts, capped by its references (by half of them when they also give the
        reference row) and by the human texts."""
        human = self.human if self.reference_row else None
        split = self.reference_row and self.human is None
        if num_samples is None:
            caps = []
            for g in self.groups:
                cap = len(g.generated)
                if g.references is not None:
                    cap = min(cap, max(len(g.references) // 2, 1) if split else len(g.references))
                caps.append(cap)
            return min(caps) if human is None else min(*caps, len(human))
        if num_samples < 2:
            raise InputError(f"--num-samples {num_samples} must be at least 2")
        # the groups in the order GENERATED first names them
        for g in sorted(self.groups, key=lambda g: int(g.generated[0])):
            for pool, size in (("generated", len(g.generated)),
                               ("references", None if g.references is None else len(g.references))):
                if size is not None and size < num_samples:
                    raise InputError(f"--num-samples {num_samples} but {_holds(g, pool, size)}; lower "
                                     f"--num-samples to at most {size} or give more texts")
        if human is not None and len(human) < num_samples:
            raise InputError(f"--num-samples {num_samples} but --human holds only {len(human)} texts; "
                             f"lower --num-samples to at most {len(human)} or give more texts")
        return num_samples

    def has_reference_row(self, g: Group) -> bool:
        """Whether group g gets a reference row: asked for, and N human texts to fill it (the
        human texts, or N references beyond the yardstick)."""
        if not self.reference_row:
            return False
        if self.human is not None:
            return True
        return g.references is not None and len(g.references) >= 2 * self.num_samples

    def reads(self, name: str) -> bool:
        """Whether this evaluation reads its texts with the model of reading `name`."""
        return name in self.models and (self.references is not None
                                        or not registry.reading(name).needs_references)

    def mauve_caveat(self) -> str | None:
        """The note for MAUVE on fewer texts than the field uses."""
        if self.reads("features") and self.num_samples < 100:
            return f"MAUVE on {self.num_samples} texts per side is noisy; the field uses 1,000 or more"
        return None

    def _draw(self, rng: np.random.Generator, g: Group) -> dict[str, np.ndarray]:
        """One repeat's texts of group g, as indices per part: "model" (generated texts),
        "yardstick" and "others" (references), "reference" (the references after the
        yardstick, or human texts)."""
        n = self.num_samples
        order = None
        if g.references is not None and g.references_first:
            order = rng.permutation(g.references)
        draw = {"model": np.sort(rng.choice(g.generated, n, replace=False))}
        if g.references is not None and not g.references_first:
            order = rng.permutation(g.references)
        if order is not None:
            draw["yardstick"] = order[:n]
            if self.human is None and self.has_reference_row(g):
                draw["reference"] = order[n:2 * n]
        if self.human is not None and self.has_reference_row(g):
            draw["reference"] = rng.choice(len(self.human), n, replace=False)
        if g.others is not None:
            draw["others"] = rng.choice(g.others, min(n, len(g.others)), replace=False)
        return draw

    def _pool(self, part: str) -> str:
        """The pool the indices of a draw's part point into."""
        if part == "model":
            return "generated"
        return "human" if part == "reference" and self.human is not None else "references"

    def _read(self, reading: Reading) -> None:
        """Read every text the draws use with `reading`'s model: one call per pool (generated,
        references, human), in the pool's order."""
        model = self.models[reading.name]
        self.described[reading.name] = reading.describe(model, self.settings)
        for pool in self.pools:
            used = {int(i) for draws in self.draws for draw in draws for part in reading.parts
                    if part in draw and self._pool(part) == pool for i in draw[part]}
            if used:
                self._read_texts(reading, pool, sorted(used))

    def _read_texts(self, reading: Reading, pool: str, order: list[int]) -> None:
        """Read texts `order` of `pool` (with a shared cache: those no evaluation read before,
        each distinct text once, in text order)."""
        texts, model = self.pools[pool], self.models[reading.name]
        values = self.values.setdefault(reading.name, {}).setdefault(pool, {})
        cache = self.caches.get(reading.name)
        if cache is None:
            values.update(zip(order, reading.read(model, [texts[i] for i in order], self.settings),
                              strict=True))
            return
        missing = sorted({texts[i] for i in order} - cache.keys())
        if missing:
            cache.update(zip(missing, reading.read(model, missing, self.settings), strict=True))
        values.update((i, cache[texts[i]]) for i in order)

    def read(self, name: str, pool: str) -> list:
        """Reading `name` of every text of `pool` (reading those the draws did not use)."""
        values = self.values.get(name, {}).get(pool, {})
        missing = [i for i in range(len(self.pools[pool])) if i not in values]
        if missing:
            self._read_texts(registry.reading(name), pool, missing)
        return [self.values[name][pool][i] for i in range(len(self.pools[pool]))]

    def _inputs(self, g: Group, draw: dict[str, np.ndarray], row: str, train) -> dict[str, Any]:
        """What a metric may need of one row (see `Row.inputs`)."""
        inputs: dict[str, Any] = {}
        for part, prefix in ((row, ""), ("yardstick", "yardstick."), ("others", "others.")):
            if part not in draw:
                continue
            pool = self._pool(part)
            for name, values in self.values.items():
                if part in registry.reading(name).parts:
                    inputs[prefix + name] = [values[pool][int(i)] for i in draw[part]]
        if g.label is not None:
            inputs["label"] = g.label
        if train is not None:
            inputs["train"] = train
        return inputs

    def run(self) -> list[dict[str, dict[str, list[float]]]]:
        """Read the drawn texts and score every repeat: per group, row -> metric -> one value
        per repeat (a metric where the row has what it needs)."""
        for reading in registry.READINGS:
            if self.reads(reading.name):
                self._read(reading)
        train = None
        if self.train_texts is not None:
            from ldlm.fluency import NgramLM

            train = (train_ngrams(self.train_texts, 4, self.settings.tokenize),
                     {t.strip() for t in self.train_texts}, NgramLM.fit(self.train_texts, order=3))
        scores = [{row: {} for row in ROWS if row == "model" or self.has_reference_row(g)}
                  for g in self.groups]
        what = f"{len(self.groups)} classes, " if self.groups[0].label is not None else "scoring "
        for r, (seed, draws) in enumerate(zip(self.seeds, self.draws, strict=True)):
            self.settings.reporter.log(f"repeat {r + 1}/{len(self.seeds)} (seed {seed}): {what}"
                                       f"{self.num_samples} texts per side")
            for g, draw, rows in zip(self.groups, draws, scores, strict=True):
                for row, values in rows.items():
                    texts = [self.pools[self._pool(row)][int(i)] for i in draw[row]]
                    scored = Row(texts, seed, self.settings, self._inputs(g, draw, row, train))
                    for metric in registry.METRICS:
                        if all(need in scored.inputs for need in metric.needs):
                            values.setdefault(metric.key, []).append(metric.compute(scored))
        return scores


def _holds(g: Group, pool: str, size: int) -> str:
    """How the N check names a pool too small: the whole set's by its input, a class's by the class."""
    if g.label is None:
        return f"{'GENERATED' if pool == 'generated' else '--references'} holds only {size} texts"
    return f"class {g.label!r} has only {size} {'generated texts' if pool == 'generated' else 'references'}"


@dataclass
class Evaluation:
    """What `evaluate_texts` measured; `as_dict()` is the JSON the CLI prints."""

    num_samples: int  # N texts per side per repeat
    seeds: list[int]  # one repeat per seed
    rows: dict[str, dict[str, list[float]]]  # "model" / "reference" -> metric -> one value per seed
    counts: dict[str, int]  # pool sizes: generated, references, human, train
    mauve_features: str | None = None  # the feature model MAUVE used, in words
    tokenize: str = "words"  # how the n-gram metrics cut texts into tokens
    ppl_model: str | None = None  # the causal LM of the perplexities
    bleu: dict | None = None  # paired corpus BLEU over all generated texts
    latent_fd: dict | None = None  # Frechet distance between latent sets
    notes: list[str] = field(default_factory=list)  # what was skipped and why

    def summary(self, row: str, metric: str) -> tuple[float, float] | None:
        """(mean, std) of one metric over the repeats (std 0.0 for one repeat), or None."""
        return summarise(self.rows.get(row, {}).get(metric))

    def as_dict(self) -> dict:
        return {"num_samples": self.num_samples, "seeds": self.seeds, "counts": self.counts,
                "mauve_features": self.mauve_features, "tokenize": self.tokenize,
                "ppl_model": self.ppl_model, "rows": figures_of(self.rows), "bleu": self.bleu,
                "latent_fd": self.latent_fd, "notes": self.notes}

    @classmethod
    def from_dict(cls, d: dict) -> Evaluation:
        """Rebuild an evaluation from `as_dict()` output (e.g. a saved JSON file)."""
        rows = {row: {key: list(m["values"]) for key, m in metrics.items()}
                for row, metrics in d["rows"].items()}
        return cls(num_samples=d["num_samples"], seeds=list(d["seeds"]), rows=rows,
                   counts=dict(d.get("counts", {})), mauve_features=d.get("mauve_features"),
                   tokenize=d.get("tokenize", "words"), ppl_model=d.get("ppl_model"),
                   bleu=d.get("bleu"), latent_fd=d.get("latent_fd"), notes=list(d.get("notes", [])))

    def __str__(self) -> str:
        parts = []
        for row in self.rows:
            figures = []
            for key in LABELS:
                s = self.summary(row, key)
                if s is not None:
                    figures.append(f"{LABELS[key]} {s[0]:.3f}" + (f"±{s[1]:.3f}" if len(self.seeds) > 1
                                                                  else ""))
            parts.append(f"{row}: " + ", ".join(figures))
        if self.bleu:
            parts.append(f"BLEU {self.bleu['bleu']:.2f}")
        if self.latent_fd:
            parts.append(f"latent FD {self.latent_fd['fd']:.4g}")
        return f"N={self.num_samples} x {len(self.seeds)} seeds; " + "; ".join(parts)


def evaluate_texts(
    generated: Sequence[str],
    references: Sequence[str] | None = None,
    train_texts: Sequence[str] | None = None,
    *,
    num_samples: int | None = None,
    seeds: int | Sequence[int] = 3,
    mauve_features: str | None = MINILM,
    ppl_model: str | None = None,
    paired_references: Sequence[Sequence[str]] | None = None,
    human_texts: Sequence[str] | None = None,
    reference_row: bool = True,
    latents: np.ndarray | None = None,
    reference_latents: np.ndarray | None = None,
    tokenize: Tokenization = "words",
    num_buckets: int | Literal["auto"] = "auto",
    batch_size: int = 64,
    device: str = "cpu",
    feature_cache: dict[str, np.ndarray] | None = None,
    models: dict[str, Any] | None = None,
    reporter: Reporter = SILENT,
) -> Evaluation:
    """Score generated texts the way the field reports them (see the module docstring).

    generated: the model's texts; references: human texts of the same distribution (the
    MAUVE yardstick and, unless `human_texts` is given, the source of the reference row);
    train_texts: the training texts (memorisation, copy rate); paired_references: per
    generated text, its references (corpus BLEU over all pairs); latents /
    reference_latents: (n, ...) arrays for the latent Frechet distance.
    mauve_features None (or "none") skips MAUVE; ppl_model None skips perplexity.
    Default N: every generated text, capped by the references (half of them when they also
    give the reference row).
    feature_cache: text -> MAUVE feature, read and filled in (pass one dict, for one
    `mauve_features` model, to score many sets against the same references at the cost of
    featurising each text once).
    models: the models of more readings (reading name -> model, see `registry.READINGS`).
    """
    ev = Evaluator(generated, references, human=human_texts, train_texts=train_texts,
                   num_samples=num_samples, seeds=seeds,
                   models={"features": mauve_features, "nll": ppl_model, **(models or {})},
                   caches={} if feature_cache is None else {"features": feature_cache},
                   reference_row=reference_row, tokenize=tokenize, num_buckets=num_buckets,
                   batch_size=batch_size, device=device, reporter=reporter)
    notes = _notes(ev, num_samples)
    rows = ev.run()[0]
    bleu = _paired_bleu(ev.generated, paired_references)
    fd = _latent_fd(latents, reference_latents)
    counts = {name: len(pool) for name, pool in (("generated", ev.generated), ("references", ev.references),
                                                 ("human", ev.human), ("train", ev.train_texts))
              if pool is not None}
    return Evaluation(num_samples=ev.num_samples, seeds=ev.seeds, rows=rows, counts=counts,
                      mauve_features=ev.described.get("features"), tokenize=tokenize, ppl_model=ppl_model,
                      bleu=bleu, latent_fd=fd, notes=notes)


def _notes(ev: Evaluator, num_samples: int | None) -> list[str]:
    """What the whole-set evaluation leaves out, and why."""
    notes = []
    n, gen, refs = ev.num_samples, ev.generated, ev.references
    if num_samples is None and n < len(gen):
        notes.append(_why_n(ev))
    if ev.reference_row and refs is not None and not ev.has_reference_row(ev.groups[0]):
        notes.append(f"no reference row: it needs {2 * n} references (N for the yardstick, N "
                     f"for the row), got {len(refs)}; lower --num-samples or give --human")
    if "features" in ev.models and refs is None:
        notes.append("no MAUVE: it needs references")
    if caveat := ev.mauve_caveat():
        notes.append(caveat)
    return notes


def _why_n(ev: Evaluator) -> str:
    """The note for a default N below the generated texts: which pool capped it, and the fix."""
    n, gen, refs = ev.num_samples, ev.generated, ev.references
    human = ev.human if ev.reference_row else None
    if refs is not None and ev.reference_row and ev.human is None and n == max(len(refs) // 2, 1):
        why = (f"the {len(refs)} references give N to the MAUVE yardstick and N to the reference row; "
               f"give {2 * len(gen)} references, --human texts or --no-reference-row")
    elif refs is not None and n == len(refs):
        why = f"there are {len(refs)} references; give {len(gen)} or more"
    else:
        why = f"there are {len(human or [])} human texts; give {len(gen)} or more"
    said = " (one text per side: the figures say nothing)" if n < 2 else ""
    return f"N = {n} of the {len(gen)} generated texts{said}: {why}"


def _paired_bleu(gen: list[str], paired_references: Sequence[Sequence[str]] | None) -> dict | None:
    """Corpus BLEU of every generated text against its references."""
    if paired_references is None:
        return None
    paired = [list(r) for r in paired_references]
    if len(paired) != len(gen):
        raise InputError(f"{len(gen)} generated texts but {len(paired)} reference groups; "
                         "paired BLEU needs one group per generated text, in order")
    if any(not r for r in paired):
        first = next(i for i, r in enumerate(paired) if not r)
        raise InputError(f"generated text {first} has no reference; every paired text needs one")
    return {"bleu": corpus_bleu(gen, paired), "pairs": len(gen),
            "references_per_text": float(np.mean([len(r) for r in paired]))}


def _latent_fd(latents: np.ndarray | None, reference_latents: np.ndarray | None) -> dict | None:
    """The Frechet distance between the generated and the reference latents."""
    if (latents is None) != (reference_latents is None):
        raise InputError("the latent Frechet distance needs both latents and reference latents")
    if latents is None:
        return None
    a, b = np.asarray(latents), np.asarray(reference_latents)
    try:
        return {"fd": frechet_distance(a, b), "latents": len(a), "reference_latents": len(b)}
    except ValueError as exc:
        raise InputError(f"latent Frechet distance: {exc}") from exc
