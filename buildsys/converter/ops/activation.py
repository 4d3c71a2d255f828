"""Activations: pointwise ops keep their input's layout; Softmax-like ops move
the reduced axes to the end of the stored tensor, where TFLite computes them.

Every activation is written in the TF form the TFLite converter maps onto one
builtin (RELU6, HARD_SWISH, PRELU, LEAKY_RELU, GELU, ...) or else onto
quantizable elementwise builtins; TF ops that would need Flex (Selu) or that
lower to an overflowing form (Softplus) are spelled out instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from buildsys.converter import int8safe, layout
from buildsys.converter.context import ConversionContext
from buildsys.converter.errors import Unsupported
from buildsys.converter.ir import Node
from buildsys.converter.registry import handles

# ONNX's own defaults for "no bound" in Clip-6 and for Selu
FLT_MAX = float(np.finfo(np.float32).max)
SELU_ALPHA = 1.67326319217681884765625
SELU_GAMMA = 1.05070102214813232421875


def _pointwise(ctx: ConversionContext, node: Node, fn: Callable) -> None:
    name = node.input(0)
    ctx.set(node.outputs[0], fn(ctx.tensor(name)), ctx.perm(name))


def _negative_part_elu(x: tf.Tensor, alpha: float) -> tf.Tensor:
    """alpha * (exp(x) - 1) where x <= 0, else 0: the negative half of Elu/Selu/Celu.

    ELU of min(x, 0) is a single TFLite builtin and cannot overflow for large x."""
    return alpha * tf.nn.elu(tf.minimum(x, 0.0))


def _softplus(x: tf.Tensor) -> tf.Tensor:
    # tf.nn.softplus lowers to log(1 + exp(x)) in TFLite, which overflows to inf
    # for x > ~88; relu(x) + log(1 + exp(-|x|)) never exponentiates a positive number,
    # and EXP and LOG see (0, 1] and (1, 2], ranges int8 holds well. -|x| is spelt
    # x - 2 relu(x) (exact): NEG has no int8 kernel, and its float island made an int8
    # Mish 9x slower than fp32 (7.8 ms vs 0.87 ms at 112x112x32; now 1.8 ms).
    # min(x, 0) - relu(x) ran as fast but its int8 MINIMUM left cosine 0.46
    positive = tf.nn.relu(x)
    return positive + tf.math.log(1.0 + tf.exp(x - 2.0 * positive))


@handles("Relu", since=6)
def relu(ctx, node):
    _pointwise(ctx, node, tf.nn.relu)


@handles("LeakyRelu", since=6)
def leaky_relu(ctx, node):
    alpha = float(node.attr("alpha", 0.01))
    _pointwise(ctx, node, lambda x: tf.nn.leaky_relu(x, alpha=alpha))


@handles("PRelu", since=7)
def prelu(ctx, node):
    src, slope_name = node.input(0), node.input(1)
    slope = ctx.const(slope_name)
    if slope is not None and slope.size == 1:
        value = float(slope.reshape(-1)[0])
        _pointwise(ctx, node, lambda x: tf.nn.leaky_relu(x, alpha=value))
        return
    perm = ctx.perm(src)
    x = ctx.tensor(src)
    alpha = ctx.align_to(slope_name, len(perm), perm)
    if alpha.shape[0] == 1 and len(perm) > 1:
        # TFLite fuses relu(x) + relu(-x) * -alpha into PRELU only when alpha has
        # one axis fewer than x (Keras' per-sample alpha); slope never varies over axis 0 here
        alpha = tf.reshape(alpha, alpha.shape[1:])
    ctx.set(node.outputs[0], tf.nn.relu(x) + tf.nn.relu(tf.negative(x)) * tf.negative(alpha), perm)


@handles("Elu", since=6)
def elu(ctx, node):
    alpha = float(node.attr("alpha", 1.0))
    if alpha == 1.0:
        _pointwise(ctx, node, tf.nn.elu)
        return
    _pointwise(ctx, node, lambda x: tf.nn.relu(x) + _negative_part_elu(x, alpha))


@handles("Selu", since=6)
def selu(ctx, node):
    # tf.nn.selu has no TFLite builtin; gamma * elu_alpha(x) is the same function
    alpha = float(node.attr("alpha", SELU_ALPHA))
    gamma = float(node.attr("gamma", SELU_GAMMA))
    _pointwise(ctx, node, lambda x: gamma * tf.nn.relu(x) + _negative_part_elu(x, gamma * alpha))


@handles("Celu", since=12)
def celu(ctx, node):
    alpha = float(node.attr("alpha", 1.0))
    _pointwise(ctx, node, lambda x: tf.nn.relu(x) + alpha * tf.nn.elu(tf.minimum(x, 0.0) / alpha))


@handles("Sigmoid", since=6)
def sigmoid(ctx, node):
    _pointwise(ctx, node, tf.sigmoid)


@handles("HardSigmoid", since=6)
def hard_sigmoid(ctx, node):
    alpha = float(node.attr("alpha", 0.2))
    beta = float(node.attr("beta", 0.5))
    # the same arithmetic as the ONNX definition, so no rounding differs; TFLite
    # folds the max into the ADD's fused RELU
    _pointwise(ctx, node, lambda x: tf.minimum(tf.maximum(x * alpha + beta, 0.0), 1.0))


@handles("HardSwish", since=14)
@handles("HardSwish", domain="buildsys.fused")  # fusions.FUSED: inspect reads literals
def hard_swish(ctx, node):
    # the TFLite converter fuses exactly this pattern into HARD_SWISH
    _pointwise(ctx, node, lambda x: x * tf.nn.relu6(x + 3.0) * (1.0 / 6.0))


@handles("Tanh", since=6)
def tanh(ctx, node):
    _pointwise(ctx, node, tf.tanh)


@handles("Softplus", since=1)
def softplus(ctx, node):
    _pointwise(ctx, node, _softplus)


@handles("Softsign", since=1)
def softsign(ctx, node):
    # 1 + |x| >= 1, but int8 DIV still aborts where a wide range rounds it to the zero point
    _pointwise(ctx, node, lambda x: int8safe.divide(x, 1.0 + tf.abs(x), True))


@handles("Mish", since=18)
@handles("Mish", domain="buildsys.fused")
def mish(ctx, node):
    _pointwise(ctx, node, lambda x: x * tf.tanh(_softplus(x)))


@handles("Gelu", since=20)
@handles("Gelu", domain="buildsys.fused")
def gelu(ctx, node):
    approximate = node.attr("approximate", "none")
    if approximate not in ("none", "tanh"):
        raise Unsupported(f"approximate={approximate!r} is not 'none' or 'tanh'")
    _pointwise(ctx, node, lambda x: tf.nn.gelu(x, approximate=approximate == "tanh"))


@handles("ThresholdedRelu", since=10)
def thresholded_relu(ctx, node):
    alpha = float(node.attr("alpha", 1.0))
    _pointwise(ctx, node, lambda x: tf.where(x > alpha, x, tf.zeros_like(x)))


# -- Clip ----------------------------------------------------------------------
def _const_bound(value, infinite: float):
    """A constant bound as a Python number, or None when it does not bound anything."""
    bound = np.asarray(value).reshape(-1)[0].item()
    if isinstance(bound, float) and (math.isinf(bound) or abs(bound) >= FLT_MAX):
        return None if math.copysign(1.0, bound) == math.copysign(1.0, infinite) else bound
    return bound


def _input_bound(ctx: ConversionContext, node: Node, index: int, infinite: float):
    name = node.input(index)
    if not name:
        return None
    value = ctx.const(name)
    if value is not None:
        return _const_bound(value, infinite)
    return tf.reshape(ctx.tensor(name), [])


def _clip(ctx: ConversionContext, node: Node, lo, hi) -> None:
    src = node.input(0)
    if ctx.value(src).dtype.is_floating and isinstance(lo, (int, float)) and lo == 0:
        if hi is None:
            _pointwise(ctx, node, tf.nn.relu)
            return
        if isinstance(hi, (int, float)) and hi == 6:
            _pointwise(ctx, node, tf.nn.relu6)
            return

    def clip(x):
        # max first, then min: ONNX gives `max` everywhere when min > max
        if lo is not None:
            x = tf.maximum(x, tf.cast(lo, x.dtype))
        if hi is not None:
            x = tf.minimum(x, tf.cast(hi, x.dtype))
        return x

    _pointwise(ctx, node, clip)


@handles("Clip", since=6)
def clip_6(ctx, node):
    lo = _const_bound(node.attr("min", -FLT_MAX), -math.inf)
    hi = _const_bound(node.attr("max", FLT_MAX), math.inf)
    _clip(ctx, node, lo, hi)


@handles("Clip", since=11)
def clip_11(ctx, node):
    # min/max became optional inputs (12 and 13 only widen the types)
    _clip(ctx, node, _input_bound(ctx, node, 1, -math.inf), _input_bound(ctx, node, 2, math.inf))


# -- Softmax family --------------------------------------------------------------
def _reduced_last(perm: layout.Perm, axes: tuple[int, ...]) -> layout.Perm:
    """A layout holding ONNX `axes` (ascending) as the trailing stored axes.

    Softmax over several flattened axes treats them as one set of elements, so
    their stored order does not matter and the input's own layout serves when
    they already trail it (NHWC for an opset-11 softmax from axis 1). Else plain
    ONNX order when that works (graph outputs want it); else the input's order
    with `axes` moved last."""
    n = len(axes)
    if set(perm[len(perm) - n :]) == set(axes):
        return tuple(perm)
    if axes == tuple(range(len(perm) - n, len(perm))):
        return layout.identity(len(perm))
    return tuple(a for a in perm if a not in axes) + axes


def _over_trailing(ctx: ConversionContext, node: Node, first_axis: int, coerce_2d: bool, fn: Callable) -> None:
    """Apply `fn` (normalising over the last TF axis) over ONNX axis `first_axis`,
    or over all axes from it on, flattened, when `coerce_2d` (opset < 13)."""
    src = node.input(0)
    value = ctx.value(src)
    rank = value.rank
    if rank == 0:
        raise Unsupported("needs at least a 1-D input")
    first = first_axis % rank
    axes = tuple(range(first, rank)) if coerce_2d else (first,)
    target = _reduced_last(value.perm, axes)
    x = ctx.tensor(src, target)
    if len(axes) == 1:
        ctx.set(node.outputs[0], fn(x), target)
        return
    dims = layout.tf_shape(target, ctx.static_shape(src))
    head = dims[: rank - len(axes)]
    flat = fn(tf.reshape(x, head + [math.prod(dims[rank - len(axes) :])]))
    ctx.set(node.outputs[0], tf.reshape(flat, dims), target)


@handles("Softmax", since=1)
def softmax_1(ctx, node):
    _over_trailing(ctx, node, node.attr("axis", 1), True, tf.nn.softmax)


@handles("Softmax", since=13)
def softmax_13(ctx, node):
    _over_trailing(ctx, node, node.attr("axis", -1), False, tf.nn.softmax)


@handles("LogSoftmax", since=1)
def log_softmax_1(ctx, node):
    _over_trailing(ctx, node, node.attr("axis", 1), True, tf.nn.log_softmax)


@handles("LogSoftmax", since=13)
def log_softmax_13(ctx, node):
    _over_trailing(ctx, node, node.attr("axis", -1), False, tf.nn.log_softmax)
