"""The field's protocol: N generated texts against N references, repeated over seeds.

Each repeat (one seed) draws, without replacement, N texts from the generated pool and a
random order of the reference pool: its first N texts are the yardstick MAUVE compares
against, the next N (disjoint) are the "reference" row, human texts scored exactly like
the model's (or N texts drawn from `human_texts` when given). Every metric is reported as
the mean and standard deviation over the repeats. Features and perplexities are computed
once per distinct text and reused by every repeat.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ldlm.errors import InputError
from ldlm.evaluate import models
from ldlm.metrics import (
    TOKENIZATIONS,
    Tokenization,
    corpus_bleu,
    distinct_n,
    diversity,
    frechet_distance,
    memorisation,
    train_ngrams,
)
from ldlm.progress import SILENT, Reporter


class _Repeat:
    """What one repeat scores one row of texts with: the metrics' shared inputs."""

    def __init__(self, texts: list[str], tokenize: Tokenization, p=None, q=None, seed: int = 0,
                 num_buckets="auto", grams=None, train_set=None, nll=None):
        self.texts, self.tokenize, self.seed, self.num_buckets = texts, tokenize, seed, num_buckets
        self.p, self.q = p, q  # MAUVE features of the texts and of the yardstick (or None)
        self.grams, self.train_set, self.nll = grams, train_set, nll
        self._mem = None

    def memorisation(self) -> dict | None:
        if self.grams is None:
            return None
        if self._mem is None:
            self._mem = memorisation(self.texts, tokenize=self.tokenize, train_grams=self.grams,
                                     train_set=self.train_set)
        return self._mem


@dataclass(frozen=True)
class Metric:
    """One row of the evaluation table: how it is computed and shown."""

    key: str  # the JSON key
    label: str  # the short label (markdown tables, one-line summaries)
    compute: Callable[[_Repeat], float | None]  # None: not measured in this evaluation
    digits: int = 3  # decimals shown
    describe: Callable[[Evaluation], str] | None = None  # the table label, given the evaluation


def _mauve(r: _Repeat) -> float | None:
    if r.p is None:
        return None
    return models.mauve_from_features(r.p, r.q, seed=r.seed, num_buckets=r.num_buckets)


def _perplexity(r: _Repeat) -> float | None:
    if r.nll is None:
        return None
    return models.perplexity_of(np.array([a for a, _ in r.nll]), np.array([c for _, c in r.nll]))


def _mem(key: str):
    return lambda r: None if r.memorisation() is None else r.memorisation()[key]


# every metric of `ldlm evaluate`, in table order: adding one is an entry here (and its
# implementation in ldlm.metrics)
METRICS: tuple[Metric, ...] = (
    Metric("mauve", "MAUVE", _mauve, describe=lambda e: f"MAUVE ({e.mauve_features})"),
    Metric("diversity", "Div", lambda r: diversity(r.texts, r.tokenize),
           describe=lambda e: f"Div ({e.tokenize} tokens)"),
    Metric("distinct_1", "dist-1", lambda r: distinct_n(r.texts, 1, r.tokenize),
           describe=lambda e: f"dist-1 ({e.tokenize} tokens)"),
    Metric("distinct_2", "dist-2", lambda r: distinct_n(r.texts, 2, r.tokenize),
           describe=lambda e: f"dist-2 ({e.tokenize} tokens)"),
    Metric("mem_4gram", "Mem (4-gram)", _mem("mem_4gram"),
           describe=lambda e: f"Mem (4-grams in train, {e.tokenize} tokens)"),
    Metric("copy_rate", "Copy rate", _mem("copy_rate"), describe=lambda e: "Copy rate (exact train copies)"),
    Metric("perplexity", "Gen PPL", _perplexity, digits=1, describe=lambda e: f"Gen PPL ({e.ppl_model})"),
    Metric("words", "Words/text", lambda r: float(np.mean([len(t.split()) for t in r.texts])), digits=1),
)
LABELS = {m.key: m.label for m in METRICS}  # metric key -> short label, in table order


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
        values = self.rows.get(row, {}).get(metric)
        if not values:
            return None
        std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        return float(np.mean(values)), std

    def as_dict(self) -> dict:
        rows = {}
        for row, metrics in self.rows.items():
            rows[row] = {}
            for key, values in metrics.items():
                mean, std = self.summary(row, key)
                rows[row][key] = {"mean": mean, "std": std, "values": values}
        return {"num_samples": self.num_samples, "seeds": self.seeds, "counts": self.counts,
                "mauve_features": self.mauve_features, "tokenize": self.tokenize,
                "ppl_model": self.ppl_model, "rows": rows, "bleu": self.bleu,
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


def _seed_list(seeds: int | Sequence[int]) -> list[int]:
    if isinstance(seeds, int):
        if seeds < 1:
            raise InputError(f"--seeds {seeds} must be at least 1 (the number of repeats)")
        return list(range(seeds))
    out = [int(s) for s in seeds]
    if not out:
        raise InputError("seeds is empty; give at least one seed")
    return out


def _check_pool(texts: Sequence[str] | None, what: str) -> list[str] | None:
    if texts is None:
        return None
    texts = list(texts)
    if not texts:
        raise InputError(f"{what} is empty; give at least one text")
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise InputError(f"{what} item {bad[0]} is {type(texts[bad[0]]).__name__}, not a string")
    return texts


def _choose_n(num_samples: int | None, gen: list[str], refs: list[str] | None,
              human: list[str] | None, split_refs: bool) -> int:
    """N: as given (checked against every pool), else all generated texts, capped by the
    references (by half of them when they also give the reference row) and the human texts."""
    if num_samples is None:
        n = len(gen)
        if refs is not None:
            n = min(n, max(len(refs) // 2, 1) if split_refs else len(refs))
        if human is not None:
            n = min(n, len(human))
        return n
    if num_samples < 2:
        raise InputError(f"--num-samples {num_samples} must be at least 2")
    for pool, what in ((gen, "GENERATED"), (refs, "--references"), (human, "--human")):
        if pool is not None and len(pool) < num_samples:
            raise InputError(f"--num-samples {num_samples} but {what} holds only {len(pool)} texts; "
                             f"lower --num-samples to at most {len(pool)} or give more texts")
    return num_samples


def _why_n(n: int, gen: list[str], refs: list[str] | None, human: list[str] | None,
           split_refs: bool) -> str:
    """The note for a default N below the generated texts: which pool capped it, and the fix."""
    if refs is not None and split_refs and n == max(len(refs) // 2, 1):
        why = (f"the {len(refs)} references give N to the MAUVE yardstick and N to the reference row; "
               f"give {2 * len(gen)} references, --human texts or --no-reference-row")
    elif refs is not None and n == len(refs):
        why = f"there are {len(refs)} references; give {len(gen)} or more"
    else:
        why = f"there are {len(human or [])} human texts; give {len(gen)} or more"
    said = " (one text per side: the figures say nothing)" if n < 2 else ""
    return f"N = {n} of the {len(gen)} generated texts{said}: {why}"


def _features_for(texts: list[str], needed: set[int], spec: str, batch_size: int, device: str,
                  reporter: Reporter, cache: dict[str, np.ndarray] | None = None) -> dict[int, np.ndarray]:
    order = sorted(needed)
    if cache is None:
        feats = models.text_features([texts[i] for i in order], spec, batch_size, device,
                                     reporter=reporter)
        return dict(zip(order, feats, strict=True))
    missing = sorted({texts[i] for i in order} - cache.keys())
    if missing:
        cache.update(zip(missing, models.text_features(missing, spec, batch_size, device,
                                                       reporter=reporter), strict=True))
    return {i: cache[texts[i]] for i in order}


def evaluate_texts(
    generated: Sequence[str],
    references: Sequence[str] | None = None,
    train_texts: Sequence[str] | None = None,
    *,
    num_samples: int | None = None,
    seeds: int | Sequence[int] = 3,
    mauve_features: str | None = models.MINILM,
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
    """
    gen = _check_pool(generated, "GENERATED")
    refs = _check_pool(references, "references")
    human = _check_pool(human_texts, "human texts")
    if tokenize not in TOKENIZATIONS:
        raise InputError(f"tokenize {tokenize!r} is not one of {', '.join(TOKENIZATIONS)}")
    if mauve_features in (None, "none", ""):
        mauve_features = None
    notes: list[str] = []
    seed_list = _seed_list(seeds)
    n = _choose_n(num_samples, gen, refs, human if reference_row else None,
                  split_refs=reference_row and human is None)
    if num_samples is None and n < len(gen):
        notes.append(_why_n(n, gen, refs, human if reference_row else None, reference_row and human is None))

    # the draws of every repeat, fixed before anything is computed
    plans = []
    for s in seed_list:
        rng = np.random.default_rng(s)
        plan = {"gen": np.sort(rng.choice(len(gen), n, replace=False))}
        if refs is not None:
            perm = rng.permutation(len(refs))
            plan["yard"] = perm[:n]
            if reference_row and human is None and len(refs) >= 2 * n:
                plan["human"] = perm[n:2 * n]
        if reference_row and human is not None:
            plan["human"] = rng.choice(len(human), n, replace=False)
        plans.append(plan)
    human_pool = human if human is not None else refs
    has_human = all("human" in p for p in plans) and human_pool is not None
    if reference_row and refs is not None and not has_human:
        notes.append(f"no reference row: it needs {2 * n} references (N for the yardstick, N "
                     f"for the row), got {len(refs)}; lower --num-samples or give --human")
    if mauve_features is not None and refs is None:
        notes.append("no MAUVE: it needs references")
    if mauve_features is not None and refs is not None and n < 100:
        notes.append(f"MAUVE on {n} texts per side is noisy; the field uses 1,000 or more")

    pools = {"model": ("gen", gen)}
    if has_human:
        pools["reference"] = ("human", human_pool)

    # features: once per distinct text of each pool
    feats: dict[str, dict[int, np.ndarray]] = {}
    feature_name = None
    if mauve_features is not None and refs is not None:
        feature_name = models.load_feature_model(mauve_features, device=device).describe()
        need = {"gen": set(), "yard": set(), "human": set()}
        for p in plans:
            for key in need:
                if key in p:
                    need[key].update(int(i) for i in p[key])
        feats["gen"] = _features_for(gen, need["gen"], mauve_features, batch_size, device, reporter,
                                     feature_cache)
        if human is None:  # the reference row comes from the references: one pass for both
            feats["yard"] = feats["human"] = _features_for(
                refs, need["yard"] | need["human"], mauve_features, batch_size, device, reporter,
                feature_cache)
        else:
            feats["yard"] = _features_for(refs, need["yard"], mauve_features, batch_size, device,
                                          reporter, feature_cache)
            if has_human:
                feats["human"] = _features_for(human, need["human"], mauve_features, batch_size,
                                               device, reporter, feature_cache)

    nll = {}
    if ppl_model is not None:
        for key, (plan_key, pool) in pools.items():
            used = sorted({int(i) for p in plans for i in p[plan_key]})
            values = models.text_nll([pool[i] for i in used], ppl_model, batch_size=16,
                                     device=device, reporter=reporter)
            nll[key] = {i: (values[0][j], values[1][j]) for j, i in enumerate(used)}

    grams = train_set = None
    if train_texts is not None:
        train_texts = _check_pool(train_texts, "training texts")
        grams = train_ngrams(train_texts, 4, tokenize)
        train_set = {t.strip() for t in train_texts}

    rows: dict[str, dict[str, list[float]]] = {key: {} for key in pools}
    for r, (s, plan) in enumerate(zip(seed_list, plans, strict=True)):
        reporter.log(f"repeat {r + 1}/{len(plans)} (seed {s}): scoring {n} texts per side")
        q = np.stack([feats["yard"][int(i)] for i in plan["yard"]]) if feats else None
        for key, (plan_key, pool) in pools.items():
            idx = [int(i) for i in plan[plan_key]]
            repeat = _Repeat([pool[i] for i in idx], tokenize, seed=s, num_buckets=num_buckets,
                             p=np.stack([feats[plan_key][i] for i in idx]) if feats else None, q=q,
                             grams=grams, train_set=train_set,
                             nll=[nll[key][i] for i in idx] if nll else None)
            for metric in METRICS:
                value = metric.compute(repeat)
                if value is not None:
                    rows[key].setdefault(metric.key, []).append(value)

    bleu = None
    if paired_references is not None:
        paired = [list(r) for r in paired_references]
        if len(paired) != len(gen):
            raise InputError(f"{len(gen)} generated texts but {len(paired)} reference groups; "
                             "paired BLEU needs one group per generated text, in order")
        if any(not r for r in paired):
            first = next(i for i, r in enumerate(paired) if not r)
            raise InputError(f"generated text {first} has no reference; every paired text needs one")
        bleu = {"bleu": corpus_bleu(gen, paired), "pairs": len(gen),
                "references_per_text": float(np.mean([len(r) for r in paired]))}

    fd = None
    if (latents is None) != (reference_latents is None):
        raise InputError("the latent Frechet distance needs both latents and reference latents")
    if latents is not None:
        a, b = np.asarray(latents), np.asarray(reference_latents)
        try:
            fd = {"fd": frechet_distance(a, b), "latents": len(a), "reference_latents": len(b)}
        except ValueError as exc:
            raise InputError(f"latent Frechet distance: {exc}") from exc

    counts = {"generated": len(gen)}
    for name, pool in (("references", refs), ("human", human), ("train", train_texts)):
        if pool is not None:
            counts[name] = len(pool)
    return Evaluation(num_samples=n, seeds=seed_list, rows=rows, counts=counts,
                      mauve_features=feature_name, tokenize=tokenize, ppl_model=ppl_model,
                      bleu=bleu, latent_fd=fd, notes=notes)
