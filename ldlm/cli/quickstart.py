"""ldlm quickstart"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ldlm.args import QuickstartSettings
from ldlm.budget import CLOCKS
from ldlm.cli.app import command
from ldlm.cli.console import RichReporter
from ldlm.cli.fields import with_fields


@command("quickstart")
@with_fields(QuickstartSettings, "settings")
def quickstart_cmd(
    out: Annotated[Path, typer.Option(help="Folder for every stage's artefact.")] = Path(
        "ldlm-quickstart"),
    settings: QuickstartSettings = None,  # its fields are the run's options (with_fields)
    show: Annotated[int, typer.Option(min=0, help="Generated texts to print.")] = 10,
) -> None:
    """Run the whole pipeline on the built-in corpus (5,000 E2E restaurant descriptions, CC
    BY-SA 4.0): train an autoencoder, encode the corpus, train a denoiser on its latents,
    sample, decode, and score the texts against 1,000 held-out references. No flags, no
    downloads; the two trainers share a budget of 900 CPU-seconds (under 10 minutes on 2 CPU
    cores), each stopping at its step cap or its share of the budget, whichever comes first;
    reruns reuse what is already done."""
    from rich.console import Console

    from ldlm.cli.evaluate import render_table
    from ldlm.outputs import check_output
    from ldlm.quickstart import run_quickstart

    check_output(out, "--out", "folder")
    cpu, wall = CLOCKS["cpu"](), CLOCKS["wall"]()
    r = run_quickstart(out, settings, reporter=RichReporter())
    k, d = r.latent_shape
    p = r.paths
    unit = "CPU-s" if settings.budget_clock == "cpu" else "s wall"

    def reached(steps: int | None, cap: int, minutes: float) -> str:
        done = "?" if steps is None else f"{steps:,}"
        return f"{done} of at most {cap:,} steps, budget {60 * minutes:.0f} {unit}"

    typer.echo(f"autoencoder  {p['autoencoder']} (latent space {r.latent_space}, {k} x {d}; "
               f"{reached(r.autoencoder_steps, settings.autoencoder_steps, r.budgets['autoencoder'])})")
    if r.reconstruction:
        typer.echo(f"             held-out reconstruction: BLEU {r.reconstruction['bleu']:.1f}, "
                   f"exact match {r.reconstruction['exact_match']:.2f} "
                   f"({r.reconstruction['rows']} texts)")
    typer.echo(f"latent store {p['store']} ({r.rows} rows)")
    typer.echo(f"diffusion    {p['run']} "
               f"({reached(r.diffusion_steps, settings.diffusion_steps, r.budgets['diffusion'])})")
    typer.echo(f"samples      {p['latents']} -> {p['texts']} ({len(r.samples)} texts)")
    typer.echo(f"evaluation   {p['evaluation']}")
    typer.echo("")
    for text in r.samples[:show]:
        typer.echo(f"  {text}")
    typer.echo("")
    Console(file=sys.stdout, highlight=False, soft_wrap=False).print(render_table(r.evaluation))
    typer.echo(f"time         {CLOCKS['cpu']() - cpu:.0f} CPU-s, {CLOCKS['wall']() - wall:.0f} s wall "
               f"in this run (budget {60 * settings.max_minutes:.0f} {unit})")
    typer.echo(f"next: ldlm sample {p['run']} --num-samples 5 | ldlm decode")
