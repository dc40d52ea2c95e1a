"""Where things live: the import graph of `ldlm/`, drawn from every import statement (also the
ones inside functions), obeys the layering of the README's "Where things live"."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ldlm"
STAGES = {"ldlm.encode", "ldlm.train", "ldlm.sample", "ldlm.decode"}
COMPOSITES = {"ldlm.quickstart", "ldlm.variations", "ldlm.adapt", "ldlm.info"}
MODELS = ("ldlm.autoencoder", "ldlm.denoisers")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def _absolute(name: str, node: ast.ImportFrom) -> str | None:
    """The absolute module of `from .x import y` in module `name` (None when not relative)."""
    if not node.level:
        return node.module
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
    return f"{base}.{node.module}" if node.module else base


def imports_of(name: str) -> set[str]:
    """The ldlm modules that module `name` imports anywhere in its source: import statements
    (absolute or relative, also inside functions) and modules named by a string, as
    `importlib.import_module` takes them (the ARCHS table of denoisers)."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("ldlm"))
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(name, node)
            if not (module and module.startswith("ldlm")):
                continue
            for alias in node.names:  # `from ldlm.x import y` imports module ldlm.x.y where there is one
                sub = f"{module}.{alias.name}"
                found.add(sub if sub in MODULES else module)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in MODULES:
            found.add(node.value)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: imports_of(name) for name in MODULES}


def cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return out


def test_the_graph_sees_the_package():
    assert {"ldlm.sample", "ldlm.run", "ldlm.cli.sample", "ldlm.autoencoder.model"} <= set(MODULES)
    assert "ldlm.run" in GRAPH["ldlm.sample"]  # imports are found, also inside functions
    assert "ldlm.classifier" in GRAPH["ldlm.mbr"]
    assert "ldlm.denoisers.mlp" in GRAPH["ldlm.denoisers"]  # named by a string, for import_module


def test_relative_imports_are_followed():
    def found(source: str, name: str = "ldlm.store") -> set[str]:
        node = ast.parse(source).body[0]
        return {_absolute(name, node)}

    assert found("from .train import TrainArgs") == {"ldlm.train"}
    assert found("from . import run") == {"ldlm"}
    assert found("from .model import X", "ldlm.autoencoder") == {"ldlm.autoencoder.model"}
    assert found("from ..errors import X", "ldlm.autoencoder.model") == {"ldlm.errors"}


def test_no_import_cycle():
    assert cycles() == []


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_a_stage_never_imports_another_stage_or_a_composite(stage):
    assert GRAPH[stage] & (STAGES | COMPOSITES) == set(), stage


def test_library_code_never_imports_the_command_line():
    bad = {m: sorted(d for d in deps if d.startswith("ldlm.cli"))
           for m, deps in GRAPH.items() if not m.startswith(("ldlm.cli", "ldlm.__main__"))}
    assert {m: d for m, d in bad.items() if d} == {}


def test_models_import_no_stage_composite_or_run():
    above = STAGES | COMPOSITES | {"ldlm.run", "ldlm.cli"}
    bad = {m: sorted(d for d in deps if d in above or d.startswith("ldlm.cli"))
           for m, deps in GRAPH.items() if m.startswith(MODELS)}
    assert {m: d for m, d in bad.items() if d} == {}


def test_the_command_line_reads_choices_without_torch():
    """The modules whose tables the CLI turns into choices import nothing heavy at load time."""
    import subprocess
    import sys

    code = ("import sys, ldlm.cli; heavy = [m for m in ('torch', 'diffusers', 'transformers') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
