"""Stage: diffusion run -> latents (Gaussian noise denoised by a diffusers sampler).

The run carries everything: the denoiser, the training scheduler config (samplers are built
from it with the matching prediction type), the latent statistics that undo the
standardisation, and the latent space the latents belong to (written into the header so
that `ldlm decode` finds the autoencoder).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ldlm.conditions import guided
from ldlm.denoisers import load_denoiser
from ldlm.diffusion import RUN_FILE, SAMPLERS, Diffusion, Standardiser, check_noise_scale, make_sampler
from ldlm.errors import InputError, RuntimeFailure, first_line
from ldlm.progress import SILENT, Reporter
from ldlm.stream import StreamHeader


@dataclass
class Run:
    """A trained run, loaded."""

    path: Path
    meta: dict  # ldlm_run.json
    model: torch.nn.Module  # the (EMA) denoiser, in eval mode
    noise: object  # the training noise scheduler
    diffusion: Diffusion
    standard: Standardiser

    @property
    def latent_shape(self) -> tuple[int, int]:
        k, d = self.meta["latent_shape"]
        return int(k), int(d)


def load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> Run:
    """Load RUN_DIR (written by `ldlm train`); clear errors when it holds no model."""
    from diffusers import DDPMScheduler

    path = Path(run_dir)
    if not path.is_dir():
        raise InputError(f"RUN_DIR {str(run_dir)!r} does not exist; give the --out folder of "
                         "`ldlm train`")
    if not (path / RUN_FILE).is_file():
        hint = ("training has not finished: resume it with `ldlm train STORE --out RUN_DIR --resume`"
                if any(path.glob("checkpoint-*")) else "give the --out folder of `ldlm train`")
        raise InputError(f"RUN_DIR {str(run_dir)!r} holds no trained model (no {RUN_FILE}); {hint}")
    try:
        meta = json.loads((path / RUN_FILE).read_text())
        model = load_denoiser(meta["arch"], path / "denoiser")
        noise = DDPMScheduler.from_pretrained(str(path / "scheduler"))
        k, d = meta["latent_shape"]
        mean = np.asarray(meta["stats_mean"], np.float32).reshape(k, d)
        std = np.asarray(meta["stats_std"], np.float32).reshape(k, d)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        first = first_line(exc)
        raise RuntimeFailure(f"RUN_DIR {str(run_dir)!r} is damaged ({first}); retrain it or resume "
                             "training from a checkpoint") from exc
    model.to(device).eval()
    diffusion = Diffusion(noise, meta["objective"], bool(meta["self_condition"]))
    return Run(path, meta, model, noise, diffusion, Standardiser(mean, std))


def check_sample_args(num_samples: int, num_inference_steps: int, scheduler: str,
                      batch_size: int | None, train_steps: int = 1000) -> None:
    if num_samples < 1:
        raise InputError(f"--num-samples {num_samples} must be at least 1")
    if batch_size is not None and batch_size < 1:
        raise InputError(f"--batch-size {batch_size} must be at least 1")
    if not 1 <= num_inference_steps <= train_steps:
        raise InputError(f"--num-inference-steps {num_inference_steps} must be between 1 and "
                         f"{train_steps} (the training timesteps)")
    if scheduler not in SAMPLERS:
        raise InputError(f"--scheduler {scheduler!r} is not one of {', '.join(SAMPLERS)}")


def header_for(run: Run, scheduler: str, num_inference_steps: int, seed: int) -> StreamHeader:
    m = run.meta
    return StreamHeader(
        latent_space=m.get("latent_space") or "unknown", latent_shape=run.latent_shape,
        autoencoder=m.get("autoencoder"),
        extra={"run": str(run.path), "scheduler": scheduler,
               "num_inference_steps": num_inference_steps, "seed": seed},
    )


def iter_samples(run: Run, num_samples: int = 5, num_inference_steps: int = 1000,
                 scheduler: str = "ddpm", seed: int = 42, batch_size: int | None = None,
                 device: str | torch.device = "cpu", reporter: Reporter = SILENT,
                 init: np.ndarray | None = None, strength: float = 1.0,
                 conditions: np.ndarray | None = None, guidance_scale: float = 1.0,
                 noise_scale: float = 1.0) -> Iterator[np.ndarray]:
    """Yield batches of latents (b, k, d) in the store's units, `num_samples` in all.

    The same seed and batch size give the same latents (noise comes from one CPU generator).
    `init` (num_samples, k, d, store units) starts each sample from that latent noised to
    `strength` (SDEdit, ldlm.variations); strength 1 ignores it and is plain sampling.
    `conditions` (num_samples,) or (num_samples, L): encoded conditions of a conditional run
    (ldlm.conditions.encode_for_run), sampled with classifier-free guidance `guidance_scale`.
    `noise_scale` multiplies the starting noise (Diffusion.sample); 1 is plain sampling.
    """
    check_sample_args(num_samples, num_inference_steps, scheduler, batch_size,
                      run.noise.config.num_train_timesteps)
    check_noise_scale(noise_scale)
    batch_size = batch_size or min(num_samples, 256)
    k, d = run.latent_shape
    gen = torch.Generator().manual_seed(seed)
    reporter.start("sample", total=num_samples, unit="latents")
    done = 0
    while done < num_samples:
        n = min(batch_size, num_samples - done)
        sampler = make_sampler(scheduler, run.noise.config)
        z_init = None if init is None else run.standard.forward(torch.from_numpy(init[done:done + n]))
        model = run.model if conditions is None else guided(run.model, conditions[done:done + n],
                                                            guidance_scale, device)
        z = run.diffusion.sample(model, sampler, (n, k, d), gen, num_inference_steps, device,
                                 init=z_init, strength=strength, noise_scale=noise_scale)
        x = run.standard.inverse(z.float()).cpu().numpy()  # (n, k, d)
        if not np.isfinite(x).all():
            raise RuntimeFailure(
                f"the sampler produced NaN or inf latents (samples {done}-{done + n}); try more "
                f"--num-inference-steps than {num_inference_steps} or another --scheduler than "
                f"{scheduler}, or retrain the run"
            )
        done += n
        reporter.advance(n)
        yield x
    reporter.stop()


def sample_latents(run_dir: str | Path, num_samples: int = 5, num_inference_steps: int = 1000,
                   scheduler: str = "ddpm", seed: int = 42, batch_size: int | None = None,
                   device: str | None = None, reporter: Reporter = SILENT,
                   ) -> tuple[np.ndarray, StreamHeader]:
    """Sample `num_samples` latents (n, k, d) from RUN_DIR, with the header that describes them."""
    check_sample_args(num_samples, num_inference_steps, scheduler, batch_size)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    run = load_run(run_dir, device)
    batches = list(iter_samples(run, num_samples, num_inference_steps, scheduler, seed, batch_size,
                                device, reporter))
    return np.concatenate(batches), header_for(run, scheduler, num_inference_steps, seed)
