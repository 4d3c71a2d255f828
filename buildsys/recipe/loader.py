"""Find recipe files, check them, and turn them into frozen `Recipe`s.

Only the recipe text is checked here; whether the files it names exist is
the business of a later stage.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from buildsys.documents.files import absolute, parse_file, shown_path, sort_problems
from buildsys.documents.yamlmarks import Parsed, clip
from buildsys.errors import Problem, RecipeError, UsageError
from buildsys.hashing import digest_bytes, digest_data
from buildsys.recipe.model import (
    OVERRIDES,
    Calibration,
    InputSource,
    Recipe,
    Replacement,
    Target,
    Validate,
    default_target_name,
)
from buildsys.recipe.sources import parse_source

RECIPE_SUFFIXES = (".yaml", ".yml")
INPUT_KINDS = ("images", "npy", "npz", "zeros")


def discover(paths: list[Path], workspace: Path) -> list[Path]:
    """Recipe files named by `paths` (files or directories); default: <workspace>/recipes."""
    workspace = absolute(workspace)
    found: dict[Path, None] = {}  # ordered set
    for given in paths or [workspace / "recipes"]:
        for path in _recipes_at(absolute(workspace / given)):
            found.setdefault(path)
    return list(found)


def _recipes_at(path: Path) -> list[Path]:
    if path.is_dir():
        recipes = sorted(p for p in path.iterdir() if _is_recipe(p))
        if not recipes:
            raise UsageError(f"no recipes (*.yaml, *.yml) in {path}", path=str(path))
        return recipes
    if not path.exists():
        raise UsageError(f"no such recipe file or directory: {path}", path=str(path))
    _check_regular(path)
    return [path]


def _is_recipe(path: Path) -> bool:
    # Dot files are editor and tool leftovers, not recipes; a folder named x.yaml is no recipe either.
    if path.suffix not in RECIPE_SUFFIXES or path.name.startswith(".") or path.is_dir():
        return False
    _check_regular(path)
    return path.is_file()


def _check_regular(path: Path) -> None:
    """A FIFO or a device named like a recipe would block or never end when read."""
    from buildsys.limits import MAX_TEXT_BYTES, file_problem

    problem = file_problem(path, MAX_TEXT_BYTES, "a recipe")
    if problem:
        raise UsageError(
            f"recipe {path} {problem}",
            hint="a recipe is a small YAML text file; remove or rename this one, or name the recipes to build",
            path=str(path),
        )


@dataclass(frozen=True)
class _Loaded:
    recipe: Recipe | None
    parsed: Parsed
    problems: list[Problem]

    def built(self) -> Recipe:
        """The recipe; a file without one has problems, raised as they are everywhere."""
        if self.recipe is None:
            raise RecipeError(sort_problems(self.problems))
        return self.recipe


class RecipeLoader:
    """Loads recipes; holds the compiled schema so many files are checked fast."""

    def __init__(self, schema_path: Path | None = None, memo: Path | None = None):
        from buildsys.schemafiles import schema_path as shipped

        text = (schema_path or shipped("recipe.schema.json")).read_text(encoding="utf-8")
        self._schema = json.loads(text)
        # a recipe found valid by older checks must be checked again by new ones
        self._schema_digest = digest_data([digest_bytes(text.encode("utf-8")), _checks_digest()])
        self._validator: Any = None
        self._name_pattern = self._schema["$defs"]["name"]["pattern"]
        self._memo = ValidMemo(memo)

    def load(self, path: Path, workspace: Path) -> Recipe:
        """The recipe at `path`; raises RecipeError listing every problem of the file."""
        workspace = absolute(workspace)
        loaded = self._load(absolute(workspace / path), workspace)
        problems = loaded.problems or _placements([loaded], workspace)
        if problems:
            raise RecipeError(sort_problems(problems))
        return loaded.built()

    def load_all(self, paths: list[Path], workspace: Path) -> list[Recipe]:
        """All recipes, or one RecipeError with the problems of every file and every clash."""
        workspace = absolute(workspace)
        loaded = [self._load(absolute(workspace / p), workspace) for p in paths]
        problems = [p for one in loaded for p in one.problems]
        problems += _clashes([one for one in loaded if one.recipe], workspace)
        problems += _placements([one for one in loaded if one.recipe], workspace)
        if problems:
            raise RecipeError(sort_problems(problems))
        self._memo.save()
        return [one.built() for one in loaded]

    def _load(self, path: Path, workspace: Path) -> _Loaded:
        parsed = parse_file(path, shown_path(path, workspace))
        if not isinstance(parsed.data, dict) and parsed.problems:
            return _Loaded(None, parsed, parsed.problems)
        if not isinstance(parsed.data, dict):
            message = "the recipe must be a mapping of keys (version, source, targets, ...)"
            return _Loaded(None, parsed, [parsed.at_value((), message)])
        if (foreign := _foreign(parsed, self._schema["properties"])) is not None:
            return _Loaded(None, parsed, parsed.problems + [foreign])
        # data with parse problems may not even be JSON-able: no seal for it
        seal = "" if parsed.problems else digest_data([self._schema_digest, path.stem, parsed.data])
        if not seal or not self._memo.known(seal):
            problems = parsed.problems + self._check(parsed, path.stem)
            if problems:
                return _Loaded(None, parsed, problems)
            self._memo.add(seal)
        # not sealed: the verdict depends on where the recipe and the workspace are
        outside = _outside_globs(parsed, path.parent, workspace)
        if outside:
            return _Loaded(None, parsed, outside)
        return _Loaded(build_recipe(parsed.data, path, workspace, parsed), parsed, [])

    def _check(self, parsed: Parsed, stem: str) -> list[Problem]:
        # jsonschema costs ~0.1 s to import: only recipes not seen valid before pay it
        from jsonschema import Draft202012Validator

        from buildsys.documents.problems import schema_problems
        from buildsys.recipe.problems import semantic_problems

        if self._validator is None:
            self._validator = Draft202012Validator(self._schema)
        # A value YAML could not give us (a date, a bad key) already has its problem;
        # the schema would only add "must be text, got nothing" at the same spot.
        taken = {(p.line, p.column, p.key) for p in parsed.problems}
        found = schema_problems(self._validator, parsed) + semantic_problems(parsed, stem, self._name_pattern)
        return [p for p in found if (p.line, p.column, p.key) not in taken]


def _outside_globs(parsed: Parsed, base: Path, workspace: Path) -> list[Problem]:
    """An images glob with `**` stays in the workspace or the recipe's folder unless it says
    `allow_outside: true`: `/**/*.png` would otherwise walk the whole file system."""
    from buildsys.globwalk import fixed_prefix, recursive

    roots = [str(workspace), str(base)]
    problems = []
    for section in ("calibration", "validate"):
        inputs = (parsed.data.get(section) or {}).get("inputs") or {}
        for name, source in inputs.items():
            if source.get("allow_outside") is True or not isinstance(source.get("images"), str):
                continue
            pattern = _resolve(base, source["images"])
            start = fixed_prefix(pattern)
            if recursive(pattern) and not any(_inside(start, root) for root in roots):
                message = f"'{source['images']}' walks {start} with **, outside the workspace and the recipe's folder"
                hint = (
                    "point the glob at the data folder inside the workspace, drop the **, or add `allow_outside: true`"
                )
                problems.append(parsed.at_value((section, "inputs", name, "images"), message, hint))
    return problems


def _inside(path: str, root: str) -> bool:
    return os.path.commonpath([path, root]) == root


def _checks_digest() -> str:
    """The code that decides whether a recipe is valid: this package's modules and the
    document helpers they check with."""
    package = Path(__file__).parents[1]
    files = sorted(package.glob("recipe/*.py")) + sorted(package.glob("documents/*.py"))
    return digest_data([[f.relative_to(package).as_posix(), digest_bytes(f.read_bytes())] for f in files])


def _foreign(parsed: Parsed, known: dict[str, Any]) -> Problem | None:
    """One problem for a YAML file that is no recipe at all (a CI workflow, a compose file),
    not one per key it has."""
    if not parsed.data or parsed.data.keys() & known.keys():
        return None
    keys = [clip(k, 30) for k in list(parsed.data)[:4]]
    message = (
        f"not a recipe: none of its keys ({', '.join(keys)}{', ...' if len(parsed.data) > 4 else ''}) is a recipe key"
    )
    hint = "a recipe needs at least `version`, `source` and `targets`; keep other YAML files out of the recipe folder"
    return parsed.at_value((), message, hint)


def _clashes(loaded: list[_Loaded], workspace: Path) -> list[Problem]:
    """Names and build directories must be unique across the build."""
    names: dict[str, Recipe] = {}
    outputs: dict[Path, Recipe] = {}
    problems = []
    for one in loaded:
        recipe = one.built()
        if (other := names.setdefault(recipe.name, recipe)) is not recipe:
            message = f"recipe name '{recipe.name}' is also used by {shown_path(other.path, workspace)}"
            problems.append(one.parsed.at_key(("name",), message, "recipe names must be unique; set `name:`"))
        elif (other := outputs.setdefault(recipe.output, recipe)) is not recipe:
            message = f"build directory {recipe.output} is also used by {shown_path(other.path, workspace)}"
            problems.append(one.parsed.at_key(("output",), message, "give each recipe its own `output:`"))
    return problems


def _placements(loaded: list[_Loaded], workspace: Path) -> list[Problem]:
    """Build directories buildsys can own: clean must never delete the user's files."""
    from buildsys.recipe.placement import output_problems, recipe_holders

    holders = recipe_holders([one.recipe for one in loaded if one.recipe])
    return [p for one in loaded if one.recipe for p in output_problems(one.recipe, one.parsed, workspace, holders)]


def build_recipe(data: dict[str, Any], path: Path, workspace: Path, parsed: Parsed | None = None) -> Recipe:
    """The frozen recipe from data that passed every check; defaults applied here."""
    base = path.parent
    name = data.get("name", path.stem)
    output = _resolve(base, data["output"]) if "output" in data else str(workspace / "build" / name)
    return Recipe(
        path=path,
        name=name,
        source=parse_source(data["source"], base),
        targets=tuple(_target(t) for t in data["targets"]),
        validate=_validate(data.get("validate", {}), base),
        output=Path(output),
        digest=digest_data(data),
        shapes={k: tuple(int(d) for d in v) for k, v in data.get("shapes", {}).items()},
        batch=int(data["batch"]) if "batch" in data else None,
        outputs=tuple(data.get("outputs", ())),
        calibration=_calibration(data["calibration"], base) if "calibration" in data else None,
        replacements=tuple(_replacement(i, r, parsed) for i, r in enumerate(data.get("replacements", ()))),
    )


def _target(data: dict[str, Any]) -> Target:
    overrides = {k: data[k] for k in OVERRIDES if k in data}
    return Target(data["device"], data.get("name", default_target_name(data["device"])), overrides)


def _replacement(index: int, data: dict[str, Any], parsed: Parsed | None) -> Replacement:
    if parsed is None:
        return Replacement(index, data)
    prefix = ("replacements", index)
    lines = {
        path[2:]: pos[0]
        for path, pos in {**parsed.values, **parsed.keys}.items()
        if path[:2] == prefix and len(path) > 2
    }
    entry = parsed.values.get(prefix)
    return Replacement(index, data, entry[0] if entry else None, lines)


def _resolve(base: Path, written: str) -> str:
    # normpath, not resolve(): symlinks are the user's business, and globs must stay globs.
    return os.path.normpath(os.path.join(base, written))


def _calibration(data: dict[str, Any], base: Path) -> Calibration:
    # int(): the schema lets 64.0 pass as an integer
    return Calibration(
        samples=int(data.get("samples", 64)),
        seed=int(data.get("seed", 0)),
        inputs=_inputs(data["inputs"], base),
    )


def _validate(data: dict[str, Any], base: Path) -> Validate:
    return Validate(
        samples=int(data.get("samples", 16)),
        seed=int(data.get("seed", 1)),
        thresholds={k: float(v) for k, v in data.get("thresholds", {}).items()},
        inputs=_inputs(data["inputs"], base) if "inputs" in data else None,
        task=data.get("task"),
        labels=Path(_resolve(base, data["labels"])) if "labels" in data else None,
    )


def _inputs(data: dict[str, dict[str, Any]], base: Path) -> dict[str, InputSource]:
    return {name: _input_source(name, source, base) for name, source in data.items()}


def _size_pair(values: list[Any]) -> tuple[int, int]:
    height, width = (int(v) for v in values)  # the schema takes exactly [height, width]
    return height, width


def _input_source(name: str, data: dict[str, Any], base: Path) -> InputSource:
    kind = next(k for k in INPUT_KINDS if k in data)
    if kind == "zeros":
        return InputSource(kind=kind, pattern="", written="zeros: true")
    common = {"kind": kind, "pattern": _resolve(base, data[kind]), "written": data[kind]}
    if kind == "npz":
        return InputSource(**common, key=data.get("key", name))
    if kind == "npy":
        return InputSource(**common)
    return InputSource(
        **common,
        resize=_size_pair(data["resize"]) if "resize" in data else None,
        color=data.get("color", "rgb"),
        scale=float(data.get("scale", 1.0)),
        mean=tuple(float(v) for v in data.get("mean", [0.0])),
        std=tuple(float(v) for v in data.get("std", [1.0])),
        layout=data.get("layout"),
    )


class ValidMemo:
    """Seals of recipe data already found valid, so the no-op build skips the schema.

    A seal covers the schema, the file stem (the default name) and the parsed
    data, so any change that could alter the verdict misses the memo.
    """

    LIMIT = 4096

    def __init__(self, path: Path | None):
        self._path = path
        self._seals: dict[str, None] = dict.fromkeys(self._read(path))
        self._dirty = False

    @staticmethod
    def _read(path: Path | None) -> list[str]:
        try:
            data = json.loads(path.read_text("utf-8")) if path else []
        except (OSError, ValueError):
            return []
        return [s for s in data if isinstance(s, str)] if isinstance(data, list) else []

    def known(self, seal: str) -> bool:
        return seal in self._seals

    def add(self, seal: str) -> None:
        self._seals[seal] = None
        self._dirty = True

    def save(self) -> None:
        if not (self._dirty and self._path):
            return
        from buildsys.fsutil import atomic_write_text

        atomic_write_text(self._path, json.dumps(list(self._seals)[-self.LIMIT :]))
        self._dirty = False
