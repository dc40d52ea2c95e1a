"""The Typer app, the shared option types, and the table that maps errors to exit codes."""

from __future__ import annotations

import functools
import inspect
import os
import shlex
import signal
import sys
import threading
import traceback

import typer
from rich.text import Text
from typer.core import TyperCommand, TyperGroup

from ldlm.cli.console import check_environment, quiet_libraries, stderr
from ldlm.errors import LdlmError, check_finite

try:  # typer 0.17 and later carry their own copy of click
    from typer._click import exceptions as _click_exceptions
except ImportError:  # pragma: no cover - older typer, on click itself
    from click import exceptions as _click_exceptions

DEBUG_ENV = "LDLM_DEBUG"

class _App(typer.Typer):
    """The Typer app; once a command is over, a late Ctrl-C no longer turns the finished run
    into a death by signal while Python shuts down (joining threads, atexit hooks)."""

    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        finally:
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGINT, signal.SIG_IGN)


def _usage_error(exc) -> None:
    """A usage error of the parser (an unknown choice or flag, a value that is not a number, a
    missing option) as the one `Error:` line every other error gets, naming the help to read."""
    message = exc.format_message().replace("Value error, ", "").rstrip(".")
    where = exc.ctx.command_path if exc.ctx is not None else "ldlm"
    _fail(f"{message}; see '{where} --help'", exc.exit_code)


_HELP = getattr(_click_exceptions, "NoArgsIsHelpError", ())  # `ldlm` alone: the help, not an error


class _OneLineUsage:
    """Usage errors as one line instead of Typer's boxed usage text (mixed into its classes)."""

    def make_context(self, *args, **kwargs):
        try:
            return super().make_context(*args, **kwargs)
        except _HELP:
            raise
        except _click_exceptions.UsageError as exc:
            _usage_error(exc)


class _Command(_OneLineUsage, TyperCommand):
    pass


class _Group(_OneLineUsage, TyperGroup):
    def resolve_command(self, ctx, args):
        try:
            return super().resolve_command(ctx, args)
        except _click_exceptions.UsageError as exc:
            _usage_error(exc)


app = _App(
    name="ldlm",
    cls=_Group,
    help="Latent diffusion language models: train a text autoencoder, encode a corpus into "
    "latents, train a denoiser on them, sample new latents and decode them into text. New here? "
    "Run `ldlm quickstart`; the README has each stage's commands.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _fail(message: str, code: int) -> None:
    """Print `Error: message` on stderr, the message verbatim (user values such as E2E's
    `name[The Eagle]` hold brackets that rich would read as markup), and exit with `code`."""
    stderr.print(Text.assemble(("Error:", "red"), " ", message), soft_wrap=True)
    if os.environ.get(DEBUG_ENV):
        traceback.print_exc()
    raise typer.Exit(code)


def _quiet_abandoned_tasks() -> None:
    """After an interrupt, the zarr I/O tasks it cut short are dropped as the process exits, and
    asyncio logs each one ("Task exception was never retrieved", with a traceback) after the
    `Error:` line; what they were writing is left for the resume, which redoes it."""
    import logging

    logging.getLogger("asyncio").setLevel(logging.CRITICAL + 1)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the command is, so that its cleanup runs as for Ctrl-C."""


def _terminate(signum, frame) -> None:
    raise Terminated()


def _flags(fn, kwargs: dict) -> dict:
    """The command's parameters by the names a user typed ({"--temperature": 0.7, ...}): the
    first name its typer.Option declares, else --the-parameter-name."""
    names = {}
    for param in inspect.signature(fn).parameters.values():
        info = next((m for m in getattr(param.annotation, "__metadata__", ())
                     if isinstance(m, typer.models.ParameterInfo)), None)
        decls = getattr(info, "param_decls", None) or ()
        names[param.name] = next((d for d in decls if d.startswith("--")), None)
    return {names.get(k) or f"--{k.replace('_', '-')}": v for k, v in kwargs.items()}


def resume_command(name: str, flag: str | None) -> str:
    """How to continue an interrupted command: the same command line with `flag` (--resume)
    added and --overwrite dropped, or "rerun the same command" where it resumes by itself."""
    if flag is None:
        return "rerun the same command to resume"
    args = sys.argv[1:]
    if args[:1] != [name]:  # not started as `ldlm NAME ...` (the Python API, a test runner)
        return f"rerun the same command with {flag} to resume"
    if flag not in args and "--resume-from" not in args:
        args = [a for a in args if a != "--overwrite"] + [flag]
    return f"resume with: ldlm {shlex.join(args)}"


def interrupted_note(name: str, resume: str | None, keeps: bool) -> str:
    """What an interruption leaves: finished work and how to resume, or, for a command that
    keeps no partial output and has nothing to resume (`keeps` False), that it starts again."""
    if not keeps:
        return ("nothing partial is kept (an --out file is written whole or not at all) and there is "
                "nothing to resume; rerun the same command to start again")
    return f"finished work is kept; {resume_command(name, resume)}"


def command(name: str, resume: str | None = None, keeps: bool = True):
    """Register a command whose known errors become one line on stderr and an exit code.

    Numbers no code can honour (NaN, infinity, integers past 64 bits) and environment
    variables that do not parse (ldlm.cli.console.check_environment) are refused before the
    command runs (exit 2), as are usage errors of the parser (`_usage_error`).
    LdlmError -> its exit code (2 input, 1 runtime); KeyboardInterrupt -> 130 and SIGTERM
    -> 143, after the command's own cleanup (temporary files removed), naming the command
    line that resumes (`resume`: the flag it needs, for the trainers; `keeps` False: a command
    with no partial work to keep, which says so instead); a closed pipe
    (`| head`) -> 0, quietly; anything else -> 1, with the traceback only when LDLM_DEBUG
    is set.
    """

    def wrap(fn):
        @functools.wraps(fn)
        def run(*args, **kwargs):
            quiet_libraries()
            main = threading.current_thread() is threading.main_thread()
            before = signal.getsignal(signal.SIGTERM)
            if main:
                signal.signal(signal.SIGTERM, _terminate)
            try:
                check_finite(_flags(fn, kwargs))
                check_environment()
                return fn(*args, **kwargs)
            except typer.Exit:
                raise
            except LdlmError as exc:
                _fail(str(exc), exc.exit_code)
            except Terminated:
                _quiet_abandoned_tasks()
                _fail(f"terminated (SIGTERM); {interrupted_note(name, resume, keeps)}", 143)
            except KeyboardInterrupt:
                _quiet_abandoned_tasks()
                _fail(f"interrupted; {interrupted_note(name, resume, keeps)}", 130)
            except BrokenPipeError:
                # the reader went away (e.g. `| head`): stop quietly
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
                raise typer.Exit(0) from None
            except OSError as exc:
                where = f" ({exc.filename})" if exc.filename else ""
                _fail(f"{exc.strerror or exc}{where}; check the path, its permissions and free space", 1)
            except Exception as exc:  # noqa: BLE001 - the last line of defence
                _fail(f"unexpected {type(exc).__name__}: {exc} (set {DEBUG_ENV}=1 for the "
                      "traceback and report it)", 1)
            finally:
                if main:
                    signal.signal(signal.SIGTERM, signal.SIG_DFL if before is None else before)

        return app.command(name, cls=_Command)(run)

    return wrap
