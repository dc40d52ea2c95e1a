"""ldlm quickstart"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ldlm.cli.app import command
from ldlm.cli.console import RichReporter
from ldlm.recipe import QUICKSTART_AE_STEPS, QUICKSTART_DIFFUSION_STEPS, QUICKSTART_SAMPLES


@command("quickstart")
def quickstart_cmd(
    out: Annotated[Path, typer.Option(help="Folder for every stage's artefact.")] = Path(
        "ldlm-quickstart"),
    autoencoder_steps: Annotated[int, typer.Option(
        min=1, help="Autoencoder training steps.")] = QUICKSTART_AE_STEPS,
    diffusion_steps: Annotated[int, typer.Option(
        min=1, help="Denoiser training steps.")] = QUICKSTART_DIFFUSION_STEPS,
    num_samples: Annotated[int, typer.Option(
        min=2, max=500, help="Texts to generate and score.")] = QUICKSTART_SAMPLES,
    show: Annotated[int, typer.Option(min=0, help="Generated texts to print.")] = 10,
) -> None:
    """Run the whole pipeline on the built-in corpus (5,000 E2E restaurant descriptions, CC
    BY-SA 4.0): train an autoencoder, encode the corpus, train a denoiser on its latents,
    sample, decode, and score the texts against 1,000 held-out references. No flags, no
    downloads, about 10 minutes on 2 CPU cores; reruns reuse what is already done."""
    from rich.console import Console

    from ldlm.cli.evaluate import render_table
    from ldlm.outputs import check_output
    from ldlm.quickstart import QuickstartSettings, run_quickstart

    check_output(out, "--out", "folder")
    settings = QuickstartSettings(autoencoder_steps=autoencoder_steps,
                                  diffusion_steps=diffusion_steps, num_samples=num_samples)
    r = run_quickstart(out, settings, reporter=RichReporter())
    k, d = r.latent_shape
    p = r.paths
    typer.echo(f"autoencoder  {p['autoencoder']} (latent space {r.latent_space}, {k} x {d})")
    if r.reconstruction:
        typer.echo(f"             held-out reconstruction: BLEU {r.reconstruction['bleu']:.1f}, "
                   f"exact match {r.reconstruction['exact_match']:.2f} "
                   f"({r.reconstruction['rows']} texts)")
    typer.echo(f"latent store {p['store']} ({r.rows} rows)")
    typer.echo(f"diffusion    {p['run']}")
    typer.echo(f"samples      {p['latents']} -> {p['texts']} ({len(r.samples)} texts)")
    typer.echo(f"evaluation   {p['evaluation']}")
    typer.echo("")
    for text in r.samples[:show]:
        typer.echo(f"  {text}")
    typer.echo("")
    Console(file=sys.stdout, highlight=False, soft_wrap=False).print(render_table(r.evaluation))
    typer.echo(f"next: ldlm sample {p['run']} --num-samples 5 | ldlm decode")
