"""The options of the stages, declared once (ldlm.fields): each field holds its default, its
choices and its help; `ldlm train`, `ldlm sample`, `ldlm decode` and `ldlm interpolate` build
their options from these classes (ldlm.cli.fields), and the library takes them as they are.

Light on purpose (no torch): the command line reads these classes at start-up.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Literal

from ldlm.budget import BudgetArgs, check_budget
from ldlm.denoisers import ARCHS, conditional_archs
from ldlm.distributed import MIXED_PRECISIONS, check_mixed_precision
from ldlm.errors import InputError, check_finite_fields
from ldlm.fields import option
from ldlm.recipe import (
    AE_LATENT_INJECTION,
    AE_LATENT_NOISE,
    AE_WORD_DROPOUT,
    DIFFUSION_BATCH,
    DIFFUSION_LR,
    DIFFUSION_WARMUP,
    EPOCHS,
    QUICKSTART_AE_LATENT_INJECTION,
    QUICKSTART_AE_LATENT_NOISE,
    QUICKSTART_AE_STEPS,
    QUICKSTART_CPU_SECONDS,
    QUICKSTART_DIFFUSION_STEPS,
    QUICKSTART_SAMPLES,
    SAMPLER,
    SAMPLER_STEPS,
    SIZES,
)
from ldlm.schedulers import BETA_SCHEDULES, PREDICTION_TYPES, SAMPLERS, TRAIN_TIMESTEPS

MAX_BATCH = 256  # latents denoised together unless --batch-size says otherwise
Arch = Literal[tuple(ARCHS)]
Size = Literal[SIZES]
Objective = Literal[tuple(PREDICTION_TYPES)]
Schedule = Literal[tuple(BETA_SCHEDULES)]
MixedPrecision = Literal[MIXED_PRECISIONS]
Pooling = Literal["mean", "queries"]
Injection = Literal["prefix", "cross-attention"]


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


@dataclass
class TrainArgs(BudgetArgs):
    """`ldlm train` options; every field with help is a flag of the same name (max_steps,
    max_minutes and budget_clock: `BudgetArgs`; max_steps overrides num_epochs)."""

    arch: Arch = option(
        "mlp", "Denoiser: residual MLP U-Net, diffusers UNet2DModel on a 2-D layout, or transformer "
        "over the k latent tokens.")
    size: Size = option("small", "Denoiser size preset.")
    denoiser: dict = field(default_factory=dict)  # overrides of the preset (e.g. {"widths": [32]})
    objective: Objective = option(
        "x0", "What the denoiser predicts: the noise, the clean latent, or v (x0 gave the best "
        "samples on E2E).")
    schedule: Schedule = option(
        "linear", "Noise schedule (linear and scaled-linear: betas 0.00085 to 0.012, 1000 steps).")
    num_epochs: int | None = option(
        None, f"Passes over the training rows (default {EPOCHS}, unless --max-steps or --max-minutes "
        "says how long).")
    batch_size: int = option(
        DIFFUSION_BATCH, "Latents per device per micro-batch (the original design's 16 trains slower "
        "per second; see the README).")
    learning_rate: float = option(
        DIFFUSION_LR, "Peak learning rate (AdamW; the original design's 1e-4 trains slower).")
    gradient_accumulation_steps: int = option(1, "Micro-batches per optimiser step.")
    lr_warmup_steps: int = option(
        DIFFUSION_WARMUP, "Linear warmup steps before the cosine decay (the original design's: 500).")
    weight_decay: float = 0.0  # AdamW weight decay (0: Adam, as design B)
    lr_scheduler: str = "cosine"  # a diffusers.optimization scheduler name
    max_grad_norm: float = 1.0  # gradient clipping
    ema_decay: float = 0.9999  # EMA max decay (with warmup: 1 - (1 + step) ** -0.75 until then)
    save_samples_epochs: int = option(
        10, "Sample latents from the EMA model and report their Frechet distance to held-out "
        "latents every N epochs.")
    save_model_epochs: int = option(50, "Write a checkpoint every N epochs (and always at the end).")
    checkpointing_steps: int | None = option(None, "Also write a checkpoint every N optimiser steps.")
    checkpoints_total_limit: int = 3  # checkpoint folders kept
    mixed_precision: MixedPrecision = option("no", "Mixed precision (accelerate).")
    push_to_hub: bool = option(
        False, "Upload RUN_DIR (without checkpoints) to the hub after saving.", flag="--push-to-hub")
    hub_model_id: str | None = option(
        None, "Hub repo for --push-to-hub (default: the RUN_DIR folder name).")
    seed: int = option(42, "Random seed (weights, noise and data order).")
    self_condition: bool = option(
        False, "Self-conditioning: feed the previous clean-latent estimate back.", flag="--self-condition")
    conditional: bool = option(
        False, "Condition the denoiser on each row's condition (a store encoded with "
        "--condition-column), for `ldlm sample --condition`.", flag="--conditional")
    condition_dropout: float = option(
        0.1, "With --conditional: probability of training on the null condition instead, so the "
        "model also samples unconditionally and classifier-free guidance works.")
    eval_rows: int = 1000  # held-out rows at most (never more than 5% of the store)
    eval_samples: int = option(256, "Latents sampled each time samples are saved.")
    eval_inference_steps: int = option(50, "DDIM steps for those samples.")
    memory_limit_mb: int = option(
        2048, "Load the training latents in memory up to this size; a larger store is streamed "
        "chunk by chunk.")
    shuffle_window_chunks: int = option(
        16, "When streaming: store chunks whose rows are shuffled together. More mixes batches "
        "better (rows of one chunk were encoded together) and holds more in memory (about 3 "
        "windows, lowered to fit --memory-limit-mb).")
    resume: str | None = None  # None, "latest", or a checkpoint folder (the CLI's --resume/--resume-from)

    def check(self) -> None:
        check_finite_fields(self)
        if self.eval_rows < 0:
            raise InputError(f"--eval-rows {self.eval_rows} must be >= 0 (0: no held-out figures)")
        positive = {
            "--batch-size": self.batch_size,
            "--gradient-accumulation-steps": self.gradient_accumulation_steps,
            "--save-samples-epochs": self.save_samples_epochs,
            "--save-model-epochs": self.save_model_epochs,
            "--checkpoints-total-limit": self.checkpoints_total_limit,
        }
        if self.num_epochs is not None:
            positive["--num-epochs"] = self.num_epochs
        self.check_budget()
        if self.max_minutes is not None and self.lr_scheduler not in ("cosine", "constant"):
            raise InputError(f"--max-minutes plans a cosine or constant learning rate, not "
                             f"{self.lr_scheduler!r}; drop --max-minutes or use --lr-scheduler cosine")
        positive["--shuffle-window-chunks"] = self.shuffle_window_chunks
        if self.memory_limit_mb < 0:
            raise InputError(f"--memory-limit-mb {self.memory_limit_mb} must be >= 0 (0 streams any store)")
        if self.checkpointing_steps is not None:
            positive["--checkpointing-steps"] = self.checkpointing_steps
        for flag, value in positive.items():
            if value < 1:
                raise InputError(f"{flag} {value} must be at least 1")
        if self.eval_samples < 2 or self.eval_inference_steps < 1:
            raise InputError(f"--eval-samples {self.eval_samples} must be at least 2 and "
                             f"--eval-inference-steps {self.eval_inference_steps} at least 1")
        if not self.learning_rate > 0:
            raise InputError(f"--learning-rate {self.learning_rate} must be > 0")
        if self.lr_warmup_steps < 0:
            raise InputError(f"--lr-warmup-steps {self.lr_warmup_steps} must be >= 0")
        check_mixed_precision(self.mixed_precision)
        if not 0 <= self.condition_dropout < 1 or self.condition_dropout != self.condition_dropout:
            raise InputError(f"--condition-dropout {self.condition_dropout} must be in [0, 1) (0.1 "
                             "is usual; 0 trains no unconditional path, so no guidance)")
        if self.arch not in ARCHS:
            raise InputError(f"--arch {self.arch!r} is not one of {', '.join(ARCHS)}")
        if self.conditional and self.arch not in conditional_archs():
            raise InputError(f"--conditional works with --arch {' or '.join(conditional_archs())}, not "
                             f"{self.arch}; pick one of them")
        if self.hub_model_id and not self.push_to_hub:
            raise InputError(f"--hub-model-id {self.hub_model_id!r} is only used with --push-to-hub; "
                             "add --push-to-hub or drop it")


@dataclass
class AutoencoderOptions:
    """What `ldlm train-autoencoder` is asked to build (`AutoencoderConfig` adds what building
    fills in); the fields with help are its options."""

    encoder_source: str | None = option(
        None, "Pretrained encoder (hub id or folder, any AutoModel); default: train one from scratch.",
        flag="--encoder")
    decoder_source: str | None = option(
        None, "Pretrained causal LM (hub id or folder); default: GPT-2 from scratch.", flag="--decoder")
    pooling: Pooling | None = option(
        None, "mean: k = 1 mean of the last hidden states; queries: k learned queries (default: mean "
        "with --encoder, queries without).")
    size: Size = option("small", "Size of the parts built from scratch.")
    latent_tokens: int | None = option(None, "k, latent vectors per text (queries pooling; default 8).")
    latent_dim: int | None = option(
        None, "d, width of each latent vector (default: 64, or the hidden size for mean).")
    max_length: int | None = option(
        None, "Tokens per text, encoder and decoder (default: measured, the 99th percentile of the "
        "corpus's token lengths; the share of texts it cuts is reported either way).")
    latent_noise: float = option(
        AE_LATENT_NOISE, "Std of Gaussian noise on latents while training the decoder.")
    latent_noise_max: float | None = option(
        None, "Draw each text's noise std from [--latent-noise, this] instead of one level, so that "
        "the decoder reads latents that are off by more (default: one level).")
    encoder_layers: int | None = option(
        None, "Layers of an encoder built from scratch (default: the --size's).")
    decoder_layers: int | None = option(
        None, "Layers of a decoder built from scratch (default: the --size's).")
    latent_injection: Injection = option(
        AE_LATENT_INJECTION, "How the decoder reads the latents: cross-attention (every layer attends "
        "to them, as LD4LG's decoder does; a GPT-2-like decoder gains cross-attention layers) or prefix "
        "(k soft tokens before the text, that its layers attend to like text).")
    word_dropout: float = option(
        AE_WORD_DROPOUT, "Share of the decoder's input tokens replaced by pad while training, so that "
        "it must read the latents (0: none).")
    compressor_layers: int = 2  # cross-attention layers of the query compressor


@dataclass
class AutoencoderTrainArgs(BudgetArgs):
    """How `ldlm train-autoencoder` trains (max_steps, max_minutes and budget_clock: `BudgetArgs`;
    the default length is AE_STEPS)."""

    batch_size: int = option(64, "Texts per step, per process.")
    learning_rate: float = option(1e-3, "Peak learning rate.")
    warmup_steps: int = 100  # linear warmup steps
    weight_decay: float = 0.01
    mixed_precision: MixedPrecision = option("no", "Mixed precision (accelerate).")
    seed: int = option(42, "Random seed.")
    eval_rows: int = option(500, "Held-out texts for the reconstruction figures.")
    eval_batch_size: int = 64
    checkpointing_steps: int | None = option(
        500, "Write a checkpoint-<step> folder into --out every N steps (and at the end).")
    checkpoints_total_limit: int = 3  # checkpoint-<step> folders kept
    cache_encoder_states: bool = True  # a frozen encoder: its states computed once (ldlm.autoencoder.states)
    resume: str | None = None  # None, "latest", or a checkpoint folder (the CLI's --resume/--resume-from)


@dataclass
class AdaptArgs(BudgetArgs):
    """`ldlm adapt-decoder` options (max_steps, max_minutes and budget_clock: `BudgetArgs`; the
    default length is ADAPT_STEPS)."""

    batch_size: int = option(64, "Texts per step.")
    learning_rate: float = option(3e-4, "Peak learning rate (AdamW, cosine).")
    warmup_steps: int = option(100, "Linear warmup steps.")
    estimate_share: float = option(
        0.5, "Share of each batch decoded from the denoiser's x0 estimates; the rest from clean "
        "latents, which keeps reconstruction.")
    guidance_scale: float = option(
        1.0, "Conditional runs: classifier-free guidance of the estimates (1: plain conditional).")
    window_chunks: int = 4  # store chunks read and shuffled together (ldlm.batches)
    eval_rows: int = option(500, "Held-out rows of the run for the before/after losses.")
    seed: int = option(42, "Random seed.")

    def check(self) -> None:
        check_finite_fields(self)
        self.check_budget()
        for name in ("batch_size", "window_chunks"):
            value = getattr(self, name)
            if value < 1:
                raise InputError(f"--{name.replace('_', '-')} {value} must be at least 1")
        if not 0 < self.learning_rate < 1:
            raise InputError(f"--learning-rate {self.learning_rate} must be in (0, 1); 3e-4 is the default")
        if self.warmup_steps < 0:
            raise InputError(f"--warmup-steps {self.warmup_steps} must be >= 0")
        if not 0 <= self.estimate_share <= 1:
            raise InputError(f"--estimate-share {self.estimate_share} must be in [0, 1] (the share of "
                             "each batch decoded from the denoiser's estimates)")
        if self.guidance_scale < 0:
            raise InputError(f"--guidance-scale {self.guidance_scale} must be >= 0 (1 is plain "
                             "conditional estimates)")
        if self.eval_rows < 0:
            raise InputError(f"--eval-rows {self.eval_rows} must be >= 0")


@dataclass
class ClassifierArgs:
    """`ldlm train-classifier` options; every field with help is a flag of the same name."""

    epochs: int = option(20, "Passes over the training rows.")
    batch_size: int = option(256, "Texts per step.")
    learning_rate: float = option(0.003, "Adam learning rate (constant).")
    weight_decay: float = option(0.01, "Decoupled L2 of the weights.")
    ngram_order: int = option(3, "Word n-grams 1..N are the features.")
    min_count: int = option(3, "Keep the n-grams found in at least this many training texts.")
    max_ngrams: int = 200_000  # at most this many n-grams (the most frequent)
    lm_order: int = option(
        3, "Word n-gram order of the fluency language model saved beside the classifier, for "
        "`ldlm sample --fluency-weight` (0: none).")
    eval_rows: int = option(
        1000, "Held-out rows for the figures (at most 5%), spread over the store and stratified by "
        "class.")
    seed: int = option(42, "Random seed.")

    def check(self) -> None:
        check_finite_fields(self)
        for name in ("epochs", "batch_size", "ngram_order", "min_count", "max_ngrams"):
            value = getattr(self, name)
            if value < 1:
                raise InputError(f"--{name.replace('_', '-')} {value} must be at least 1")
        if not 0 < self.learning_rate < 10 or not math.isfinite(self.learning_rate):
            raise InputError(f"--learning-rate {self.learning_rate} must be in (0, 10); 0.003 is the default")
        if self.lm_order < 0:
            raise InputError(f"--lm-order {self.lm_order} must be >= 0 (0: no fluency model)")
        if self.weight_decay < 0 or self.eval_rows < 0:
            raise InputError(f"--weight-decay {self.weight_decay} and --eval-rows {self.eval_rows} "
                             "must be >= 0")


@dataclass
class QuickstartSettings:
    """`ldlm quickstart`: the budget of the run and of each stage (defaults: 900 CPU-seconds,
    under 10 minutes on 2 CPU cores)."""

    size: str = "small"  # autoencoder preset
    latent_noise: float = QUICKSTART_AE_LATENT_NOISE  # the autoencoder's --latent-noise for so short a run
    latent_injection: str = QUICKSTART_AE_LATENT_INJECTION  # how its decoder reads the latents
    autoencoder_steps: int = option(QUICKSTART_AE_STEPS, "Autoencoder training steps at most.", min=1)
    diffusion_steps: int = option(QUICKSTART_DIFFUSION_STEPS, "Denoiser training steps at most.", min=1)
    max_minutes: float = option(
        QUICKSTART_CPU_SECONDS / 60, "The whole run's time budget; each trainer plans its steps to fit "
        "its share.")
    budget_clock: str = option(  # a str: check() names the value, the flag and the choices
        "cpu", "The budget's clock: cpu (this process's CPU time, the same work on a busy machine) or "
        "wall (ends in time on any machine).")
    num_samples: int = option(QUICKSTART_SAMPLES, "Texts to generate and score.", min=2, max=500)
    seed: int = 42

    def check(self) -> None:
        check_budget(self.max_minutes, self.budget_clock)


__all__ = ["MAX_BATCH", "SAMPLER_PANEL", "AdaptArgs", "AutoencoderOptions", "AutoencoderTrainArgs",
           "ClassifierArgs", "DecodeArgs", "QuickstartSettings", "Sampler", "SamplingArgs", "TrainArgs",
           "check_noise_scale"]
