"""ldlm evaluate"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from ldlm.cli.app import command
from ldlm.cli.console import RichReporter
from ldlm.cli.options import Device, Split
from ldlm.metrics import TOKENIZATIONS
from ldlm.recipe import SPLIT, TEXT_COLUMN


@command("evaluate", keeps=False)
def evaluate_cmd(
    generated: Annotated[str, typer.Argument(
        help="Generated texts: a file with one text per line, `ldlm decode --format jsonl` "
        "output (its 'reference' / 'condition' fields are used), or '-' for stdin.")] = "-",
    references: Annotated[str | None, typer.Option(
        help="Human texts of the same kind (file or hub dataset): the MAUVE yardstick, and "
        "the source of the reference row.")] = None,
    train: Annotated[str | None, typer.Option(
        help="The training texts (file or hub dataset): memorisation and copy rate.")] = None,
    human: Annotated[str | None, typer.Option(
        help="Held-out human texts for the reference row (default: references not used as "
        "the yardstick).")] = None,
    column: Annotated[str, typer.Option(
        "--text-column", "--column", help="Text column of --references, --train and --human.")] = TEXT_COLUMN,
    split: Split = SPLIT,
    num_samples: Annotated[int | None, typer.Option(
        help="N texts per side per repeat (default: all generated, at most half the references).")] = None,
    seeds: Annotated[int, typer.Option(
        help="Repeats: each draws new random subsets of N texts (seeds 0..S-1).")] = 3,
    mauve_features: Annotated[str, typer.Option(
        help="MAUVE feature model: minilm (offline all-MiniLM-L6-v2), a hub id (gpt2-large, as "
        "the papers) or a local folder; none skips MAUVE.")] = "minilm",
    ppl_model: Annotated[str | None, typer.Option(
        help="Causal LM (hub id or folder) for generative perplexity; omitted: no perplexity.")] = None,
    paired: Annotated[bool, typer.Option(
        help="Also corpus BLEU of text i against its references (line i of --references, or "
        "the --group-column group of item i). JSON lines with a 'reference' field get BLEU "
        "against it without this flag.")] = False,
    group_column: Annotated[str | None, typer.Option(
        help="With --paired: group --references by this column (E2E: mr); the generated text "
        "for each group is its record's 'condition', else line i is the i-th distinct group.")] = None,
    latents: Annotated[str | None, typer.Option(
        help="Generated latents (latent file or store) for the latent Frechet distance.")] = None,
    reference_latents: Annotated[str | None, typer.Option(
        help="Reference latents (a store from `ldlm encode`) for the latent Frechet distance.")] = None,
    tokenize: Annotated[Literal[TOKENIZATIONS], typer.Option(
        help="Tokens of the n-gram metrics: words (lowercased words and punctuation), "
        "cased-words, or whitespace.")] = "words",
    reference_row: Annotated[bool, typer.Option(
        help="Score held-out human texts beside the model.")] = True,
    batch_size: Annotated[int, typer.Option(help="Texts per forward pass of the feature model.")] = 64,
    device: Device = None,
    format: Annotated[Literal["table", "json"], typer.Option(
        help="table: a table on stdout; json: only JSON on stdout.")] = "table",
    json_out: Annotated[Path | None, typer.Option(
        "--json", help="Also write the JSON result to this file ('-': the JSON on stdout, as with "
        "--format json).")] = None,
    class_column: Annotated[str | None, typer.Option(
        help="Score class-conditional texts per class: the class column of --references; each "
        "generated JSON record's 'condition' is the class it was asked for (`ldlm sample --condition "
        "C | ldlm decode --format jsonl`). Adds MAUVE against the other classes' references.")] = None,
    classifier: Annotated[Path | None, typer.Option(
        help="With --class-column: a topic classifier (`ldlm train-classifier` on a store of the "
        "training texts encoded with --condition-column CLASS) for class accuracy, with its accuracy "
        "on the references as the ceiling.")] = None,
) -> None:
    """Score generated texts: MAUVE, diversity, memorisation, copies, perplexity, BLEU, latent FD.

    N generated texts are scored against N references, repeated over seeds (mean ± std),
    beside a row of held-out human texts scored the same way. With --class-column, per class:
    MAUVE against the class's references and against the other classes', and class accuracy.
    """
    from ldlm.evaluate import ClassEvaluation, Sources, evaluate_sources
    from ldlm.outputs import check_output, is_stdout

    sources = Sources(generated, references=references, train=train, human=human, column=column, split=split,
                      paired=paired, group_column=group_column, latents=latents,
                      reference_latents=reference_latents, class_column=class_column,
                      classifier=str(classifier) if classifier else None)
    if is_stdout(json_out):
        json_out, format = None, "json"
    if json_out is not None:
        check_output(json_out, "--json", "text", {
            "GENERATED": generated, "--references": references, "--train": train, "--human": human,
            "--latents": latents, "--reference-latents": reference_latents})
    result = evaluate_sources(
        sources, device, num_samples=num_samples, seeds=seeds, mauve_features=mauve_features,
        ppl_model=ppl_model, reference_row=reference_row, tokenize=tokenize, batch_size=batch_size,
        reporter=RichReporter())
    table = render_class_table if isinstance(result, ClassEvaluation) else render_table
    _emit(result.as_dict() | {"inputs": sources.record()}, json_out, format, lambda: table(result),
          result.notes)


def _emit(payload: dict, json_out: Path | None, format: str, table, notes: list[str]) -> None:
    """The JSON to --json; on stdout the JSON (--format json) or the table; notes on stderr."""
    if json_out is not None:
        from ldlm.atomic import atomic_file

        with atomic_file(json_out, "w") as fh:
            json.dump(payload, fh, indent=2, ensure_ascii=False)
    if format == "json":
        typer.echo(json.dumps(payload, indent=2, ensure_ascii=False))
        return
    from rich.console import Console

    # a file or a pipe gets whole rows; a terminal its own width
    width = None if sys.stdout.isatty() else 200
    Console(file=sys.stdout, highlight=False, soft_wrap=False, width=width).print(table())
    for note in notes:
        typer.echo(f"note: {note}", err=True)


def render_table(result):
    """The evaluation as a rich table: one row per metric, model beside reference."""
    from rich.markup import escape
    from rich.table import Table

    from ldlm.evaluate import METRICS

    repeats = len(result.seeds)
    title = (f"N = {result.num_samples} texts per side, {repeats} repeat{'s' if repeats > 1 else ''}"
             + (" (mean ± std)" if repeats > 1 else ""))
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    rows = list(result.rows)
    headers = {"model": "generated", "reference": "human reference"}
    for row in rows:
        table.add_column(headers.get(row, row), justify="right")

    def cell(row: str, metric) -> str:
        s = result.summary(row, metric.key)
        if s is None:
            return "-"
        d = metric.digits
        return f"{s[0]:.{d}f}" + (f" ± {s[1]:.{d}f}" if repeats > 1 else "")

    for metric in METRICS:
        if not any(result.summary(row, metric.key) for row in rows):
            continue
        label = metric.describe(result) if metric.describe else metric.label
        table.add_row(escape(label), *(cell(row, metric) for row in rows))
    if result.bleu:
        b = result.bleu
        table.add_row(escape(f"BLEU (paired, {b['pairs']} texts, {b['references_per_text']:.1f} refs each)"),
                      f"{b['bleu']:.2f}", *(["-"] * (len(rows) - 1)))
    if result.latent_fd:
        f = result.latent_fd
        table.add_row(f"latent FD ({f['latents']} vs {f['reference_latents']} latents)",
                      f"{f['fd']:.4g}", *(["-"] * (len(rows) - 1)))
    return table


def render_class_table(result):
    """The per-class evaluation as a rich table: per class (and their mean) a row of generated
    texts and a row of held-out human texts, one column per metric."""
    from rich.markup import escape
    from rich.table import Table

    from ldlm.evaluate import CLASS_LABELS, METRICS

    repeats = len(result.seeds)
    title = (f"Per class: N = {result.num_samples} texts per side, {repeats} "
             f"repeat{'s' if repeats > 1 else ''}" + (" (mean ± std)" if repeats > 1 else "")
             + (f"; MAUVE on {result.mauve_features}" if result.mauve_features else "")
             + f"; {result.tokenize} tokens")
    groups = [*result.classes, None]  # None: the mean over the classes
    keys = [k for k in CLASS_LABELS if k not in ("distinct_1", "distinct_2")  # dist-n: in the JSON
            and any(result.summary(c, row, k) for c in groups for row in ("model", "reference"))]
    table = Table(title=escape(title), title_justify="left")
    table.add_column("class")
    table.add_column("texts")
    for key in keys:
        table.add_column(CLASS_LABELS[key], justify="right")
    digits = {m.key: m.digits for m in METRICS}

    def cell(cls, row, key) -> str:
        s = result.summary(cls, row, key)
        if s is None:
            return "-"
        d = digits[key]
        return f"{s[0]:.{d}f}" + (f" ± {s[1]:.{d}f}" if repeats > 1 else "")

    for cls in groups:
        for row, shown in (("model", "generated"), ("reference", "human")):
            if cls is None and row == "model":
                table.add_section()
            if not any(result.summary(cls, row, k) for k in keys):
                continue
            name = ("mean" if cls is None else escape(cls)) if row == "model" else ""
            table.add_row(name, shown, *(cell(cls, row, k) for k in keys))
    if result.ceiling:
        c = result.ceiling
        per = ", ".join(f"{escape(k)} {v:.3f}" for k, v in c["per_class"].items())
        table.caption = (escape(f"class accuracy: {result.classifier}; ") + f"its accuracy on all "
                         f"{c['texts']:,} references (the ceiling): {c['accuracy']:.3f} ({per})")
        table.caption_justify = "left"
    return table
