"""How library code reports progress without printing: it calls a `Reporter`.

The base class does nothing (Python users get silence); the CLI passes a rich-backed
reporter that draws progress bars and messages on stderr.
"""

from __future__ import annotations


class Reporter:
    """A progress sink. Subclass it to show progress; this one ignores everything."""

    def start(self, description: str, total: int | None = None, unit: str = "it") -> None:
        """Begin a task of `total` units (None: unknown)."""

    def advance(self, n: int = 1, **fields: object) -> None:
        """`n` more units done; `fields` are figures to show beside the bar (loss=...)."""

    def set_total(self, total: int | None) -> None:
        """The current task's total changed (a time budget's revised plan)."""

    def stop(self) -> None:
        """The current task is over."""

    def log(self, message: str) -> None:
        """A one-line message for the user (goes to stderr in the CLI)."""


SILENT = Reporter()
