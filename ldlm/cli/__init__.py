"""The `ldlm` command line: one module per command, wired to one Typer app here.

`ldlm --help` lists the commands in the order a user meets them: the quickstart, the five
stages of the pipeline, then what improves and scores a run, then tools. The table below is
that order, each command's panel and its one-line summary (the full help is the command's
docstring).
"""

from ldlm.cli import (  # noqa: F401  (registers)
    adapt,
    autoencoder,
    classifier,
    decode,
    encode,
    evaluate,
    info,
    interpolate,
    quickstart,
    sample,
    train,
)
from ldlm.cli.app import app

START, STAGES, BETTER, TOOLS = ("Start here", "The pipeline, stage by stage",
                                "Improve and score a run", "Tools")
COMMANDS = [  # (name, panel, summary) in the order `ldlm --help` shows them
    ("quickstart", START, "Run every stage on a built-in corpus and score it."),
    ("train-autoencoder", STAGES, "1. Train the autoencoder that defines the latent space."),
    ("encode", STAGES, "2. Encode a text dataset into a zarr latent store."),
    ("train", STAGES, "3. Train a denoiser on a store's latents."),
    ("sample", STAGES, "4. Generate latents from noise with a trained run."),
    ("decode", STAGES, "5. Turn latents into text, one sample per line."),
    ("evaluate", BETTER, "Score texts: MAUVE, diversity, memorisation, BLEU."),
    ("adapt-decoder", BETTER, "Fine-tune the decoder on a run's own denoised latents."),
    ("train-classifier", BETTER, "Train a condition classifier for sample --mbr."),
    ("interpolate", TOOLS, "Texts along the path between the latents of two texts."),
    ("info", TOOLS, "What an artefact is: shapes, counts, provenance."),
]


def _arrange() -> None:
    """Order, group and summarise the registered commands as COMMANDS says."""
    table = {name: (i, panel, summary) for i, (name, panel, summary) in enumerate(COMMANDS)}
    missing = {c.name for c in app.registered_commands} ^ table.keys()
    if missing:  # a command added or renamed without its line above
        raise RuntimeError(f"ldlm.cli.COMMANDS and the registered commands differ: {sorted(missing)}")
    app.registered_commands.sort(key=lambda c: table[c.name][0])
    for c in app.registered_commands:
        _, c.rich_help_panel, c.short_help = table[c.name]


_arrange()


def main() -> None:
    app()
