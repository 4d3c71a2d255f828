"""Math forms whose int8 TFLite kernels cannot fail at run time.

One float graph serves every target, and some int8 kernels check their data at
Eval and abort the whole invocation: DIV refuses a divisor whose raw value is
its zero point (any divisor under half a quantization step of its calibrated
range), SQRT a negative input, RSQRT a raw value below the zero point. So:

- x / y (y computed at run time, >= 0 by construction) becomes
  x * q * q * q * q with q = rsqrt(sqrt(y)) = y^(-1/4), multiplied left to right;
  a divisor of either sign: (x * r) * r * sign(y), r = rsqrt(|y|),
  sign(y) = (y * r) * r. Exact in float up to rounding (a few ulp). In int8 a
  divisor at the zero point saturates q instead of aborting, and no tensor holds
  1/y: its calibrated range would be the divisor's range inverted (a zero row
  with an eps divisor stretches it to 1/eps and every typical value falls within
  one step), while q's range is that range's fourth root.
  x / sqrt(v) (normalisations) becomes (x * q) * q with q = v^(-1/4): see over_sqrt.
- SQRT and RSQRT get an input that is non-negative by construction (x * x,
  sums and means of such, Relu, Exp...), which int8 keeps at or above the
  zero point; any other input is passed through Relu first, which changes
  nothing where the ONNX op is defined.

`nonnegative` decides "by construction" from the ONNX graph, not from data.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from buildsys.converter.context import ConversionContext
from buildsys.converter.fusions import FUSED
from buildsys.converter.relayout import RELAYOUT

# Ops whose output is >= 0 whatever their inputs (Sqrt: NaN below 0 in ONNX).
_ALWAYS = frozenset(
    {
        "Abs",
        "Relu",
        "Sqrt",
        "Exp",
        "Sigmoid",
        "Softmax",
        "Softplus",
        "HardSigmoid",
        "ReduceL1",
        "ReduceL2",
        "ReduceSumSquare",
    }
)
# Ops whose output is >= 0 when every (data) input is.
_ALL_INPUTS = frozenset(
    {
        "Add",
        "Mul",
        "Div",
        "Sum",
        "Mean",
        "Min",
        "Concat",
        "ReduceMean",
        "ReduceSum",
        "ReduceMax",
        "ReduceMin",
        "Reciprocal",
    }
)
# Ops that only move, pick or pool values of their first input (the others are shapes and indices);
# not Resize: cubic interpolation overshoots below 0.
_FIRST_INPUT = frozenset(
    {
        "Identity",
        "Reshape",
        "Flatten",
        "Squeeze",
        "Unsqueeze",
        "Transpose",
        "Expand",
        "Tile",
        "Slice",
        "Gather",
        "Split",
        "MaxPool",
        "AveragePool",
        "GlobalAveragePool",
        "GlobalMaxPool",
        "Cast",
        "DepthToSpace",
        "SpaceToDepth",
    }
)
_DEPTH = 64  # producers looked through; deeper chains count as "maybe negative"


def nonnegative(ctx: ConversionContext, name: str) -> bool:
    """True when the value cannot be negative for any input, judged from the graph."""
    return _nonneg(ctx, name, _DEPTH, {})


def _nonneg(ctx: ConversionContext, name: str, depth: int, seen: dict[str, bool]) -> bool:
    if name in seen:
        return seen[name]
    seen[name] = False  # a cycle or a deep chain proves nothing
    const = ctx.const(name)
    if const is not None:
        seen[name] = bool(np.all(np.asarray(const) >= 0))
        return seen[name]
    node = ctx.producer(name)
    # a fused Reshape/Transpose chain only moves its first input, as its nodes did
    moved = node is not None and node.domain == FUSED and node.op_type == RELAYOUT
    if node is None or (node.domain and not moved) or depth <= 0:
        return False
    if moved:
        seen[name] = _nonneg(ctx, node.input(0), depth - 1, seen)
        return seen[name]
    seen[name] = _node_nonneg(ctx, node, lambda n: _nonneg(ctx, n, depth - 1, seen))
    return seen[name]


def _node_nonneg(ctx: ConversionContext, node, sub) -> bool:
    op, inputs = node.op_type, [i for i in node.inputs if i]
    if op in _ALWAYS:
        return True
    if op == "Mul" and len(inputs) == 2 and inputs[0] == inputs[1]:
        return True
    if op == "Pow":
        exponent = ctx.const(node.input(1))
        even = exponent is not None and np.all(np.mod(exponent, 2) == 0)
        return bool(even) or sub(node.input(0))
    if op == "Max":
        return any(sub(i) for i in inputs)
    if op == "Clip":
        return _clip_nonneg(ctx, node, sub)
    if op in _ALL_INPUTS:
        return all(sub(i) for i in inputs)
    if op in _FIRST_INPUT:
        return sub(node.input(0))
    return False


def _clip_nonneg(ctx: ConversionContext, node, sub) -> bool:
    """min(max(x, low), high) >= 0: low >= 0 or x >= 0, and no high that may be negative."""
    low, high = (_bound(ctx, node, i, key) for i, key in ((1, "min"), (2, "max")))
    if high is False or (high is not None and not np.all(high >= 0)):
        return False
    if low is not None and low is not False and np.all(low >= 0):
        return True
    return sub(node.input(0))


def _bound(ctx: ConversionContext, node, index: int, key: str):
    """A Clip bound as an array; None when absent, False when computed at run time (opset 11
    made the bounds inputs)."""
    if ctx.opset(node) >= 11:
        name = node.input(index)
        if not name:
            return None
        value = ctx.const(name)
        return False if value is None else np.asarray(value)
    value = node.attr(key)
    return None if value is None else np.asarray(value)


def rsqrt(ctx: ConversionContext, name: str, tensor: tf.Tensor) -> tf.Tensor:
    """1 / sqrt of the ONNX value `name` (as `tensor`), never fed a negative."""
    return tf.math.rsqrt(tensor if nonnegative(ctx, name) else tf.nn.relu(tensor))


def sqrt(ctx: ConversionContext, name: str, tensor: tf.Tensor) -> tf.Tensor:
    return tf.sqrt(tensor if nonnegative(ctx, name) else tf.nn.relu(tensor))


def over_sqrt(x: tf.Tensor, v: tf.Tensor) -> tf.Tensor:
    """x / sqrt(v) for v >= 0 by construction (a variance plus epsilon) as (x * q) * q,
    q = rsqrt(sqrt(v)). One op pair more than x * rsqrt(v), but int8 keeps it: rsqrt(v)
    spans 1/std over the calibration set, and a few near-constant rows (flat image
    regions, padding) stretch that range until typical rows fall within one step;
    q spans its square root."""
    q = tf.math.rsqrt(tf.sqrt(v))
    return (x * q) * q


def _times(q: tf.Tensor, count: int, x: tf.Tensor | None = None) -> tf.Tensor:
    """x * q * q ... (count factors of q), left to right: each product stays near x's range."""
    out = q if x is None else x * q
    for _ in range(count - 1):
        out = out * q
    return out


def divide(x: tf.Tensor | None, y: tf.Tensor, y_nonnegative: bool) -> tf.Tensor:
    """x / y (1 / y when x is None) without DIV: see the module notes."""
    if y_nonnegative:
        q = tf.math.rsqrt(tf.sqrt(y))
        return _times(q, 4) if x is None else _times(q, 4, x)
    r = tf.math.rsqrt(tf.abs(y))
    sign = (y * r) * r
    return (sign * r) * r if x is None else ((x * r) * r) * sign
