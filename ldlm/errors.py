"""The project's exceptions, each carrying the exit code the CLI maps it to.

Usage and input errors exit with 2, runtime failures with 1. Messages are one line that
names the offending value, the constraint it breaks and the fix.
"""

from __future__ import annotations


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
