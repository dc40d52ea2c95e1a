"""Typer options built from an argument class's fields (ldlm.fields): the command declares one
parameter of that class, and `with_fields` replaces it by the class's options."""

from __future__ import annotations

import functools
import inspect
import typing
from typing import Annotated, Any

import typer

from ldlm.fields import options_of


def with_fields(cls, into: str, *, skip: tuple[str, ...] = (), defaults: dict[str, Any] | None = None,
                helps: dict[str, str] | None = None):
    """Decorator of a command function with a parameter `into` of dataclass `cls`: the command
    line shows one option per field of `cls` declared with `ldlm.fields.option` (its type, default,
    help and panel), and the function is called with `into=cls(**those options)`.

    `skip`: fields that are not options of this command (they keep the class's default);
    `defaults`: this command's own defaults for some fields (given to `cls` as well);
    `helps`: this command's own help texts for some fields."""
    defaults, helps = defaults or {}, helps or {}
    hints = typing.get_type_hints(cls)
    fields = [f for f in options_of(cls) if f.name not in skip]

    def decorate(fn):
        signature = inspect.signature(fn, eval_str=True)
        kept = [p for p in signature.parameters.values() if p.name != into]
        taken = {p.name for p in kept}
        added = []
        for f in fields:
            if f.name in taken:
                raise TypeError(f"{fn.__name__} declares {f.name}, which {cls.__name__} also declares")
            meta = f.metadata
            decls = (meta["flag"],) if meta["flag"] else ()
            bounds = {k: meta[k] for k in ("min", "max") if meta.get(k) is not None}
            info = typer.Option(*decls, help=helps.get(f.name, meta["help"]), rich_help_panel=meta["panel"],
                                **bounds)
            added.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY,
                                           default=defaults.get(f.name, f.default),
                                           annotation=Annotated[hints[f.name], info]))
        names = [p.name for p in added]

        @functools.wraps(fn)
        def command(**kwargs):
            values = {name: kwargs.pop(name) for name in names}
            fixed = {k: v for k, v in defaults.items() if k in skip}
            return fn(**kwargs, **{into: cls(**fixed, **values)})

        del command.__wrapped__  # Typer reads the signature below, not fn's
        params = []  # the command's own, the class's options where `into` stood
        for p in signature.parameters.values():
            params.extend(added if p.name == into else [p.replace(kind=inspect.Parameter.KEYWORD_ONLY)])
        command.__signature__ = signature.replace(parameters=params)
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return decorate


def option_defaults(command) -> dict[str, Any]:
    """Each option's default as the command line shows it (for the tests)."""
    return {p.name: p.default for p in inspect.signature(command).parameters.values()}


__all__ = ["with_fields", "option_defaults"]
