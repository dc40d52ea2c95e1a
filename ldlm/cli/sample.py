"""ldlm sample"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ldlm.args import SamplingArgs
from ldlm.cli.app import command
from ldlm.cli.console import RichReporter
from ldlm.cli.fields import with_fields
from ldlm.cli.options import Device
from ldlm.errors import InputError
from ldlm.recipe import FLUENCY_WEIGHT, RERANKER_WEIGHT, VARIATION_STRENGTH


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def _init(init_text, init_file, strength):
    """The texts to start from (None: plain sampling from noise), with the flags checked."""
    from ldlm.sample import Init

    if init_text and init_file is not None:
        raise InputError("--init-text and --init-file both given; pass one of them")
    if not init_text and init_file is None:
        if strength is not None:
            raise InputError("--strength applies to variations; add --init-text TEXT or --init-file "
                             "FILE, or drop it")
        return None
    if init_file is not None:
        from ldlm.variations import read_init_file

        init_text = read_init_file(init_file)
    return Init(list(init_text), VARIATION_STRENGTH if strength is None else strength)


def _conditions(condition, condition_file, guidance_scale, mbr, rerank_slots, reranker, reranker_weight,
                fluency_weight):
    """The conditions to sample and the MBR options (None: unconditional), with the flags checked."""
    from ldlm.mbr import MBRArgs
    from ldlm.sample import Conditions

    if condition and condition_file is not None:
        raise InputError("--condition and --condition-file both given; pass one of them")
    if not condition and condition_file is None:
        for flag, value in (("--guidance-scale", guidance_scale), ("--mbr", mbr),
                            ("--rerank-slots", rerank_slots or None), ("--reranker", reranker)):
            if value is not None:
                raise InputError(f"{flag} applies to conditional sampling; add --condition VALUE or "
                                 "--condition-file FILE, or drop it")
        return None, None
    if mbr is None:
        for flag, value in (("--rerank-slots", rerank_slots or None), ("--reranker", reranker)):
            if value is not None:
                raise InputError(f"{flag} chooses among --mbr candidates; add --mbr N (e.g. 40) or "
                                 f"drop {flag}")
    if condition_file is not None:
        from ldlm.conditions import read_condition_file

        values = read_condition_file(condition_file)
    else:
        values = list(condition)
        for i, value in enumerate(values):
            if not value.strip():
                raise InputError(f"--condition number {i + 1} is empty; give a label or a text")
    mbr_args = None if mbr is None else MBRArgs(mbr, rerank_slots, reranker, reranker_weight, fluency_weight)
    return Conditions(values, 1.0 if guidance_scale is None else guidance_scale), mbr_args

# `ldlm sample --help` groups its options: the plain ones first, then these panels (and
# ldlm.args.SAMPLER_PANEL)
VARIATIONS_PANEL = "Variations of texts (SDEdit)"
CONDITIONS_PANEL = "Conditions (--conditional runs)"
RERANKING_PANEL = "Reranking candidates (--mbr)"


@command("sample", keeps=False)
@with_fields(SamplingArgs, "args")
def sample_cmd(
    run_dir: Annotated[Path, typer.Argument(help="RUN_DIR written by `ldlm train`.")],
    args: SamplingArgs = None,  # its fields are the sampler's options (with_fields)
    out: Annotated[str | None, typer.Option(
        help="Latent file to write, or a path ending in .zarr for a latent store; '-' (the default "
        "where stdout is not a terminal) is the latent stream on stdout, for `| ldlm decode`.")] = None,
    overwrite: Annotated[bool, typer.Option(
        help="Replace an existing --out latent file or store (the old one stays until the new one is "
        "whole).")] = False,
    device: Device = None,
    init_text: Annotated[list[str] | None, typer.Option(
        rich_help_panel=VARIATIONS_PANEL,
        help="Start from this text instead of noise (SDEdit variations; repeatable); "
        "--num-samples variations of each.")] = None,
    init_file: Annotated[Path | None, typer.Option(
        rich_help_panel=VARIATIONS_PANEL,
        help="Start from the texts of this file, one per line.")] = None,
    strength: Annotated[float | None, typer.Option(
        rich_help_panel=VARIATIONS_PANEL,
        help="With --init-text/--init-file: how much to change the text, in (0, 1]; near 0 keeps "
        f"it, 1 is plain sampling (default {VARIATION_STRENGTH}).")] = None,
    autoencoder: Annotated[Path | None, typer.Option(
        help="The autoencoder of this sampling (default: the run's; it must define the run's latent "
        "space, e.g. an `ldlm adapt-decoder` one): it encodes --init-text/--init-file, decodes --mbr "
        "candidates, and is the one the output names for `ldlm decode`.")] = None,
    condition: Annotated[list[str] | None, typer.Option(
        rich_help_panel=CONDITIONS_PANEL,
        help="Generate text about this condition (a class label or a conditioning text) with a "
        "--conditional run (repeatable); --num-samples per condition.")] = None,
    condition_file: Annotated[Path | None, typer.Option(
        rich_help_panel=CONDITIONS_PANEL,
        help="The conditions of this file, one per line.")] = None,
    guidance_scale: Annotated[float | None, typer.Option(
        rich_help_panel=CONDITIONS_PANEL,
        help="Classifier-free guidance W: uncond + W * (cond - uncond); 1 is plain conditional, "
        "0 unconditional (default 1).")] = None,
    mbr: Annotated[int | None, typer.Option(
        rich_help_panel=RERANKING_PANEL,
        help="With conditions: draw N candidates per sample, decode them and keep the one with the "
        "highest mean BLEU against the others (minimum Bayes risk).")] = None,
    rerank_slots: Annotated[bool, typer.Option(
        "--rerank-slots", rich_help_panel=RERANKING_PANEL,
        help="With --mbr and structured conditions (key[value], ...): keep the "
        "candidates that miss the fewest of the condition's values and state the fewest other "
        "known values, then the MBR choice among them.")] = False,
    reranker: Annotated[Path | None, typer.Option(
        rich_help_panel=RERANKING_PANEL,
        help="With --mbr: a condition classifier (`ldlm train-classifier` on the run's store); keep "
        "the candidate with the highest MBR score + --reranker-weight x log p(condition | text).")
    ] = None,
    reranker_weight: Annotated[float, typer.Option(
        rich_help_panel=RERANKING_PANEL,
        help="BLEU points per nat of the --reranker's log-likelihood (0: MBR alone).")] = RERANKER_WEIGHT,
    fluency_weight: Annotated[float, typer.Option(
        rich_help_panel=RERANKING_PANEL,
        help="With --reranker: BLEU points per nat per word of log p(text) under the classifier's "
        "language model of the store's texts (0: no fluency term).")] = FLUENCY_WEIGHT,
) -> None:
    """Generate latents from noise with a trained run, or variations of given texts
    (--init-text, --init-file). The same seed and batch size give the same latents."""
    from ldlm.sample import sample, save_samples

    args.check()
    init = _init(init_text, init_file, strength)
    conditions, mbr_args = _conditions(condition, condition_file, guidance_scale, mbr, rerank_slots,
                                       reranker, reranker_weight, fluency_weight)
    from ldlm.outputs import check_output, is_stdout

    if is_stdout(out):
        out = None  # `--out -`: the stream on stdout, as without --out
    if overwrite and out is None:
        raise InputError("--overwrite replaces an --out latent file or store; add --out PATH or drop it")
    if out is None and stdout_is_terminal():
        raise InputError("stdout is a terminal, not a place for binary latents; pass --out PATH or "
                         "pipe into `ldlm decode`")
    if out is not None:
        from ldlm.store import is_url, store_location

        out = store_location(out)  # file:// -> a local path; an uninstalled protocol is refused here
        if is_url(out) and not out.rstrip("/").endswith(".zarr"):
            raise InputError(f"--out {out!r}: latent files are written to local paths; give a path, "
                             "or a URL ending in .zarr for a latent store")
        inputs = {"RUN_DIR": run_dir, "--autoencoder": autoencoder, "--init-file": init_file,
                  "--condition-file": condition_file, "--reranker": reranker}
        check_output(out, "--out", "store" if out.rstrip("/").endswith(".zarr") else "latents", inputs,
                     overwrite=overwrite)
    reporter = RichReporter()
    result = sample(run_dir, args, conditions=conditions, init=init, mbr=mbr_args, autoencoder=autoencoder,
                    device=device, reporter=reporter)
    if result.truncated:  # as `ldlm encode` warns of the same cut
        reporter.log(f"warning: {result.truncated} of the texts to vary were longer than the autoencoder's "
                     "max length and were truncated (their latents hold the beginning only)")
    if out is not None:
        rows = save_samples(result, out, overwrite)
        where = f"store {out}" if out.rstrip("/").endswith(".zarr") else out
        reporter.log(f"wrote {rows} latents to {where}")
        return
    from ldlm.latent_file import LatentWriter

    writer = LatentWriter(sys.stdout.buffer, result.header)
    for x, meta in result.frames:
        writer.write(x, meta)
        sys.stdout.buffer.flush()
    writer.close()
