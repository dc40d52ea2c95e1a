"""ldlm train"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from ldlm.args import TrainArgs
from ldlm.cli.app import command
from ldlm.cli.console import RichReporter
from ldlm.cli.fields import with_fields
from ldlm.errors import InputError


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
@with_fields(TrainArgs, "args", helps={"max_steps": "Optimiser steps (overrides --num-epochs)."})
def train_cmd(
    store: Annotated[str, typer.Argument(help="Latent store written by `ldlm encode` (path or URL).")],
    out: Annotated[Path, typer.Option("--out", help="RUN_DIR: checkpoints, samples and the model.")],
    args: TrainArgs = None,  # its fields are the training options (with_fields)
    denoiser_config: Annotated[str | None, typer.Option(
        help="JSON object of denoiser options over the preset, e.g. '{\"layers\": 6}'.")] = None,
    adaln: Annotated[bool, typer.Option(
        "--adaln", help="The timestep (and condition) scale and shift each block's normalised "
        "input: adaLN-Zero in the transformer, FiLM in the MLP (better for --conditional).")
    ] = False,
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
    from ldlm.train import train_diffusion

    check_output(out, "--out", "run", {"STORE": store})
    args = replace(args, denoiser=_denoiser_overrides(args.arch, adaln, denoiser_config),
                   resume=str(resume_from) if resume_from else ("latest" if resume else None))
    args.check()
    result = train_diffusion(store, out, args, reporter=RichReporter())
    loss = f", loss {result.loss:.4f}" if result.loss is not None else ""
    fd = (f", latent Frechet distance {result.frechet_distance:.4f}"
          if result.frechet_distance is not None else "")
    if fd and result.fd_floor is not None:  # the FD of as many true latents: the best it can show
        fd += f" (floor {result.fd_floor:.4f})"
    from ldlm.distributed import ranks

    if ranks().is_main:  # under `accelerate launch`, the main process speaks for all
        typer.echo(f"saved {out} ({args.arch}, {result.steps} steps{loss}{fd})")
