"""Where a recipe's build directory may be: a folder buildsys can own outright.

`clean` deletes what buildsys wrote there, so the folder must not hold or be
the user's files: it lies inside the workspace, is not the workspace, its state
or the shared build folder, and contains no recipe, model, data, device
profile or git repository that the build reads.
"""

from __future__ import annotations

import os
from pathlib import Path

from buildsys.documents.yamlmarks import Parsed
from buildsys.errors import Problem
from buildsys.recipe.model import InputSource, Recipe

WILDCARDS = "*?["
HINT = "leave `output:` out (default: build/<name> in the workspace) or name a new folder under build/"


def output_problems(recipe: Recipe, parsed: Parsed, workspace: Path, holders: dict[Path, Path]) -> list[Problem]:
    why = misplaced(recipe, workspace, holders)
    if why is None:
        return []
    return [parsed.at_value(("output",), f"build directory {recipe.output} {why}", HINT)]


def recipe_holders(recipes: list[Recipe]) -> dict[Path, Path]:
    """{folder: a recipe file inside it} for every folder above every recipe: an output
    folder that is a key would hold a recipe (one lookup, however many recipes)."""
    holders: dict[Path, Path] = {}
    for recipe in recipes:
        for folder in _real(recipe.path).parents:
            holders.setdefault(folder, recipe.path)
    return holders


def misplaced(recipe: Recipe, workspace: Path, holders: dict[Path, Path]) -> str | None:
    out, ws = _real(recipe.output), _real(workspace)
    if not _within(out, ws):
        return f"is outside the workspace {workspace}"
    if out == ws:
        return "is the workspace itself"
    if _within(out, ws / ".buildsys") or out == ws / "build":
        return "is buildsys's own state or the shared build folder"
    if (out / ".git").exists():
        return "holds a git repository (.git)"
    if out in holders:
        mine = holders[out] == recipe.path or _within(_real(recipe.path), out)
        return f"contains {'its recipe ' + str(recipe.path) if mine else 'the recipe ' + str(holders[out])}"
    for what, path in read_paths(recipe):
        if _within(_real(path), out):
            return f"contains {what} {path}"
    if recipe.source.path.is_dir() and _within(out, _real(recipe.source.path)):
        return f"is inside the source model {recipe.source.path}"
    return None


def read_paths(recipe: Recipe) -> list[tuple[str, Path]]:
    """Every file or folder of the recipe's own that the build reads and must never delete."""
    found = [("the source model", recipe.source.path)]
    sets = [recipe.calibration.inputs if recipe.calibration else {}, recipe.validate.inputs or {}]
    found += [("the data", data_root(src)) for inputs in sets for src in inputs.values() if src.reads_files]
    if recipe.validate.labels is not None:
        found.append(("the labels", recipe.validate.labels))
    found += [
        ("the device profile", recipe.base / t.device) for t in recipe.targets if t.device.endswith((".yaml", ".yml"))
    ]
    return found


def data_root(src: InputSource) -> Path:
    """A data file, or the folder a glob starts from (patterns are absolute)."""
    parts = Path(src.pattern).parts
    cut = next((i for i, part in enumerate(parts) if any(c in part for c in WILDCARDS)), len(parts))
    return Path(*parts[: max(cut, 1)])


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents
