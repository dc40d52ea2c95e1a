"""The project's exceptions, each carrying the exit code the CLI maps it to.

Usage and input errors exit with 2, runtime failures with 1. Messages are one line that
names the offending value, the constraint it breaks and the fix.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping


class LdlmError(Exception):
    """Base class of every error ldlm reports to a user."""

    exit_code = 1


class InputError(LdlmError, ValueError):
    """Bad user input: a path, a flag value, a dataset column, an incompatible artefact."""

    exit_code = 2


class RuntimeFailure(LdlmError, RuntimeError):
    """A failure while running: a corrupt artefact, a full disk, a diverging loss."""

    exit_code = 1


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type name when empty), for one-line errors."""
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:limit]


INT_LIMIT = 2**63  # integer options hold below this (what torch, numpy and zarr store in 64 bits)


def check_finite(values: Mapping[str, object]) -> None:
    """Refuse numbers no code can honour among options ({flag: value}), naming the first one:
    NaN and infinity, and integers past 64 bits.

    Every comparison with NaN is false, so a range check alone lets it through, where it then
    changes what a command does without a word (`--temperature nan` decodes greedily); infinity
    passes `> 0` checks; an integer past 64 bits passes every range check and then overflows
    inside torch or numpy. Every command runs its options through this before any work; the
    ranges of single options (at least 1, a budget that fits a timer) are checked by the
    options' own dataclasses.
    """
    for flag, value in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise InputError(f"{flag} {value} must be a finite number (not NaN or infinity); give one "
                             "in the option's range")
        if isinstance(value, int) and not isinstance(value, bool) and not -INT_LIMIT < value < INT_LIMIT:
            raise InputError(f"{flag} {value} is past what a 64-bit integer holds (2**63); give one in "
                             "the option's range")


def check_finite_fields(options) -> None:
    """`check_finite` over the fields of an options dataclass (field x_y is flag --x-y)."""
    check_finite({f"--{f.name.replace('_', '-')}": getattr(options, f.name)
                  for f in dataclasses.fields(options)})
