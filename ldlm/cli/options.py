"""Option and argument types shared by several commands."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from ldlm.budget import CLOCKS, BudgetArgs
from ldlm.distributed import MIXED_PRECISIONS
from ldlm.fields import options_of

Data = Annotated[str, typer.Argument(
    help="Hugging Face dataset id, or a local txt/csv/json/jsonl/parquet file or folder.")]
TextColumn = Annotated[str, typer.Option(help="Column holding the text.")]
Split = Annotated[str, typer.Option(help="Dataset split.")]
Seed = Annotated[int, typer.Option(help="Random seed.")]
Device = Annotated[str | None, typer.Option(
    help="torch device, e.g. cpu or cuda:0 (default: cuda when available).")]
MixedPrecision = Annotated[Literal[MIXED_PRECISIONS], typer.Option(
    help="Mixed precision (accelerate).")]
_BUDGET = {f.name: f.metadata["help"] for f in options_of(BudgetArgs)}  # the help written once
MaxMinutes = Annotated[float | None, typer.Option(help=_BUDGET["max_minutes"])]
BudgetClock = Annotated[Literal[tuple(CLOCKS)], typer.Option(help=_BUDGET["budget_clock"])]
