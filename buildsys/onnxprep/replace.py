"""Apply a recipe's `replacements:` to an ONNX model, in order, checked against it.

Every problem of every entry is collected and reported at once, each pinned to
the entry's recipe line. An edit that leaves an invalid model (checker or shape
inference) is reported against the entry that made it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import onnx

from buildsys.documents.closematch import close_matches, did_you_mean
from buildsys.errors import Problem, UsageError
from buildsys.onnxprep.edits import constant_input, describe, input_index, op_schema, set_attributes
from buildsys.recipe.model import Replacement


class ReplacementError(UsageError):
    """The recipe's replacements do not fit the model; carries every problem."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        noun = "problem" if len(problems) == 1 else "problems"
        lines = [f"{p.location()}  {p.key}: {p.message}" + (f" ({p.hint})" if p.hint else "") for p in problems]
        super().__init__(
            f"{len(problems)} {noun} in the replacements of {problems[0].file}:\n  " + "\n  ".join(lines),
            hint="`buildsys inspect MODEL` lists the model's nodes, inputs and op types",
            path=problems[0].file,
        )


class _Run:
    """One application of a recipe's replacements to one model."""

    def __init__(self, model: onnx.ModelProto, recipe_file: str):
        self.model = model
        self.file = recipe_file
        self.problems: list[Problem] = []
        self.strict = _infers(model)  # a model that never inferred strictly is judged by the checker alone

    @property
    def opsets(self) -> dict[str, int]:
        return {("" if o.domain == "ai.onnx" else o.domain): o.version for o in self.model.opset_import}

    def problem(self, r: Replacement, path: tuple, message: str, hint: str | None = None) -> None:
        key = "replacements" + f"[{r.index}]" + "".join(f".{p}" if isinstance(p, str) else f"[{p}]" for p in path)
        self.problems.append(Problem(self.file, r.line_of(*path), None, key, message, hint))


def apply_replacements(
    model: onnx.ModelProto, replacements: Sequence[Replacement], recipe_file: str
) -> onnx.ModelProto:
    """The model with every graph edit applied; raises ReplacementError listing all problems."""
    run = _Run(_copy(model), recipe_file)
    for r in replacements:
        if r.edits_graph:
            _apply_one(run, r)
        else:
            _check_layout_target(run, r)
    if run.problems:
        raise ReplacementError(run.problems)
    return run.model


def _apply_one(run: _Run, r: Replacement) -> None:
    nodes = _select(run, r)
    if not nodes:
        return
    candidate = _copy(run.model)
    chosen = [n for n in candidate.graph.node if _key(n) in {_key(m) for m in nodes}]
    before = len(run.problems)
    _ACTIONS[r.action](run, candidate, chosen, r)
    if len(run.problems) > before:
        return
    problem = _validity(candidate, run.strict)
    if problem and run.strict:
        # shapes the exporter recorded may no longer hold after the edit (a new Reshape
        # target): forget them; prepare infers every shape again
        _forget_shapes(candidate)
        problem = _validity(candidate, run.strict)
    if problem:
        run.problem(
            r, (r.action,), f"the edited model is not valid ONNX: {problem}", "undo or correct this replacement"
        )
        return
    run.model = candidate


# -- selection ----------------------------------------------------------------------------------


def _select(run: _Run, r: Replacement) -> list[onnx.NodeProto]:
    nodes = list(run.model.graph.node)
    if r.selector == "node":
        found = [n for n in nodes if n.name == r.data["node"]]
        if not found:
            names = [n.name for n in nodes if n.name]
            close = close_matches(r.data["node"], names, n=3, cutoff=0.5)
            hint = f"closest: {', '.join(close)}" if close else "`buildsys inspect MODEL` lists the node names"
            run.problem(r, ("node",), f"the model has no node named '{r.data['node']}'", hint)
        return found
    match = r.data["match"]
    found = [n for n in nodes if _matches(n, match)]
    if not found and not r.data.get("optional"):
        types = sorted({n.op_type for n in nodes})
        hint = did_you_mean(match.get("op_type", ""), types, "op_type") or f"op types in the model: {', '.join(types)}"
        run.problem(r, ("match",), f"match {_show(match)} selects no node", hint + "; or add `optional: true`")
    return found


def _matches(node: onnx.NodeProto, match: dict) -> bool:
    if "op_type" in match and node.op_type != match["op_type"]:
        return False
    return "name" not in match or re.search(match["name"], node.name) is not None


def _key(node: onnx.NodeProto) -> tuple:
    return (node.name, node.op_type, tuple(node.input), tuple(node.output))


# -- actions ------------------------------------------------------------------------------------


def _attributes(run: _Run, model: onnx.ModelProto, nodes: list[onnx.NodeProto], r: Replacement) -> None:
    seen = set()
    for node in nodes:
        for path, message, hint in set_attributes(node, op_schema(node, run.opsets), r.data["attributes"]):
            if (path, message) not in seen:  # a match over many nodes: say each problem once
                seen.add((path, message))
                run.problem(r, path, message, hint)


def _inputs(run: _Run, model: onnx.ModelProto, nodes: list[onnx.NodeProto], r: Replacement) -> None:
    known = _tensor_types(model)
    for node in nodes:
        schema = op_schema(node, run.opsets)
        for key, value in r.data["inputs"].items():
            index, problem = input_index(node, schema, key)
            if problem:
                run.problem(r, ("inputs", key), f"{describe(node, schema)} {problem}")
                continue
            _replace_input(run, model, node, schema, index, value, known, r, key)


def _replace_input(run, model, node, schema, index, value, known, r, key) -> None:
    current = node.input[index] if index < len(node.input) else ""
    dtype, rank = known.get(current, (None, None)) if current else (None, None)
    dtype = dtype or _schema_dtype(schema, index, value)
    name = _unique(model, f"{node.name or node.op_type}/input{index}/replaced")
    tensor, problem = constant_input(value, dtype, rank, name)
    if problem:
        formal = schema.inputs[min(index, len(schema.inputs) - 1)].name if schema else str(index)
        run.problem(r, ("inputs", key), f"{describe(node, schema)} input {index} '{formal}' {problem}")
        return
    model.graph.initializer.append(tensor)
    while len(node.input) <= index:
        node.input.append("")
    node.input[index] = name


def _rewrite(run: _Run, model: onnx.ModelProto, nodes: list[onnx.NodeProto], r: Replacement) -> None:
    from buildsys.rewrites.registry import REWRITES, RewriteContext, RewriteError, apply_rewrite

    rewrite = REWRITES[r.data["rewrite"]]
    # by position: exported nodes may have no name
    chosen = {_key(n) for n in nodes}
    indices = [i for i, n in enumerate(model.graph.node) if _key(n) in chosen]
    try:
        apply_rewrite(RewriteContext(model), rewrite.name, indices)
    except RewriteError as exc:
        where = f" (node '{exc.node}')" if exc.node else ""
        run.problem(r, ("rewrite",), f"rewrite '{rewrite.name}'{where}: {exc.reason}", rewrite.summary)


_ACTIONS = {"attributes": _attributes, "inputs": _inputs, "rewrite": _rewrite}


def _check_layout_target(run: _Run, r: Replacement) -> None:
    graph = run.model.graph
    inits = {t.name for t in graph.initializer}
    if r.selector == "input":
        names = [v.name for v in graph.input if v.name not in inits]
    else:
        names = [v.name for v in graph.output]
    wanted = r.data[r.selector]
    if wanted not in names:
        hint = did_you_mean(wanted, names) or f"graph {r.selector}s: {', '.join(names)}"
        run.problem(r, (r.selector,), f"the model has no graph {r.selector} '{wanted}'", hint)


# -- helpers ------------------------------------------------------------------------------------


def _tensor_types(model: onnx.ModelProto) -> dict[str, tuple[np.dtype, int | None]]:
    """Known element type and rank of each tensor: initializers, graph IO and inferred values."""
    inferred = _try_infer(model)
    out = {}
    for v in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        t = v.type.tensor_type
        if t.elem_type:
            rank = len(t.shape.dim) if t.HasField("shape") else None
            out[v.name] = (onnx.helper.tensor_dtype_to_np_dtype(t.elem_type), rank)
    for init in model.graph.initializer:
        out[init.name] = (onnx.helper.tensor_dtype_to_np_dtype(init.data_type), len(init.dims))
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            t = node.attribute[0].t
            out[node.output[0]] = (onnx.helper.tensor_dtype_to_np_dtype(t.data_type), len(t.dims))
    return out


def _schema_dtype(schema, index: int, value) -> np.dtype:
    """For an absent input: the one type the schema allows, else int64 for integers, float32."""
    integral = np.asarray(value).dtype.kind in "iu"
    if schema is not None and schema.inputs:
        formal = schema.inputs[min(index, len(schema.inputs) - 1)]
        allowed = [c.allowed_type_strs for c in schema.type_constraints if c.type_param_str == formal.type_str]
        types = allowed[0] if allowed else [formal.type_str]
        if len(types) == 1:
            return _np_type(types[0])
        if integral and "tensor(int64)" in types:
            return np.dtype(np.int64)
    return np.dtype(np.int64 if integral else np.float32)


def _np_type(type_str: str) -> np.dtype:
    name = type_str.removeprefix("tensor(").removesuffix(")")
    return np.dtype({"float": "float32", "double": "float64", "bool": "bool"}.get(name, name))


def _unique(model: onnx.ModelProto, base: str) -> str:
    taken = {t.name for t in model.graph.initializer} | {o for n in model.graph.node for o in n.output}
    name, k = base, 1
    while name in taken:
        k += 1
        name = f"{base}{k}"
    return name


def _forget_shapes(model: onnx.ModelProto) -> None:
    del model.graph.value_info[:]
    for out in model.graph.output:
        for dim in out.type.tensor_type.shape.dim:  # the rank stays: the checker wants a shape
            dim.Clear()


def _validity(model: onnx.ModelProto, strict: bool) -> str | None:
    try:
        onnx.checker.check_model(model)
        if strict:
            onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except Exception as exc:  # noqa: BLE001 - the checker and inference raise several C++-bound types
        return " ".join(str(exc).split())[:300]
    return None


def _infers(model: onnx.ModelProto) -> bool:
    return _validity(model, strict=True) is None


def _try_infer(model: onnx.ModelProto) -> onnx.ModelProto:
    try:
        return onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # noqa: BLE001 - shape inference is a best effort here: types fall back to the schema
        return model


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def _show(value) -> str:
    from buildsys.documents.problems import show

    return show(value)
