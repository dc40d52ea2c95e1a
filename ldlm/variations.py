"""Start from text: SDEdit variations and latent interpolation.

Variations (SDEdit, Meng et al. 2022, the img2img of image diffusion): encode each text with
the run's autoencoder, standardise it with the run's statistics, noise it to the timestep
that `strength` selects (the first 1 - strength of the inference steps are skipped, as in
diffusers' img2img pipelines) and run the remaining steps with the sampling loop of
`ldlm.sample`. Strength near 0 returns near-copies of the input latent; strength 1 ignores
the input and is plain sampling from noise, bit for bit.

Interpolation (Optimus-style): spherical interpolation, per latent token, between the latents
of two texts. The autoencoder's latents are LayerNorm-normalised (every token has mean 0
and norm sqrt(d)); the slerp of two such vectors keeps mean 0 and norm sqrt(d), so every
point lies where the decoder was trained. With a run, each point is also lightly re-noised
and denoised (SDEdit at a small strength) to pull it onto the data manifold.

Python API:
    sample_variations(run_dir, texts, strength=0.3, ...) -> Variations (latents, meta, header)
    variation_texts(run_dir, texts, strength=0.3, ...) -> list of {"index", "text", "source", "strength"}
    interpolate(text_a, text_b, autoencoder, steps=5, run_dir=None, ...) -> (Interpolation, autoencoder)
    interpolate_texts(...) -> list of {"index", "text", "t"}
    slerp(a, b, t) -> the latent at t on the slerp between a and b
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ldlm.autoencoder import LatentAutoencoder, load_autoencoder
from ldlm.diffusion import strength_start
from ldlm.errors import InputError
from ldlm.progress import SILENT, Reporter
from ldlm.sample import Run, check_sample_args, header_for, iter_samples, load_run
from ldlm.stream import StreamHeader

# `ldlm sample --init-text`: on E2E (benchmarks/strength.py) 0.3 keeps the frame of the text and
# changes details (BLEU to the source 47); 0.5 keeps little of it (BLEU 18)
DEFAULT_STRENGTH = 0.3
# `ldlm interpolate --run`: re-noising strength, chosen on E2E (benchmarks/strength.py): the
# largest one whose endpoints keep most of their text (BLEU 68; 46 at 0.3) while the midpoints
# score at least as well as slerp alone (MAUVE, in the README)
INTERPOLATION_STRENGTH = 0.2
INTERPOLATION_STEPS = 50  # inference steps (dpm-solver) of that re-noising


@dataclass
class Variations:
    """Variations of input texts: row i * num_samples + j is variation j of text i."""

    latents: np.ndarray  # (n_texts * num_samples, k, d), store units
    meta: list[dict]  # per row: {"source": text, "strength": S}
    header: StreamHeader  # the stream header (latent space, run, sampler, seed, strength)


@dataclass
class Interpolation:
    """Points along the slerp between two texts' latents, endpoints included."""

    t: list[float]  # (steps,) positions in [0, 1]
    latents: np.ndarray  # (steps, k, d), autoencoder units
    meta: list[dict]  # per row: {"t": t} (and "strength" with a run)
    header: StreamHeader


# ----- checks ---------------------------------------------------------------------------
def check_texts(texts: list[str], flag: str = "--init-text") -> list[str]:
    """The input texts, refusing none or empty ones."""
    texts = list(texts)
    if not texts:
        raise InputError(f"no input text given; pass {flag} TEXT")
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"{flag} number {i + 1} is empty; give a non-empty text")
    return texts


def check_strength(strength: float, num_inference_steps: int) -> None:
    """0 < strength <= 1 and at least one inference step left to run."""
    strength_start(num_inference_steps, float(strength))


def read_init_file(path: str | Path) -> list[str]:
    """--init-file: one text per line (UTF-8); blank lines are skipped."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"--init-file {str(path)!r} does not exist or is not a file; give a text file "
                         "with one text per line")
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise InputError(f"--init-file {str(path)!r} is not UTF-8 text; give a text file with one "
                         "text per line") from exc
    texts = [line.strip() for line in lines if line.strip()]
    if not texts:
        raise InputError(f"--init-file {str(path)!r} holds no text; give one text per line")
    return texts


# ----- the autoencoder of a run ---------------------------------------------------------
def run_autoencoder(run: Run, autoencoder: str | Path | None = None,
                    device: str | torch.device | None = None) -> LatentAutoencoder:
    """The autoencoder whose latent space `run` was trained in (the run names it, or `autoencoder`
    overrides it); refuses one from another latent space."""
    space = run.meta.get("latent_space")
    if autoencoder is None:
        named = run.meta.get("autoencoder")
        if not named or not Path(named).exists():
            raise InputError(f"run {str(run.path)!r} names autoencoder {named!r}, which is not on this "
                             "machine; pass --autoencoder AE_DIR (the one that encoded its store)")
        autoencoder = named
    model = load_autoencoder(autoencoder, device=None if device is None else str(device))
    if space and space != "unknown" and model.fingerprint != space:
        raise InputError(f"--autoencoder {str(autoencoder)!r} defines latent space {model.fingerprint}, "
                         f"but run {str(run.path)!r} was trained in {space}; pass the autoencoder "
                         "that encoded the run's store")
    if tuple(model.latent_shape) != tuple(run.latent_shape):
        raise InputError(f"--autoencoder {str(autoencoder)!r} makes latents of shape "
                         f"{tuple(model.latent_shape)}, but run {str(run.path)!r} expects "
                         f"{tuple(run.latent_shape)}; pass the autoencoder that encoded its store")
    return model


def encode_texts(model: LatentAutoencoder, texts: list[str], batch_size: int = 64) -> np.ndarray:
    """Texts -> latents (n, k, d) float32, encoded as `ldlm encode` does (same truncation)."""
    from ldlm.encode import encode_chunk

    latents, _ = encode_chunk(model, texts, batch_size)
    return np.ascontiguousarray(latents, dtype=np.float32)


# ----- variations -----------------------------------------------------------------------
def iter_variations(run: Run, model: LatentAutoencoder, texts: list[str], strength: float = DEFAULT_STRENGTH,
                    num_samples: int = 1, num_inference_steps: int = 1000, scheduler: str = "ddpm",
                    seed: int = 42, batch_size: int | None = None, device: str | torch.device = "cpu",
                    reporter: Reporter = SILENT) -> Iterator[tuple[np.ndarray, list[dict]]]:
    """Yield (latents (b, k, d) in store units, per-row meta), `num_samples` variations per text.

    The noise comes from one generator seeded with `seed`, in the same order as plain sampling
    of len(texts) * num_samples latents: at strength 1 the two give the same latents.
    """
    texts = check_texts(texts)
    check_sample_args(num_samples, num_inference_steps, scheduler, batch_size,
                      run.noise.config.num_train_timesteps)
    check_strength(strength, num_inference_steps)
    init = np.repeat(encode_texts(model, texts), num_samples, axis=0)  # (n * num_samples, k, d)
    meta = [{"source": text, "strength": float(strength)} for text in texts for _ in range(num_samples)]
    done = 0
    for x in iter_samples(run, len(init), num_inference_steps, scheduler, seed, batch_size, device,
                          reporter, init=init, strength=float(strength)):
        yield x, meta[done:done + len(x)]
        done += len(x)


def variations_header(run: Run, scheduler: str, num_inference_steps: int, seed: int,
                      strength: float, autoencoder: str | Path | None = None) -> StreamHeader:
    """The stream header of variations: plain sampling's, with the strength, and the
    autoencoder the user named (if any) as the one `ldlm decode` finds by itself."""
    header = header_for(run, scheduler, num_inference_steps, seed)
    header.extra["strength"] = float(strength)
    if autoencoder is not None:
        header.autoencoder = autoencoder_location(autoencoder)
    return header


def autoencoder_location(autoencoder: str | Path) -> str:
    """An autoencoder's location as streams record it: absolute for a local folder."""
    return str(Path(autoencoder).resolve()) if Path(autoencoder).exists() else str(autoencoder)


def sample_variations(run_dir: str | Path, texts: list[str], strength: float = DEFAULT_STRENGTH,
                      num_samples: int = 1, num_inference_steps: int = 1000, scheduler: str = "ddpm",
                      seed: int = 42, batch_size: int | None = None, autoencoder: str | Path | None = None,
                      device: str | None = None, reporter: Reporter = SILENT) -> Variations:
    """Variations of `texts` by a trained run: `num_samples` latents per text (SDEdit at `strength`).

    Decode them with `variation_texts` (or `ldlm decode`); each row's meta names its source text.
    """
    return _variations(run_dir, texts, strength, num_samples, num_inference_steps, scheduler, seed,
                       batch_size, autoencoder, device, reporter)[0]


def variation_texts(run_dir: str | Path, texts: list[str], strength: float = DEFAULT_STRENGTH,
                    num_samples: int = 1, num_inference_steps: int = 1000, scheduler: str = "ddpm",
                    seed: int = 42, batch_size: int | None = None, autoencoder: str | Path | None = None,
                    device: str | None = None, decode_args=None, reporter: Reporter = SILENT) -> list[dict]:
    """`sample_variations`, decoded: one {"index", "text", "source", "strength"} per variation
    (`decode_args`: ldlm.decode.DecodeArgs, default `ldlm decode`'s settings)."""
    from ldlm.decode import DecodeArgs

    decode_args = decode_args or DecodeArgs(seed=seed)
    decode_args.check()
    result, model = _variations(run_dir, texts, strength, num_samples, num_inference_steps, scheduler, seed,
                                batch_size, autoencoder, device, reporter)
    return decode_rows(result, model, decode_args)


def _variations(run_dir, texts, strength, num_samples, num_inference_steps, scheduler, seed, batch_size,
                autoencoder, device, reporter) -> tuple[Variations, LatentAutoencoder]:
    texts = check_texts(texts)
    check_sample_args(num_samples, num_inference_steps, scheduler, batch_size)
    check_strength(strength, num_inference_steps)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    run = load_run(run_dir, device)
    model = run_autoencoder(run, autoencoder, device)
    latents, meta = [], []
    for x, m in iter_variations(run, model, texts, strength, num_samples, num_inference_steps, scheduler,
                                seed, batch_size, device, reporter):
        latents.append(x)
        meta.extend(m)
    header = variations_header(run, scheduler, num_inference_steps, seed, strength, autoencoder)
    return Variations(np.concatenate(latents), meta, header), model


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


def _interpolation_models(autoencoder, run_dir, steps: int, strength: float, num_inference_steps: int,
                          scheduler: str, device) -> tuple[Run | None, LatentAutoencoder, str | None]:
    """(run or None, autoencoder, where the autoencoder is) after checking the arguments."""
    if run_dir is not None:
        check_sample_args(steps, num_inference_steps, scheduler, None)
        check_strength(strength, num_inference_steps)
        run = load_run(run_dir, device)
        model = run_autoencoder(run, autoencoder, device)
        named = autoencoder_location(autoencoder) if autoencoder is not None else run.meta.get("autoencoder")
        return run, model, named
    if autoencoder is None:
        raise InputError("no autoencoder: pass --autoencoder AE_DIR (or --run RUN_DIR, whose "
                         "autoencoder is used)")
    return None, load_autoencoder(autoencoder, device=str(device)), autoencoder_location(autoencoder)


def interpolate(text_a: str, text_b: str, autoencoder: str | Path | None = None, steps: int = 5,
                run_dir: str | Path | None = None, strength: float = INTERPOLATION_STRENGTH,
                num_inference_steps: int = INTERPOLATION_STEPS, scheduler: str = "dpm-solver",
                seed: int = 42, device: str | None = None, reporter: Reporter = SILENT,
                ) -> tuple[Interpolation, LatentAutoencoder]:
    """`steps` latents along the slerp between the latents of text_a and text_b (endpoints
    included); with `run_dir`, each is re-noised to `strength` and denoised by the run.

    The autoencoder defaults to the run's; without a run it is required. Returns the points
    and the autoencoder (to decode them).
    """
    check_interpolation(text_a, text_b, steps)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    run, model, where = _interpolation_models(autoencoder, run_dir, steps, strength, num_inference_steps,
                                              scheduler, device)
    a, b = encode_texts(model, [text_a, text_b])  # (k, d) each
    ts = [i / (steps - 1) for i in range(steps)]
    points = np.stack([slerp(a, b, t) for t in ts])  # (steps, k, d)
    meta: list[dict] = [{"t": round(t, 6)} for t in ts]
    if run is None:
        header = StreamHeader(latent_space=model.fingerprint, latent_shape=model.latent_shape,
                              autoencoder=where, extra={"interpolate": [text_a, text_b]})
        return Interpolation(ts, points, meta, header), model
    points = np.concatenate(list(iter_samples(run, steps, num_inference_steps, scheduler, seed, None,
                                              device, reporter, init=points, strength=float(strength))))
    meta = [{**m, "strength": float(strength)} for m in meta]
    header = variations_header(run, scheduler, num_inference_steps, seed, strength)
    header.autoencoder = where
    header.extra["interpolate"] = [text_a, text_b]
    return Interpolation(ts, points, meta, header), model


def interpolate_texts(text_a: str, text_b: str, autoencoder: str | Path | None = None, steps: int = 5,
                      run_dir: str | Path | None = None, strength: float = INTERPOLATION_STRENGTH,
                      num_inference_steps: int = INTERPOLATION_STEPS, scheduler: str = "dpm-solver",
                      seed: int = 42, device: str | None = None, decode_args=None,
                      reporter: Reporter = SILENT) -> list[dict]:
    """Interpolate and decode: one {"index", "text", "t"} per point (greedy decoding unless
    `decode_args` (ldlm.decode.DecodeArgs) say otherwise)."""
    from ldlm.decode import DecodeArgs

    decode_args = decode_args or DecodeArgs(temperature=0.0, seed=seed)
    decode_args.check()
    result, model = interpolate(text_a, text_b, autoencoder, steps, run_dir, strength,
                                num_inference_steps, scheduler, seed, device, reporter)
    return decode_rows(result, model, decode_args)


def decode_rows(result: Variations | Interpolation, model: LatentAutoencoder, decode_args) -> list[dict]:
    """Decode the latents of a result: one {"index", "text", ...row meta} per row, as `ldlm decode`
    does (`decode_args`: ldlm.decode.DecodeArgs)."""
    from ldlm.decode import LatentSource, decode_latents

    source = LatentSource("latents", result.header.latent_space, result.header.latent_shape,
                          result.header.autoencoder, iter([(result.latents, result.meta)]),
                          len(result.latents))
    return list(decode_latents(source, model, decode_args))
