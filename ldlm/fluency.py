"""A word n-gram language model of a store's texts: how fluent a decoded candidate reads.

MBR keeps the candidate that agrees most with the others, and a condition classifier the one
that states its condition; neither asks whether the sentence reads like the training texts.
Decoded latents sometimes come out garbled, and the MBR score of such a candidate can still
be the highest, because most of its n-grams are shared (an E2E dev pick: "... is a Chinese
restaurant located with a customer rating of 5 out of 5. It is located in the riverside area
near Burger King and is located near Burger King."). This module gives p(text) under an
interpolated Kneser-Ney model of the store's own texts (Chen and Goodman, 1998), so that
`ldlm sample --reranker` can add a fluency term: with the condition classifier's
log p(condition | text) it is the noisy-channel score of the candidate.

The counts are those of the highest order; the lower orders' continuation counts are derived
from them when the model is loaded, so the saved model is one JSON file of n-gram counts.

Python API:
    NgramLM.fit(texts, order=3).mean_log_prob(["a sentence"])  # nats per token, (n,)
    NgramLM.from_dict(model.to_dict())
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict

import numpy as np

from ldlm.errors import InputError, RuntimeFailure
from ldlm.metrics import tokenize

BOS, EOS = "<s>", "</s>"
DISCOUNT = 0.75  # one absolute discount for every order (Ney et al.); 0.75 is the usual choice


def words(text: str) -> list[str]:
    """The tokens the model counts: the lower-cased words of `ldlm evaluate`."""
    return tokenize(text, "words")


class NgramLM:
    """Interpolated Kneser-Ney over word n-grams (1..order); unseen words get the discounted
    mass of the unigrams, spread over the vocabulary plus one unknown word."""

    def __init__(self, counts: dict[tuple[str, ...], int], order: int, discount: float = DISCOUNT):
        if order < 1:
            raise InputError(f"n-gram order {order} must be at least 1")
        if not 0 < discount < 1:
            raise InputError(f"discount {discount} must be in (0, 1); {DISCOUNT} is the usual one")
        self.order, self.discount = order, discount
        self.counts = counts  # highest-order n-gram (tuple of `order` words) -> count
        # per order k (1..order): n-gram -> count (raw for the highest order, continuation below),
        # and per context: the total count and the number of distinct followers
        self._count: list[dict] = [{} for _ in range(order + 1)]
        self._count[order] = counts  # the same dict, not a copy
        for k in range(order - 1, 0, -1):
            cont: Counter = Counter()
            for gram in self._count[k + 1]:
                cont[gram[1:]] += 1  # distinct words seen before gram[1:]
            self._count[k] = dict(cont)
        self._total: list[dict] = [{} for _ in range(order + 1)]
        self._types: list[dict] = [{} for _ in range(order + 1)]
        for k in range(1, order + 1):
            total, types = defaultdict(int), defaultdict(int)
            for gram, c in self._count[k].items():
                total[gram[:-1]] += c
                types[gram[:-1]] += 1
            self._total[k], self._types[k] = dict(total), dict(types)
        vocab = {gram[-1] for gram in self._count[1]}
        self._uniform = 1.0 / (len(vocab) + 1)  # the words seen, and one unknown

    # ----- building ---------------------------------------------------------------------
    @classmethod
    def fit(cls, texts, order: int = 3, discount: float = DISCOUNT) -> NgramLM:
        """Count the n-grams of `texts` (each padded with order-1 <s> and one </s>)."""
        counts: Counter = Counter()
        for text in texts:
            tokens = [BOS] * (order - 1) + words(text) + [EOS]
            counts.update(tuple(tokens[i:i + order]) for i in range(len(tokens) - order + 1))
        if not counts:
            raise InputError("a fluency model needs at least one text to count")
        return cls(dict(counts), order, discount)

    def to_dict(self) -> dict:
        return {"order": self.order, "discount": self.discount,
                "counts": [[*gram, c] for gram, c in sorted(self.counts.items())]}

    @classmethod
    def from_dict(cls, data: dict) -> NgramLM:
        try:
            order = int(data["order"])
            if any(len(row) != order + 1 for row in data["counts"]):
                raise ValueError(f"every count row must hold {order} words and a count")
            counts = {tuple(row[:order]): int(row[order]) for row in data["counts"]}
            return cls(counts, order, float(data["discount"]))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise RuntimeFailure(f"the n-gram counts are damaged ({exc}); retrain the model") from exc

    # ----- scoring ----------------------------------------------------------------------
    def prob(self, context: tuple[str, ...], word: str) -> float:
        """p(word | the last order-1 words of context), interpolated down to the unigrams."""
        d = self.discount
        p = self._uniform
        for k in range(1, self.order + 1):  # from the unigrams up; context of k-1 words
            ctx = context[len(context) - (k - 1):] if k > 1 else ()
            total = self._total[k].get(ctx)
            if not total:  # an unseen context: keep the lower order's estimate
                continue
            c = self._count[k].get(ctx + (word,), 0)
            p = max(c - d, 0.0) / total + d * self._types[k][ctx] / total * p
        return p

    def _score(self, text: str) -> tuple[float, int]:
        """(log p(text), the tokens it predicts: the words and </s>)."""
        tokens = [BOS] * (self.order - 1) + words(text) + [EOS]
        n = self.order - 1
        return (sum(math.log(self.prob(tuple(tokens[i - n:i]), tokens[i]))
                    for i in range(n, len(tokens))), len(tokens) - n)

    def log_prob(self, text: str) -> float:
        """log p(text), natural log, including the end of the sentence."""
        return self._score(text)[0]

    def mean_log_prob(self, texts: list[str]) -> np.ndarray:
        """log p(text) / (words + 1) of each text (n,): nats per token, so that long and short
        candidates compare on fluency rather than on length."""
        return np.array([lp / n for lp, n in map(self._score, texts)], dtype=np.float64)

    def perplexity(self, texts: list[str]) -> float:
        """exp of the mean negative log-probability per token over all of `texts`."""
        scores = [self._score(t) for t in texts]
        return math.exp(-sum(lp for lp, _ in scores) / sum(n for _, n in scores))


__all__ = ["NgramLM", "words", "DISCOUNT", "BOS", "EOS"]
