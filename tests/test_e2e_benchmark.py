"""The E2E benchmark's name delexicalisation (benchmarks/e2e_conditional.py): a run trained on
delexicalised references writes the placeholders, and relexicalise must put back the MR's
own values, whatever they contain."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "e2e_conditional.py"


@pytest.fixture(scope="module")
def e2e():
    spec = importlib.util.spec_from_file_location("e2e_conditional", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MR = "name[The Eagle], eatType[pub], near[Café Rouge]"


def test_delexicalise_replaces_name_and_near_in_any_case(e2e):
    text = e2e.delexicalise(MR, "the Eagle is a pub near Café Rouge. The Eagle is cheap.")
    name, near = e2e.PLACEHOLDERS["name"], e2e.PLACEHOLDERS["near"]
    assert text == f"{name} is a pub near {near}. {name} is cheap."


def test_relexicalise_inverts_delexicalise(e2e):
    ref = "The Eagle is a pub near Café Rouge."
    assert e2e.relexicalise(MR, e2e.delexicalise(MR, ref)) == ref


def test_relexicalise_survives_values_that_hold_the_other_placeholder(e2e):
    name, near = e2e.PLACEHOLDERS["name"], e2e.PLACEHOLDERS["near"]
    mr = f"name[Little {near}], near[The Mill]"
    assert e2e.relexicalise(mr, f"{name} is near {near}.") == f"Little {near} is near The Mill."


def test_a_reference_without_the_values_is_unchanged(e2e):
    ref = "A pub by the river."
    assert e2e.delexicalise(MR, ref) == ref


def test_an_mr_delexicalised_by_itself_names_the_placeholders(e2e):
    name, near = e2e.PLACEHOLDERS["name"], e2e.PLACEHOLDERS["near"]
    assert e2e.delexicalise(MR, MR) == f"name[{name}], eatType[pub], near[{near}]"
