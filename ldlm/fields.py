"""Options declared once: a dataclass field that carries its default and its help.

The library's argument classes (SamplingArgs, DecodeArgs, ...) declare each option as

    temperature: float = option(0.7, "Sampling temperature; 0 is greedy.")

and the command line builds its Typer options from those fields (ldlm.cli.fields), so a default,
its choices (a Literal type) and its help text are written in one place, and a new knob is one
field plus the line that uses it. This module imports nothing heavy: the command line reads the
fields at start-up.
"""

from __future__ import annotations

import dataclasses
from typing import Any


def option(default: Any, help: str, *, panel: str | None = None, flag: str | None = None,
           min: float | None = None, max: float | None = None) -> Any:
    """A dataclass field with a default that is also a command-line option: `help` is its help
    text, `panel` the group `--help` shows it in, `flag` its name (a bool switch with no --no-
    form, e.g. "--project", or another name than the field's), `min`/`max` bounds the parser
    enforces."""
    return dataclasses.field(default=default, metadata={"help": help, "panel": panel, "flag": flag,
                                                        "min": min, "max": max})


def options_of(cls) -> list[dataclasses.Field]:
    """The fields of dataclass `cls` that are command-line options (declared with `option`)."""
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata]


__all__ = ["option", "options_of"]
