"""`attributes:` and `inputs:` edits of selected nodes, typed against the op schema.

Each function returns problem texts (no locations): the engine pins them to the
replacement's recipe line.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from buildsys.documents.closematch import did_you_mean

_ATTR = onnx.defs.OpSchema.AttrType
# attribute type -> (what it is called, converter of a YAML value or None when it does not fit)
_SCALAR_KINDS = {
    _ATTR.INT: ("an integer", lambda v: int(v) if isinstance(v, int) else None),
    _ATTR.FLOAT: ("a number", lambda v: float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None),
    _ATTR.STRING: ("text", lambda v: v if isinstance(v, str) else None),
}
_LIST_KINDS = {_ATTR.INTS: _ATTR.INT, _ATTR.FLOATS: _ATTR.FLOAT, _ATTR.STRINGS: _ATTR.STRING}


def op_schema(node: onnx.NodeProto, opsets: dict[str, int]) -> onnx.defs.OpSchema | None:
    domain = "" if node.domain in ("", "ai.onnx") else node.domain
    try:
        return onnx.defs.get_schema(node.op_type, opsets.get(domain, 1), domain)
    except onnx.defs.SchemaError:
        return None


def describe(node: onnx.NodeProto, schema: onnx.defs.OpSchema | None) -> str:
    where = f"node '{node.name}'" if node.name else "a node"
    return f"{node.op_type} (opset {schema.since_version}) {where}" if schema else f"{node.op_type} {where}"


# -- attributes ---------------------------------------------------------------------------------


def set_attributes(node: onnx.NodeProto, schema, values: dict[str, Any]) -> list[tuple[tuple, str, str | None]]:
    """Set (or, for null, remove) attributes; [(key path, problem, hint)] for those that do not fit."""
    problems: list[tuple[tuple, str, str | None]] = []
    for name, value in values.items():
        path = ("attributes", name)
        if schema is not None and name not in schema.attributes:
            known = sorted(schema.attributes)
            hint = _closest(name, known) or (f"its attributes: {', '.join(known)}" if known else "it has no attributes")
            problems.append((path, f"{describe(node, schema)} has no attribute '{name}'", hint))
            continue
        if value is None:
            _put_attribute(node, name, None)
            continue
        attr, problem = _attribute(name, value, schema.attributes[name] if schema else None)
        if problem:
            problems.append((path, f"{describe(node, schema)}: attribute '{name}' {problem}", _doc(schema, name)))
            continue
        _put_attribute(node, name, attr)
    return problems


def _attribute(name: str, value: Any, spec) -> tuple[onnx.AttributeProto | None, str | None]:
    if spec is None:  # a custom op: no schema, let the value say its type
        return helper.make_attribute(name, value), None
    if spec.type in _SCALAR_KINDS:
        kind, convert = _SCALAR_KINDS[spec.type]
        typed = convert(value)
        return (
            (None, f"is {kind} in the op schema; got {_show(value)}")
            if typed is None
            else (helper.make_attribute(name, typed), None)
        )
    if spec.type in _LIST_KINDS:
        kind, convert = _SCALAR_KINDS[_LIST_KINDS[spec.type]]
        items = [convert(v) for v in value] if isinstance(value, list) else None
        if items is None or any(v is None for v in items):
            return None, f"is a list of {kind.split(' ', 1)[1]}s in the op schema; got {_show(value)}"
        return helper.make_attribute(name, items, attr_type=spec.type), None
    # onnx's stub gives the pybind11 enum neither its int constructor nor `.name`
    return None, f"is a {_ATTR(spec.type).name} attribute, which a recipe cannot set"  # type: ignore[call-arg, attr-defined]


def _put_attribute(node: onnx.NodeProto, name: str, attr: onnx.AttributeProto | None) -> None:
    """Replace in place (so re-setting a value keeps the model's bytes), append, or remove."""
    attrs = list(node.attribute)
    at = next((i for i, a in enumerate(attrs) if a.name == name), None)
    if at is None:
        attrs += [attr] if attr is not None else []
    elif attr is None:
        del attrs[at]
    else:
        attrs[at] = attr
    del node.attribute[:]
    node.attribute.extend(attrs)


def _doc(schema, name: str) -> str | None:
    if schema is None:
        return None
    text = " ".join(schema.attributes[name].description.split())
    return text.split(". ")[0][:160] if text else None


# -- inputs -------------------------------------------------------------------------------------


def input_index(node: onnx.NodeProto, schema, key: Any) -> tuple[int | None, str | None]:
    """The input a key names: an index, the schema's input name, or the tensor wired in."""
    if isinstance(key, int) or (isinstance(key, str) and key.isdigit()):
        index = int(key)
        limit = len(schema.inputs) if schema else len(node.input)
        variadic = (
            schema is not None
            and schema.inputs
            and schema.inputs[-1].option == onnx.defs.OpSchema.FormalParameterOption.Variadic
        )
        return (index, None) if index < limit or variadic else (None, f"has {limit} inputs; got index {index}")
    formal = [p.name for p in schema.inputs] if schema else []
    if key in formal:
        return formal.index(key), None
    if key in node.input:
        return list(node.input).index(key), None
    listing = ", ".join(f"{i} '{n}'" for i, n in enumerate(formal)) or ", ".join(
        f"{i} '{n}'" for i, n in enumerate(node.input)
    )
    return None, f"has no input '{key}' (inputs: {listing})"


def constant_input(
    value: Any, dtype: np.dtype, rank: int | None, name: str
) -> tuple[onnx.TensorProto | None, str | None]:
    """The recipe value as a tensor of `dtype`; a problem text when it does not fit."""
    try:
        array = np.asarray(value)
    except ValueError:
        return None, f"is not a rectangular list of numbers: {_show(value)}"
    if array.dtype.kind not in "iuf" or array.dtype == object:
        return None, f"must be numbers; got {_show(value)}"
    if rank is not None and array.ndim != rank:
        return None, f"is a rank-{rank} tensor in the model; got a rank-{array.ndim} value {_show(value)}"
    if dtype.kind in "iu" and not np.all(np.equal(np.mod(array, 1), 0)):
        return None, f"is {dtype.name} in the model; got non-integer {_show(value)}"
    if dtype.kind in "iu" and (
        array.min(initial=0) < np.iinfo(dtype).min or array.max(initial=0) > np.iinfo(dtype).max
    ):
        return None, f"is {dtype.name}; {_show(value)} is out of its range"
    return numpy_helper.from_array(array.astype(dtype), name), None


def _closest(word: str, choices: list[str]) -> str | None:
    return did_you_mean(word, choices)


def _show(value: Any) -> str:
    from buildsys.documents.problems import show

    return show(value)
