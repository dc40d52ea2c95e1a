"""The options of the sampling and decoding stages, declared once (ldlm.fields): each field
holds its default, its choices and its help; `ldlm sample`, `ldlm decode` and `ldlm interpolate`
build their options from these classes (ldlm.cli.fields), and the library takes them as they are.

Light on purpose (no torch): the command line reads these classes at start-up.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

from ldlm.errors import InputError, check_finite_fields
from ldlm.fields import option
from ldlm.recipe import SAMPLER, SAMPLER_STEPS
from ldlm.schedulers import SAMPLERS, TRAIN_TIMESTEPS

MAX_BATCH = 256  # latents denoised together unless --batch-size says otherwise


def check_noise_scale(scale: float) -> None:
    if not (math.isfinite(scale) and scale >= 0):
        raise InputError(f"--noise-scale {scale} must be a finite number >= 0 (1: the model's own "
                         "distribution, below 1: likelier samples, 0: deterministic with ddim or "
                         "dpm-solver)")


SAMPLER_PANEL = "Sampler"  # the `--help` group of the sampler's options
Sampler = Literal[tuple(SAMPLERS)]  # the choices are the table's keys


@dataclass
class SamplingArgs:
    """How to sample; `ldlm sample` options of the same names (and `ldlm interpolate --run`'s)."""

    num_samples: int = option(5, "Latents to generate (per --condition, or per --init-text).")
    num_inference_steps: int = option(
        SAMPLER_STEPS, "Denoising steps (the original design's 1000 with ddpm scored lower on E2E, "
        "50 times slower; see the README).", panel=SAMPLER_PANEL)
    scheduler: Sampler = option(
        SAMPLER, "Sampler, built from the run's noise schedule (the original design's: ddpm; see "
        "the README).", panel=SAMPLER_PANEL)
    eta: float = option(0.0, "With --scheduler ddim: 0 is deterministic DDIM, 1 adds DDPM-like noise "
                        "at every step.", panel=SAMPLER_PANEL)
    noise_scale: float = option(
        1.0, "Multiply the starting noise: 1 samples the model's distribution, below 1 likelier "
        "samples, 0 one deterministic sample per condition with ddim or dpm-solver (figures: the "
        "benchmarks page). Not with --init-text/--init-file.", panel=SAMPLER_PANEL)
    project: bool = option(
        False, "Put each step's clean-latent estimate back on the sphere the autoencoder's latents "
        "lie on (every latent vector mean 0, variance 1), so samples stay where the decoder reads.",
        panel=SAMPLER_PANEL, flag="--project")
    solver_order: int = option(
        2, "With --scheduler dpm-solver or unipc: the solver's order (1-3; 2 is diffusers' choice "
        "for guided sampling).", panel=SAMPLER_PANEL)
    seed: int = option(42, "Random seed (of the noise generator).")
    batch_size: int | None = option(None, f"Latents denoised together (default: up to {MAX_BATCH}).")

    def header_fields(self) -> dict:
        """The sampler's options a latent header records beside the scheduler, the steps and the
        seed: those changed from their defaults (so that old headers read the same)."""
        plain = ("num_samples", "num_inference_steps", "scheduler", "seed", "batch_size")
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in plain and getattr(self, f.name) != f.default}

    def sampler_options(self) -> dict:
        """Options of the diffusers sampler this asks for (given to ldlm.schedulers.make_sampler)."""
        return {"solver_order": self.solver_order} if self.scheduler in ("dpm-solver", "unipc") else {}

    def check(self, train_timesteps: int = TRAIN_TIMESTEPS) -> None:
        check_finite_fields(self)
        if self.num_samples < 1:
            raise InputError(f"--num-samples {self.num_samples} must be at least 1")
        if self.batch_size is not None and self.batch_size < 1:
            raise InputError(f"--batch-size {self.batch_size} must be at least 1")
        if not 1 <= self.num_inference_steps <= train_timesteps:
            raise InputError(f"--num-inference-steps {self.num_inference_steps} must be between 1 and "
                             f"{train_timesteps} (the training timesteps)")
        if self.scheduler not in SAMPLERS:
            raise InputError(f"--scheduler {self.scheduler!r} is not one of {', '.join(SAMPLERS)}")
        check_noise_scale(self.noise_scale)
        if not (math.isfinite(self.eta) and 0 <= self.eta <= 1):
            raise InputError(f"--eta {self.eta} must be in [0, 1] (0: deterministic DDIM, 1: DDPM-like)")
        if self.solver_order not in (1, 2, 3):
            raise InputError(f"--solver-order {self.solver_order} must be 1, 2 or 3")
        if self.solver_order != 2 and not self.sampler_options():
            raise InputError(f"--solver-order {self.solver_order} applies to --scheduler dpm-solver or "
                             f"unipc, not {self.scheduler}; drop --solver-order")
        if self.eta and "eta" not in SAMPLERS[self.scheduler][2]:
            raise InputError(f"--eta {self.eta} applies to --scheduler ddim, not {self.scheduler}; drop "
                             "--eta or use --scheduler ddim")


@dataclass
class DecodeArgs:
    """How to turn latents into text; `ldlm decode` options of the same names."""

    max_new_tokens: int | None = option(
        None, "Tokens generated per text (default: the autoencoder's --max-length).")
    temperature: float = option(0.7, "Sampling temperature; 0 is greedy.")
    top_p: float | None = option(None, "Nucleus sampling mass.")
    num_beams: int = option(1, "Beam search width (> 1 is deterministic beam search).")
    best_of: int = option(
        1, "Draw this many texts per latent (at --temperature) and keep the one the decoder finds "
        "likeliest (mean log-probability per token); costs N times the decoding.")
    batch_size: int = option(64, "Latents decoded together.")
    seed: int = option(42, "Random seed.")

    def check(self) -> None:
        check_finite_fields(self)
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise InputError(f"--max-new-tokens {self.max_new_tokens} must be at least 1")
        if self.temperature < 0:
            raise InputError(f"--temperature {self.temperature} must be >= 0 (0 means greedy)")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise InputError(f"--top-p {self.top_p} must be in (0, 1]")
        if self.num_beams < 1:
            raise InputError(f"--num-beams {self.num_beams} must be at least 1")
        if self.batch_size < 1:
            raise InputError(f"--batch-size {self.batch_size} must be at least 1")
        if self.best_of < 1:
            raise InputError(f"--best-of {self.best_of} must be at least 1 (texts drawn per latent)")
        if self.best_of > 1 and (self.temperature == 0 or self.num_beams > 1):
            raise InputError(f"--best-of {self.best_of} draws several texts per latent and needs sampling; "
                             "give --temperature above 0 and --num-beams 1, or drop --best-of")


__all__ = ["MAX_BATCH", "SAMPLER_PANEL", "DecodeArgs", "Sampler", "SamplingArgs", "check_noise_scale"]
