"""Minimum-Bayes-risk selection: the candidate with the highest mean sentence BLEU against the others.

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

import numpy as np

# the weights of the reranking terms added to a candidate's MBR score (BLEU points, 0-100), the
# defaults of `ldlm sample` and ldlm.conditions.iter_conditional (benchmarks/README.md, E2E dev)
RERANKER_WEIGHT = 0.5  # per nat of log p(condition | text): the best of those tried, 0.25 to 20
FLUENCY_WEIGHT = 10.0  # per nat per word of log p(text): the middle of the best range, 5 to 15

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


__all__ = ["pairwise_bleu", "mbr_scores", "mbr_pick", "RERANKER_WEIGHT", "FLUENCY_WEIGHT"]
