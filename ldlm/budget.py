"""Time budgets for the trainers (`--max-minutes`, `--budget-clock`): the clocks, the spent
time that checkpoints carry, and the checks. No torch here: the command line reads it at
start-up. The planning itself (steps from the measured pace, the re-laid learning-rate
cosine) is `ldlm.loop.TrainingLoop.plan`.
"""

from __future__ import annotations

import math
import time

from ldlm.errors import InputError

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}  # --budget-clock choices
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


__all__ = ["CLOCKS", "PLAN_EVERY", "MAX_MINUTES", "UNCAPPED", "Clock", "check_budget", "planned_steps"]
