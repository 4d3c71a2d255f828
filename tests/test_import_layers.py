"""Imports point one way: down the layers below (the layout in DESIGN.md).

A module may import from its own package or module, and from any lower layer; never from a
higher one, and never from a sibling in its own layer. Imports inside functions count: a lazy
import is still a dependency, it only hides a cycle. A new package must be given a layer here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import buildsys

# Top to bottom. Each entry is a package or a module directly under buildsys/.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("__main__",),
    ("cli",),
    ("commands",),
    ("cluster",),  # Dask: runs a plan's stages on workers
    ("runner", "shard", "lockfile", "inspect"),
    ("plan",),
    ("stages",),
    ("torchsrc", "compat", "compilers", "devices"),
    ("tflow",),  # TensorFlow/LiteRT: sources, quantization, the interpreters
    ("onnxprep",),  # ONNX to ONNX: shapes, folding, cuts, replacements
    ("converter",),  # ONNX to TF, layout per tensor
    ("recipe",),
    ("remote",),  # the shared cache's store
    ("cache",),
    ("rewrites", "documents", "darknet", "modes", "signature", "ui"),
    (
        "failures",
        "diskerrors",
        "wslock",
        "doitdb",
        "lifeline",
        "outputs",
        "hashing",
        "globwalk",
        "limits",
        "schemafiles",
        "tools",
    ),
    ("outcomes", "workspace", "fsutil"),
    ("errors", "__init__"),
)
RANK = {unit: rank for rank, layer in enumerate(LAYERS) for unit in layer}
ROOT = Path(buildsys.__file__).parent


def unit_of(module: str) -> str:
    """The layer unit of a dotted buildsys module name."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imported(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, dotted buildsys module) for every import in the tree, relative ones resolved."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "buildsys"]
        elif isinstance(node, ast.ImportFrom):
            base = _resolved(node, module, is_package)
            if base is None or base.split(".")[0] != "buildsys":
                continue
            # `from buildsys import x` names a submodule x when there is one
            found += [(node.lineno, f"{base}.{a.name}" if base == "buildsys" else base) for a in node.names]
    return found


def _resolved(node: ast.ImportFrom, module: str, is_package: bool) -> str | None:
    if not node.level:
        return node.module
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def upward(source: str, module: str, is_package: bool = False) -> list[str]:
    """The imports of `source` (the text of `module`) that break the layering."""
    here = unit_of(module)
    problems = []
    for line, target in imported(ast.parse(source), module, is_package):
        there = unit_of(target) if target != "buildsys.__version__" else "__init__"
        if there == here:
            continue
        if here not in RANK or there not in RANK:
            problems.append(f"{module}:{line} imports {target}: give both a layer in tests/test_import_layers.py")
        elif RANK[there] <= RANK[here]:
            way = "a sibling in its layer" if RANK[there] == RANK[here] else "a higher layer"
            problems.append(f"{module}:{line} imports {target}: {way} ({there} over {here})")
    return problems


def test_every_package_has_a_layer():
    units = {
        p.stem if p.is_file() else p.name for p in ROOT.iterdir() if p.suffix == ".py" or (p / "__init__.py").is_file()
    }
    assert sorted(units - RANK.keys()) == []
    assert sorted(RANK.keys() - units) == []


def test_imports_point_down():
    problems = []
    for path in sorted(ROOT.rglob("*.py")):
        problems += upward(path.read_text("utf-8"), module_name(path), path.name == "__init__.py")
    assert problems == []


@pytest.mark.parametrize(
    "source, module",
    [
        ("from buildsys.commands.build import claim_outputs", "buildsys.cluster.schedule"),  # up, at module level
        ("def f():\n    from buildsys.lockfile import lock_path\n", "buildsys.stages.report"),  # up, lazily
        ("from buildsys.devices import modes", "buildsys.tflow.quantize"),
        ("from ..stages import base", "buildsys.remote.store"),  # relative
        ("import buildsys.recipe.model", "buildsys.devices.overrides"),  # down: fine
        ("from buildsys.compilers import COMPILERS", "buildsys.compat.check"),  # a sibling
    ],
)
def test_the_check_sees_an_upward_import(source, module):
    expected = 0 if "recipe.model" in source else 1
    assert len(upward(source, module)) == expected
