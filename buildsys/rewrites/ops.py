"""The rewrite functions behind `rewrites.REWRITES`, and the `Builder` they emit nodes with.

Each function takes a Builder (bound to the node being replaced) and the node(s); it emits
the new nodes through the builder, ending on the original output names. It raises
`b.error(reason)` when the node does not fit. This module does not import `rewrites` at run
time: `rewrites` builds its registry from these functions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
from onnx import TensorProto, helper

if TYPE_CHECKING:
    from buildsys.rewrites.registry import RewriteContext

# Max abs error of the tanh form vs exact GELU: 4.74e-4 (at x ~ +-2.70) measured in float64;
# for Erf(z) alone 3.58e-4 (at z ~ +-1.83). float32 evaluation adds < 1e-6.
GELU_TANH_BOUND = 5e-4
# Abramowitz-Stegun 7.1.26 guarantees 1.5e-7; float32 rounding in the Horner sum and in
# 1 - poly * exp (cancellation for small |z|) adds more: against onnxruntime 1.31's float32
# Erf on every float32 in [2^-12, 4.5] the max is 6.63e-7 (at z ~ 0.038).
ERF_POLY_BOUND = 8e-7

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
GELU_CUBIC = 0.044715
# erf(z) = 2 Phi(z sqrt2) - 1, so the tanh GELU formula gives erf(z) ~ tanh(z (A + B z^2))
ERF_TANH_A = 2.0 / math.sqrt(math.pi)
ERF_TANH_B = ERF_TANH_A * GELU_CUBIC * 2.0
AS_P = 0.3275911
AS_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)
MAX_EXACT_INDEX = 1 << 24  # float32 counts exactly up to here


class Builder:
    """Emits the nodes replacing one node (or a group), named after it and the rewrite."""

    def __init__(self, ctx: RewriteContext, node: onnx.NodeProto, rewrite: str, error: Callable[..., Exception]):
        self.ctx = ctx
        self.nodes: list[onnx.NodeProto] = []
        self._error = error
        self._base = f"{node.name or node.output[0]}/{rewrite}"
        self._consts: dict[tuple, str] = {}

    @property
    def opset(self) -> int:
        return self.ctx.opset

    def error(self, reason: str, node: onnx.NodeProto | None = None) -> Exception:
        """The RewriteError to raise; `node` locates it within a group."""
        label = (node.name or f"{node.op_type} -> {node.output[0]}") if node is not None else None
        return self._error(reason, node=label)

    def dtype(self, tensor: str) -> np.dtype:
        dtype = self.ctx.dtype(tensor)
        if dtype is None:
            raise self.error(f"the element type of {tensor!r} is unknown (run shape inference first)")
        return dtype

    def const(self, value: Any, dtype: np.dtype | type, hint: str = "const") -> str:
        array = np.asarray(value, dtype=dtype)
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._consts:
            self._consts[key] = self.ctx.add_initializer(f"{self._base}/{hint}", array)
        return self._consts[key]

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attrs: Any) -> str:
        name = self.ctx.unique(f"{self._base}/{op_type}")
        output = out or name
        self.nodes.append(helper.make_node(op_type, list(inputs), [output], name=name, **attrs))
        return output

    def clip(self, x: str, lo: float, hi: float, dtype: np.dtype, out: str | None = None) -> str:
        if self.opset >= 11:  # min/max became inputs in opset 11
            return self.op("Clip", x, self.const(lo, dtype, "min"), self.const(hi, dtype, "max"), out=out)
        return self.op("Clip", x, out=out, min=float(lo), max=float(hi))

    def reduce_max(self, x: str, axes: list[int], keepdims: int, out: str | None = None) -> str:
        if self.opset >= 18:  # axes became an input in opset 18
            return self.op("ReduceMax", x, self.const(axes, np.int64, "axes"), out=out, keepdims=keepdims)
        return self.op("ReduceMax", x, out=out, axes=axes, keepdims=keepdims)


def attrs(node: onnx.NodeProto) -> dict[str, Any]:
    values = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    return {k: v.decode("utf-8") if isinstance(v, bytes) else v for k, v in values.items()}


def _float_input(b: Builder, node: onnx.NodeProto) -> tuple[str, np.dtype]:
    x = node.input[0]
    dtype = b.dtype(x)
    if dtype.kind != "f":
        raise b.error(f"input {x!r} is {dtype}; this rewrite needs a floating-point tensor")
    return x, dtype


# -- activations --------------------------------------------------------------------------------


def hardswish(b: Builder, node: onnx.NodeProto) -> None:
    x, dt = _float_input(b, node)
    gate = b.clip(b.op("Add", x, b.const(3.0, dt)), 0.0, 6.0, dt)
    b.op("Mul", b.op("Mul", x, gate), b.const(1.0 / 6.0, dt), out=node.output[0])


def hardsigmoid(b: Builder, node: onnx.NodeProto) -> None:
    x, dt = _float_input(b, node)
    a = attrs(node)
    scaled = b.op("Mul", x, b.const(a.get("alpha", 0.2), dt, "alpha"))
    shifted = b.op("Add", scaled, b.const(a.get("beta", 0.5), dt, "beta"))
    b.clip(shifted, 0.0, 1.0, dt, out=node.output[0])


def _softplus(b: Builder, x: str, dt: np.dtype, out: str | None = None) -> str:
    # log(1 + exp(x)) = max(x, 0) + log(1 + exp(-|x|)): exp never overflows
    tail = b.op("Log", b.op("Add", b.op("Exp", b.op("Neg", b.op("Abs", x))), b.const(1.0, dt)))
    return b.op("Add", b.op("Relu", x), tail, out=out)


def softplus(b: Builder, node: onnx.NodeProto) -> None:
    x, dt = _float_input(b, node)
    _softplus(b, x, dt, out=node.output[0])


def mish(b: Builder, node: onnx.NodeProto) -> None:
    x, dt = _float_input(b, node)
    b.op("Mul", x, b.op("Tanh", _softplus(b, x, dt)), out=node.output[0])


def _relu_minus(b: Builder, x: str, slope: str, out: str) -> None:
    # for x < 0: 0 - slope * (-x) == slope * x exactly (negation is exact)
    negative = b.op("Mul", b.op("Relu", b.op("Neg", x)), slope)
    b.op("Sub", b.op("Relu", x), negative, out=out)


def prelu(b: Builder, node: onnx.NodeProto) -> None:
    x, _ = _float_input(b, node)
    # slope broadcasts unidirectionally to x, so the Mul's result has x's shape
    _relu_minus(b, x, node.input[1], node.output[0])


def leaky_relu(b: Builder, node: onnx.NodeProto) -> None:
    x, dt = _float_input(b, node)
    alpha = attrs(node).get("alpha", 0.01)
    slope = b.const(alpha, dt, "alpha")
    if 0.0 <= alpha <= 1.0:  # then alpha * x <= x exactly when x >= 0
        b.op("Max", x, b.op("Mul", x, slope), out=node.output[0])
    else:
        _relu_minus(b, x, slope, node.output[0])


# -- GELU and Erf -------------------------------------------------------------------------------


def _gelu_from(b: Builder, x: str, inner: str, dt: np.dtype, out: str) -> None:
    """0.5 * x * (1 + inner), inner being erf(x / sqrt2) or its tanh form."""
    b.op("Mul", b.op("Mul", x, b.op("Add", inner, b.const(1.0, dt))), b.const(0.5, dt), out=out)


def _cubic_tanh(b: Builder, x: str, a: float, c: float, dt: np.dtype, out: str | None = None) -> str:
    """tanh(x * (a + c x^2)) = tanh(a x + c x^3)."""
    poly = b.op("Add", b.op("Mul", b.op("Mul", x, x), b.const(c, dt)), b.const(a, dt))
    return b.op("Tanh", b.op("Mul", x, poly), out=out)


def _gelu_tanh_form(b: Builder, x: str, dt: np.dtype, out: str) -> None:
    inner = _cubic_tanh(b, x, SQRT_2_OVER_PI, SQRT_2_OVER_PI * GELU_CUBIC, dt)
    _gelu_from(b, x, inner, dt, out)


def _gelu_approximate(b: Builder, node: onnx.NodeProto) -> str:
    approximate = attrs(node).get("approximate", "none")
    if approximate not in ("none", "tanh"):
        raise b.error(f"Gelu approximate={approximate!r} is not 'none' or 'tanh'")
    return approximate


def gelu(b: Builder, node: onnx.NodeProto) -> None:
    x, dt = _float_input(b, node)
    if _gelu_approximate(b, node) == "tanh":
        _gelu_tanh_form(b, x, dt, node.output[0])
        return
    erf = b.op("Erf", b.op("Mul", x, b.const(1.0 / math.sqrt(2.0), dt)))
    _gelu_from(b, x, erf, dt, node.output[0])


def gelu_tanh(b: Builder, node: onnx.NodeProto) -> None:
    x, dt = _float_input(b, node)
    if node.op_type == "Erf":
        _cubic_tanh(b, x, ERF_TANH_A, ERF_TANH_B, dt, out=node.output[0])
        return
    _gelu_approximate(b, node)
    _gelu_tanh_form(b, x, dt, node.output[0])


def erf_poly(b: Builder, node: onnx.NodeProto) -> None:
    x, dt = _float_input(b, node)
    t = b.op("Reciprocal", b.op("Add", b.op("Mul", b.op("Abs", x), b.const(AS_P, dt)), b.const(1.0, dt)))
    poly = b.op("Mul", t, b.const(AS_A[-1], dt))
    for coeff in reversed(AS_A[:-1]):  # Horner: t * (a1 + t * (a2 + ...))
        poly = b.op("Mul", t, b.op("Add", poly, b.const(coeff, dt)))
    gauss = b.op("Exp", b.op("Neg", b.op("Mul", x, x)))
    magnitude = b.op("Sub", b.const(1.0, dt), b.op("Mul", poly, gauss))
    b.op("Mul", magnitude, b.op("Sign", x), out=node.output[0])


# -- Div -----------------------------------------------------------------------------------------


def div_to_mul(b: Builder, node: onnx.NodeProto) -> None:
    x, dt = _float_input(b, node)
    divisor = b.ctx.constant(node.input[1])
    if divisor is None:
        raise b.error(f"the divisor {node.input[1]!r} is not a constant (initializer or Constant node)")
    if np.any(divisor == 0):
        raise b.error(f"the divisor {node.input[1]!r} has zeros; x / 0 has no reciprocal to multiply by")
    with np.errstate(over="ignore"):
        reciprocal = (1.0 / divisor.astype(np.float64)).astype(dt)
    if not np.all(np.isfinite(reciprocal)):
        raise b.error(f"1 / {node.input[1]!r} overflows {dt}")
    b.op("Mul", x, b.const(reciprocal, dt, "reciprocal"), out=node.output[0])


# -- MaxPool cascade / SPP -> SPPF -----------------------------------------------------------------


def _same_pool_size(b: Builder, node: onnx.NodeProto) -> tuple[int, int]:
    """(k, spatial rank) of a k x ... x k, stride 1, dilation 1, 'same' MaxPool; else raise."""
    a = attrs(node)
    kernel = list(a.get("kernel_shape", []))
    rank = len(kernel)
    k = kernel[0] if kernel else 0
    problems = [
        (len(set(kernel)) != 1, f"kernel_shape {kernel} is not square"),
        (k % 2 == 0 or k < 3, f"kernel size {k} is not odd and >= 3"),
        (any(s != 1 for s in a.get("strides", [1] * rank)), f"strides {a.get('strides')} are not 1"),
        (any(d != 1 for d in a.get("dilations", [1] * rank)), f"dilations {a.get('dilations')} are not 1"),
        (len(node.output) > 1 and bool(node.output[1]), "its Indices output is used"),
        (not _same_padding(a, k, rank), f"padding {a.get('auto_pad', 'NOTSET')} {a.get('pads', [])} is not 'same'"),
    ]
    for bad, reason in problems:
        if bad:
            raise b.error(reason, node)
    return k, rank


def _same_padding(a: dict[str, Any], k: int, rank: int) -> bool:
    auto_pad = a.get("auto_pad", "NOTSET")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        return True  # odd k: both split the padding evenly
    return auto_pad == "NOTSET" and list(a.get("pads", [0] * 2 * rank)) == [(k - 1) // 2] * (2 * rank)


def _steps(grow: int) -> list[int]:
    """Pool sizes whose cascade widens the receptive field by `grow` (even): a pool of
    size s adds s - 1, so 5x5 pools as far as they go and one 3x3 for the rest."""
    return [5] * (grow // 4) + [3] * (grow % 4 // 2)


def maxpool_cascade(b: Builder, nodes: list[onnx.NodeProto]) -> None:
    """All nodes read the same input: one chain serves them all, ordered by kernel size."""
    sized = sorted(((*_same_pool_size(b, n), i, n) for i, n in enumerate(nodes)), key=lambda e: (e[0], e[2]))
    x = nodes[0].input[0]
    reach, head, before, last = 1, x, x, 0
    for k, rank, _, node in sized:
        steps = _steps(k - reach) if k > reach else [last]  # an equal k repeats the last link
        if k == reach:
            head = before
        for i, size in enumerate(steps):
            before = head
            out = node.output[0] if i == len(steps) - 1 else None
            head = b.op(
                "MaxPool", head, out=out, kernel_shape=[size] * rank, pads=[size // 2] * (2 * rank), strides=[1] * rank
            )
            last = size
        reach = k


# -- ArgMax -------------------------------------------------------------------------------------


def argmax(b: Builder, node: onnx.NodeProto) -> None:
    """First index of the maximum, as ArgMax gives it; a slice holding NaN has no equal
    maximum and yields the axis size (ArgMax's NaN handling is runtime-defined anyway)."""
    x = node.input[0]
    a = attrs(node)
    if a.get("select_last_index", 0):
        raise b.error("select_last_index=1 is not supported (the rewrite yields the first maximum)")
    shape = b.ctx.shape(x)
    axis = a.get("axis", 0)
    if shape is None or not -len(shape) <= axis < len(shape) or shape[axis] is None:
        raise b.error(f"the size of axis {axis} of {x!r} is not static (shape {shape})")
    axis %= len(shape)
    n = shape[axis]
    if n >= MAX_EXACT_INDEX:
        raise b.error(f"axis {axis} has {n} elements; float32 indices are exact only below {MAX_EXACT_INDEX}")
    is_max = b.op("Cast", b.op("Equal", x, b.reduce_max(x, [axis], 1)), to=TensorProto.FLOAT)
    # the first maximum gets the largest weight n - i, so one more ReduceMax finds it
    weights = np.arange(n, 0, -1, dtype=np.float32).reshape([n] + [1] * (len(shape) - axis - 1))
    best = b.reduce_max(b.op("Mul", is_max, b.const(weights, np.float32, "weights")), [axis], a.get("keepdims", 1))
    index = b.op("Sub", b.const(float(n), np.float32, "n"), best)
    b.op("Cast", index, out=node.output[0], to=TensorProto.INT64)
