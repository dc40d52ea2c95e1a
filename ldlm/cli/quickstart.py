"""ldlm quickstart"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ldlm.cli.app import command
from ldlm.cli.console import RichReporter


@command("quickstart")
def quickstart_cmd(
    out: Annotated[Path, typer.Option(help="Folder for every stage's artefact.")] = Path(
        "ldlm-quickstart"),
    max_steps: Annotated[int, typer.Option(help="Autoencoder training steps.")] = 1200,
) -> None:
    """Run the pipeline on the built-in corpus (5,000 E2E restaurant descriptions, CC BY-SA
    4.0): train an autoencoder, encode the corpus to a latent store, decode it back. No
    flags, no downloads; reruns reuse what is already done."""
    from ldlm.quickstart import run_quickstart

    r = run_quickstart(out, max_steps=max_steps, reporter=RichReporter())
    k, d = r.latent_shape
    typer.echo(f"autoencoder   {r.out / 'autoencoder'} (latent space {r.latent_space}, {k} x {d})")
    typer.echo(f"latent store  {r.out / 'latents.zarr'} ({r.rows} rows)")
    if r.heldout:
        typer.echo(f"held-out reconstruction ({r.heldout['rows']} texts): exact match "
                   f"{r.heldout['exact_match']:.3f}, BLEU {r.heldout['bleu']:.2f}")
    typer.echo(f"store reconstruction ({r.sample.rows} rows): exact match "
               f"{r.sample.exact_match:.3f}, BLEU {r.sample.bleu:.2f}")
    for ex in r.examples:
        typer.echo(f"  original: {ex['reference']}\n  decoded : {ex['text']}")
    typer.echo(f"next: ldlm decode {r.out / 'latents.zarr'} --format jsonl | head")
