"""The package's layers (pyro_vae/__init__.py's docstring): every import points down them."""

import ast
from pathlib import Path

import pytest

import pyro_vae

PACKAGE = Path(pyro_vae.__file__).parent

#: what each subpackage may import besides itself, as the package docstring draws it
BELOW: dict[str, set[str]] = {
    "core": set(),
    "config": {"core"},
    "pictures": {"core"},
    "models": {"core", "config"},
    "data": {"core", "config"},
    "inference": {"core", "config", "models"},
    "training": {"core", "config", "models", "data", "inference", "pictures"},
}
BELOW["evaluation"] = BELOW["training"] | {"training"}
BELOW["comparison"] = BELOW["evaluation"] | {"evaluation"}
BELOW["cli"] = BELOW["comparison"] | {"comparison"}


def imported(path: Path) -> list[tuple[int, str]]:
    """(line, subpackage) for every ``pyro_vae.X`` a module imports, at any depth of its code."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found += [(node.lineno, n.split(".")[1]) for n in names if n.startswith("pyro_vae.")]
        found += [(node.lineno, "") for n in names if n == "pyro_vae"]
    return found


def test_the_subpackages_are_the_layers():
    subpackages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert subpackages == set(BELOW)


@pytest.mark.parametrize("layer", sorted(BELOW))
def test_imports_point_down_the_layers(layer):
    upward = [
        f"{path.relative_to(PACKAGE)}:{line} imports pyro_vae.{target or '(the top)'}"
        for path in sorted((PACKAGE / layer).rglob("*.py"))
        for line, target in imported(path)
        if target != layer and target not in BELOW[layer]
    ]
    assert not upward, "\n".join(upward)


def test_a_module_in_a_layer_that_imported_upwards_would_be_found(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from pyro_vae.training.run import Run\n")
    assert imported(module) == [(2, "training")]
