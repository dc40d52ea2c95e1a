"""Adapt an autoencoder's decoder to a trained run: decode the denoiser's own latents.

A decoder trained on clean latents (plus a little Gaussian noise) has never seen what a
denoiser makes: sampled latents sit near, not on, the encoder's manifold, and the decoder
turns that gap into broken phrases ("located in the river of the river"). `adapt_decoder`
fine-tunes the decoder (and its latent-to-prefix projection) on the run's own x0 estimates:
for a batch of store rows it noises their latents to uniformly drawn timesteps, lets the
run's denoiser (with the row's condition, for a conditional run) estimate the clean latent,
and trains the decoder to write the row's text from that estimate. The other rows of each
batch keep the original objective (clean latent + the autoencoder's `latent_noise`) so that
reconstruction is kept.

The encoder and compressor are frozen, so the adapted autoencoder defines the same latent
space (same fingerprint): every store and run made with the original works with it, e.g.
`ldlm sample RUN | ldlm decode --autoencoder ADAPTED`.

Data comes from the run's store (latents, texts and conditions; no encoder pass), training
rows only: the run's held-out rows (the last `heldout_rows` of the store) give the before
and after figures. Rows are read a few whole chunks at a time (shuffled within), so memory
stays bounded for any store size (ldlm.batches, the reader `ldlm train` streams with).

Python API:
    adapt_decoder(run_dir, out, AdaptArgs(max_steps=1000), ...) -> AdaptResult
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ldlm.args import AdaptArgs
from ldlm.batches import ChunkStream, ChunkWindowOrder
from ldlm.errors import InputError, RuntimeFailure
from ldlm.holdout import holdout
from ldlm.loop import LoopArgs, Steps, TrainingLoop
from ldlm.progress import SILENT, Reporter
from ldlm.recipe import ADAPT_STEPS
from ldlm.run import load_run, run_autoencoder, run_store


@dataclass
class AdaptResult:
    model: object  # the adapted LatentAutoencoder (saved in `out`)
    out: Path
    steps: int
    seconds: float
    eval_rows: int
    # teacher-forced decoder loss on held-out rows, before -> after
    estimate_loss: tuple[float, float] | None  # decoding the denoiser's x0 estimates
    clean_loss: tuple[float, float] | None  # decoding the clean latents


class _Estimator:
    """The run's x0 estimate of store latents noised to given timesteps, in store units."""

    def __init__(self, run, guidance_scale: float, device):
        self.run, self.scale, self.device = run, guidance_scale, device

    @torch.no_grad()
    def __call__(self, z0: torch.Tensor, cond: np.ndarray | None, t: torch.Tensor,
                 noise: torch.Tensor) -> torch.Tensor:
        run = self.run
        x0 = run.standard.forward(z0)  # (B, k, d)
        x_t = run.noise.add_noise(x0, noise, t)
        model = run.model
        if cond is not None:
            from ldlm.guidance import guided

            model = guided(run.model, cond, self.scale, self.device)
        self_cond = None
        if run.diffusion.self_condition:  # as in sampling: a first estimate fed back
            self_cond = run.diffusion.predict_x0(model(x_t, t), x_t, t)
        est = run.diffusion.predict_x0(model(x_t, t, self_cond=self_cond), x_t, t)
        return run.standard.inverse(est.float())


def _decoder_loss(model, z: torch.Tensor, texts: list[str]) -> torch.Tensor:
    """Teacher-forced loss of `texts` given latents z (B, k, d)."""
    dec = {k: v.to(model.device) for k, v in model.tokenize_for_decoder(texts).items()}
    return model.decoder_loss(z, dec["input_ids"], dec["attention_mask"])


@torch.no_grad()
def _held_out_losses(model, estimator: _Estimator, held: tuple, seed: int, batch_size: int
                     ) -> tuple[float, float]:
    """Mean decoder loss on held-out rows: from x0 estimates at fixed draws, and from clean latents."""
    lat, texts, cond = held
    g = torch.Generator().manual_seed(seed)
    T = estimator.run.noise.config.num_train_timesteps
    model.eval()
    est_sum = clean_sum = 0.0
    for i in range(0, len(lat), batch_size):
        z0 = torch.from_numpy(lat[i:i + batch_size]).to(model.device)
        n = len(z0)
        t = torch.randint(0, T, (n,), generator=g).to(model.device)
        noise = torch.randn(z0.shape, generator=g).to(model.device)
        c = None if cond is None else cond[i:i + batch_size]
        z_hat = estimator(z0, c, t, noise)
        est_sum += float(_decoder_loss(model, z_hat, texts[i:i + n])) * n
        clean_sum += float(_decoder_loss(model, z0, texts[i:i + n])) * n
    return est_sum / len(lat), clean_sum / len(lat)


def _decoder_params(model) -> list[torch.nn.Parameter]:
    """Freeze the whole autoencoder but the decoder and its latent-to-prefix projection."""
    for p in model.parameters():
        p.requires_grad_(False)
    params = [*model.decoder.parameters(), *model.prefix.parameters()]
    for p in params:
        p.requires_grad_(True)
    return params


def _training_latents(model, estimator: _Estimator, lat: np.ndarray, cond: np.ndarray | None,
                      share: float, gen: torch.Generator) -> torch.Tensor:
    """The latents the decoder learns from: the first `share` of the batch as the run's x0
    estimates at uniform timesteps, the rest clean plus the autoencoder's latent noise."""
    z0 = torch.from_numpy(lat).to(model.device)  # (B, k, d)
    n = int(round(len(z0) * share))
    T = estimator.run.noise.config.num_train_timesteps
    t = torch.randint(0, T, (n,), generator=gen).to(model.device)
    noise = torch.randn((n, *z0.shape[1:]), generator=gen).to(model.device)
    parts = []
    if n:
        parts.append(estimator(z0[:n], None if cond is None else cond[:n], t, noise))
    if n < len(z0):
        jitter = torch.randn(z0[n:].shape, generator=gen).to(model.device)
        parts.append(z0[n:] + model.config.latent_noise * jitter)
    return torch.cat(parts)


def _check_out(out: Path, source: Path, overwrite: bool) -> None:
    if out.exists() and out.resolve() == source.resolve():
        raise InputError(f"--out {str(out)!r} is the autoencoder being adapted; write the adapted "
                         "one to a new folder (the run and its store keep using the original)")
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"--out {str(out)!r} already exists; choose a new folder or pass --overwrite")


def adapt_decoder(run_dir: str | Path, out: str | Path, args: AdaptArgs | None = None,
                  autoencoder: str | Path | None = None, device: str | torch.device = "cpu",
                  reporter: Reporter = SILENT, overwrite: bool = False,
                  store: str | Path | None = None) -> AdaptResult:
    """Fine-tune the decoder of the run's autoencoder on the run's x0 estimates; save it in `out`.

    `autoencoder` and `store` override the ones the run names (both must be in the run's
    latent space).
    `out` is written whole or not at all (a failed or interrupted run leaves it as it was);
    a rerun starts again from the original autoencoder.
    """
    from ldlm.atomic import atomic_directory, check_output_path

    args = args or AdaptArgs()
    args.check()
    out = Path(out)
    check_output_path(out, "--out", folder=True)
    run = load_run(run_dir, device)
    model = run_autoencoder(run, autoencoder, device)
    source = Path(autoencoder or run.meta["autoencoder"])
    _check_out(out, source, overwrite)
    store = run_store(run, store)
    store_path = str(store.path)
    conditional = run.meta.get("condition") is not None
    if conditional and store.condition_spec is None:
        raise InputError(f"store {store_path!r} holds no conditions, but run {str(run_dir)!r} is "
                         "conditional; pass the run trained on this store")
    # the run held out the last rows of its store (ldlm.holdout): the same rows here
    train_rows, held_rows = holdout(store.rows, int(run.meta.get("heldout_rows") or 0), "last")
    n_train = len(train_rows)
    if n_train < args.batch_size:
        raise InputError(f"--batch-size {args.batch_size} exceeds the {n_train} training rows of store "
                         f"{store_path!r}; lower --batch-size")
    before_fp = model.compute_fingerprint()
    torch.manual_seed(args.seed)
    estimator = _Estimator(run, args.guidance_scale, device)
    n_eval = min(args.eval_rows, len(held_rows))
    held = None
    if n_eval:
        start = held_rows.start
        held = (store.read_latents(start, start + n_eval), store.read_texts(start, start + n_eval),
                store.read_conditions(start, start + n_eval) if conditional else None)
        before = _held_out_losses(model, estimator, held, args.seed, args.batch_size)

    params = _decoder_params(model)
    loop = TrainingLoop(model, LoopArgs(
        **args.loop_budget(ADAPT_STEPS), learning_rate=args.learning_rate, warmup_steps=args.warmup_steps,
        schedule="cosine", weight_decay=0.01, cpu=str(device) == "cpu"), params)
    order = ChunkWindowOrder(n_train, store.chunk_rows, args.batch_size, 1, args.seed, args.window_chunks)
    data = ChunkStream(store, order, 0, conditional, texts=True)
    gen = torch.Generator().manual_seed(args.seed)

    def train_step(done: int) -> float:
        batch = data.batch(order, done, 0)
        z = _training_latents(model, estimator, batch.latents, batch.conditions, args.estimate_share, gen)
        return loop.step(_decoder_loss, model, z, batch.texts).item()

    started = time.perf_counter()
    model.train()
    model.encoder.eval()
    step = loop.run(Steps(train_step, "adapt decoder", unit="steps", shown=lambda loss: f"{loss:.3f}",
                          diverged=lambda value, done: RuntimeFailure(
                              f"loss became {value} at step {done}; lower --learning-rate "
                              f"({args.learning_rate})"), close=data.close), reporter)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    seconds = time.perf_counter() - started
    estimate = clean = None
    if n_eval:
        after = _held_out_losses(model, estimator, held, args.seed, args.batch_size)
        estimate, clean = (before[0], after[0]), (before[1], after[1])
    if model.compute_fingerprint() != before_fp:  # the encoder must not have moved
        raise RuntimeError("adapting the decoder changed the latent space; this is a bug in ldlm")
    model.config.extra = {**model.config.extra, "adapted": {
        "run": str(run.path), "store": store_path, "from": str(source), **asdict(args),
        "seconds": round(seconds, 1), "eval_rows": n_eval,
        "estimate_loss": None if estimate is None else list(estimate),
        "clean_loss": None if clean is None else list(clean)}}
    with atomic_directory(out) as tmp:
        model.save_pretrained(tmp)
    return AdaptResult(model, out, step, seconds, n_eval, estimate, clean)


__all__ = ["AdaptArgs", "AdaptResult", "adapt_decoder"]
