"""Start from text: SDEdit variations and latent interpolation (composites of sample and decode).

Variations (SDEdit, Meng et al. 2022, the img2img of image diffusion): encode each text with
the run's autoencoder, standardise it with the run's statistics, noise it to the timestep
that `strength` selects (the first 1 - strength of the inference steps are skipped, as in
diffusers' img2img pipelines) and run the remaining steps (`ldlm.sample.sample(init=...)`).
Strength near 0 returns near-copies of the input latent; strength 1 ignores the input and is
plain sampling from noise, bit for bit.

Interpolation (Optimus-style): spherical interpolation, per latent token, between the latents
of two texts. The autoencoder's latents are LayerNorm-normalised (every token has mean 0
and norm sqrt(d)); the slerp of two such vectors keeps mean 0 and norm sqrt(d), so every
point lies where the decoder was trained. With a run, each point is also lightly re-noised
and denoised (SDEdit at a small strength) to pull it onto the data manifold.

The default strengths are measured choices (ldlm.recipe, benchmarks/README.md "Variations").

Python API:
    sample_variations(run_dir, texts, strength=0.3, ...) -> Variations (latents, meta, header)
    variation_texts(run_dir, texts, strength=0.3, ...) -> list of {"index", "text", "source", "strength"}
    interpolate(text_a, text_b, autoencoder, steps=5, run_dir=None, ...) -> (Interpolation, autoencoder)
    interpolate_texts(...) -> list of {"index", "text", "t"}
    slerp(a, b, t) -> the latent at t on the slerp between a and b
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ldlm.autoencoder import LatentAutoencoder, autoencoder_location, load_autoencoder
from ldlm.data import read_lines
from ldlm.decode import DecodeArgs, LatentSource, decode_latents
from ldlm.diffusion import strength_start
from ldlm.distributed import pick_device
from ldlm.errors import InputError
from ldlm.latent_file import LatentHeader
from ldlm.progress import SILENT, Reporter
from ldlm.recipe import INTERPOLATION_SAMPLER, INTERPOLATION_STEPS, INTERPOLATION_STRENGTH, VARIATION_STRENGTH
from ldlm.run import Run, load_run, run_autoencoder
from ldlm.sample import Init, SamplingArgs, sample, sampling_args


@dataclass
class Variations:
    """Variations of input texts: row i * num_samples + j is variation j of text i."""

    latents: np.ndarray  # (n_texts * num_samples, k, d), store units
    meta: list[dict]  # per row: {"source": text, "strength": S}
    header: LatentHeader  # the latent header (latent space, run, sampler, seed, strength)


@dataclass
class Interpolation:
    """Points along the slerp between two texts' latents, endpoints included."""

    t: list[float]  # (steps,) positions in [0, 1]
    latents: np.ndarray  # (steps, k, d), autoencoder units
    meta: list[dict]  # per row: {"t": t} (and "strength" with a run)
    header: LatentHeader
    truncated: int = 0  # of the two texts, those longer than the autoencoder's max_length (encoded cut)


def read_init_file(path: str | Path) -> list[str]:
    """--init-file: one text per line (UTF-8); blank lines are skipped."""
    return read_lines(path, "--init-file", "text")


# ----- variations -----------------------------------------------------------------------
def sample_variations(run_dir: str | Path, texts: list[str], strength: float = VARIATION_STRENGTH,
                      args: SamplingArgs | None = None, autoencoder: str | Path | None = None,
                      device: str | None = None, reporter: Reporter = SILENT, **fields) -> Variations:
    """Variations of `texts` by a trained run: `num_samples` latents per text (SDEdit at
    `strength`); the sampling options come as `args` or as SamplingArgs fields (default one
    variation per text). Decode them with `variation_texts` (or `ldlm decode`); each row's
    meta names its source text."""
    return _variations(run_dir, texts, strength, _args(args, fields), autoencoder, device, reporter)[0]


def variation_texts(run_dir: str | Path, texts: list[str], strength: float = VARIATION_STRENGTH,
                    args: SamplingArgs | None = None, autoencoder: str | Path | None = None,
                    device: str | None = None, decode_args: DecodeArgs | None = None,
                    reporter: Reporter = SILENT, **fields) -> list[dict]:
    """`sample_variations`, decoded: one {"index", "text", "source", "strength"} per variation
    (`decode_args`: default `ldlm decode`'s settings with the sampling seed)."""
    args = _args(args, fields)
    decode_args = decode_args or DecodeArgs(seed=args.seed)
    decode_args.check()
    result, model = _variations(run_dir, texts, strength, args, autoencoder, device, reporter)
    return decode_rows(result, model, decode_args)


def _args(args: SamplingArgs | None, fields: dict) -> SamplingArgs:
    return sampling_args(args, {"num_samples": 1, **fields} if args is None else fields)


def _variations(run_dir, texts, strength, args, autoencoder, device, reporter
                ) -> tuple[Variations, LatentAutoencoder]:
    device = pick_device(device)
    run = run_dir if isinstance(run_dir, Run) else load_run(run_dir, device)
    model = run_autoencoder(run, autoencoder, device)
    result = sample(run, args, init=Init(list(texts), strength), autoencoder=autoencoder, device=device,
                    reporter=reporter)
    latents, meta = [], []
    for x, m in result.frames:
        latents.append(x)
        meta.extend(m)
    return Variations(np.concatenate(latents), meta, result.header), model


# ----- interpolation --------------------------------------------------------------------
def slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Spherical interpolation per latent token between a and b (k, d): the angle between the
    tokens is split at t, and the norm goes linearly from |a| to |b| (both sqrt(d) for the
    autoencoder's normalised latents). Nearly parallel tokens fall back to linear interpolation."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    na = np.linalg.norm(a64, axis=-1, keepdims=True)  # (k, 1)
    nb = np.linalg.norm(b64, axis=-1, keepdims=True)
    ua, ub = a64 / np.maximum(na, 1e-12), b64 / np.maximum(nb, 1e-12)
    omega = np.arccos(np.clip((ua * ub).sum(-1, keepdims=True), -1.0, 1.0))  # (k, 1)
    so = np.sin(omega)
    safe = so > 1e-6
    wa = np.where(safe, np.sin((1 - t) * omega) / np.where(safe, so, 1), 1 - t)
    wb = np.where(safe, np.sin(t * omega) / np.where(safe, so, 1), t)
    direction = wa * ua + wb * ub
    direction /= np.maximum(np.linalg.norm(direction, axis=-1, keepdims=True), 1e-12)
    return (direction * ((1 - t) * na + t * nb)).astype(np.float32)


def check_interpolation(text_a: str, text_b: str, steps: int) -> None:
    for flag, text in (("TEXT_A", text_a), ("TEXT_B", text_b)):
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"{flag} is empty; give a non-empty text")
    if steps < 2:
        raise InputError(f"--steps {steps} must be at least 2 (the two endpoints are included)")


def interpolation_args(args: SamplingArgs | None = None, **fields) -> SamplingArgs:
    """The sampling options of `interpolate` with a run: `args`, or SamplingArgs fields over the
    interpolation's own defaults (ldlm.recipe: more steps and another sampler than `sample`'s)."""
    defaults = {"num_inference_steps": INTERPOLATION_STEPS, "scheduler": INTERPOLATION_SAMPLER}
    return sampling_args(args, {**defaults, **fields} if args is None else fields)


def interpolate(text_a: str, text_b: str, autoencoder: str | Path | None = None, steps: int = 5,
                run_dir: str | Path | None = None, strength: float = INTERPOLATION_STRENGTH,
                args: SamplingArgs | None = None, device: str | None = None, reporter: Reporter = SILENT,
                **fields) -> tuple[Interpolation, LatentAutoencoder]:
    """`steps` latents along the slerp between the latents of text_a and text_b (endpoints
    included); with `run_dir`, each is re-noised to `strength` and denoised by the run: `sample`
    started from those latents, with `args` (or SamplingArgs fields such as seed=7,
    num_inference_steps=10; default `interpolation_args()`).

    The autoencoder defaults to the run's; without a run it is required. Returns the points
    and the autoencoder (to decode them).
    """
    check_interpolation(text_a, text_b, steps)
    args = interpolation_args(args, **fields)
    device = pick_device(device)
    run = None
    if run_dir is not None:
        args.check()
        strength_start(args.num_inference_steps, float(strength))
        run = load_run(run_dir, device)
        model = run_autoencoder(run, autoencoder, device)
    elif autoencoder is None:
        raise InputError("no autoencoder: pass --autoencoder AE_DIR (or --run RUN_DIR, whose "
                         "autoencoder is used)")
    else:
        model = load_autoencoder(autoencoder, device=str(device))
    from ldlm.autoencoder.batching import encode_chunk

    (a, b), lengths = encode_chunk(model, [text_a, text_b], 2)  # (k, d) each, cut as `ldlm encode` cuts
    truncated = int(np.count_nonzero(lengths > model.config.max_length))
    ts = [i / (steps - 1) for i in range(steps)]
    points = np.stack([slerp(a, b, t) for t in ts])  # (steps, k, d)
    meta: list[dict] = [{"t": round(t, 6)} for t in ts]
    if run is None:
        header = LatentHeader(latent_space=model.fingerprint, latent_shape=model.latent_shape,
                              autoencoder=autoencoder_location(autoencoder),
                              extra={"interpolate": [text_a, text_b]})
        return Interpolation(ts, points, meta, header, truncated), model
    result = sample(run, replace(args, num_samples=1), init=Init(None, float(strength), points, meta),
                    autoencoder=autoencoder, device=device, reporter=reporter)
    frames = list(result.frames)
    result.header.extra["interpolate"] = [text_a, text_b]
    return Interpolation(ts, np.concatenate([x for x, _ in frames]), [m for _, ms in frames for m in ms],
                         result.header, truncated), model


def interpolate_texts(text_a: str, text_b: str, autoencoder: str | Path | None = None, steps: int = 5,
                      run_dir: str | Path | None = None, strength: float = INTERPOLATION_STRENGTH,
                      args: SamplingArgs | None = None, device: str | None = None,
                      decode_args: DecodeArgs | None = None, reporter: Reporter = SILENT,
                      **fields) -> list[dict]:
    """Interpolate and decode: one {"index", "text", "t"} per point (greedy decoding unless
    `decode_args` say otherwise)."""
    args = interpolation_args(args, **fields)
    decode_args = decode_args or DecodeArgs(temperature=0.0, seed=args.seed)
    decode_args.check()
    result, model = interpolate(text_a, text_b, autoencoder, steps, run_dir, strength, args, device,
                                reporter)
    return decode_rows(result, model, decode_args)


def decode_rows(result: Variations | Interpolation, model: LatentAutoencoder,
                decode_args: DecodeArgs) -> list[dict]:
    """Decode the latents of a result: one {"index", "text", ...row meta} per row, as `ldlm
    decode` does."""
    source = LatentSource("latents", result.header.latent_space, result.header.latent_shape,
                          result.header.autoencoder, iter([(result.latents, result.meta)]),
                          len(result.latents))
    return list(decode_latents(source, model, decode_args))


__all__ = ["Interpolation", "Variations", "decode_rows", "interpolate", "interpolate_texts",
           "interpolation_args", "read_init_file", "sample_variations", "slerp", "variation_texts",
           "check_interpolation"]
