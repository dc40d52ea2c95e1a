"""ldlm sample"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from ldlm.cli.app import command
from ldlm.cli.console import RichReporter
from ldlm.cli.options import Device, Seed, pick_device
from ldlm.errors import InputError
from ldlm.mbr import FLUENCY_WEIGHT, RERANKER_WEIGHT


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def _write_store(path: str, frames, header, num_samples: int, batch_size: int) -> None:
    """A latent store with one chunk per batch (texts: the source texts of variations, else
    empty), complete only at the end."""
    import numpy as np

    from ldlm.store import LatentStore

    store = LatentStore.create(path, rows=num_samples, latent_shape=header.latent_shape,
                               chunk_rows=batch_size, attributes={
                                   "latent_space": header.latent_space,
                                   "autoencoder": header.autoencoder, "source": header.extra["run"],
                                   "split": "sample", "column": None, **header.extra})
    for chunk, (x, meta) in enumerate(frames):
        texts = [m.get("source", "") for m in meta] if meta else [""] * len(x)
        store.write_chunk(chunk, x, texts, np.zeros(len(x), np.int32))
    store.finalize()


def _init_texts(init_text, init_file, strength, num_inference_steps) -> list[str] | None:
    """The texts to start from (None: plain sampling from noise), with the flags checked."""
    if init_text and init_file is not None:
        raise InputError("--init-text and --init-file both given; pass one of them")
    if not init_text and init_file is None:
        if strength is not None:
            raise InputError("--strength applies to variations; add --init-text TEXT or --init-file "
                             "FILE, or drop it")
        return None
    from ldlm.variations import DEFAULT_STRENGTH, check_strength, check_texts, read_init_file

    check_strength(DEFAULT_STRENGTH if strength is None else strength, num_inference_steps)
    if init_file is not None:
        return read_init_file(init_file)
    return check_texts(init_text)


def _conditions(condition, condition_file, guidance_scale, mbr, init,
                rerank_slots: bool = False, reranker: Path | None = None) -> list[str] | None:
    """The conditions to sample (None: unconditional), with the flags checked."""
    if condition and condition_file is not None:
        raise InputError("--condition and --condition-file both given; pass one of them")
    if not condition and condition_file is None:
        for flag, value in (("--guidance-scale", guidance_scale), ("--mbr", mbr),
                            ("--rerank-slots", rerank_slots or None), ("--reranker", reranker)):
            if value is not None:
                raise InputError(f"{flag} applies to conditional sampling; add --condition VALUE or "
                                 "--condition-file FILE, or drop it")
        return None
    if init:
        raise InputError("--condition and --init-text/--init-file cannot be combined; pass one of them")
    from ldlm.conditions import check_guidance_scale, read_condition_file

    if guidance_scale is not None:
        check_guidance_scale(guidance_scale)
    if mbr is not None and mbr < 1:
        raise InputError(f"--mbr {mbr} must be at least 1 (candidates per sample)")
    if condition_file is not None:
        return read_condition_file(condition_file)
    for i, value in enumerate(condition):
        if not value.strip():
            raise InputError(f"--condition number {i + 1} is empty; give a label or a text")
    return list(condition)


@command("sample")
def sample_cmd(
    run_dir: Annotated[Path, typer.Argument(help="RUN_DIR written by `ldlm train`.")],
    num_samples: Annotated[int, typer.Option(help="Latents to generate.")] = 5,
    num_inference_steps: Annotated[int, typer.Option(help="Denoising steps.")] = 1000,
    scheduler: Annotated[Literal["ddpm", "ddim", "dpm-solver"], typer.Option(
        help="Sampler (built from the run's noise schedule).")] = "ddpm",
    seed: Seed = 42,
    out: Annotated[str | None, typer.Option(
        help="Latent file to write, or a path ending in .zarr for a latent store (default: the "
        "latent stream on stdout, for `| ldlm decode`).")] = None,
    device: Device = None,
    batch_size: Annotated[int | None, typer.Option(
        help="Latents denoised together (default: up to 256).")] = None,
    init_text: Annotated[list[str] | None, typer.Option(
        help="Start from this text instead of noise (SDEdit variations; repeatable); "
        "--num-samples variations of each.")] = None,
    init_file: Annotated[Path | None, typer.Option(
        help="Start from the texts of this file, one per line.")] = None,
    strength: Annotated[float | None, typer.Option(
        help="With --init-text/--init-file: how much to change the text, in (0, 1]; near 0 keeps "
        "it, 1 is plain sampling (default 0.3).")] = None,
    autoencoder: Annotated[Path | None, typer.Option(
        help="The autoencoder of this sampling (default: the run's; it must define the run's latent "
        "space, e.g. an `ldlm adapt-decoder` one): it encodes --init-text/--init-file, decodes --mbr "
        "candidates, and is the one the output names for `ldlm decode`.")] = None,
    condition: Annotated[list[str] | None, typer.Option(
        help="Generate text about this condition (a class label or a conditioning text) with a "
        "--conditional run (repeatable); --num-samples per condition.")] = None,
    condition_file: Annotated[Path | None, typer.Option(
        help="The conditions of this file, one per line.")] = None,
    guidance_scale: Annotated[float | None, typer.Option(
        help="Classifier-free guidance W: uncond + W * (cond - uncond); 1 is plain conditional, "
        "0 unconditional (default 1).")] = None,
    mbr: Annotated[int | None, typer.Option(
        help="With conditions: draw N candidates per sample, decode them and keep the one with the "
        "highest mean BLEU against the others (minimum Bayes risk).")] = None,
    noise_scale: Annotated[float, typer.Option(
        help="Multiply the starting noise: 1 samples the model's distribution, below 1 likelier "
        "samples, 0 one deterministic sample per condition with ddim or dpm-solver (on E2E, 0 to "
        "0.3 gave far higher BLEU). Not with --init-text/--init-file.")] = 1.0,
    rerank_slots: Annotated[bool, typer.Option(
        "--rerank-slots", help="With --mbr and structured conditions (key[value], ...): keep the "
        "candidates that miss the fewest of the condition's values and state the fewest other "
        "known values, then the MBR choice among them.")] = False,
    reranker: Annotated[Path | None, typer.Option(
        help="With --mbr: a condition classifier (`ldlm train-classifier` on the run's store); keep "
        "the candidate with the highest MBR score + --reranker-weight x log p(condition | text).")
    ] = None,
    reranker_weight: Annotated[float, typer.Option(
        help="BLEU points per nat of the --reranker's log-likelihood (0: MBR alone).")] = RERANKER_WEIGHT,
    fluency_weight: Annotated[float, typer.Option(
        help="With --reranker: BLEU points per nat per word of log p(text) under the classifier's "
        "language model of the store's texts (0: no fluency term).")] = FLUENCY_WEIGHT,
) -> None:
    """Generate latents from noise with a trained run, or variations of given texts
    (--init-text, --init-file). The same seed and batch size give the same latents."""
    from ldlm.diffusion import check_noise_scale
    from ldlm.sample import check_sample_args, header_for, iter_samples, load_run

    check_sample_args(num_samples, num_inference_steps, scheduler, batch_size)
    check_noise_scale(noise_scale)
    if noise_scale != 1 and (init_text or init_file is not None):
        raise InputError(f"--noise-scale {noise_scale} applies to sampling from noise; variations "
                         "set how far to move from the text with --strength; drop --noise-scale")
    values = _conditions(condition, condition_file, guidance_scale, mbr, init_text or init_file,
                         rerank_slots, reranker)
    texts = _init_texts(init_text, init_file, strength, num_inference_steps)
    total = num_samples if texts is None else num_samples * len(texts)
    if values is not None:
        total = num_samples * len(values)
    if out is None and stdout_is_terminal():
        raise InputError("stdout is a terminal, not a place for binary latents; pass --out PATH or "
                         "pipe into `ldlm decode`")
    if out is not None:
        from ldlm.store import is_url, store_location

        out = store_location(out)  # file:// -> a local path; an uninstalled protocol is refused here
        if is_url(out) and not out.rstrip("/").endswith(".zarr"):
            raise InputError(f"--out {out!r}: latent files are written to local paths; give a path, "
                             "or a URL ending in .zarr for a latent store")
    if out is not None and not is_url(out):
        from ldlm.atomic import check_output_path

        check_output_path(out, "--out", folder=out.rstrip("/").endswith(".zarr"))
    dev = pick_device(device)
    run = load_run(run_dir, dev)
    batch_size = batch_size or min(total, 256)
    reporter = RichReporter()
    model = None  # the autoencoder, loaded once where this sampling needs or names one
    if autoencoder is not None or texts is not None:
        from ldlm.variations import run_autoencoder

        model = run_autoencoder(run, autoencoder, dev)  # refuses one from another latent space
    if values is not None:
        from ldlm.conditions import encode_for_run, iter_conditional

        encode_for_run(run.meta, run.path, values)  # refuses bad conditions before any work
        if rerank_slots:
            from ldlm.conditions import rerank_slot_values

            rerank_slot_values(run.meta, run.path, mbr)
        classifier = None
        if reranker is not None:
            from ldlm.classifier import ConditionClassifier
            from ldlm.conditions import check_reranker

            classifier = ConditionClassifier.from_pretrained(reranker)
            check_reranker(classifier, run.meta, run.path, mbr, reranker_weight, fluency_weight)
        header = header_for(run, scheduler, num_inference_steps, seed)
        w = 1.0 if guidance_scale is None else guidance_scale
        header.extra.update({"guidance_scale": w, "mbr": mbr, "rerank_slots": rerank_slots,
                             "conditions": len(values)})
        if classifier is not None:
            header.extra.update({"reranker": str(reranker), "reranker_weight": reranker_weight,
                                 "fluency_weight": fluency_weight})
        frames = iter_conditional(run, values, num_samples, w, num_inference_steps, scheduler, seed,
                                  batch_size, dev, reporter, mbr, model,
                                  rerank_slots=rerank_slots, noise_scale=noise_scale,
                                  reranker=classifier, reranker_weight=reranker_weight,
                                  fluency_weight=fluency_weight)
    elif texts is None:
        header = header_for(run, scheduler, num_inference_steps, seed)
        frames = ((x, None) for x in iter_samples(run, num_samples, num_inference_steps, scheduler,
                                                  seed, batch_size, dev, reporter,
                                                  noise_scale=noise_scale))
    else:
        from ldlm.variations import DEFAULT_STRENGTH, iter_variations, variations_header

        strength = DEFAULT_STRENGTH if strength is None else strength
        header = variations_header(run, scheduler, num_inference_steps, seed, strength, autoencoder)
        frames = iter_variations(run, model, texts, strength, num_samples, num_inference_steps,
                                 scheduler, seed, batch_size, dev, reporter)
    if autoencoder is not None:  # the output names it, so `ldlm decode` finds it by itself
        from ldlm.variations import autoencoder_location

        header.autoencoder = autoencoder_location(autoencoder)
    if noise_scale != 1:
        header.extra["noise_scale"] = noise_scale
    num_samples = total
    if out is not None and out.rstrip("/").endswith(".zarr"):
        _write_store(out, frames, header, num_samples, batch_size)
        reporter.log(f"wrote {num_samples} latents to store {out}")
        return
    from ldlm.stream import LatentWriter

    if out is not None:
        from ldlm.atomic import atomic_file

        Path(out).parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(out) as fh:
            writer = LatentWriter(fh, header)
            for x, meta in frames:
                writer.write(x, meta)
            writer.close()
        reporter.log(f"wrote {num_samples} latents to {out}")
        return
    writer = LatentWriter(sys.stdout.buffer, header)
    for x, meta in frames:
        writer.write(x, meta)
        sys.stdout.buffer.flush()
    writer.close()
