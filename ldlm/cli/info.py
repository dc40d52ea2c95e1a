"""ldlm info"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ldlm.cli.app import command


@command("info", keeps=False)
def info_cmd(
    path: Annotated[str, typer.Argument(help="A latent store, autoencoder folder or latent file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Say what an artefact is: shapes, counts, provenance, completeness."""
    from ldlm.info import describe

    facts = describe(path)
    if as_json:
        typer.echo(json.dumps(facts, indent=2, ensure_ascii=False))
        return
    width = max(len(k) for k in facts)
    for key, value in facts.items():
        shown = json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else value
        typer.echo(f"{key.ljust(width)}  {shown}")
