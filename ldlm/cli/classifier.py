"""ldlm train-classifier"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ldlm.cli.app import command
from ldlm.cli.console import RichReporter
from ldlm.cli.options import Seed


@command("train-classifier", keeps=False)
def train_classifier_cmd(
    store: Annotated[str, typer.Argument(
        help="Latent store with conditions (`ldlm encode --condition-column`), path or URL.")],
    out: Annotated[Path, typer.Option("--out", help="Folder to save the classifier in.")],
    epochs: Annotated[int, typer.Option(help="Passes over the training rows.")] = 20,
    batch_size: Annotated[int, typer.Option(help="Texts per step.")] = 256,
    learning_rate: Annotated[float, typer.Option(help="Adam learning rate (constant).")] = 0.003,
    weight_decay: Annotated[float, typer.Option(help="Decoupled L2 of the weights.")] = 0.01,
    ngram_order: Annotated[int, typer.Option(help="Word n-grams 1..N are the features.")] = 3,
    min_count: Annotated[int, typer.Option(
        help="Keep the n-grams found in at least this many training texts.")] = 3,
    lm_order: Annotated[int, typer.Option(
        help="Word n-gram order of the fluency language model saved beside the classifier, for "
        "`ldlm sample --fluency-weight` (0: none).")] = 3,
    eval_rows: Annotated[int, typer.Option(
        help="Held-out rows for the figures (at most 5%), spread over the store and stratified by "
        "class.")] = 1000,
    seed: Seed = 42,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out folder.")] = False,
) -> None:
    """Train a condition classifier on a store's texts: log p(condition | text) from word
    n-grams, for `ldlm sample --mbr N --reranker OUT` (keep the candidate that states its
    condition), and a word n-gram language model of the same texts (keep one that reads well).
    About a minute on a CPU for E2E; --out is written whole or not at all."""
    from ldlm.classifier import ClassifierArgs, train_classifier

    args = ClassifierArgs(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                          weight_decay=weight_decay, ngram_order=ngram_order, min_count=min_count,
                          lm_order=lm_order, eval_rows=eval_rows, seed=seed)
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
        typer.echo(f"fluency model ({lm_order}-grams): held-out perplexity {result.perplexity:.1f} "
                   "per word")
