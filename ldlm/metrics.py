"""Text and latent metrics shared by the stages (reconstruction, later generation)."""

from __future__ import annotations

from dataclasses import dataclass


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
