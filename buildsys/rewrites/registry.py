"""Registered ONNX graph rewrites: a node (or a group of sibling nodes) into ops an accelerator has.

A recipe entry `rewrite: NAME` selects nodes; the prepare stage's edit engine calls
`apply_rewrite(ctx, NAME, indices)` on its `RewriteContext` (or `rewrite_model` on a whole
model). Every rewrite keeps the replaced node's output names, so the rest of the graph is
untouched, and emits ops valid for the model's default-domain opset (13..21 are tested).

Groups: a rewrite with `apply_group` is handed all selected nodes that read the same first
input in one call. `maxpool-cascade` uses it for SPP -> SPPF: MaxPool 5, 9 and 13 on one
tensor become one chain of three 5x5 pools whose links are the three outputs. A lone node is
a group of one, so `apply(ctx, node)` and `apply_group(ctx, [node])` agree.

A node a rewrite does not fit raises `RewriteError`; the engine turns it into a recipe problem.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from types import MappingProxyType

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

from buildsys.rewrites import ops

DEFAULT_DOMAINS = ("", "ai.onnx")


class RewriteError(Exception):
    """A node does not fit the rewrite asked for it (or names no node / no rewrite)."""

    def __init__(self, reason: str, *, node: str | None = None, rewrite: str | None = None):
        self.reason = reason
        self.node = node
        self.rewrite = rewrite
        super().__init__(self._text())

    def _text(self) -> str:
        where = " ".join(
            p
            for p in (
                f"node {self.node!r}" if self.node else "",
                f"rewrite {self.rewrite!r}" if self.rewrite else "",
            )
            if p
        )
        return f"{where}: {self.reason}" if where else self.reason

    def located(self, node: str, rewrite: str) -> RewriteError:
        return RewriteError(self.reason, node=self.node or node, rewrite=self.rewrite or rewrite)


NodeRewrite = Callable[["RewriteContext", onnx.NodeProto], list[onnx.NodeProto]]
GroupRewrite = Callable[["RewriteContext", Sequence[onnx.NodeProto]], list[onnx.NodeProto]]


@dataclass(frozen=True)
class Rewrite:
    name: str
    op_types: tuple[str, ...]
    exact: bool
    bound: float  # max abs error against the original op; 0.0 when exact
    summary: str
    apply: NodeRewrite
    apply_group: GroupRewrite | None = None  # nodes sharing their first input, rewritten together


def node_label(node: onnx.NodeProto) -> str:
    return node.name or f"{node.op_type} -> {node.output[0] if node.output else '?'}"


class RewriteContext:
    """The model being edited (in place) and what rewrites need to know about it."""

    def __init__(self, model: onnx.ModelProto):
        self.model = model
        self.graph = model.graph
        self.opset = _default_opset(model)
        self._types = _value_types(model)
        self._used = _all_names(model.graph)

    def unique(self, base: str) -> str:
        """A node/tensor name not used anywhere in the graph yet (and reserved now)."""
        name, n = base, 0
        while name in self._used:
            n += 1
            name = f"{base}_{n}"
        self._used.add(name)
        return name

    def add_initializer(self, hint: str, value: np.ndarray) -> str:
        name = self.unique(hint)
        self.graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def constant(self, name: str) -> np.ndarray | None:
        """The value of an initializer (not overridable as a graph input) or a Constant output."""
        if name in {v.name for v in self.graph.input}:
            return None
        for t in self.graph.initializer:
            if t.name == name:
                return numpy_helper.to_array(t)
        producer = self.producer(name)
        if producer is not None and producer.op_type == "Constant" and producer.domain in DEFAULT_DOMAINS:
            return _constant_value(producer)
        return None

    def is_constant(self, name: str) -> bool:
        return self.constant(name) is not None

    def dtype(self, name: str) -> np.dtype | None:
        return self._types.get(name, (None, None))[0]

    def shape(self, name: str) -> tuple[int | None, ...] | None:
        return self._types.get(name, (None, None))[1]

    def producer(self, name: str) -> onnx.NodeProto | None:
        return next((n for n in self.graph.node if name in n.output), None)

    def consumers(self, name: str) -> list[onnx.NodeProto]:
        return [n for n in self.graph.node if name in n.input]

    def builder(self, node: onnx.NodeProto, rewrite: str) -> ops.Builder:
        return ops.Builder(self, node, rewrite, RewriteError)

    def replace(self, units: Sequence[tuple[Sequence[int], Sequence[onnx.NodeProto]]]) -> None:
        """Put each unit's new nodes where its first old node was; drop the old nodes and the
        constants only they used. Valid order: a unit's nodes read only its old nodes' inputs."""
        first = {min(old): new for old, new in units}
        gone = {i for old, _ in units for i in old}
        inputs = {name for old, _ in units for i in old for name in self.graph.node[i].input if name}
        kept: list[onnx.NodeProto] = []
        for i, node in enumerate(self.graph.node):
            kept.extend(first.get(i, ()))
            if i not in gone:
                kept.append(node)
        del self.graph.node[:]
        self.graph.node.extend(kept)
        self._drop_unused(inputs)

    def _drop_unused(self, names: set[str]) -> None:
        used = {i for n in self.graph.node for i in n.input} | {o.name for o in self.graph.output}
        dead = names - used - {v.name for v in self.graph.input}
        if not dead:
            return
        inits = [t for t in self.graph.initializer if t.name not in dead]
        del self.graph.initializer[:]
        self.graph.initializer.extend(inits)
        nodes = [n for n in self.graph.node if not (n.op_type == "Constant" and set(n.output) <= dead)]
        del self.graph.node[:]
        self.graph.node.extend(nodes)


def _default_opset(model: onnx.ModelProto) -> int:
    for o in model.opset_import:
        if o.domain in DEFAULT_DOMAINS:
            return o.version
    raise RewriteError("the model imports no default-domain (ai.onnx) opset")


def _constant_value(node: onnx.NodeProto) -> np.ndarray | None:
    for a in node.attribute:
        value = helper.get_attribute_value(a)
        if isinstance(value, onnx.TensorProto):
            return numpy_helper.to_array(value)
        if a.name in ("value_float", "value_floats"):
            return np.asarray(value, dtype=np.float32)
        if a.name in ("value_int", "value_ints"):
            return np.asarray(value, dtype=np.int64)
    return None


def _value_types(model: onnx.ModelProto) -> dict[str, tuple[np.dtype | None, tuple[int | None, ...] | None]]:
    try:
        inferred = shape_inference.infer_shapes(model)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError):
        inferred = model  # what the exporter recorded is still better than nothing
    g = inferred.graph
    types = {v.name: _value_type(v) for v in [*g.input, *g.value_info, *g.output]}
    for t in g.initializer:
        types[t.name] = (np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type)), tuple(t.dims))
    for n in g.node:
        value = _constant_value(n) if n.op_type == "Constant" and n.domain in DEFAULT_DOMAINS else None
        if value is not None:
            types[n.output[0]] = (value.dtype, value.shape)
    return types


def _value_type(v: onnx.ValueInfoProto) -> tuple[np.dtype | None, tuple[int | None, ...] | None]:
    t = v.type.tensor_type
    if not v.type.HasField("tensor_type") or not t.elem_type:
        return None, None
    dtype = np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type))
    if not t.HasField("shape"):
        return dtype, None
    return dtype, tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)


def _all_names(graph: onnx.GraphProto) -> set[str]:
    names = {n.name for n in graph.node} | {t.name for t in graph.initializer}
    names |= {v.name for v in [*graph.input, *graph.output, *graph.value_info]}
    names |= {x for n in graph.node for x in [*n.input, *n.output]}
    return names


# -- wrapping the functions of rewrite_ops into checked rewrites ------------------------------


def _check_fits(name: str, op_types: tuple[str, ...], node: onnx.NodeProto) -> None:
    if node.domain not in DEFAULT_DOMAINS or node.op_type not in op_types:
        kind = node.op_type if node.domain in DEFAULT_DOMAINS else f"{node.domain}:{node.op_type}"
        raise RewriteError(
            f"is a {kind}; this rewrite applies to {', '.join(op_types)}",
            node=node_label(node),
            rewrite=name,
        )


def _node_apply(name, op_types, fn, ctx: RewriteContext, node: onnx.NodeProto) -> list[onnx.NodeProto]:
    _check_fits(name, op_types, node)
    b = ctx.builder(node, name)
    try:
        fn(b, node)
    except RewriteError as exc:
        raise exc.located(node_label(node), name) from None
    return b.nodes


def _group_apply(name, op_types, fn, ctx: RewriteContext, nodes: Sequence[onnx.NodeProto]) -> list[onnx.NodeProto]:
    for node in nodes:
        _check_fits(name, op_types, node)
    b = ctx.builder(nodes[0], name)
    try:
        fn(b, list(nodes))
    except RewriteError as exc:
        raise exc.located(node_label(nodes[0]), name) from None
    return b.nodes


def _rewrite(name, op_types, exact, bound, summary, fn, group_fn=None) -> Rewrite:
    op_types = tuple(op_types)
    if group_fn is None:
        return Rewrite(name, op_types, exact, bound, summary, partial(_node_apply, name, op_types, fn))
    group = partial(_group_apply, name, op_types, group_fn)
    return Rewrite(name, op_types, exact, bound, summary, partial(_one_of_group, group), group)


def _one_of_group(group: GroupRewrite, ctx: RewriteContext, node: onnx.NodeProto) -> list[onnx.NodeProto]:
    return group(ctx, [node])


def _registry() -> MappingProxyType:
    table = [
        _rewrite("hardswish", ["HardSwish"], True, 0.0, "HardSwish -> x * Clip(x + 3, 0, 6) * (1/6)", ops.hardswish),
        _rewrite(
            "hardsigmoid", ["HardSigmoid"], True, 0.0, "HardSigmoid -> Clip(alpha * x + beta, 0, 1)", ops.hardsigmoid
        ),
        _rewrite("mish", ["Mish"], True, 0.0, "Mish -> x * Tanh(Relu(x) + Log(1 + Exp(-Abs(x))))", ops.mish),
        _rewrite("softplus", ["Softplus"], True, 0.0, "Softplus -> Relu(x) + Log(1 + Exp(-Abs(x)))", ops.softplus),
        _rewrite("prelu", ["PRelu"], True, 0.0, "PRelu -> Relu(x) - slope * Relu(-x)", ops.prelu),
        _rewrite(
            "leaky-relu",
            ["LeakyRelu"],
            True,
            0.0,
            "LeakyRelu -> Max(x, alpha * x) (0 <= alpha <= 1), else Relu(x) - alpha * Relu(-x)",
            ops.leaky_relu,
        ),
        _rewrite("gelu", ["Gelu"], True, 0.0, "Gelu -> the Erf or tanh formula its `approximate` names", ops.gelu),
        _rewrite(
            "gelu-tanh",
            ["Gelu", "Erf"],
            False,
            ops.GELU_TANH_BOUND,
            "Gelu -> 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3))); Erf(z) -> tanh(z(2/sqrt(pi) + 0.1009z^2))",
            ops.gelu_tanh,
        ),
        _rewrite(
            "erf-poly",
            ["Erf"],
            False,
            ops.ERF_POLY_BOUND,
            "Erf -> Sign(z) * (1 - poly(1 / (1 + p|z|)) * Exp(-z^2)) (Abramowitz-Stegun 7.1.26)",
            ops.erf_poly,
        ),
        _rewrite("div-to-mul", ["Div"], True, 0.0, "Div(x, constant) -> Mul(x, 1 / constant)", ops.div_to_mul),
        _rewrite(
            "maxpool-cascade",
            ["MaxPool"],
            True,
            0.0,
            "MaxPool k x k stride 1 same -> chain of 5x5/3x3 pools; SPP 5/9/13 on one input -> SPPF",
            None,
            ops.maxpool_cascade,
        ),
        _rewrite(
            "argmax",
            ["ArgMax"],
            True,
            0.0,
            "ArgMax -> ReduceMax, Equal, Cast, Mul(descending range), ReduceMax, Sub, Cast",
            ops.argmax,
        ),
    ]
    return MappingProxyType({r.name: r for r in table})


REWRITES = _registry()


def lookup(name: str) -> Rewrite:
    try:
        return REWRITES[name]
    except KeyError:
        raise RewriteError(f"unknown rewrite {name!r}; known: {', '.join(REWRITES)}") from None


def apply_rewrite(ctx: RewriteContext, name: str, indices: Iterable[int]) -> None:
    """Rewrite the nodes at these positions of ctx.graph.node, in place, all or none."""
    rewrite = lookup(name)
    picked = sorted(set(indices))
    count = len(ctx.graph.initializer)
    try:
        units = _units(ctx, rewrite, picked)
    except RewriteError:
        del ctx.graph.initializer[count:]  # the constants of the units that did fit
        raise
    ctx.replace(units)


def _units(ctx: RewriteContext, rewrite: Rewrite, picked: list[int]) -> list[tuple[list[int], list[onnx.NodeProto]]]:
    nodes = ctx.graph.node
    if rewrite.apply_group is None:
        return [([i], rewrite.apply(ctx, nodes[i])) for i in picked]
    groups: dict[str, list[int]] = {}
    for i in picked:
        groups.setdefault(nodes[i].input[0] if nodes[i].input else "", []).append(i)
    return [(g, rewrite.apply_group(ctx, [nodes[i] for i in g])) for g in groups.values()]


def rewrite_model(model: onnx.ModelProto, nodes: Iterable[str | int], rewrite_name: str) -> onnx.ModelProto:
    """A copy of the model with these nodes rewritten by `rewrite_name`.

    A node is given by name (every node of that name) or by its position in graph.node,
    which reaches unnamed nodes too."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    apply_rewrite(RewriteContext(out), rewrite_name, _positions(out.graph, list(nodes), rewrite_name))
    return out


def _positions(graph: onnx.GraphProto, wanted: list[str | int], rewrite: str) -> list[int]:
    by_name: dict[str, list[int]] = {}
    for i, n in enumerate(graph.node):
        if n.name:
            by_name.setdefault(n.name, []).append(i)
    count = len(graph.node)
    missing = [w for w in wanted if not (0 <= w < count if isinstance(w, int) else w in by_name)]
    if missing:
        shown = ", ".join(f"at position {w}" if isinstance(w, int) else f"named {w!r}" for w in missing)
        raise RewriteError(f"the model has no node {shown}", rewrite=rewrite)
    return [p for w in wanted for p in ([w] if isinstance(w, int) else by_name[w])]
