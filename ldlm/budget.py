"""How long a trainer runs (`--max-steps`, `--max-minutes`, `--budget-clock`): the fields every
trainer's options share (`BudgetArgs`), the clocks, the spent time that checkpoints carry, and
the checks. No torch here: the command line reads it at start-up. The planning itself (steps
from the measured pace, the re-laid learning-rate cosine) is `ldlm.loop.TrainingLoop.plan`,
and the loop that follows the plan is `ldlm.loop.TrainingLoop.run`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Literal

from ldlm.errors import InputError
from ldlm.fields import option

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}  # --budget-clock choices
ClockName = Literal[tuple(CLOCKS)]  # a --budget-clock value
PLAN_EVERY = 10  # optimiser steps between two looks at a time budget's pace
UNCAPPED = 10**9  # the step cap of a run that only a time budget ends
MAX_MINUTES = 60 * 24 * 366  # the longest --max-minutes: a year (past it, minutes no timer plans with)


def planned_steps(max_steps: int | None, max_minutes: float | None, default: int) -> int:
    """The steps a trainer is told to take: `max_steps`, else `default` without a time budget,
    else no cap but the budget's."""
    if max_steps is not None:
        return max_steps
    return default if max_minutes is None else UNCAPPED


def check_budget(max_minutes: float | None, clock: str) -> None:
    """Refuse a time budget that is not a positive number of minutes up to a year (its seconds
    must plan steps: 1e308 minutes is infinite seconds), or an unknown clock."""
    if max_minutes is not None and not (math.isfinite(max_minutes) and max_minutes > 0):
        raise InputError(f"--max-minutes {max_minutes} must be a positive number of minutes")
    if max_minutes is not None and max_minutes > MAX_MINUTES:
        raise InputError(f"--max-minutes {max_minutes:g} is more than a year ({MAX_MINUTES} minutes), the "
                         "longest budget ldlm plans; give fewer minutes, or drop --max-minutes to train "
                         "for --max-steps")
    if clock not in CLOCKS:
        raise InputError(f"--budget-clock {clock!r} is not one of {', '.join(CLOCKS)}")


@dataclass
class BudgetArgs:
    """The options that say how long a trainer runs, declared once: `ldlm train`,
    `train-autoencoder` and `adapt-decoder` take them (their option classes derive from this
    one), each flag named as its field."""

    max_steps: int | None = option(
        None, "Optimiser steps (default: the trainer's, or what --max-minutes allows).")
    max_minutes: float | None = option(
        None, "Time budget in minutes: the steps and the learning-rate schedule are planned from the "
        "measured pace to end near it, on a whole checkpoint and a saved model (with --max-steps: "
        "whichever comes first).")
    budget_clock: ClockName = option(
        "wall", "The clock --max-minutes counts on: wall time, or this process's CPU time (all its "
        "threads together; what a busy machine does not inflate).")

    def check_budget(self) -> None:
        """Refuse a step count under 1, a time budget that is not a positive number of minutes up
        to a year, or an unknown clock (InputError)."""
        if self.max_steps is not None and self.max_steps < 1:
            raise InputError(f"--max-steps {self.max_steps} must be at least 1")
        check_budget(self.max_minutes, self.budget_clock)

    def loop_budget(self, default_steps: int, default_is_asked: bool = False) -> dict:
        """`ldlm.loop.LoopArgs`' max_steps, max_seconds and clock: the step cap is `max_steps`,
        else `default_steps` without a time budget (or whatever the budget when the user asked
        for that length: train's --num-epochs), else only the budget's."""
        minutes = None if default_is_asked else self.max_minutes
        return {"max_steps": planned_steps(self.max_steps, minutes, default_steps),
                "max_seconds": None if self.max_minutes is None else 60 * self.max_minutes,
                "clock": self.budget_clock}


class Clock:
    """Seconds spent on a budget's clock, over every resume of a run (checkpointed)."""

    def __init__(self, clock: str = "wall"):
        self.now = CLOCKS[clock]
        self.before, self.start = 0.0, self.now()  # spent by earlier processes; this one's start

    def spent(self) -> float:
        return self.before + self.now() - self.start

    def state_dict(self) -> dict:
        return {"spent": self.spent()}

    def load_state_dict(self, state: dict) -> None:
        spent = float(state["spent"])  # ValueError for "abc": the loader names the file
        if not 0 <= spent < float("inf"):
            raise ValueError(f"spent {spent} is not a finite number of seconds >= 0")
        self.before, self.start = spent, self.now()


__all__ = ["CLOCKS", "PLAN_EVERY", "MAX_MINUTES", "UNCAPPED", "BudgetArgs", "Clock", "check_budget",
           "planned_steps"]
