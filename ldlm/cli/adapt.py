"""ldlm adapt-decoder"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ldlm.args import AdaptArgs
from ldlm.cli.app import command
from ldlm.cli.console import RichReporter
from ldlm.cli.fields import with_fields
from ldlm.cli.options import Device
from ldlm.distributed import pick_device
from ldlm.recipe import ADAPT_STEPS


@command("adapt-decoder")
@with_fields(AdaptArgs, "args", helps={"max_steps": f"Optimiser steps (default {ADAPT_STEPS}, or what "
                                                    "--max-minutes allows)."})
def adapt_decoder_cmd(
    run: Annotated[Path, typer.Argument(help="RUN_DIR of `ldlm train` whose samples are to be decoded.")],
    out: Annotated[Path, typer.Option("--out", help="Folder to save the adapted autoencoder in.")],
    autoencoder: Annotated[Path | None, typer.Option(
        help="Autoencoder to adapt (default: the run's; it must define the run's latent space).")] = None,
    store: Annotated[str | None, typer.Option(
        help="Store to read (default: the run's; it must be in the run's latent space).")] = None,
    args: AdaptArgs = None,  # its fields are the training options (with_fields)
    device: Device = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out folder.")] = False,
) -> None:
    """Fine-tune the autoencoder's decoder on the run's own denoised latents, so that sampled
    latents decode to cleaner text.

    The encoder is frozen: the adapted autoencoder defines the same latent space, so the run,
    its store and latent files work with it (`ldlm decode --autoencoder OUT`). Training rows
    come from the run's store; its held-out rows give the before/after losses. --out is
    written whole or not at all; a rerun starts again.
    """
    from ldlm.adapt import adapt_decoder

    args.check()
    from ldlm.outputs import check_output

    check_output(out, "--out", "autoencoder",
                 {"RUN_DIR": run, "--autoencoder": autoencoder, "--store": store})
    reporter = RichReporter()
    result = adapt_decoder(run, out, args, autoencoder, pick_device(device), reporter, overwrite, store)
    typer.echo(f"saved {out} (latent space {result.model.fingerprint}, {result.steps} steps, "
               f"{result.seconds:.0f} s)")
    if result.estimate_loss:
        (eb, ea), (cb, ca) = result.estimate_loss, result.clean_loss
        typer.echo(f"decoder loss on {result.eval_rows} held-out rows: denoised latents {eb:.3f} -> "
                   f"{ea:.3f}, clean latents {cb:.3f} -> {ca:.3f}")
    else:
        typer.echo("the run holds out no rows of its store, so there are no before/after losses")
