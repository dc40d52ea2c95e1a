"""ldlm quickstart"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ldlm.budget import CLOCKS
from ldlm.cli.app import command
from ldlm.cli.console import RichReporter
from ldlm.recipe import (
    QUICKSTART_AE_STEPS,
    QUICKSTART_CPU_SECONDS,
    QUICKSTART_DIFFUSION_STEPS,
    QUICKSTART_SAMPLES,
)


@command("quickstart")
def quickstart_cmd(
    out: Annotated[Path, typer.Option(help="Folder for every stage's artefact.")] = Path(
        "ldlm-quickstart"),
    autoencoder_steps: Annotated[int, typer.Option(
        min=1, help="Autoencoder training steps at most.")] = QUICKSTART_AE_STEPS,
    diffusion_steps: Annotated[int, typer.Option(
        min=1, help="Denoiser training steps at most.")] = QUICKSTART_DIFFUSION_STEPS,
    max_minutes: Annotated[float, typer.Option(
        help="The whole run's time budget; each trainer plans its steps to fit its share.")
    ] = QUICKSTART_CPU_SECONDS / 60,
    budget_clock: Annotated[str, typer.Option(
        help="The budget's clock: cpu (this process's CPU time, the same work on a busy machine) "
             "or wall (ends in time on any machine).")] = "cpu",
    num_samples: Annotated[int, typer.Option(
        min=2, max=500, help="Texts to generate and score.")] = QUICKSTART_SAMPLES,
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
    from ldlm.quickstart import QuickstartSettings, run_quickstart

    check_output(out, "--out", "folder")
    settings = QuickstartSettings(autoencoder_steps=autoencoder_steps, diffusion_steps=diffusion_steps,
                                  num_samples=num_samples, max_minutes=max_minutes, budget_clock=budget_clock)
    cpu, wall = CLOCKS["cpu"](), CLOCKS["wall"]()
    r = run_quickstart(out, settings, reporter=RichReporter())
    k, d = r.latent_shape
    p = r.paths
    unit = "CPU-s" if budget_clock == "cpu" else "s wall"

    def reached(steps: int | None, cap: int, minutes: float) -> str:
        done = "?" if steps is None else f"{steps:,}"
        return f"{done} of at most {cap:,} steps, budget {60 * minutes:.0f} {unit}"

    typer.echo(f"autoencoder  {p['autoencoder']} (latent space {r.latent_space}, {k} x {d}; "
               f"{reached(r.autoencoder_steps, autoencoder_steps, r.budgets['autoencoder'])})")
    if r.reconstruction:
        typer.echo(f"             held-out reconstruction: BLEU {r.reconstruction['bleu']:.1f}, "
                   f"exact match {r.reconstruction['exact_match']:.2f} "
                   f"({r.reconstruction['rows']} texts)")
    typer.echo(f"latent store {p['store']} ({r.rows} rows)")
    typer.echo(f"diffusion    {p['run']} "
               f"({reached(r.diffusion_steps, diffusion_steps, r.budgets['diffusion'])})")
    typer.echo(f"samples      {p['latents']} -> {p['texts']} ({len(r.samples)} texts)")
    typer.echo(f"evaluation   {p['evaluation']}")
    typer.echo("")
    for text in r.samples[:show]:
        typer.echo(f"  {text}")
    typer.echo("")
    Console(file=sys.stdout, highlight=False, soft_wrap=False).print(render_table(r.evaluation))
    typer.echo(f"time         {CLOCKS['cpu']() - cpu:.0f} CPU-s, {CLOCKS['wall']() - wall:.0f} s wall "
               f"in this run (budget {60 * max_minutes:.0f} {unit})")
    typer.echo(f"next: ldlm sample {p['run']} --num-samples 5 | ldlm decode")
