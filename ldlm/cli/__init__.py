"""The `ldlm` command line: one module per command, wired to one Typer app here."""

from ldlm.cli import (  # noqa: F401  (registers)
    adapt,
    autoencoder,
    classifier,
    decode,
    encode,
    evaluate,
    info,
    interpolate,
    quickstart,
    sample,
    train,
)
from ldlm.cli.app import app


def main() -> None:
    app()
