"""Terminal output for the CLI: a rich progress reporter and error printing, on stderr."""

from __future__ import annotations

import logging
import os
import warnings

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from ldlm.progress import Reporter

stderr = Console(stderr=True, highlight=False)


class _Rate(ProgressColumn):
    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        unit = task.fields.get("unit", "it")
        return Text(f"{speed:,.1f} {unit}/s" if speed else f"- {unit}/s", style="cyan")


class RichReporter(Reporter):
    """Progress bars (units/s, figures such as the loss) and log lines on stderr."""

    def __init__(self, console: Console = stderr):
        self.console = console
        self.progress: Progress | None = None
        self.task = None

    def start(self, description: str, total: int | None = None, unit: str = "it") -> None:
        self.stop()
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            _Rate(), TimeElapsedColumn(), TimeRemainingColumn(),
            TextColumn("{task.fields[figures]}"), console=self.console,
        )
        self.progress.start()
        self.task = self.progress.add_task(description, total=total, unit=unit, figures="")

    def advance(self, n: int = 1, **fields: object) -> None:
        if self.progress is None:
            return
        figures = " ".join(f"{k} {v}" for k, v in fields.items())
        if figures:
            self.progress.update(self.task, advance=n, figures=figures)
        else:
            self.progress.update(self.task, advance=n)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def log(self, message: str) -> None:
        self.console.print(message)


def quiet_libraries() -> None:
    """Keep third-party logs and progress bars off the terminal (errors still show, except
    diffusers': it logs the failure of a load that ldlm reports itself, in one line)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # diffusers and transformers set their own log level when first imported, after this runs
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "critical")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore")
    for name in ("transformers", "datasets", "huggingface_hub", "accelerate"):
        logging.getLogger(name).setLevel(logging.ERROR)
    logging.getLogger("diffusers").setLevel(logging.CRITICAL)
    try:
        import datasets

        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()
    except ImportError:
        pass
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
    except ImportError:
        pass
