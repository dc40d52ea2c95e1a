"""Minimum-Bayes-risk selection and reranking: which of N decoded candidates a sample keeps.

MBR keeps the candidate with the highest mean sentence BLEU against the others (LD4LG). The
reranking terms of `MBRArgs` add to that score, or filter the candidates first:
    rerank_slots: keep the candidates with the fewest slot errors of a structured condition
        (values missing, other known values stated), then MBR among them (TGen's slot reranker);
    reranker: + reranker_weight * log p(condition | text) under a condition classifier
        (ldlm.classifier, TGen's classifier reranking);
    fluency_weight: + fluency_weight * log p(text) per word under the classifier's n-gram
        language model of the store's texts (with the classifier term: a noisy-channel score).
The default weights are those measured best on E2E dev (benchmarks/README.md).

Sentence BLEU

The score is sacrebleu's `BLEU(effective_order=True).sentence_score(hyp, [ref]).score` for
every ordered pair (LD4LG's MBR), computed without N^2 sacrebleu calls: each candidate is
tokenised once with sacrebleu's 13a tokenizer and its 1- to 4-grams are counted once.
Clipped matches sum_g min(count_h(g), count_r(g)) are symmetric in h and r and are summed for
all pairs at once over the n-grams each pair shares; only the hypothesis totals and the
brevity penalty make BLEU asymmetric. The scores then follow `BLEU.compute_bleu` (exp
smoothing, effective order) with the same float operations in the same order (exp and log
from Python's math, as sacrebleu's), and the means use `np.mean` over the same rows, so the
scores and the pick are bit for bit those of the sacrebleu loop (tests/test_mbr.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ldlm.conditions import ConditionSpec, known_slot_values, slot_errors
from ldlm.errors import InputError, check_finite_fields
from ldlm.recipe import FLUENCY_WEIGHT, RERANKER_WEIGHT

MAX_ORDER = 4  # sacrebleu's MAX_NGRAM_ORDER


def _tokenize(texts: list[str]) -> list[list[str]]:
    """Tokens as sacrebleu's BLEU sees them: default 13a tokenizer on the right-stripped text."""
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    tokenizer = Tokenizer13a()
    return [tokenizer(t.rstrip()).split() for t in texts]


def _matches(tokens: list[list[str]]) -> np.ndarray:
    """Clipped n-gram matches of every pair: (MAX_ORDER, N, N), symmetric in the last two axes.

    For each n-gram, every ordered pair of candidates that both have it gets min(count, count);
    numpy's bincount sums them (no BLAS: its threads thrash on a busy CPU for such small sizes)."""
    n = len(tokens)
    matches = np.zeros((MAX_ORDER, n, n))
    for order in range(1, MAX_ORDER + 1):
        ids: dict[tuple[str, ...], int] = {}
        keys = []  # n-gram id * N + candidate, one per n-gram occurrence
        for i, toks in enumerate(tokens):
            for k in range(len(toks) - order + 1):
                keys.append(ids.setdefault(tuple(toks[k:k + order]), len(ids)) * n + i)
        if not keys:
            break  # no candidate has this many tokens, nor more
        # (n-gram, candidate) entries sorted by n-gram, with the candidate's count of it
        entries, counts = np.unique(np.array(keys, dtype=np.int64), return_counts=True)  # (E,)
        cand = entries % n
        _, starts, sizes = np.unique(entries // n, return_index=True, return_counts=True)
        share = np.repeat(sizes, sizes)  # (E,) candidates sharing each entry's n-gram
        left = np.repeat(np.arange(len(entries)), share)  # (P,) every entry with ...
        first = np.repeat(np.repeat(starts, sizes), share)  # ... each entry of its n-gram's run
        right = first + np.arange(len(left)) - np.repeat(np.cumsum(share) - share, share)
        clipped = np.minimum(counts[left], counts[right])
        matches[order - 1] = np.bincount(cand[left] * n + cand[right], weights=clipped,
                                         minlength=n * n).reshape(n, n)
    return matches


def _exactly(fn, values: np.ndarray) -> np.ndarray:
    """`fn` (math.exp, sacrebleu's my_log) on each value, called once per distinct value:
    numpy's own exp and log may differ from libm's in the last bit, which can decide a near tie."""
    distinct, inverse = np.unique(values, return_inverse=True)
    return np.array([fn(v) for v in distinct.tolist()], dtype=np.float64)[inverse]


def pairwise_bleu(candidates: list[str]) -> np.ndarray:
    """Sentence BLEU of candidate i against candidate j as the one reference, at [i, j] (N, N):
    sacrebleu's `BLEU(effective_order=True).sentence_score(c[i], [c[j]]).score`, bit for bit.

    The steps are `BLEU.compute_bleu`'s (smooth_method='exp', effective_order=True) for all
    pairs at once, each float operation the same as sacrebleu's (hypothesis on axis 1)."""
    from sacrebleu.utils import my_log

    tokens = _tokenize(candidates)
    lengths = np.array([len(t) for t in tokens], dtype=np.int64)  # (N,)
    correct = _matches(tokens)  # (4, N, N)
    hyp_ngrams = np.maximum(lengths[:, None] - np.arange(MAX_ORDER), 0).T  # (4, N): n-grams per order
    total = np.broadcast_to(hyp_ngrams[:, :, None], correct.shape).astype(np.float64)  # (4, N, N)
    # effective order: the orders the hypothesis has n-grams of (a prefix of 1..4)
    included = total > 0
    eff_order = included.sum(axis=0)  # (N, N)
    # exp smoothing: each order without matches halves the precision the previous one got
    smooth = 2.0 ** np.cumsum(included & (correct == 0), axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precisions = np.where(correct > 0, 100.0 * correct / total, 100.0 / (smooth * total))
    logs = np.zeros_like(precisions)
    logs[included] = _exactly(my_log, precisions[included])
    log_sum = logs[0]
    for n in range(1, MAX_ORDER):  # left to right, as Python's sum(); adding 0.0 changes nothing
        log_sum = log_sum + logs[n]
    # brevity penalty of the hypothesis length against the reference length
    hyp_len, ref_len = np.broadcast_arrays(lengths[:, None], lengths[None, :])  # (N, N) each
    bp = np.where(hyp_len < ref_len, 0.0, 1.0)
    short = (hyp_len < ref_len) & (hyp_len > 0)
    bp[short] = _exactly(math.exp, 1 - ref_len[short] / hyp_len[short])
    scores = np.zeros(correct.shape[1:])  # 0 where no unigram matches (so no n-gram matches)
    matched = correct[0] > 0
    scores[matched] = bp[matched] * _exactly(math.exp, log_sum[matched] / eff_order[matched])
    return scores


def mbr_scores(candidates: list[str]) -> np.ndarray:
    """Mean sentence BLEU of each candidate against the others (N,); zeros below two candidates."""
    if len(candidates) < 2:
        return np.zeros(len(candidates))
    bleu = pairwise_bleu(candidates)  # (N, N)
    others = ~np.eye(len(candidates), dtype=bool)
    # one np.mean per row over the others in index order, as the sacrebleu loop summed them
    return np.array([np.mean(bleu[i, others[i]]) for i in range(len(candidates))])


def mbr_pick(candidates: list[str]) -> int:
    """The candidate with the highest mean sentence BLEU against the others (LD4LG's MBR);
    the first such on ties, 0 below two candidates."""
    if len(candidates) < 2:
        return 0
    return int(np.argmax(mbr_scores(candidates)))


@dataclass
class MBRArgs:
    """`ldlm sample --mbr N` and its reranking options (see the module docstring)."""

    candidates: int  # N: candidates drawn and decoded (greedily) per sample
    rerank_slots: bool = False  # filter by slot errors first (structured conditions)
    reranker: str | Path | None = None  # a condition classifier folder (ldlm train-classifier)
    reranker_weight: float = RERANKER_WEIGHT  # BLEU points per nat of log p(condition | text)
    fluency_weight: float = FLUENCY_WEIGHT  # BLEU points per nat per word of log p(text)
    max_new_tokens: int | None = None  # tokens decoded per candidate (None: the autoencoder's max_length)
    _classifier: object = field(default=None, repr=False, compare=False)

    def check(self, spec: ConditionSpec | None, run_name: str) -> set[str]:
        """Refuse options that cannot work with the run's conditions; the known slot values
        that --rerank-slots checks against (empty without it)."""
        check_finite_fields(self)
        if self.candidates < 1:
            raise InputError(f"--mbr {self.candidates} must be at least 1 (candidates per sample)")
        known: set[str] = set()
        if self.rerank_slots:
            known = known_slot_values(spec) if spec is not None else set()
            if not known:
                raise InputError("--rerank-slots needs --mbr N and a run conditioned on structured "
                                 "texts (key[value], ... such as E2E's MRs); add --mbr or drop "
                                 "--rerank-slots")
        if self.reranker is not None:
            check_reranker(self.classifier(), spec, run_name, self.reranker_weight, self.fluency_weight)
        return known

    def classifier(self):
        """The --reranker classifier, loaded once (None without one)."""
        if self.reranker is None:
            return None
        if self._classifier is None:
            from ldlm.classifier import ConditionClassifier

            self._classifier = ConditionClassifier.from_pretrained(self.reranker)
        return self._classifier


def check_reranker(reranker, spec: ConditionSpec | None, run_name: str, weight: float,
                   fluency_weight: float = 0.0) -> None:
    """--reranker needs finite weights >= 0, a classifier of the run's own condition
    vocabulary, and its language model where --fluency-weight is above 0."""
    if not math.isfinite(weight) or weight < 0:
        raise InputError(f"--reranker-weight {weight} must be a finite number >= 0 (0: MBR alone)")
    if not math.isfinite(fluency_weight) or fluency_weight < 0:
        raise InputError(f"--fluency-weight {fluency_weight} must be a finite number >= 0 (0: no "
                         "fluency term)")
    if fluency_weight > 0 and reranker.language_model is None:
        raise InputError(f"--fluency-weight {fluency_weight} needs the classifier's language model, "
                         "and this --reranker has none (trained with --lm-order 0?); retrain it "
                         "with `ldlm train-classifier` or pass --fluency-weight 0")
    if spec is None or reranker.spec.to_dict() != spec.to_dict():
        raise InputError(f"the --reranker classifier was trained on conditions of column "
                         f"{reranker.spec.column!r} with another vocabulary than run "
                         f"{run_name!r}'s; train one on the run's store with `ldlm "
                         "train-classifier STORE --out DIR`")


def choose(texts: list[str], conditions: list[str], encoded: np.ndarray, args: MBRArgs,
           known: set[str]) -> list[int]:
    """The candidate each group keeps: `texts` are consecutive groups of `args.candidates`
    decoded candidates, group g drawn for condition `conditions[g]` (encoded: one row per
    candidate, for the reranker); the first best on ties, as mbr_pick."""
    n = args.candidates
    fit = None
    reranker = args.classifier()
    if reranker is not None:
        fit = args.reranker_weight * reranker.log_likelihood(texts, encoded)  # (b,)
        if args.fluency_weight:
            fit = fit + args.fluency_weight * reranker.fluency(texts)
    keep = []
    for g, start in enumerate(range(0, len(texts), n)):
        group = list(range(start, start + n))
        if known:  # the candidates closest to the condition, then MBR among them
            errors = [slot_errors(texts[i], conditions[g], known) for i in group]
            group = [i for i, e in zip(group, errors, strict=True) if e == min(errors)]
        score = mbr_scores([texts[i] for i in group])
        if fit is not None:
            score = score + fit[group]
        keep.append(group[int(np.argmax(score))])
    return keep


__all__ = ["MBRArgs", "pairwise_bleu", "mbr_scores", "mbr_pick", "choose", "check_reranker",
           "RERANKER_WEIGHT", "FLUENCY_WEIGHT"]
