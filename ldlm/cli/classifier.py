"""ldlm train-classifier"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ldlm.args import ClassifierArgs
from ldlm.cli.app import command
from ldlm.cli.console import RichReporter
from ldlm.cli.fields import with_fields


@command("train-classifier", keeps=False)
@with_fields(ClassifierArgs, "args")
def train_classifier_cmd(
    store: Annotated[str, typer.Argument(
        help="Latent store with conditions (`ldlm encode --condition-column`), path or URL.")],
    out: Annotated[Path, typer.Option("--out", help="Folder to save the classifier in.")],
    args: ClassifierArgs = None,  # its fields are the training options (with_fields)
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out folder.")] = False,
) -> None:
    """Train a condition classifier on a store's texts: log p(condition | text) from word
    n-grams, for `ldlm sample --mbr N --reranker OUT` (keep the candidate that states its
    condition), and a word n-gram language model of the same texts (keep one that reads well).
    About a minute on a CPU for E2E; --out is written whole or not at all."""
    from ldlm.classifier import train_classifier
    from ldlm.outputs import check_output

    check_output(out, "--out", "classifier", {"STORE": store})
    result = train_classifier(store, out, args, RichReporter(), overwrite)
    typer.echo(f"saved {out} ({result.model.config.num_ngrams} n-grams, {result.train_rows} "
               f"training rows, {result.seconds:.0f} s)")
    if result.accuracy is None:
        typer.echo("the store is too small to hold rows out, so there are no held-out figures")
    elif result.precision is None:
        typer.echo(f"held-out accuracy on {result.eval_rows} rows: {result.accuracy:.3f}")
    else:
        typer.echo(f"held-out on {result.eval_rows} rows: token precision {result.precision:.3f}, "
                   f"recall {result.recall:.3f}, conditions exactly right {result.accuracy:.3f}")
    if result.warning:
        typer.echo(result.warning, err=True)
    if result.perplexity is not None:
        typer.echo(f"fluency model ({args.lm_order}-grams): held-out perplexity {result.perplexity:.1f} "
                   "per word")
