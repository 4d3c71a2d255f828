"""Recipe-level checks of `replacements:` that need no model: selector/action pairs,
rewrite names, `approximate`, regular expressions. Checks against the model run in
the prepare stage (buildsys/onnxprep/)."""

from __future__ import annotations

import re
import warnings
from typing import Any

from buildsys.documents.yamlmarks import Parsed
from buildsys.errors import Problem
from buildsys.recipe.model import not_onnx_graph

# which actions each selector takes
PAIRS = {
    "node": ("attributes", "inputs", "rewrite"),
    "match": ("attributes", "inputs", "rewrite"),
    "input": ("keep_layout",),
    "output": ("output_layout",),
}
ONLY_WITH = {"approximate": "rewrite", "optional": "match"}


def replacement_problems(parsed: Parsed, entries: list[Any], source: Any) -> list[Problem]:
    out = _source(parsed, entries, source)
    for i, entry in enumerate(entries):
        if isinstance(entry, dict):
            out += _entry(parsed, ("replacements", i), entry)
    return out


def _source(parsed: Parsed, entries: list[Any], source: Any) -> list[Problem]:
    """Replacements edit ONNX graphs; on any other source they would silently do nothing."""
    fmt = not_onnx_graph(source)
    if not entries or fmt is None:
        return []
    message = f"replacements edit ONNX models, and this recipe's source is {fmt}"
    return [parsed.at_key(("replacements",), message, "export the model to ONNX, or remove `replacements:`")]


def _entry(parsed: Parsed, path: tuple, entry: dict) -> list[Problem]:
    out = _pairing(parsed, path, entry)
    for key, needs in ONLY_WITH.items():
        if key in entry and needs not in entry:
            out.append(parsed.at_key(path + (key,), f"'{key}' is only allowed with '{needs}'"))
    if isinstance(entry.get("rewrite"), str):
        out += _rewrite(parsed, path, entry)
    pattern = entry.get("match", {}).get("name") if isinstance(entry.get("match"), dict) else None
    if isinstance(pattern, str):
        if (why := _regex_problem(pattern)) is not None:
            out.append(parsed.at_value(path + ("match", "name"), f"not a valid regular expression: {why}"))
    return out


def _regex_problem(pattern: str) -> str | None:
    # re.error is not all: a huge {n} overflows and deep nesting exhausts the parser's recursion
    try:
        with warnings.catch_warnings():  # "possible nested set" would print a source line to the user
            warnings.simplefilter("ignore", FutureWarning)
            re.compile(pattern)
    except (re.error, OverflowError) as exc:
        return str(exc)
    except RecursionError:
        return "groups are nested too deeply"
    return None


def _pairing(parsed: Parsed, path: tuple, entry: dict) -> list[Problem]:
    selectors = [k for k in PAIRS if k in entry]
    actions = [k for k in ("attributes", "inputs", "rewrite", "keep_layout", "output_layout") if k in entry]
    if len(selectors) != 1 or len(actions) != 1:
        return []  # the schema reports the count
    allowed = PAIRS[selectors[0]]
    if actions[0] in allowed:
        return []
    message = f"'{actions[0]}' does not go with '{selectors[0]}'"
    return [parsed.at_key(path + (actions[0],), message, f"'{selectors[0]}' takes {' or '.join(allowed)}")]


def _rewrite(parsed: Parsed, path: tuple, entry: dict) -> list[Problem]:
    try:
        from buildsys.rewrites.registry import REWRITES
    except ImportError:  # pragma: no cover - the registry ships with buildsys
        return []
    name = entry["rewrite"]
    rewrite = REWRITES.get(name)
    if rewrite is None:
        from buildsys.documents.problems import did_you_mean

        hint = did_you_mean(name, sorted(REWRITES)) or f"known rewrites: {', '.join(sorted(REWRITES))}"
        return [parsed.at_value(path + ("rewrite",), f"unknown rewrite '{name}'", hint)]
    if not rewrite.exact and entry.get("approximate") is not True:
        message = f"rewrite '{name}' is approximate (max abs error {rewrite.bound:g})"
        return [parsed.at_value(path + ("rewrite",), message, "add `approximate: true` to accept it")]
    return []
