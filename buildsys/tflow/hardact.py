"""HardSwish and HardSigmoid in forms XNNPACK runs at int8, for CPU targets.

The converter emits HardSwish as `x * relu6(x + 3) * (1/6)`, which the TFLite converter
fuses into one HARD_SWISH op: right for float, where XNNPACK runs it, and for NPUs that
have the op. XNNPACK has no int8 HARD_SWISH, so an int8 CPU model runs TFLite's own kernel
between two delegate partitions: 1.25 ms at 1x112x112x32 against 0.16 ms for the three
int8 ops `relu6(x + 3) * (x * (1/6))`, which the converter leaves unfused and XNNPACK runs
(same cosine to the float model, 0.99959, in that measurement). MobileNetV3 int8 took 1.7x
its float time with the fused op, 0.83x without.

HardSigmoid, min(max(a*x + b, 0), 1), has no TFLite op: it is MUL, ADD (fused ReLU) and MINIMUM,
and XNNPACK has no int8 MINIMUM, so each squeeze-excite gate of a MobileNetV3 cut the delegate's
graph in two (9 partitions). relu6(6a*x + 6b) * (1/6) is the same function in MUL, ADD (fused
ReLU6) and MUL, which XNNPACK takes whole.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from buildsys.tflow.graphrefs import add_const, const_value, consumers, node_name, port, same_tensor, set_inputs


def split_hard_activations(graph_def: Any) -> Any | None:
    """A copy of `graph_def` with each `x * relu6(x + 3) * (1/6)` reordered so the TFLite
    converter keeps it as ADD/MUL/MUL, and each HardSigmoid as MUL/ADD/MUL; None if it has neither."""
    swishes, sigmoids = list(_matches(graph_def)), list(_hard_sigmoids(graph_def))
    if not swishes and not sigmoids:
        return None
    out = type(graph_def)()
    out.CopyFrom(graph_def)
    nodes = {n.name: n for n in out.node}
    for outer, inner, x, relu6, sixth in swishes:
        # inner: x * (1/6); outer: relu6(x + 3) * inner. Names stay, so consumers are untouched.
        set_inputs(nodes[inner], [x, sixth])
        set_inputs(nodes[outer], [relu6, inner])
    for names, x, a, b in sigmoids:
        _as_relu6(out, [nodes[n] for n in names], x, a, b)
    return out


def _hard_sigmoids(graph_def: Any):
    """([Mul, AddV2, Maximum, Minimum] names, x, a, b) for each min(max(x*a + b, 0), 1)."""
    nodes = {n.name: n for n in graph_def.node}
    readers = consumers(graph_def)
    for top in graph_def.node:
        chain = _chain(nodes, top, ("Minimum", 1.0), ("Maximum", 0.0), ("AddV2", None), ("Mul", None))
        if chain is None or any(len(readers.get((n.name, 0), [])) != 1 for n in chain[1:]):
            continue
        added, scaled = _scalar_operand(nodes, chain[2]), _scalar_operand(nodes, chain[3])
        if added is None or scaled is None:  # never: _chain matched both by their scalar
            continue
        (_, b), (x, a) = added, scaled
        yield [n.name for n in reversed(chain)], x, a, b


def _chain(nodes: dict, top: Any, *steps) -> list | None:
    """[top, its data operand, ...] when each is `op(next, scalar)` (the scalar's value given or any)."""
    chain, node = [], top
    for op, value in steps:
        found = _scalar_operand(nodes, node) if node is not None and node.op == op else None
        if found is None or (value is not None and found[1] != value):
            return None
        chain.append(node)
        node = nodes.get(node_name(found[0])) if not port(found[0]) else None
    return chain


def _scalar_operand(nodes: dict, node: Any) -> tuple[str, float] | None:
    """(the other input, the scalar) when one of `node`'s two inputs is a float32 scalar constant."""
    if len(node.input) != 2:
        return None
    for other, ref in (node.input, node.input[::-1]):
        value = const_value(nodes.get(node_name(ref)), max_size=1)
        if value is not None and value.dtype == np.float32:
            return other, float(value.item())
    return None


def _as_relu6(graph_def: Any, chain: list, x: str, a: float, b: float) -> None:
    """mul, add, maximum, minimum -> x * 6a, + 6b, relu6, * (1/6): exact up to float rounding."""
    mul, add, maximum, minimum = chain
    set_inputs(mul, [x, add_const(graph_def, f"{mul.name}/times_6", np.float32(6 * a))])
    set_inputs(add, [mul.name, add_const(graph_def, f"{add.name}/times_6", np.float32(6 * b))])
    maximum.op = "Relu6"
    set_inputs(maximum, [add.name])
    minimum.op = "Mul"
    set_inputs(minimum, [maximum.name, add_const(graph_def, f"{minimum.name}/sixth", np.float32(1 / 6))])


def _matches(graph_def: Any):
    """(outer Mul, inner Mul, x, Relu6, 1/6 const) names for each fusable HardSwish."""
    nodes = {n.name: n for n in graph_def.node}
    readers = consumers(graph_def)
    for outer in graph_def.node:
        if not _is_mul(outer):
            continue
        for inner_ref, sixth_ref in (outer.input, outer.input[::-1]):
            inner = nodes.get(node_name(inner_ref))
            if inner is not None and _is_scalar(nodes.get(node_name(sixth_ref)), 1.0 / 6.0) and _is_mul(inner):
                found = _swish_operands(nodes, inner)
                if found is not None and len(readers.get((inner.name, 0), [])) == 1:
                    yield outer.name, inner.name, found[0], found[1], sixth_ref
                    break


def _swish_operands(nodes: dict, inner: Any) -> tuple[str, str] | None:
    """(x, relu6) when `inner` is `x * relu6(x + 3)` in either operand order."""
    for x_ref, relu_ref in (inner.input, inner.input[::-1]):
        relu = nodes.get(node_name(relu_ref))
        if relu is None or relu.op != "Relu6" or port(relu_ref):
            continue
        add = nodes.get(node_name(relu.input[0]))
        if add is None or add.op not in ("AddV2", "Add") or port(relu.input[0]):
            continue
        for a, b in (add.input, add.input[::-1]):
            if same_tensor(a, x_ref) and _is_scalar(nodes.get(node_name(b)), 3.0):
                return x_ref, relu_ref
    return None


def _is_mul(node: Any) -> bool:
    return node is not None and node.op == "Mul" and len(node.input) == 2


def _is_scalar(node: Any, value: float) -> bool:
    array = const_value(node, max_size=1)
    return array is not None and array.dtype == np.float32 and bool(np.isclose(array.item(), value, rtol=1e-6))
