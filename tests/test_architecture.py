"""The shape of the package: layers as folders, no import cycle, no import that runs back up a layer.

Layers, lowest first: sae.core (model, data, metrics) < sae.privacy (the scheme and its attacks) < sae.zoo (model
directories, the Hub) < sae.app (serving) and sae.cli (command-line tools), which never import each other.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

LAYERS = {"core": 0, "privacy": 1, "zoo": 2, "app": 3, "cli": 3}
PACKAGE = REPO / "sae"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """The sae modules a file imports (at any depth: a function-level import counts too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("sae")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sae"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if (PACKAGE.parent / (candidate.replace(".", "/") + ".py")).is_file() else node.module)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {name: {target for target in imports_of(path) if target in modules and target != name} for name, path in modules.items()}


def layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def test_every_module_lives_in_a_layer(graph):
    loose = [name for name in graph if name != "sae" and layer(name) is None]
    assert not loose, f"modules outside the layer packages: {loose}"


def test_no_import_runs_up_a_layer_or_across_app_and_cli(graph):
    upward = []
    for source, targets in graph.items():
        for target in targets:
            if layer(source) is None or layer(target) is None:
                continue
            across = {source.split(".")[1], target.split(".")[1]} == {"app", "cli"}
            if layer(target) > layer(source) or across:
                upward.append(f"{source} -> {target}")
    assert not upward, upward


def test_the_import_graph_has_no_cycle(graph):
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, path: list[str]) -> bool:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycle.extend([*path[path.index(target) :], target] if target in path else [node, target])
                return True
            if state.get(target) is None and visit(target, [*path, target]):
                return True
        state[node] = 2
        return False

    for node in sorted(graph):
        if state.get(node) is None and visit(node, [node]):
            break
    assert not cycle, " -> ".join(cycle)


def test_serving_loads_neither_the_trainer_nor_the_evaluation():
    """`import app` (what a Space runs) pulls in no command-line tool and none of the libraries only they use (plotly for
    result charts, torchvision for training previews, scipy.stats for the privacy statistics)."""
    code = (
        "import sys, app\n"
        "bad = sorted(m for m in sys.modules if m.startswith('sae.cli') or m in ('plotly', 'torchvision', 'scipy.stats'))\n"
        "print(','.join(bad))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300, check=True)
    assert result.stdout.strip() == "", f"the serving path imports {result.stdout.strip()}"
