"""Terminal output for the CLI: a rich progress reporter and error printing, on stderr."""

from __future__ import annotations

import logging
import os
import sys
import time
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

from ldlm.errors import InputError
from ldlm.progress import Reporter

stderr = Console(stderr=True, highlight=False)


class _Rate(ProgressColumn):
    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        unit = task.fields.get("unit", "it")
        return Text(f"{speed:,.1f} {unit}/s" if speed else f"- {unit}/s", style="cyan")


PLAIN_EVERY_ENV = "LDLM_PROGRESS_SECONDS"  # seconds between plain progress lines (default 30)
PLAIN_EVERY = 30.0


def progress_seconds() -> float:
    """LDLM_PROGRESS_SECONDS: seconds between plain progress lines, a finite number >= 0 (0: a
    line at every step; unset or empty: 30); anything else is an InputError, as a bad option is."""
    raw = os.environ.get(PLAIN_EVERY_ENV, "").strip()
    if not raw:
        return PLAIN_EVERY
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not (value >= 0 and value != float("inf")):
        raise InputError(f"environment variable {PLAIN_EVERY_ENV}={raw!r} must be a number of seconds "
                         f">= 0 between progress lines; set it to e.g. {PLAIN_EVERY:g}, or unset it")
    return value


def check_environment() -> None:
    """Parse the environment variables ldlm reads as numbers, before a command does any work, so
    that a bad value is one `Error:` line at the start rather than a failure after the model has
    loaded (LDLM_DEBUG is read as set or not; the libraries' own variables are theirs)."""
    from ldlm.distributed import world_size

    progress_seconds()
    world_size()


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


class PlainLines:
    """Progress for a log: when stderr is not a terminal (redirected to a file, a pipe, a job
    scheduler), a plain line every few seconds: done/total, rate, elapsed, time left, figures."""

    def __init__(self, console: Console, description: str, total: int | None, unit: str):
        self.console, self.description, self.total, self.unit = console, description, total, unit
        self.every = progress_seconds()
        self.done, self.start = 0, time.monotonic()
        self.last = self.start  # the first line comes `every` seconds in
        self.mark: tuple[float, int] | None = None  # (time, done) the rate is measured from
        self.figures = ""

    def line(self) -> str:
        now = time.monotonic()
        elapsed = now - self.start
        since, then = self.mark or (self.start, 0)
        rate = (self.done - then) / (now - since) if now > since else 0.0
        of = f"/{self.total:,}" if self.total else ""
        left = (f", about {_duration((self.total - self.done) / rate)} left"
                if self.total and rate > 0 else "")
        figures = f", {self.figures}" if self.figures else ""
        return (f"{self.description}: {self.done:,}{of} {self.unit}, {rate:,.2f} {self.unit}/s, "
                f"{_duration(elapsed)} elapsed{left}{figures}")

    def advance(self, n: int, figures: str) -> None:
        self.done += n
        self.figures = figures or self.figures
        now = time.monotonic()
        if self.mark is None:  # the first call may be a resumed run's steps: not in the rate
            self.mark = (now, self.done)
        elif now - self.last >= self.every:
            self.console.print(self.line(), markup=False, highlight=False, soft_wrap=True)
            self.last, self.mark = now, (now, self.done)

    def stop(self) -> None:
        if self.last > self.start:  # lines were printed: close with the final one
            self.console.print(self.line(), markup=False, highlight=False, soft_wrap=True)


class RichReporter(Reporter):
    """Progress bars (units/s, figures such as the loss) and log lines on stderr; plain
    periodic lines instead of bars when stderr is not a terminal."""

    def __init__(self, console: Console = stderr):
        self.console = console
        self.progress: Progress | None = None
        self.plain: PlainLines | None = None
        self.task = None

    def start(self, description: str, total: int | None = None, unit: str = "it") -> None:
        self.stop()
        if not self.console.is_terminal:
            self.plain = PlainLines(self.console, description, total, unit)
            return
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            _Rate(), TimeElapsedColumn(), TimeRemainingColumn(),
            TextColumn("{task.fields[figures]}"), console=self.console,
        )
        self.progress.start()
        self.task = self.progress.add_task(description, total=total, unit=unit, figures="")

    def advance(self, n: int = 1, **fields: object) -> None:
        figures = " ".join(f"{k} {v}" for k, v in fields.items())
        if self.plain is not None:
            self.plain.advance(n, figures)
        if self.progress is None:
            return
        if figures:
            self.progress.update(self.task, advance=n, figures=figures)
        else:
            self.progress.update(self.task, advance=n)

    def set_total(self, total: int | None) -> None:
        if self.plain is not None:
            self.plain.total = total
        if self.progress is not None:
            self.progress.update(self.task, total=total)

    def stop(self) -> None:
        if self.plain is not None:
            self.plain.stop()
            self.plain = None
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def log(self, message: str) -> None:
        self.console.print(message, markup=False, highlight=False, soft_wrap=True)


def quiet_libraries() -> None:
    """Keep third-party logs and progress bars off the terminal (errors still show, except
    diffusers', which ldlm reports itself).

    Through the libraries' own environment variables, read when they are imported, so that a
    command imports only what it uses (importing datasets and transformers here to configure
    them cost every command about a second of start-up)."""
    for name, value in (("TOKENIZERS_PARALLELISM", "false"), ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
                        ("HF_DATASETS_DISABLE_PROGRESS_BARS", "1"), ("TRANSFORMERS_VERBOSITY", "error"),
                        ("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1"),
                        # diffusers logs the failure of a load that ldlm reports itself, in one line
                        ("DIFFUSERS_VERBOSITY", "critical")):
        os.environ.setdefault(name, value)
    # the libraries' advice to their own users (deprecations, "this default will change"), and
    # the numeric warnings of the scoring libraries' internals; any other warning still shows
    for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category)
    warnings.filterwarnings("ignore", category=RuntimeWarning,
                            module=r"(mauve|sklearn|numpy|scipy|faiss|torch|transformers)(\.|$)")
    for name in ("transformers", "datasets", "huggingface_hub", "accelerate"):
        logging.getLogger(name).setLevel(logging.ERROR)
    logging.getLogger("diffusers").setLevel(logging.CRITICAL)
    if "datasets" in sys.modules:  # imported already (the Python API, tests): its variable was read
        sys.modules["datasets"].disable_progress_bars()
    if "transformers" in sys.modules:
        sys.modules["transformers"].logging.disable_progress_bar()
