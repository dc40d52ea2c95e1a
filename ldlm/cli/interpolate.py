"""ldlm interpolate"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from ldlm.cli.app import command
from ldlm.cli.console import RichReporter
from ldlm.cli.options import Device, Seed
from ldlm.distributed import pick_device
from ldlm.recipe import INTERPOLATION_SAMPLER, INTERPOLATION_STEPS, INTERPOLATION_STRENGTH
from ldlm.schedulers import SAMPLERS


@command("interpolate", keeps=False)
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
    num_inference_steps: Annotated[int | None, typer.Option(
        help=f"With --run: denoising steps of the full schedule (default {INTERPOLATION_STEPS}).")] = None,
    scheduler: Annotated[Literal[tuple(SAMPLERS)] | None, typer.Option(
        help=f"With --run: sampler (default {INTERPOLATION_SAMPLER}).")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(
        help="Tokens generated per text (default: the autoencoder's --max-length).")] = None,
    temperature: Annotated[float, typer.Option(
        help="Decoding temperature; 0 (greedy) shows the latent path, not sampling noise.")] = 0.0,
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
    from ldlm.decode import DecodeArgs
    from ldlm.errors import InputError
    from ldlm.variations import check_interpolation, decode_rows, interpolate

    check_interpolation(text_a, text_b, steps)
    args = DecodeArgs(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
    args.check()
    if run is None:
        for flag, value in (("--strength", strength), ("--num-inference-steps", num_inference_steps),
                            ("--scheduler", scheduler)):
            if value is not None:
                raise InputError(f"{flag} applies to re-noising with a run; add --run RUN_DIR or drop it")
    from ldlm.outputs import check_output, is_stdout

    if overwrite and out is None:
        raise InputError("--overwrite replaces an --out latent file; add --out PATH or drop it")
    if out is not None and not is_stdout(out):
        check_output(out, "--out", "latents", {"--autoencoder": autoencoder, "--run": run},
                     overwrite=overwrite)
    strength = INTERPOLATION_STRENGTH if strength is None else strength
    num_inference_steps = num_inference_steps or INTERPOLATION_STEPS
    scheduler = scheduler or INTERPOLATION_SAMPLER
    reporter = RichReporter()
    result, model = interpolate(text_a, text_b, autoencoder, steps, run, strength, num_inference_steps,
                                scheduler, seed, pick_device(device), reporter)
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
    for record in decode_rows(result, model, args):
        if format == "jsonl":
            sys.stdout.write(json.dumps({"index": record["index"], "t": record["t"],
                                         "text": record["text"]}, ensure_ascii=False) + "\n")
        else:
            sys.stdout.write(record["text"].replace("\n", " ") + "\n")
        sys.stdout.flush()
