"""ldlm train-autoencoder"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from ldlm.cli.app import command
from ldlm.cli.console import RichReporter
from ldlm.cli.options import BudgetClock, Data, MaxMinutes, MixedPrecision, Seed, Split, TextColumn
from ldlm.errors import InputError
from ldlm.recipe import AE_LATENT_NOISE, AE_STEPS, AE_WORD_DROPOUT, SIZES


def _holds_anything(out: Path) -> bool:
    """True when `out` holds more than the hidden leftovers of a run killed early."""
    return any(not p.name.startswith((".checkpoint-", ".final.tmp-")) for p in out.iterdir())


@command("train-autoencoder", resume="--resume")
def train_autoencoder_cmd(
    data: Data,
    out: Annotated[Path, typer.Option("--out", help="Folder to save the autoencoder in.")],
    text_column: TextColumn = "text",
    split: Split = "train",
    encoder: Annotated[str | None, typer.Option(
        help="Pretrained encoder (hub id or folder, any AutoModel); default: train one from "
        "scratch.")] = None,
    pooling: Annotated[Literal["mean", "queries"] | None, typer.Option(
        help="mean: k = 1 mean of the last hidden states; queries: k learned queries "
        "(default: mean with --encoder, queries without).")] = None,
    decoder: Annotated[str | None, typer.Option(
        help="Pretrained causal LM (hub id or folder); default: GPT-2 from scratch.")] = None,
    size: Annotated[Literal[SIZES], typer.Option(
        help="Size of the parts built from scratch.")] = "small",
    latent_tokens: Annotated[int | None, typer.Option(
        help="k, latent vectors per text (queries pooling; default 8).")] = None,
    latent_dim: Annotated[int | None, typer.Option(
        help="d, width of each latent vector (default: 64, or the hidden size for mean).")] = None,
    max_length: Annotated[int | None, typer.Option(
        help="Tokens per text, encoder and decoder (default: measured, the 99th percentile of the "
        "corpus's token lengths; the share of texts it cuts is reported either way).")] = None,
    latent_noise: Annotated[float, typer.Option(
        help="Std of Gaussian noise on latents while training the decoder.")] = AE_LATENT_NOISE,
    latent_noise_max: Annotated[float | None, typer.Option(
        help="Draw each text's noise std from [--latent-noise, this] instead of one level, so "
        "that the decoder reads latents that are off by more (default: one level).")] = None,
    encoder_layers: Annotated[int | None, typer.Option(
        help="Layers of an encoder built from scratch (default: the --size's).")] = None,
    decoder_layers: Annotated[int | None, typer.Option(
        help="Layers of a decoder built from scratch (default: the --size's).")] = None,
    word_dropout: Annotated[float, typer.Option(
        help="Share of the decoder's input tokens replaced by pad while training, so that it "
        "must read the latents (0: none).")] = AE_WORD_DROPOUT,
    max_steps: Annotated[int | None, typer.Option(
        help=f"Optimiser steps (default {AE_STEPS}, or what --max-minutes allows).")] = None,
    max_minutes: MaxMinutes = None,
    budget_clock: BudgetClock = "wall",
    batch_size: Annotated[int, typer.Option(help="Texts per step, per process.")] = 64,
    learning_rate: Annotated[float, typer.Option(help="Peak learning rate.")] = 1e-3,
    mixed_precision: MixedPrecision = "no",
    seed: Seed = 42,
    eval_rows: Annotated[int, typer.Option(
        help="Held-out texts for the reconstruction figures.")] = 500,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out folder.")] = False,
    checkpointing_steps: Annotated[int, typer.Option(
        help="Write a checkpoint-<step> folder into --out every N steps (and at the end).")] = 500,
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
    from ldlm.autoencoder.train import AutoencoderTrainArgs, check_training, train_autoencoder
    from ldlm.data import load_texts

    resuming = resume or resume_from is not None
    from ldlm.outputs import check_output

    check_output(out, "--out", "autoencoder", {"DATA": data, "--encoder": encoder, "--decoder": decoder})
    if resuming and overwrite:
        raise InputError("--resume and --overwrite contradict each other; drop one")
    if out.exists() and not overwrite and not resuming and _holds_anything(out):
        hint = "pass --resume to continue its checkpoints, " if any(out.glob("checkpoint-*")) else ""
        raise InputError(f"--out {str(out)!r} already exists; {hint}choose a new folder or pass "
                         "--overwrite")
    config = AutoencoderConfig(
        encoder_source=encoder, decoder_source=decoder, pooling=pooling, size=size,
        latent_tokens=latent_tokens, latent_dim=latent_dim, max_length=max_length,
        latent_noise=latent_noise, latent_noise_max=latent_noise_max, word_dropout=word_dropout,
        encoder_layers=encoder_layers, decoder_layers=decoder_layers,
    )
    args = AutoencoderTrainArgs(max_steps=max_steps, max_minutes=max_minutes, budget_clock=budget_clock,
                        batch_size=batch_size, learning_rate=learning_rate,
                        mixed_precision=mixed_precision, seed=seed, eval_rows=eval_rows,
                        checkpointing_steps=checkpointing_steps,
                        resume=str(resume_from) if resume_from else ("latest" if resuming else None))
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
