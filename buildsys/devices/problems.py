"""Problems in a device profile file, located like recipe problems."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from buildsys.documents.yamlmarks import Parsed
from buildsys.errors import Problem, RecipeError
from buildsys.modes import IO_TYPES_BY_MODE

_BUILTIN_OP = re.compile(r"^[A-Z][A-Z0-9_]*$")


class ProfileError(RecipeError):
    """A device profile file failed to load; carries every problem found."""

    def __init__(self, problems: list[Problem]):
        super().__init__(problems)
        self.hint = "fix the keys listed above; `schemas/device.schema.json` describes every key"


def profile_problems(parsed: Parsed, stem: str, check_schema: bool) -> list[Problem]:
    if parsed.problems and not isinstance(parsed.data, dict):
        return list(parsed.problems)
    if not isinstance(parsed.data, dict):
        return [parsed.at_value((), "a device profile must be a mapping of keys (format, quantization, ops, ...)")]
    problems = list(parsed.problems)
    if check_schema:
        problems += _schema(parsed)
        problems += _name(parsed, stem)
    return problems


def _schema(parsed: Parsed) -> list[Problem]:
    from jsonschema import Draft202012Validator

    from buildsys.documents.problems import schema_problems
    from buildsys.schemafiles import load_schema

    taken = {(p.line, p.column, p.key) for p in parsed.problems}
    # null removes an inherited key, so it is never itself a value to check
    bare = dataclasses.replace(parsed, data=_without_nulls(parsed.data))
    found = schema_problems(Draft202012Validator(load_schema("device.schema.json")), bare)
    return [p for p in found if (p.line, p.column, p.key) not in taken]


def _without_nulls(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _without_nulls(v) for k, v in data.items() if v is not None}
    return data


def _name(parsed: Parsed, stem: str) -> list[Problem]:
    if "name" in parsed.data or re.fullmatch(r"[a-z0-9][a-z0-9._-]*", stem):
        return []
    hint = "add `name:` with lower-case letters, digits, '.', '_', '-'"
    return [parsed.at(None, ("name",), f"the file name '{stem}' is not a valid device name", hint)]


def _op_names(parsed: Parsed, fmt: Any) -> list[Problem]:
    """Upper-case names are TFLite builtins and must exist; others are custom op codes."""
    ops = parsed.data.get("ops")
    if fmt == "onnx":
        return _onnx_op_names(parsed, ops)
    if not isinstance(ops, dict) or fmt != "tflite":
        return []
    from buildsys.documents.problems import did_you_mean
    from buildsys.tflow.tflschema import enum_names, schema

    known = set(enum_names(schema().BuiltinOperator).values())
    out = []
    for op in ops:
        if isinstance(op, str) and _BUILTIN_OP.match(op) and op not in known:
            hint = did_you_mean(op, sorted(known))
            out.append(parsed.at_key(("ops", op), f"'{op}' is not a TFLite builtin operator", hint))
    return out


def _onnx_op_names(parsed: Parsed, ops: Any) -> list[Problem]:
    if not isinstance(ops, dict):
        return []
    import onnx.defs

    from buildsys.documents.problems import did_you_mean

    out = []
    for op in ops:
        if isinstance(op, str) and not onnx.defs.has(op):
            hint = did_you_mean(op, sorted({s.name for s in onnx.defs.get_all_schemas()}))
            out.append(parsed.at_key(("ops", op), f"'{op}' is not an ONNX operator", hint))
    return out


def merged_problems(parsed: Parsed, data: dict[str, Any], trusted: bool) -> list[Problem]:
    """Checks that need the profile with its parents merged in."""
    if not trusted:
        return _op_names(parsed, data.get("format", "tflite")) + _quantization(parsed, data)
    return _quantization(parsed, data)


def _quantization(parsed: Parsed, data: dict[str, Any]) -> list[Problem]:
    q = data.get("quantization") or {}
    mode = q.get("mode", "none") if isinstance(q, dict) else None
    if not isinstance(mode, str) or mode not in IO_TYPES_BY_MODE:
        return []  # not a mapping, or an unknown mode: the schema has said so, with the line
    allowed = IO_TYPES_BY_MODE[mode]
    out = []
    for key in ("input_type", "output_type"):
        if isinstance(q.get(key), str) and q[key] not in allowed:
            path = ("quantization", key) if key in (parsed.data.get("quantization") or {}) else ("quantization",)
            message = f"{key} {q[key]} does not go with quantization mode {mode}"
            out.append(parsed.at_value(path, message, f"{mode} gives {', '.join(allowed)}"))
    if data.get("format") == "onnx" and mode != "none":
        out.append(parsed.at_value(("format",), "an onnx artifact is not quantized by buildsys: use mode none"))
    return out
