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
