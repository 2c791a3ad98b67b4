"""The layout's one rule, checked on the source: data flows one way.

files -> data -> models -> checkpoints -> inference -> evaluation / training -> doors. A package may
import its own modules and packages of a lower layer, never a higher one nor a sibling in its own
layer (evaluation and training never import each other), and the imports form no cycle, those inside
functions and under ``if TYPE_CHECKING:`` included: a circle closed only by a late or a type-only
import is still a circle, two modules that cannot be read apart.
"""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src" / "attnmel"
LAYERS = [
    {"errors", "version"},
    {"io", "devices", "arguments"},
    {"data", "metrics", "outputs"},
    {"models"},
    {"checkpoints", "config"},
    {"inference"},
    {"visualize"},
    {"evaluation", "training", "export"},
    {"serving", "demo", "yardstick", "predict"},
    {"cli"},
    {"__main__", "__init__"},
]
RANK = {package: rank for rank, packages in enumerate(LAYERS) for package in packages}
#: upward imports that are part of the design, each with its reason (none)
ALLOWED_UPWARD: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


MODULES = {module_name(path): path for path in SOURCE.rglob("*.py")}


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def attnmel_imports(path: Path) -> set[str]:
    """The attnmel modules ``path`` imports: at the top, inside functions and under ``if TYPE_CHECKING:``
    (never run, but the names it gives are part of the module's meaning)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names if a.name.split(".")[0] == "attnmel")
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and (child.module or "").split(".")[0] == "attnmel":
                for alias in child.names:
                    submodule = f"{child.module}.{alias.name}"
                    found.add(submodule if submodule in MODULES else child.module)
            visit(child)

    visit(ast.parse(path.read_text()))
    return {name for name in found if name in MODULES}


def test_every_package_has_a_layer():
    assert {package_of(m) for m in MODULES} <= set(RANK), "give the new package a layer in LAYERS"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_down_the_layers(module):
    mine = package_of(module)
    wrong = [
        target for target in sorted(attnmel_imports(MODULES[module]))
        if package_of(target) != mine and RANK[package_of(target)] >= RANK[mine]
        and (module, target) not in ALLOWED_UPWARD
    ]
    assert not wrong, f"{module} (layer {RANK[mine]}) imports {wrong}"


def test_no_import_cycle():
    graph = {m: attnmel_imports(p) - {m} for m, p in MODULES.items()}
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(module: str) -> None:
        state[module], _ = "open", path.append(module)
        for target in sorted(graph[module]):
            assert state.get(target) != "open", "import cycle: " + " -> ".join(path[path.index(target):] + [target])
            if target not in state:
                visit(target)
        state[module], _ = "done", path.pop()

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_loading_a_model_imports_no_plotting_library():
    """Drawing lives in ``attnmel.visualize``; a script or service that only predicts pays nothing for it."""
    import subprocess
    import sys

    code = "import attnmel, sys; attnmel.load_model(); print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'))"
    env = {**os.environ, "PYTHONPATH": str(SOURCE.parent)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_the_documented_layer_table_matches_the_layers():
    """docs/architecture.md lists every layer's packages, from the bottom up, as LAYERS has them."""
    page = (SOURCE.parents[1] / "docs" / "architecture.md").read_text()
    table = page.split("| layer | module | what it does |")[1].split("\n\n")[0]
    listed = [re.findall(r"`attnmel\.(\w+)`", row.split("|")[2]) for row in table.strip().splitlines()[1:]]
    ranks = [{RANK[package] for package in row} for row in listed]
    assert all(len(rank) == 1 for rank in ranks), listed  # one layer per row
    order = [min(rank) for rank in ranks]
    assert order == sorted(order), listed  # bottom up
    internal = {"errors", "version", "io", "devices", "config", "__init__", "__main__"}
    assert {p for row in listed for p in row} == set(RANK) - internal
