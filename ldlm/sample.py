"""Stage: diffusion run -> latents (Gaussian noise denoised by a diffusers sampler).

One entry point, `sample(run, SamplingArgs(...), conditions=None, init=None, mbr=None)`
for every way of sampling:

    plain           `num_samples` latents from noise;
    conditions      `num_samples` latents per condition of a conditional run, with
                    classifier-free guidance (ldlm.guidance);
      + mbr         each of them the best of N decoded candidates (ldlm.mbr);
    init            `num_samples` variations per text, or per given latent (SDEdit at
                    `strength`: the latent noised part of the way and denoised, Meng et al. 2022).

It checks every argument once, before any work, and returns a `Sampling`: the header that
describes the latents (their latent space, the autoencoder `ldlm decode` should use, how they
were made) and an iterator of (latents (b, k, d), per-row meta) batches in the store's units.
`save_samples` writes them to a latent file or a store; the CLI streams them to stdout.
The same seed and batch size give the same latents on any device (one CPU noise generator).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ldlm.args import MAX_BATCH, SamplingArgs
from ldlm.conditions import encode_conditions
from ldlm.diffusion import strength_start
from ldlm.distributed import pick_device
from ldlm.errors import InputError, RuntimeFailure
from ldlm.latent_file import LatentHeader
from ldlm.mbr import MBRArgs, choose
from ldlm.progress import SILENT, Reporter
from ldlm.recipe import VARIATION_STRENGTH
from ldlm.run import Run, header_for, load_run, run_autoencoder
from ldlm.schedulers import TRAIN_TIMESTEPS, make_sampler, step_options


@dataclass
class Conditions:
    """Conditional sampling: the conditions of a conditional run and the guidance scale."""

    values: list[str]  # class labels or conditioning texts, each sampled num_samples times
    guidance_scale: float = 1.0  # classifier-free guidance W (1: plain conditional, 0: unconditional)


@dataclass
class Init:
    """Variations: start from these texts, or these latents, instead of noise (SDEdit)."""

    texts: list[str] | None  # each varied num_samples times (None: `latents` instead)
    strength: float = VARIATION_STRENGTH  # in (0, 1]: near 0 keeps the text, 1 is plain sampling
    latents: np.ndarray | None = None  # (n, k, d) in the store's units, each varied num_samples times
    meta: list[dict] | None = None  # with latents: each one's row metadata (e.g. its place on a path)


@dataclass
class Sampling:
    """The latents of one `sample` call, to iterate once."""

    header: LatentHeader  # what the latents are and how they were made
    frames: Iterator[tuple[np.ndarray, list[dict] | None]]  # (latents (b, k, d), per-row meta)
    total: int  # latents the frames hold
    batch_size: int  # latents per frame (the last may be fewer)
    truncated: int = 0  # init texts longer than the autoencoder's max_length, encoded cut to it


def sampling_args(args: SamplingArgs | None, fields: dict) -> SamplingArgs:
    """`args`, or SamplingArgs(**fields) for the callers that take its fields as keywords."""
    if args is not None and fields:
        raise InputError(f"pass SamplingArgs or its fields ({', '.join(fields)}), not both")
    try:
        return args or SamplingArgs(**fields)
    except TypeError as exc:
        raise InputError(f"{exc}; the sampling options are the fields of SamplingArgs") from exc


def check_texts(texts: list[str], flag: str = "--init-text") -> list[str]:
    """The input texts, refusing none or empty ones."""
    texts = list(texts)
    if not texts:
        raise InputError(f"no input text given; pass {flag} TEXT")
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"{flag} number {i + 1} is empty; give a non-empty text")
    return texts


def iter_samples(run: Run, n: int, args: SamplingArgs, device: str | torch.device = "cpu",
                 reporter: Reporter = SILENT, *, init: np.ndarray | None = None, strength: float = 1.0,
                 conditions: np.ndarray | None = None, guidance_scale: float = 1.0
                 ) -> Iterator[np.ndarray]:
    """Yield batches of latents (b, k, d) in the store's units, `n` in all (args.num_samples
    is not read: callers expand per condition or text).

    `init` (n, k, d, store units) starts each sample from that latent noised to `strength`
    (SDEdit); strength 1 ignores it and is plain sampling. `conditions` (n,) or (n, L):
    encoded conditions of a conditional run, sampled with guidance `guidance_scale`.
    """
    from ldlm.guidance import guided

    batch_size = args.batch_size or min(n, MAX_BATCH)
    k, d = run.latent_shape

    def project(z: torch.Tensor) -> torch.Tensor:  # standardised -> each latent vector mean 0, var 1
        x = run.standard.inverse(z.float())
        return run.standard.forward(torch.nn.functional.layer_norm(x, (d,)))

    gen = torch.Generator().manual_seed(args.seed)
    options = step_options(args.scheduler, eta=args.eta)
    reporter.start("sample", total=n, unit="latents")
    done = 0
    while done < n:
        b = min(batch_size, n - done)
        sampler = make_sampler(args.scheduler, run.noise.config, **args.sampler_options())
        z_init = None if init is None else run.standard.forward(torch.from_numpy(init[done:done + b]))
        model = run.model if conditions is None else guided(run.model, conditions[done:done + b],
                                                            guidance_scale, device)
        z = run.diffusion.sample(model, sampler, (b, k, d), gen, args.num_inference_steps, device,
                                 init=z_init, strength=strength, noise_scale=args.noise_scale,
                                 step_options=options, x0_transform=project if args.project else None)
        x = run.standard.inverse(z.float())
        if args.project:  # the last step may leave a trace of noise (ddim's final alpha < 1)
            x = torch.nn.functional.layer_norm(x, (d,))
        x = x.cpu().numpy()  # (b, k, d)
        if not np.isfinite(x).all():
            raise RuntimeFailure(
                f"the sampler produced NaN or inf latents (samples {done}-{done + b}); try more "
                f"--num-inference-steps than {args.num_inference_steps} or another --scheduler than "
                f"{args.scheduler}, or retrain the run"
            )
        done += b
        reporter.advance(b)
        yield x
    reporter.stop()


def sample(run: Run | str | Path, args: SamplingArgs | None = None, *, conditions: Conditions | None = None,
           init: Init | None = None, mbr: MBRArgs | None = None, autoencoder: str | Path | None = None,
           device: str | None = None, reporter: Reporter = SILENT) -> Sampling:
    """Sample latents from a run (a loaded `Run` or RUN_DIR); see the module docstring.

    `autoencoder` (default: the run's; it must define the run's latent space) encodes `init`
    texts, decodes `mbr` candidates, and is the one the header names for `ldlm decode`.
    """
    from ldlm.guidance import check_guidance_scale

    args = args or SamplingArgs()
    args.check()  # every flag before the run is loaded
    if init is not None and conditions is not None:
        raise InputError("--condition and --init-text/--init-file cannot be combined; pass one of them")
    if mbr is not None and conditions is None:
        raise InputError("--mbr applies to conditional sampling; add --condition VALUE or "
                         "--condition-file FILE, or drop it")
    if init is not None:
        if args.noise_scale != 1:
            raise InputError(f"--noise-scale {args.noise_scale} applies to sampling from noise; "
                             "variations set how far to move from the text with --strength; drop "
                             "--noise-scale")
        if (init.texts is None) == (init.latents is None):
            raise InputError("start from texts or from latents: give Init one of them")
        texts = check_texts(init.texts) if init.texts is not None else None
        strength_start(args.num_inference_steps, float(init.strength))
    if conditions is not None:
        check_guidance_scale(conditions.guidance_scale)
    if mbr is not None and mbr.candidates < 1:
        raise InputError(f"--mbr {mbr.candidates} must be at least 1 (candidates per sample)")
    if isinstance(run, Run):
        device = device or str(next(run.model.parameters()).device)
    else:
        device = pick_device(device)
        run = load_run(run, device)
    if run.train_timesteps != TRAIN_TIMESTEPS:
        args.check(run.train_timesteps)
    run_name = str(run.path)
    extra: dict = {}
    if conditions is not None:
        encoded = encode_conditions(run.condition_spec, conditions.values, run_name)
        known = mbr.check(run.condition_spec, run_name) if mbr is not None else set()
        extra = {"guidance_scale": conditions.guidance_scale, "mbr": mbr.candidates if mbr else None,
                 "rerank_slots": bool(mbr and mbr.rerank_slots), "conditions": len(conditions.values)}
        if mbr is not None and mbr.reranker is not None:
            extra.update({"reranker": str(mbr.reranker), "reranker_weight": mbr.reranker_weight,
                          "fluency_weight": mbr.fluency_weight})
    if init is not None:
        extra = {"strength": float(init.strength)}
    model = None  # the autoencoder, loaded once where this sampling needs or names one
    if autoencoder is not None or (init is not None and init.texts is not None) or mbr is not None:
        model = run_autoencoder(run, autoencoder, device)  # refuses one from another latent space
    extra.update(args.header_fields())
    per = (len(conditions.values) if conditions is not None else 1 if init is None
           else len(texts) if texts is not None else len(init.latents))
    total = args.num_samples * per  # latents in all
    header = header_for(run, args.scheduler, args.num_inference_steps, args.seed, autoencoder,
                        rows=total, **extra)

    if conditions is not None:
        frames = _conditional(run, conditions, encoded, args, mbr, known, model, device, reporter)
    elif init is not None:
        truncated, encoded, given = 0, init.latents, init.meta or [{} for _ in range(per)]
        if texts is not None:
            from ldlm.autoencoder.batching import encode_chunk

            encoded, lengths = encode_chunk(model, texts, 64)  # cut as `ldlm encode` cuts, and counted
            truncated = int(np.count_nonzero(lengths > model.config.max_length))
            given = [{"source": t} for t in texts]
        latents = np.repeat(np.asarray(encoded, np.float32), args.num_samples, axis=0)
        meta = [{**m, "strength": float(init.strength)} for m in given for _ in range(args.num_samples)]
        frames = _with_meta(iter_samples(run, total, args, device, reporter, init=latents,
                                         strength=float(init.strength)), meta)
    else:
        frames = ((x, None) for x in iter_samples(run, total, args, device, reporter))
    return Sampling(header, frames, total, args.batch_size or min(total, MAX_BATCH),
                    truncated if init is not None else 0)


def _with_meta(batches: Iterator[np.ndarray], meta: list[dict]):
    done = 0
    for x in batches:
        yield x, meta[done:done + len(x)]
        done += len(x)


def _conditional(run: Run, conditions: Conditions, encoded: np.ndarray, args: SamplingArgs,
                 mbr: MBRArgs | None, known: set[str], model, device, reporter: Reporter):
    """(latents, meta) for `num_samples` samples of each condition, row i * num_samples + j
    being sample j of condition i; with mbr, each the chosen one of its candidates."""
    draws = args.num_samples * (mbr.candidates if mbr else 1)
    expanded = np.repeat(encoded, draws, axis=0)
    rows = [v for v in conditions.values for _ in range(args.num_samples)]
    batch = args.batch_size or min(len(rows), MAX_BATCH)
    if mbr:  # whole candidate groups per batch
        batch = max(mbr.candidates, batch // mbr.candidates * mbr.candidates)
    inner = SamplingArgs(**{**args.__dict__, "batch_size": batch})
    frames = iter_samples(run, len(expanded), inner, device, reporter, conditions=expanded,
                          guidance_scale=conditions.guidance_scale)
    done = drawn = 0  # output rows yielded, candidate rows drawn
    for x in frames:
        if not mbr:
            yield x, [{"condition": v} for v in rows[done:done + len(x)]]
            done += len(x)
            continue
        texts = model.generate(torch.from_numpy(x), max_new_tokens=mbr.max_new_tokens, temperature=0.0)
        groups = len(x) // mbr.candidates
        keep = choose(texts, rows[done:done + groups], expanded[drawn:drawn + len(x)], mbr, known)
        meta = [{"condition": rows[done + g], "mbr_text": texts[i], "mbr_candidates": mbr.candidates}
                for g, i in enumerate(keep)]
        drawn += len(x)
        done += groups
        yield x[keep], meta


def sample_latents(run_dir: str | Path | Run, args: SamplingArgs | None = None, *,
                   conditions: Conditions | None = None, init: Init | None = None, mbr: MBRArgs | None = None,
                   autoencoder: str | Path | None = None, device: str | None = None,
                   reporter: Reporter = SILENT, **fields) -> tuple[np.ndarray, LatentHeader]:
    """All latents (n, k, d) of one `sample` call at once, with their header. The sampling
    options come as `args` or as SamplingArgs fields (`num_samples=8, scheduler="ddim"`)."""
    args = sampling_args(args, fields)
    result = sample(run_dir, args, conditions=conditions, init=init, mbr=mbr, autoencoder=autoencoder,
                    device=device, reporter=reporter)
    return np.concatenate([x for x, _ in result.frames]), result.header


def save_samples(result: Sampling, out: str | Path, overwrite: bool = False) -> int:
    """Write a sampling to `out`, all of it or nothing: a latent store when the path ends in
    .zarr (one chunk per batch; texts: the source texts of variations), else a latent file.
    An existing store is replaced only with `overwrite`, and on a local path only once the new
    one is whole (it is written beside it and renamed into place). Returns the latents written."""
    out = str(out)
    if out.rstrip("/").endswith(".zarr"):
        return _save_store(result, out, overwrite)
    from ldlm.atomic import atomic_file
    from ldlm.latent_file import LatentWriter

    with atomic_file(out) as fh:
        writer = LatentWriter(fh, result.header)
        for x, meta in result.frames:
            writer.write(x, meta)
        writer.close()
    return writer.rows


def _save_store(result: Sampling, path: str, overwrite: bool) -> int:
    from ldlm.atomic import atomic_directory
    from ldlm.store import is_url, store_exists, store_location

    path = store_location(path)
    if store_exists(path) and not overwrite:
        raise InputError(f"--out {path!r} already exists; pass --overwrite to replace it, or give "
                         "another path")
    if is_url(path):  # object storage has no rename: the old store goes first
        return _write_store(result, path)
    with atomic_directory(path.rstrip("/")) as tmp:
        return _write_store(result, str(tmp))


def _write_store(result: Sampling, path: str) -> int:
    from ldlm.store import LatentStore

    header = result.header
    store = LatentStore.create(path, rows=result.total, latent_shape=header.latent_shape,
                               chunk_rows=result.batch_size, attributes={
                                   "latent_space": header.latent_space,
                                   "autoencoder": header.autoencoder, "source": header.extra["run"],
                                   "split": "sample", "column": None, **header.extra})
    rows, buf, texts = 0, [], []  # frames regrouped into whole chunks (--mbr frames are smaller)
    for x, meta in result.frames:
        buf.append(x)
        texts += [m.get("source", "") for m in meta] if meta else [""] * len(x)
        while len(texts) >= result.batch_size or (texts and rows + len(texts) == result.total):
            latents = np.concatenate(buf)
            n = min(result.batch_size, len(latents))
            store.write_chunk(rows // result.batch_size, latents[:n], texts[:n], np.zeros(n, np.int32))
            buf, texts, rows = [latents[n:]], texts[n:], rows + n
    store.finalize()
    return rows


__all__ = ["Conditions", "Init", "MBRArgs", "Sampling", "SamplingArgs",
           "iter_samples", "sample", "sample_latents", "save_samples", "load_run", "check_texts"]
