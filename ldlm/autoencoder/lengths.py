"""Token lengths measured on the corpus: the `--max-length` an autoencoder is built for, and
how much of the corpus a length cuts.

A text's length is what the longer of its two sides needs: the encoder's tokens (with any
special tokens its tokenizer adds) and the decoder's (with the bos and eos it is trained on).
Without `--max-length`, the 99th percentile of a sample of texts, rounded up to a multiple of
8, so that about 1% of texts or fewer are cut, whatever the corpus.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PERCENTILE = 99.0  # the share of texts (in %) that --max-length fits whole when measured
SAMPLE = 10_000  # texts tokenised to measure (all of them when fewer)
MULTIPLE = 8  # --max-length is rounded up to a multiple of this
LIMIT = 512  # the longest --max-length, given or measured (a longer corpus is cut and says so)
WARN_ABOVE = 0.01  # the truncated share above which a given --max-length is warned about


@dataclass
class Lengths:
    """Token lengths of a sample of the corpus."""

    needed: np.ndarray  # (n,) tokens per sampled text: the longer of the encoder and decoder sides
    corpus_rows: int  # texts in the corpus the sample was drawn from

    def suggested(self, limit: int = LIMIT) -> int:
        """The max length that fits PERCENTILE % of the texts, rounded up to MULTIPLE."""
        length = float(np.percentile(self.needed, PERCENTILE)) if len(self.needed) else MULTIPLE
        return int(min(limit, max(MULTIPLE, -(-int(np.ceil(length)) // MULTIPLE) * MULTIPLE)))

    def truncated(self, max_length: int) -> float:
        """The share of texts longer than `max_length` tokens."""
        return float(np.mean(self.needed > max_length)) if len(self.needed) else 0.0

    def describe(self, max_length: int, given: bool) -> str:
        """One line for the log: the length, where it came from, and what it cuts."""
        share = self.truncated(max_length)
        n = len(self.needed)
        sample = f"{n:,} of {self.corpus_rows:,} texts" if n < self.corpus_rows else f"{n:,} texts"
        origin = "given by --max-length" if given else f"the {PERCENTILE:g}th percentile of {sample}"
        line = (f"max length {max_length} tokens ({origin}; the longest is {int(self.needed.max())}): "
                f"{100 * share:.1f}% of texts are longer and will be cut")
        if given and share > WARN_ABOVE:
            line = (f"warning: {line}; raise --max-length (the {PERCENTILE:g}th percentile is "
                    f"{self.suggested(10**6)}; at most {LIMIT}) or leave it out to measure it")
        return line


def measure_lengths(texts, encoder_tokenizer, decoder_tokenizer, sample: int = SAMPLE,
                    seed: int = 0) -> Lengths:
    """Tokenise up to `sample` texts (a seeded random sample) with both tokenizers."""
    n = len(texts)
    idx = np.arange(n) if n <= sample else np.sort(np.random.default_rng(seed).choice(n, sample, False))
    chosen = [texts[int(i)] for i in idx]
    enc = encoder_tokenizer(chosen, truncation=False)["input_ids"]
    dec = decoder_tokenizer(chosen, add_special_tokens=False, truncation=False)["input_ids"]
    needed = np.array([max(len(e), len(d) + 2) for e, d in zip(enc, dec, strict=True)], dtype=np.int64)
    return Lengths(needed, n)


__all__ = ["LIMIT", "Lengths", "PERCENTILE", "WARN_ABOVE", "measure_lengths"]
