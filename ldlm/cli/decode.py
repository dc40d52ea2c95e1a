"""ldlm decode"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from ldlm.args import DecodeArgs
from ldlm.cli.app import command
from ldlm.cli.console import RichReporter
from ldlm.cli.fields import with_fields
from ldlm.cli.options import Device
from ldlm.distributed import pick_device


@command("decode", keeps=False)
@with_fields(DecodeArgs, "args")
def decode_cmd(
    latents: Annotated[str | None, typer.Argument(
        help="A latent file, a latent store (reconstruction), or '-' / nothing for stdin.")] = None,
    autoencoder: Annotated[Path | None, typer.Option(
        help="Autoencoder folder (default: the one the latents name).")] = None,
    args: DecodeArgs = None,  # its fields are the decoding options (with_fields)
    device: Device = None,
    format: Annotated[Literal["text", "jsonl"], typer.Option(
        help="text: one line per sample; jsonl: one JSON object per sample.")] = "text",
    out: Annotated[Path | None, typer.Option(
        help="Write the texts to this file instead of stdout (all of them or, after a failure "
        "or an interruption, none); '-' is stdout. Never a latent file.")] = None,
) -> None:
    """Turn latents into text: one sample per line on stdout (or --out FILE)."""
    from ldlm.decode import decode_latents, open_latents, resolve_autoencoder

    args.check()
    from ldlm.outputs import check_output, is_stdout

    if is_stdout(out):
        out = None
    if out is not None:
        check_output(out, "--out", "text", {"LATENTS": latents, "--autoencoder": autoencoder})
    source = open_latents(latents)
    model = resolve_autoencoder(source, str(autoencoder) if autoencoder else None,
                                device=pick_device(device))
    records = decode_latents(source, model, args, reporter=RichReporter())
    if out is None:
        _write(records, sys.stdout, format)
        return
    from ldlm.atomic import atomic_file

    with atomic_file(out, "w") as fh:
        rows = _write(records, fh, format)
    typer.echo(f"wrote {rows} texts to {out}", err=True)


def _write(records, fh, format: str) -> int:
    """One line per record, flushed as it comes (a pipe sees texts as they are decoded)."""
    rows = 0
    for record in records:
        if format == "jsonl":
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        else:
            fh.write(record["text"].replace("\n", " ") + "\n")
        fh.flush()
        rows += 1
    return rows
