"""Text and latent metrics shared by the stages (reconstruction, generation).

The n-gram metrics follow LD4LG (Lovelace et al., 2023, `evaluation/evaluation.py`), which
counts n-grams over spaCy English tokens. spaCy is no dependency of ldlm, so texts are cut
into tokens by a regular expression instead (see `tokenize`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

Tokenization = Literal["words", "cased-words", "whitespace"]
TOKENIZATIONS = get_args(Tokenization)
_WORD_OR_MARK = re.compile(r"\w+|[^\w\s]")


@dataclass
class ReconstructionScores:
    rows: int  # texts scored
    exact_match: float  # fraction reconstructed character for character (after strip)
    bleu: float  # sacrebleu corpus BLEU of reconstructions against the originals

    def as_dict(self) -> dict:
        return {"rows": self.rows, "exact_match": self.exact_match, "bleu": self.bleu}


def reconstruction_scores(originals: list[str], outputs: list[str]) -> ReconstructionScores:
    """Exact-match rate and corpus BLEU of `outputs` against `originals` (paired)."""
    import sacrebleu

    if len(originals) != len(outputs):
        raise ValueError(f"{len(outputs)} outputs for {len(originals)} originals")
    exact = sum(a.strip() == b.strip() for a, b in zip(originals, outputs, strict=True))
    bleu = sacrebleu.corpus_bleu(outputs, [originals]).score if outputs else 0.0
    n = len(originals)
    return ReconstructionScores(rows=n, exact_match=exact / n if n else 0.0, bleu=bleu)


def _sqrt_psd(mat):
    """Symmetric square root of a symmetric positive semi-definite matrix (eigh-based)."""
    import numpy as np

    vals, vecs = np.linalg.eigh((mat + mat.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T


def frechet_distance(a, b) -> float:
    """Frechet distance between Gaussians fitted to two sets of latents (n, ...) (as in FID).

    |mu_a - mu_b|^2 + tr(Ca) + tr(Cb) - 2 tr((Ca^1/2 Cb Ca^1/2)^1/2), with numpy only: the
    trace term is the sum of square roots of the eigenvalues of the symmetric Ca^1/2 Cb Ca^1/2.
    """
    import numpy as np

    a = np.asarray(a, np.float64).reshape(len(a), -1)  # (n, k*d)
    b = np.asarray(b, np.float64).reshape(len(b), -1)  # (m, k*d)
    if a.shape[1] != b.shape[1] or len(a) < 2 or len(b) < 2:
        raise ValueError(f"need two sets of >= 2 latents of one width, got {a.shape} and {b.shape}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False, ddof=1), np.cov(b, rowvar=False, ddof=1)
    cov_a, cov_b = np.atleast_2d(cov_a), np.atleast_2d(cov_b)
    s = _sqrt_psd(cov_a)
    cross = np.linalg.eigvalsh((s @ cov_b @ s + (s @ cov_b @ s).T) / 2)
    trace_sqrt = np.sqrt(np.clip(cross, 0.0, None)).sum()
    fd = ((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_sqrt
    return float(max(fd, 0.0))


def tokenize(text: str, how: Tokenization = "words") -> list[str]:
    """Cut `text` into the tokens the n-gram metrics count.

    words: lowercased runs of word characters, each other non-space character a token of its
      own ("Fast-food, £20." -> fast - food , £ 20 .), the default;
    cased-words: the same without lowercasing (closest to LD4LG's spaCy tokens);
    whitespace: `text.split()`.
    """
    if how == "whitespace":
        return text.split()
    if how == "words":
        return _WORD_OR_MARK.findall(text.lower())
    if how == "cased-words":
        return _WORD_OR_MARK.findall(text)
    raise ValueError(f"unknown tokenization {how!r}; use one of {', '.join(TOKENIZATIONS)}")


_tokenize = tokenize  # the functions below take a parameter named `tokenize`


def ngrams(tokens: Sequence[str], n: int) -> Iterable[tuple[str, ...]]:
    """The n-grams of one token list, in order (none when it is shorter than n)."""
    return zip(*(tokens[i:] for i in range(n)), strict=False)


def _ngram_counts(texts: Iterable[str], n: int, how: Tokenization) -> tuple[int, int]:
    seen: set[tuple[str, ...]] = set()
    total = 0
    for text in texts:
        grams = list(ngrams(_tokenize(text, how), n))
        total += len(grams)
        seen.update(grams)
    return len(seen), total


def distinct_n(texts: Sequence[str], n: int, tokenize: Tokenization = "words") -> float:
    """Unique n-grams / all n-grams over the whole set (0.0 when the texts hold no n-gram)."""
    if n < 1:
        raise ValueError(f"n={n} must be at least 1")
    unique, total = _ngram_counts(texts, n, tokenize)
    return unique / total if total else 0.0


def diversity(texts: Sequence[str], tokenize: Tokenization = "words") -> float:
    """LD4LG's diversity: the product over n = 2, 3, 4 of distinct-n (1.0: no n-gram repeats)."""
    out = 1.0
    for n in (2, 3, 4):
        out *= distinct_n(texts, n, tokenize)
    return out


def train_ngrams(train_texts: Iterable[str], n: int = 4, tokenize: Tokenization = "words") -> set:
    """The set of n-grams of the training texts (build once, reuse across `memorisation` calls)."""
    grams: set[tuple[str, ...]] = set()
    for text in train_texts:
        grams.update(ngrams(_tokenize(text, tokenize), n))
    return grams


def memorisation(texts: Sequence[str], train_texts: Sequence[str] | None = None, *,
                 tokenize: Tokenization = "words", train_grams: set | None = None,
                 train_set: set[str] | None = None) -> dict[str, float]:
    """How much of `texts` the training texts already hold.

    mem_4gram: the fraction of the 4-grams of `texts` (every occurrence, as LD4LG counts)
      that occur somewhere in the training texts;
    copy_rate: the fraction of `texts` equal to a training text (after strip).
    `train_grams` / `train_set` (from `train_ngrams` and `{t.strip() for t in train}`) skip
    the rebuilding when the same training texts score many sets.
    """
    if train_grams is None or train_set is None:
        if train_texts is None:
            raise ValueError("memorisation needs train_texts (or train_grams and train_set)")
        train_grams = train_grams if train_grams is not None else train_ngrams(train_texts, 4, tokenize)
        train_set = train_set if train_set is not None else {t.strip() for t in train_texts}
    found = total = 0
    for text in texts:
        for gram in ngrams(_tokenize(text, tokenize), 4):
            total += 1
            found += gram in train_grams
    copies = sum(t.strip() in train_set for t in texts)
    return {"mem_4gram": found / total if total else 0.0,
            "copy_rate": copies / len(texts) if texts else 0.0}


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """sacrebleu corpus BLEU with any number of references per hypothesis (at least one).

    `references[i]` lists the references of `hypotheses[i]`. sacrebleu wants reference
    streams of equal length; shorter lists are padded with None, which sacrebleu drops per
    segment (an empty string would count as a real, empty reference).
    """
    import sacrebleu

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference lists")
    if not hypotheses:
        return 0.0
    width = max(len(r) for r in references)
    if min(len(r) for r in references) < 1:
        raise ValueError("every hypothesis needs at least one reference")
    streams = [[refs[j] if j < len(refs) else None for refs in references] for j in range(width)]
    return float(sacrebleu.corpus_bleu(list(hypotheses), streams).score)
