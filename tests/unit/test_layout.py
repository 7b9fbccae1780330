"""The package layout is the architecture: each layer imports only from the layers below it
(module-level and deferred imports alike), so a folder's name says what it may depend on."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "protofl"

# layer -> the protofl packages (and top-level modules) it may import, besides itself. config
# checks algorithm options against the registry (a deferred import, so that reading a config
# does not load torch); the algorithms never import config.
ALLOWED = {
    "core": {"errors"},
    "config": {"errors", "core", "algorithms", "models"},
    "federation": {"errors", "core"},
    "models": {"errors", "core"},
    "algorithms": {"errors", "core", "federation", "models"},
    "data": {"errors", "core", "engine"},
    "engine": {"errors", "core", "config", "federation", "algorithms", "models", "data"},
    "sim": {"errors", "core", "config", "federation", "algorithms", "models", "data", "engine"},
}
LOWER = set(ALLOWED) | {"errors"}


def imported_packages(path: Path) -> set[str]:
    """The first component after ``protofl.`` of every import in the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] == "protofl":
                if len(parts) > 1:
                    found.add(parts[1])
                else:  # from protofl import x
                    found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "protofl" and len(parts) > 1:
                    found.add(parts[1])
    return found


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_each_layer_imports_only_from_the_layers_below_it(layer: str) -> None:
    wrong = {}
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        bad = imported_packages(path) - ALLOWED[layer] - {layer}
        if bad:
            wrong[str(path.relative_to(PACKAGE))] = sorted(bad)
    assert not wrong, f"{layer} imports from layers above it: {wrong}"


def test_no_flat_module_left_but_the_entry_points() -> None:
    """Top level: the public entry points, the error types and the builders that wire the
    layers together; everything else lives in a package named for its job."""
    flat = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert flat == [
        "__init__.py",
        "__main__.py",
        "api.py",
        "builders.py",
        "cli.py",
        "errors.py",
    ]


def test_the_checker_sees_a_wrong_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from protofl.outputs import results\n")
    assert imported_packages(module) == {"outputs"}
    assert imported_packages(module) - ALLOWED["core"] == {"outputs"}
