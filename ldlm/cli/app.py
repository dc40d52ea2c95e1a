"""The Typer app, the shared option types, and the table that maps errors to exit codes."""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
import traceback

import click
import typer
from rich.text import Text

from ldlm.cli.console import quiet_libraries, stderr
from ldlm.errors import LdlmError, check_finite

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


app = _App(
    name="ldlm",
    help="Latent diffusion language models: train a text autoencoder, encode a corpus to "
    "latents, and decode latents back to text.",
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


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the command is, so that its cleanup runs as for Ctrl-C."""


def _terminate(signum, frame) -> None:
    raise Terminated()


def _flags(kwargs: dict) -> dict:
    """The command's parameters by the names a user typed ({"--temperature": 0.7, ...})."""
    ctx = click.get_current_context(silent=True)
    names = {}
    if ctx is not None:
        names = {p.name: (p.opts[0] if isinstance(p, click.Option) else p.name.upper())
                 for p in ctx.command.params}
    return {names.get(k, f"--{k.replace('_', '-')}"): v for k, v in kwargs.items()}


def command(name: str):
    """Register a command whose known errors become one line on stderr and an exit code.

    Float options that are NaN or infinite are refused before the command runs (exit 2).
    LdlmError -> its exit code (2 input, 1 runtime); KeyboardInterrupt -> 130 and SIGTERM
    -> 143, after the command's own cleanup (temporary files removed); a closed pipe
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
                check_finite(_flags(kwargs))
                return fn(*args, **kwargs)
            except typer.Exit:
                raise
            except LdlmError as exc:
                _fail(str(exc), exc.exit_code)
            except Terminated:
                _fail("terminated (SIGTERM); finished work is kept, rerun the same command to resume",
                      143)
            except KeyboardInterrupt:
                _fail("interrupted; finished work is kept, rerun the same command to resume", 130)
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

        return app.command(name)(run)

    return wrap
