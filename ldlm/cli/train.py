"""ldlm train"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer

from ldlm.cli.app import command
from ldlm.cli.console import RichReporter
from ldlm.cli.options import BudgetClock, MaxMinutes, MixedPrecision, Seed
from ldlm.denoisers import ARCHS
from ldlm.errors import InputError
from ldlm.recipe import DIFFUSION_BATCH, DIFFUSION_LR, DIFFUSION_WARMUP, EPOCHS, SIZES
from ldlm.schedulers import BETA_SCHEDULES, PREDICTION_TYPES


def _denoiser_overrides(arch: str, adaln: bool, denoiser_config: str | None) -> dict:
    overrides: dict = {}
    if denoiser_config:
        try:
            overrides = json.loads(denoiser_config)
        except ValueError as exc:
            raise InputError(f"--denoiser-config {denoiser_config!r} is not JSON; give an object "
                             "such as '{\"widths\": [256, 128]}'") from exc
        if not isinstance(overrides, dict):
            raise InputError(f"--denoiser-config {denoiser_config!r} must be a JSON object")
    if adaln:
        from ldlm.denoisers import ARCHS, denoiser_class

        option = denoiser_class(arch).modulation
        if option is None:
            able = " or ".join(a for a in ARCHS if denoiser_class(a).modulation)
            raise InputError(f"--adaln is an option of --arch {able}, not {arch}; drop it or use "
                             f"--arch {able}")
        overrides[option] = True
    return overrides


@command("train", resume="--resume")
def train_cmd(
    store: Annotated[str, typer.Argument(help="Latent store written by `ldlm encode` (path or URL).")],
    out: Annotated[Path, typer.Option("--out", help="RUN_DIR: checkpoints, samples and the model.")],
    arch: Annotated[Literal[tuple(ARCHS)], typer.Option(
        help="Denoiser: residual MLP U-Net, diffusers UNet2DModel on a 2-D layout, or transformer "
        "over the k latent tokens.")] = "mlp",
    size: Annotated[Literal[SIZES], typer.Option(help="Denoiser size preset.")] = "small",
    denoiser_config: Annotated[str | None, typer.Option(
        help="JSON object of denoiser options over the preset, e.g. '{\"layers\": 6}'.")] = None,
    adaln: Annotated[bool, typer.Option(
        "--adaln", help="The timestep (and condition) scale and shift each block's normalised "
        "input: adaLN-Zero in the transformer, FiLM in the MLP (better for --conditional).")
    ] = False,
    objective: Annotated[Literal[tuple(PREDICTION_TYPES)], typer.Option(
        help="What the denoiser predicts: the noise, the clean latent, or v (x0 gave the best "
        "samples on E2E).")] = "x0",
    schedule: Annotated[Literal[tuple(BETA_SCHEDULES)], typer.Option(
        help="Noise schedule (linear and scaled-linear: betas 0.00085 to 0.012, 1000 steps).")
    ] = "linear",
    num_epochs: Annotated[int | None, typer.Option(
        help=f"Passes over the training rows (default {EPOCHS}, unless --max-steps or --max-minutes "
        "says how long).")] = None,
    max_steps: Annotated[int | None, typer.Option(
        help="Optimiser steps (overrides --num-epochs).")] = None,
    max_minutes: MaxMinutes = None,
    budget_clock: BudgetClock = "wall",
    batch_size: Annotated[int, typer.Option(
        help="Latents per device per micro-batch (the original design's 16 trains slower per second; "
        "see the README).")
    ] = DIFFUSION_BATCH,
    learning_rate: Annotated[float, typer.Option(
        help="Peak learning rate (AdamW; the original design's 1e-4 trains slower).")] = DIFFUSION_LR,
    gradient_accumulation_steps: Annotated[int, typer.Option(
        help="Micro-batches per optimiser step.")] = 1,
    lr_warmup_steps: Annotated[int, typer.Option(
        help="Linear warmup steps before the cosine decay (the original design's: 500).")] = DIFFUSION_WARMUP,
    save_samples_epochs: Annotated[int, typer.Option(
        help="Sample latents from the EMA model and report their Frechet distance to held-out "
        "latents every N epochs.")] = 10,
    save_model_epochs: Annotated[int, typer.Option(
        help="Write a checkpoint every N epochs (and always at the end).")] = 50,
    checkpointing_steps: Annotated[int | None, typer.Option(
        help="Also write a checkpoint every N optimiser steps.")] = None,
    mixed_precision: MixedPrecision = "no",
    push_to_hub: Annotated[bool, typer.Option(
        "--push-to-hub", help="Upload RUN_DIR (without checkpoints) to the hub after saving.")] = False,
    hub_model_id: Annotated[str | None, typer.Option(
        help="Hub repo for --push-to-hub (default: the RUN_DIR folder name).")] = None,
    seed: Seed = 42,
    self_condition: Annotated[bool, typer.Option(
        "--self-condition", help="Self-conditioning: feed the previous clean-latent estimate back.")
    ] = False,
    conditional: Annotated[bool, typer.Option(
        "--conditional", help="Condition the denoiser on each row's condition (a store encoded with "
        "--condition-column), for `ldlm sample --condition`.")] = False,
    condition_dropout: Annotated[float, typer.Option(
        help="With --conditional: probability of training on the null condition instead, so the "
        "model also samples unconditionally and classifier-free guidance works.")] = 0.1,
    eval_samples: Annotated[int, typer.Option(help="Latents sampled each time samples are saved.")] = 256,
    eval_inference_steps: Annotated[int, typer.Option(help="DDIM steps for those samples.")] = 50,
    memory_limit_mb: Annotated[int, typer.Option(
        help="Load the training latents in memory up to this size; a larger store is streamed "
        "chunk by chunk.")] = 2048,
    shuffle_window_chunks: Annotated[int, typer.Option(
        help="When streaming: store chunks whose rows are shuffled together. More mixes batches "
        "better (rows of one chunk were encoded together) and holds more in memory (about 3 "
        "windows, lowered to fit --memory-limit-mb).")] = 16,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue the run in RUN_DIR from its latest checkpoint-<step>.")] = False,
    resume_from: Annotated[Path | None, typer.Option(
        help="Continue from this checkpoint folder instead (implies --resume).")] = None,
) -> None:
    """Train a denoiser on the latents of a store (the store only: no encoder runs).

    Interrupted runs continue exactly with --resume (latest checkpoint) or --resume-from
    RUN_DIR/checkpoint-<step>.
    """
    from ldlm.outputs import check_output
    from ldlm.train import TrainArgs, train_diffusion

    check_output(out, "--out", "run", {"STORE": store})

    args = TrainArgs(
        arch=arch, size=size, denoiser=_denoiser_overrides(arch, adaln, denoiser_config),
        objective=objective, schedule=schedule, self_condition=self_condition,
        conditional=conditional, condition_dropout=condition_dropout,
        num_epochs=num_epochs, max_steps=max_steps, max_minutes=max_minutes, budget_clock=budget_clock,
        batch_size=batch_size,
        learning_rate=learning_rate, gradient_accumulation_steps=gradient_accumulation_steps,
        lr_warmup_steps=lr_warmup_steps, save_samples_epochs=save_samples_epochs,
        save_model_epochs=save_model_epochs, checkpointing_steps=checkpointing_steps,
        mixed_precision=mixed_precision, seed=seed, eval_samples=eval_samples,
        eval_inference_steps=eval_inference_steps, memory_limit_mb=memory_limit_mb,
        shuffle_window_chunks=shuffle_window_chunks,
        resume=str(resume_from) if resume_from else ("latest" if resume else None),
        push_to_hub=push_to_hub, hub_model_id=hub_model_id,
    )
    args.check()
    result = train_diffusion(store, out, args, reporter=RichReporter())
    loss = f", loss {result.loss:.4f}" if result.loss is not None else ""
    fd = (f", latent Frechet distance {result.frechet_distance:.4f}"
          if result.frechet_distance is not None else "")
    if fd and result.fd_floor is not None:  # the FD of as many true latents: the best it can show
        fd += f" (floor {result.fd_floor:.4f})"
    from ldlm.distributed import ranks

    if ranks().is_main:  # under `accelerate launch`, the main process speaks for all
        typer.echo(f"saved {out} ({arch}, {result.steps} steps{loss}{fd})")
