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


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def _write_store(path: str, batches, header, num_samples: int, batch_size: int) -> None:
    """A latent store with one chunk per batch (texts empty), complete only at the end."""
    import numpy as np

    from ldlm.store import LatentStore

    store = LatentStore.create(path, rows=num_samples, latent_shape=header.latent_shape,
                               chunk_rows=batch_size, attributes={
                                   "latent_space": header.latent_space,
                                   "autoencoder": header.autoencoder, "source": header.extra["run"],
                                   "split": "sample", "column": None, **header.extra})
    for chunk, x in enumerate(batches):
        store.write_chunk(chunk, x, [""] * len(x), np.zeros(len(x), np.int32))
    store.finalize()


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
) -> None:
    """Generate latents from noise with a trained run. The same seed and batch size give the
    same latents."""
    from ldlm.sample import check_sample_args, header_for, iter_samples, load_run

    check_sample_args(num_samples, num_inference_steps, scheduler, batch_size)
    if out is None and stdout_is_terminal():
        raise InputError("stdout is a terminal, not a place for binary latents; pass --out PATH or "
                         "pipe into `ldlm decode`")
    dev = pick_device(device)
    run = load_run(run_dir, dev)
    header = header_for(run, scheduler, num_inference_steps, seed)
    batch_size = batch_size or min(num_samples, 256)
    reporter = RichReporter()
    batches = iter_samples(run, num_samples, num_inference_steps, scheduler, seed, batch_size, dev,
                           reporter)
    if out is not None and out.rstrip("/").endswith(".zarr"):
        _write_store(out, batches, header, num_samples, batch_size)
        reporter.log(f"wrote {num_samples} latents to store {out}")
        return
    from ldlm.stream import LatentWriter

    if out is not None:
        from ldlm.atomic import atomic_file

        Path(out).parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(out) as fh:
            writer = LatentWriter(fh, header)
            for x in batches:
                writer.write(x)
            writer.close()
        reporter.log(f"wrote {num_samples} latents to {out}")
        return
    writer = LatentWriter(sys.stdout.buffer, header)
    for x in batches:
        writer.write(x)
        sys.stdout.buffer.flush()
    writer.close()
