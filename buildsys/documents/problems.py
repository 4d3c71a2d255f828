"""Schema problems a human can act on, for any marked YAML document (recipes, device profiles,
remote settings).

jsonschema's own messages dump Python reprs of instances and subschemas;
these say what is wrong with the value at hand, in one line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from jsonschema import ValidationError
from jsonschema.protocols import Validator

from buildsys.documents import closematch
from buildsys.documents.yamlmarks import KeyPath, Parsed, clip
from buildsys.errors import Problem

SHOW_MAX = 40
MESSAGE_MAX = 120
_TYPE_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "text",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "empty",
}
_BOUNDS = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}


def show(value: Any) -> str:
    """A short rendering of a user's value for a message."""
    if value is None:
        return "nothing"
    if isinstance(value, str):
        text = f"'{value}'"
    else:
        text = json.dumps(value, ensure_ascii=False, default=str)
    return clip(text, SHOW_MAX)


def did_you_mean(word: str, choices: list[str]) -> str | None:
    return closematch.did_you_mean(word, choices)


def schema_problems(validator: Validator, parsed: Parsed) -> list[Problem]:
    out: list[Problem] = []
    for error in validator.iter_errors(parsed.data):
        out.extend(_translate(error, parsed, tuple(error.absolute_path)))
    return out


def _translate(error: ValidationError, parsed: Parsed, path: KeyPath) -> Iterator[Problem]:
    value = error.instance
    match error.validator:
        case "additionalProperties":
            yield from _unknown_keys(parsed, path, value, error.schema)
        case "required":
            for key in error.validator_value:
                if key not in value:
                    yield parsed.at(parsed.values.get(path), path + (key,), f"missing required key '{key}'")
        case "oneOf" | "anyOf":
            yield from _one_of(parsed, path, value, error.schema, error.validator_value)
        case "dependentRequired":
            yield from _only_with(parsed, path, value, error.validator_value)
        case _:
            yield parsed.at_value(path, *_value_message(error))


def _value_message(error: ValidationError) -> tuple[str, str | None]:
    """Message and hint for a keyword that judges a single value."""
    keyword, value, wanted = error.validator, error.instance, error.validator_value
    match keyword:
        case "type":
            return f"must be {_wanted_type(wanted)}, got {_describe(value)}", None
        case "enum":
            hint = did_you_mean(value, [str(c) for c in wanted]) if isinstance(value, str) else None
            return f"must be one of {', '.join(show(c) for c in wanted)}; got {show(value)}", hint
        case "const":
            return f"must be {show(wanted)}, got {show(value)}", error.schema.get("description")
        case "minimum" | "exclusiveMinimum" | "maximum" | "exclusiveMaximum":
            return f"must be {_BOUNDS[keyword]} {wanted}, got {show(value)}", None
        case "pattern":
            return f"{show(value)} does not match {wanted}", error.schema.get("description")
        case "minItems" | "maxItems":
            return _count_message(error.schema, len(value)), None
        case "minLength":
            return "must not be empty", None
        case "minProperties":
            return f"needs at least {wanted} entry", None
    return clip(error.message, MESSAGE_MAX), None


def _unknown_keys(parsed: Parsed, path: KeyPath, value: dict, schema: dict) -> Iterator[Problem]:
    allowed = list(schema.get("properties", {}))
    for key in value:
        if key not in allowed:
            hint = did_you_mean(key, allowed) or f"allowed here: {', '.join(allowed)}"
            yield parsed.at_key(path + (key,), f"unknown key '{key}'", hint)


def _one_of(parsed: Parsed, path: KeyPath, value: Any, schema: dict, branches: list) -> Iterator[Problem]:
    if not isinstance(value, dict):
        return  # the type error already says it; `required` branches all pass on non-mappings
    # Branches that each require one key read as "exactly one of these keys".
    options = [b["required"][0] for b in branches if list(b) == ["required"] and len(b["required"]) == 1]
    if len(options) != len(branches):
        yield parsed.at_value(path, "does not match any of the allowed forms")
        return
    found = [k for k in value if k in options]
    noun = schema.get("title") or "this"
    message = f"{noun} needs exactly one of {', '.join(options)}; found: {', '.join(found) or 'none'}"
    # With too many, point at the first one to remove; with none, at the mapping.
    yield parsed.at(parsed.keys.get(path + tuple(found[1:2])) if found else None, path, message)


def _only_with(parsed: Parsed, path: KeyPath, value: dict, needed: dict[str, list[str]]) -> Iterator[Problem]:
    for key, needs in needed.items():
        if key in value and any(n not in value for n in needs):
            yield parsed.at_key(path + (key,), f"'{key}' is only allowed with {' and '.join(needs)}")


def _wanted_type(wanted: str | list[str]) -> str:
    names = [wanted] if isinstance(wanted, str) else wanted
    return " or ".join(_TYPE_NAMES.get(n, n) for n in names)


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "true" if value else "false"
    return show(value)


def _count_message(schema: dict, count: int) -> str:
    low, high = schema.get("minItems"), schema.get("maxItems")
    if low == high:
        wanted = f"exactly {low}"
    elif high is None:
        wanted = f"at least {low}"
    elif low is None:
        wanted = f"at most {high}"
    else:
        wanted = f"{low} to {high}"
    return f"needs {wanted} {'value' if wanted.endswith(' 1') else 'values'}, got {count}"
