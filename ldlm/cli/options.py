"""Option and argument types shared by several commands."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

Data = Annotated[str, typer.Argument(
    help="Hugging Face dataset id, or a local txt/csv/json/jsonl/parquet file or folder.")]
TextColumn = Annotated[str, typer.Option(help="Column holding the text.")]
Split = Annotated[str, typer.Option(help="Dataset split.")]
Seed = Annotated[int, typer.Option(help="Random seed.")]
Device = Annotated[str | None, typer.Option(
    help="torch device, e.g. cpu or cuda:0 (default: cuda when available).")]
MixedPrecision = Annotated[Literal["fp16", "bf16", "no"], typer.Option(
    help="Mixed precision (accelerate).")]


def pick_device(device: str | None) -> str:
    import torch

    from ldlm.errors import InputError

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise InputError(f"--device {device!r} is not a torch device; use cpu or cuda:N") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {device!r} asked, but CUDA is not available; use --device cpu")
    return device
