"""The diffusion process, apart from the networks: the objective's loss, self-conditioning and
the sampling loop (the schedulers themselves come from `ldlm.schedulers`).

Objectives (what the network predicts) map onto diffusers' prediction types, so the model
output goes to a sampler's `step` as it is (`ldlm.schedulers.PREDICTION_TYPES`).
Self-conditioning (Chen et al. 2022, "Analog Bits"): the network also sees its previous
estimate of the clean latent; in training, half of the batches first run the network
without it (no gradient) and feed that estimate back.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from ldlm.errors import InputError
from ldlm.schedulers import PREDICTION_TYPES, check_choice

Objective = Literal["eps", "x0", "v"]


def _bcast(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """values[t] shaped (B, 1, 1) on like's device and dtype."""
    return values.to(like.device)[t.to(like.device).long()].to(like.dtype).reshape(-1, 1, 1)


def strength_start(num_inference_steps: int, strength: float) -> int:
    """Inference steps that SDEdit skips at `strength` (as diffusers' img2img pipelines do):
    the first (1 - strength) of them; at least one step is left to run."""
    if not 0 < strength <= 1:
        raise InputError(f"--strength {strength} must be in (0, 1]: near 0 keeps the input, 1 is "
                         "plain sampling from noise")
    run = min(int(num_inference_steps * strength), num_inference_steps)
    if run < 1:
        least = -(-10_000 // num_inference_steps) / 10_000  # 1 / steps, rounded up to 4 decimals
        raise InputError(f"--strength {strength} with {num_inference_steps} inference steps leaves no "
                         f"step to run; use --strength of at least {least:g} or more "
                         "--num-inference-steps")
    return num_inference_steps - run


@dataclass
class Diffusion:
    """An objective on a noise schedule: the training loss and the sampling loop."""

    scheduler: object  # the diffusers training scheduler (make_noise_scheduler)
    objective: Objective = "eps"
    self_condition: bool = False  # feed the previous x0 estimate back to the network
    self_condition_prob: float = 0.5  # fraction of training batches that self-condition

    def __post_init__(self):
        check_choice("--objective", self.objective, PREDICTION_TYPES)

    def predict_x0(self, output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The clean-latent estimate implied by a model output at timesteps t (B,)."""
        a = _bcast(self.scheduler.alphas_cumprod, t, x_t)  # (B, 1, 1)
        if self.objective == "x0":
            return output
        if self.objective == "eps":
            return (x_t - (1 - a).sqrt() * output) / a.sqrt()
        return a.sqrt() * x_t - (1 - a).sqrt() * output  # v

    def output_for(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The model output that implies clean-latent estimate x0 at x_t (predict_x0's inverse)."""
        a = _bcast(self.scheduler.alphas_cumprod, t, x_t)
        if self.objective == "x0":
            return x0
        if self.objective == "eps":
            return (x_t - a.sqrt() * x0) / (1 - a).sqrt()
        return (a.sqrt() * x_t - x0) / (1 - a).sqrt()  # v

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.objective == "eps":
            return noise
        if self.objective == "x0":
            return x0
        return self.scheduler.get_velocity(x0, noise, t)

    def loss(self, model, x0: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """MSE of the objective on x0 (B, k, d) noised at random timesteps (draws from generator)."""
        b = x0.shape[0]
        noise = torch.randn(x0.shape, generator=generator).to(x0)  # (B, k, d)
        t = torch.randint(0, self.scheduler.config.num_train_timesteps, (b,), generator=generator)
        use_sc = bool(torch.rand((), generator=generator) < self.self_condition_prob)
        t = t.to(x0.device)
        x_t = self.scheduler.add_noise(x0, noise, t)  # (B, k, d)
        self_cond = None
        if self.self_condition and use_sc:
            with torch.no_grad():
                self_cond = self.predict_x0(model(x_t, t), x_t, t).detach()
        output = model(x_t, t, self_cond=self_cond)
        return F.mse_loss(output.float(), self.target(x0, noise, t).float())

    @torch.no_grad()
    def sample(self, model, sampler, shape: tuple[int, int, int], generator: torch.Generator,
               num_inference_steps: int, device: torch.device | str = "cpu",
               init: torch.Tensor | None = None, strength: float = 1.0,
               noise_scale: float = 1.0, step_options: dict | None = None,
               x0_transform=None) -> torch.Tensor:
        """Run `sampler` from Gaussian noise of `shape` (n, k, d) to latents (n, k, d).

        Noise is drawn from `generator` on the CPU, so a seed gives the same latents on any device.
        `noise_scale` multiplies that starting noise (check_noise_scale): below 1 the samples
        concentrate on the likelier latents, and 0 with ddim or dpm-solver is one deterministic
        sample per condition. A sampler's own step noise (ddpm) is left as it is.
        `step_options` go to every `sampler.step` (ldlm.schedulers.step_options: DDIM's eta).
        `x0_transform` (x0 -> x0): applied to the clean-latent estimate at every step, the sampler
        then stepping with the output that implies it (e.g. a projection onto the latents' manifold).
        With `init` (n, k, d, standardised) and strength < 1: SDEdit (Meng et al. 2022): noise
        `init` to the timestep that `strength` selects and run only the steps after it.
        """
        n = shape[0]
        sampler.set_timesteps(num_inference_steps, device=device)
        dtype = next(model.parameters()).dtype
        noise = torch.randn(shape, generator=generator) * noise_scale  # x * 1.0 is exact
        timesteps = sampler.timesteps
        if init is None or strength >= 1:  # strength 1 is plain sampling, bit for bit
            x = (noise * sampler.init_noise_sigma).to(device, dtype)
        else:
            start = strength_start(num_inference_steps, strength) * sampler.order
            timesteps = timesteps[start:]
            if hasattr(sampler, "set_begin_index"):
                sampler.set_begin_index(start)
            x = sampler.add_noise(init.to(device, torch.float32), noise.to(device),
                                  timesteps[:1].repeat(n)).to(dtype)
        accepted = inspect.signature(sampler.step).parameters  # unipc takes no generator
        options = {k: v for k, v in {"generator": generator, **(step_options or {})}.items()
                   if k in accepted}
        x0_hat = None
        for t in timesteps:
            tb = t.expand(n).to(device)
            inp = sampler.scale_model_input(x, t)
            out = model(inp, tb, self_cond=x0_hat if self.self_condition else None)
            if x0_transform is not None:
                out = self.output_for(x0_transform(self.predict_x0(out, x, tb)), x, tb).to(out.dtype)
            if self.self_condition:
                x0_hat = self.predict_x0(out, x, tb)
            x = sampler.step(out, t, x, **options).prev_sample
        return x


class Standardiser:
    """(x - mean) / std with the store's per-position statistics, and back."""

    def __init__(self, mean: np.ndarray, std: np.ndarray):
        self.mean = np.asarray(mean, np.float32)  # (k, d)
        self.std = np.where(np.asarray(std) > 1e-6, std, 1.0).astype(np.float32)  # (k, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - torch.from_numpy(self.mean).to(x)) / torch.from_numpy(self.std).to(x)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        return z * torch.from_numpy(self.std).to(z) + torch.from_numpy(self.mean).to(z)
