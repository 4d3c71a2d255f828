"""Composite LSTM functions of a float model as plain TF ops, for quantizers without a fused LSTM.

The ONNX converter emits an LSTM direction as a function carrying Keras's `api_implements`
attribute, which the TFLite converter replaces by UNIDIRECTIONAL_SEQUENCE_LSTM. The function's
body is the exact cell math, unrolled; without the attribute the converter inlines it, and
the LSTM becomes FULLY_CONNECTED/LOGISTIC/TANH/MUL steps, which TF's int16x8 quantizer takes
(it has no int16 kernel for the fused op).

The fused kernel's state inputs must be computed per invocation (a constant state becomes a
variable tensor that carries over between invocations), so the converter adds a computed zero
to them (min(|x|, 0)). Unfused, that zero only has an empty calibration range, which the int16
ADD kernel cannot take (it aborts while preparing); so `state + 0` is folded back to `state`
for the functions' state arguments, which is exact.
"""

from __future__ import annotations

from typing import Any

import numpy as np

COMPOSITE = "api_implements"
CALL_OPS = frozenset({"PartitionedCall", "StatefulPartitionedCall"})
STATE_ARGS = (1, 2)  # Keras LSTM composite: (x, init_h, init_c, kernel, recurrent_kernel, bias)
_DEPTH = 4  # producers looked through to prove a value is zero


def unfused(graph_def: Any) -> Any | None:
    """A copy of `graph_def` whose LSTM composite functions are plain functions; None if it has none."""
    names = {f.signature.name for f in graph_def.library.function if _is_lstm(f)}
    if not names:
        return None
    out = type(graph_def)()
    out.CopyFrom(graph_def)
    for function in out.library.function:
        if function.signature.name in names:
            del function.attr[COMPOSITE]
    nodes = {n.name: n for n in out.node}
    for node in out.node:
        if node.op in CALL_OPS and node.attr["f"].func.name in names:
            for i in STATE_ARGS:
                if i < len(node.input):
                    node.input[i] = _without_zero(nodes, node.input[i])
    return out


def lstm_calls(graph_def: Any) -> list[str]:
    """Names of the nodes calling an LSTM composite function ('<ONNX node>/PartitionedCall_7')."""
    names = {f.signature.name for f in graph_def.library.function if _is_lstm(f)}
    return [n.name for n in graph_def.node if n.op in CALL_OPS and n.attr["f"].func.name in names]


def _is_lstm(function: Any) -> bool:
    return COMPOSITE in function.attr and function.attr[COMPOSITE].s.startswith(b"lstm_")


def _without_zero(nodes: dict, ref: str) -> str:
    """`a + b` -> `b` when `a` is zero for every input (and the other way round)."""
    node = nodes.get(_name(ref))
    if node is None or node.op not in ("Add", "AddV2") or len(node.input) != 2:
        return ref
    first, second = node.input
    if _is_zero(nodes, first, _DEPTH):
        return second
    if _is_zero(nodes, second, _DEPTH):
        return first
    return ref


def _is_zero(nodes: dict, ref: str, depth: int) -> bool:
    """min(|t|, 0), max(-|t|, 0), or such a value times a finite constant: 0 whatever `t` is."""
    node = nodes.get(_name(ref))
    if node is None or depth == 0 or len(node.input) != 2:
        return False
    a, b = node.input
    zero = lambda v: np.all(v == 0)  # noqa: E731 - a predicate for _constant
    if node.op == "Minimum":
        return any(_abs(nodes, x) and _constant(nodes, y, zero) for x, y in ((a, b), (b, a)))
    if node.op == "Maximum":
        return any(_negated_abs(nodes, x) and _constant(nodes, y, zero) for x, y in ((a, b), (b, a)))
    if node.op == "Mul":
        finite = lambda v: np.all(np.isfinite(v))  # noqa: E731 - a predicate for _constant
        return any(_is_zero(nodes, x, depth - 1) and _constant(nodes, y, finite) for x, y in ((a, b), (b, a)))
    return False


def _abs(nodes: dict, ref: str) -> bool:
    node = nodes.get(_name(ref))
    return node is not None and node.op == "Abs"


def _negated_abs(nodes: dict, ref: str) -> bool:
    node = nodes.get(_name(ref))
    return node is not None and node.op == "Neg" and len(node.input) == 1 and _abs(nodes, node.input[0])


def _constant(nodes: dict, ref: str, test) -> bool:
    from tensorflow.python.framework import tensor_util

    node = nodes.get(_name(ref))
    return node is not None and node.op == "Const" and bool(test(tensor_util.MakeNdarray(node.attr["value"].tensor)))


def _name(ref: str) -> str:
    """The node a graph input reference names ('n:1' -> 'n'); control inputs name none."""
    return "" if ref.startswith("^") else ref.split(":")[0]
