"""Option and argument types shared by several commands."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from ldlm.budget import CLOCKS
from ldlm.distributed import MIXED_PRECISIONS

Data = Annotated[str, typer.Argument(
    help="Hugging Face dataset id, or a local txt/csv/json/jsonl/parquet file or folder.")]
TextColumn = Annotated[str, typer.Option(help="Column holding the text.")]
Split = Annotated[str, typer.Option(help="Dataset split.")]
Seed = Annotated[int, typer.Option(help="Random seed.")]
Device = Annotated[str | None, typer.Option(
    help="torch device, e.g. cpu or cuda:0 (default: cuda when available).")]
MixedPrecision = Annotated[Literal[MIXED_PRECISIONS], typer.Option(
    help="Mixed precision (accelerate).")]
MaxMinutes = Annotated[float | None, typer.Option(
    help="Time budget in minutes: the steps and the learning-rate schedule are planned from the "
    "measured pace to end near it, on a whole checkpoint and a saved model (with --max-steps: "
    "whichever comes first).")]
BudgetClock = Annotated[Literal[tuple(CLOCKS)], typer.Option(
    help="The clock --max-minutes counts on: wall time, or this process's CPU time (all its "
    "threads together; what a busy machine does not inflate).")]
