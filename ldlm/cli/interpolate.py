"""ldlm interpolate"""

from __future__ import annotations

import json
import sys
from dataclasses import fields, replace
from pathlib import Path
from typing import Annotated, Literal

import typer

from ldlm.args import DecodeArgs, SamplingArgs
from ldlm.cli.app import command
from ldlm.cli.console import RichReporter
from ldlm.cli.fields import with_fields
from ldlm.cli.options import Device, Seed
from ldlm.distributed import pick_device
from ldlm.recipe import INTERPOLATION_SAMPLER, INTERPOLATION_STEPS, INTERPOLATION_STRENGTH


@command("interpolate", keeps=False)
@with_fields(DecodeArgs, "decoding", skip=("top_p", "num_beams", "best_of", "batch_size", "seed"),
             defaults={"temperature": 0.0},
             helps={"temperature": "Decoding temperature; 0 (greedy) shows the latent path, not sampling "
                                   "noise."})
@with_fields(SamplingArgs, "sampling", skip=("num_samples", "seed", "batch_size", "noise_scale"),
             defaults={"num_inference_steps": INTERPOLATION_STEPS, "scheduler": INTERPOLATION_SAMPLER},
             helps={"num_inference_steps": "With --run: denoising steps of the full schedule.",
                    "scheduler": "With --run: the sampler."})
def interpolate_cmd(
    text_a: Annotated[str, typer.Argument(help="The text at t = 0.")],
    text_b: Annotated[str, typer.Argument(help="The text at t = 1.")],
    autoencoder: Annotated[Path | None, typer.Option(
        help="Autoencoder folder (default with --run: the run's).")] = None,
    run: Annotated[Path | None, typer.Option(
        help="RUN_DIR of `ldlm train`: re-noise and denoise every point with it (SDEdit).")] = None,
    steps: Annotated[int, typer.Option(help="Points along the path, both texts included.")] = 5,
    strength: Annotated[float | None, typer.Option(
        help=f"With --run: re-noising strength in (0, 1] (default {INTERPOLATION_STRENGTH}).")] = None,
    sampling: SamplingArgs = None,  # its fields: the sampler's options with --run (with_fields)
    decoding: DecodeArgs = None,  # its fields: the decoding options
    seed: Seed = 42,
    device: Device = None,
    format: Annotated[Literal["text", "jsonl"], typer.Option(
        help="text: one line per point; jsonl: {index, t, text} per point.")] = "text",
    out: Annotated[str | None, typer.Option(
        help="Write the latents to this latent file instead of decoding them (for `ldlm decode`); '-' "
        "is the latent stream on stdout.")] = None,
    overwrite: Annotated[bool, typer.Option(
        help="Replace an existing --out latent file (the old one stays until the new one is whole).")
    ] = False,
) -> None:
    """Texts along the spherical path between the latents of TEXT_A and TEXT_B."""
    from ldlm.errors import InputError
    from ldlm.variations import check_interpolation, decode_rows, interpolate, interpolation_args

    check_interpolation(text_a, text_b, steps)
    decoding = replace(decoding, seed=seed)
    decoding.check()
    sampling = replace(sampling, seed=seed)
    if run is None:  # the sampler's options, changed from their defaults, need a run
        default = interpolation_args(seed=seed)
        changed = [f"--{f.name.replace('_', '-')}" for f in fields(sampling)
                   if getattr(sampling, f.name) != getattr(default, f.name)]
        for flag in (["--strength"] if strength is not None else []) + changed:
            raise InputError(f"{flag} applies to re-noising with a run; add --run RUN_DIR or drop it")
    from ldlm.outputs import check_output, is_stdout

    if overwrite and out is None:
        raise InputError("--overwrite replaces an --out latent file; add --out PATH or drop it")
    if out is not None and not is_stdout(out):
        check_output(out, "--out", "latents", {"--autoencoder": autoencoder, "--run": run},
                     overwrite=overwrite)
    strength = INTERPOLATION_STRENGTH if strength is None else strength
    reporter = RichReporter()
    result, model = interpolate(text_a, text_b, autoencoder, steps, run, strength, sampling,
                                pick_device(device), reporter)
    if result.truncated:  # as `ldlm encode` warns of the same cut
        reporter.log(f"warning: {result.truncated} of the two texts were longer than the autoencoder's max "
                     "length and were truncated (their latents hold the beginning only)")
    if is_stdout(out):
        from ldlm.latent_file import LatentWriter

        writer = LatentWriter(sys.stdout.buffer, result.header)
        writer.write(result.latents, result.meta)
        writer.close()
        return
    if out is not None:
        from ldlm.latent_file import write_latent_file

        write_latent_file(out, result.header, result.latents, result.meta)
        reporter.log(f"wrote {steps} latents to {out}")
        return
    for record in decode_rows(result, model, decoding):
        if format == "jsonl":
            sys.stdout.write(json.dumps({"index": record["index"], "t": record["t"],
                                         "text": record["text"]}, ensure_ascii=False) + "\n")
        else:
            sys.stdout.write(record["text"].replace("\n", " ") + "\n")
        sys.stdout.flush()
