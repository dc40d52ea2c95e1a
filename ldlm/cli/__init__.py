"""The `ldlm` command line: one module per command, wired to one Typer app here."""

from ldlm.cli import autoencoder, decode, encode, evaluate, info, interpolate, quickstart, sample, train  # noqa: F401,E501  (registers)
from ldlm.cli.app import app


def main() -> None:
    app()
