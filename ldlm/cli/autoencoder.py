"""ldlm train-autoencoder"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Annotated

import typer

from ldlm.args import AutoencoderOptions, AutoencoderTrainArgs
from ldlm.cli.app import command
from ldlm.cli.console import RichReporter
from ldlm.cli.fields import with_fields
from ldlm.cli.options import Data, Split, TextColumn
from ldlm.errors import InputError
from ldlm.recipe import AE_STEPS, SPLIT, TEXT_COLUMN


def _holds_anything(out: Path) -> bool:
    """True when `out` holds more than the hidden leftovers of a run killed early."""
    return any(not p.name.startswith((".checkpoint-", ".final.tmp-")) for p in out.iterdir())


@command("train-autoencoder", resume="--resume")
@with_fields(AutoencoderTrainArgs, "args", helps={"max_steps": f"Optimiser steps (default {AE_STEPS}, or "
                                                               "what --max-minutes allows)."})
@with_fields(AutoencoderOptions, "options")
def train_autoencoder_cmd(
    data: Data,
    out: Annotated[Path, typer.Option("--out", help="Folder to save the autoencoder in.")],
    text_column: TextColumn = TEXT_COLUMN,
    split: Split = SPLIT,
    options: AutoencoderOptions = None,  # its fields: what to build (with_fields)
    args: AutoencoderTrainArgs = None,  # its fields: how to train it (with_fields)
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out folder.")] = False,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue the run in --out from its latest checkpoint-<step>.")] = False,
    resume_from: Annotated[Path | None, typer.Option(
        help="Continue from this checkpoint folder instead (implies --resume).")] = None,
) -> None:
    """Train the text autoencoder that defines the latent space, and report how well it
    reconstructs held-out texts (exact match, corpus BLEU).

    Interrupted runs continue exactly with --resume (latest checkpoint in --out) or
    --resume-from OUT/checkpoint-<step>.
    """
    from ldlm.autoencoder import reconstruction_warning
    from ldlm.autoencoder.model import AutoencoderConfig
    from ldlm.autoencoder.train import check_training, train_autoencoder
    from ldlm.data import load_texts

    resuming = resume or resume_from is not None
    from ldlm.outputs import check_output

    check_output(out, "--out", "autoencoder",
                 {"DATA": data, "--encoder": options.encoder_source, "--decoder": options.decoder_source})
    if resuming and overwrite:
        raise InputError("--resume and --overwrite contradict each other; drop one")
    if out.exists() and not overwrite and not resuming and _holds_anything(out):
        hint = "pass --resume to continue its checkpoints, " if any(out.glob("checkpoint-*")) else ""
        raise InputError(f"--out {str(out)!r} already exists; {hint}choose a new folder or pass "
                         "--overwrite")
    config = AutoencoderConfig(**asdict(options))
    args = replace(args, resume=str(resume_from) if resume_from else ("latest" if resuming else None))
    check_training(config, args)  # every flag before the data is read
    reporter = RichReporter()
    rows = load_texts(data, text_column=text_column, split=split)
    if rows.skipped:
        reporter.log(f"skipped {rows.skipped} rows that are empty or not text")
    model, scores = train_autoencoder(rows, out, config, args, reporter=reporter, overwrite=overwrite)
    from ldlm.distributed import ranks

    if not ranks().is_main:  # under `accelerate launch`, the main process speaks for all
        return
    k, d = model.latent_shape
    typer.echo(f"saved {out} (latent space {model.fingerprint}, latents {k} x {d})")
    if scores:
        typer.echo(f"reconstruction on {scores.rows} held-out texts: exact match "
                   f"{scores.exact_match:.3f}, BLEU {scores.bleu:.2f}")
        warning = reconstruction_warning(scores.as_dict())
        if warning:
            reporter.log(warning)
