"""Normalizations in the input's own layout: per-channel parameters are shaped
to wherever the channel axis is stored, statistics reduce over the TF axes
holding the ONNX axes they are defined over, so none of these moves data.

Inference only: BatchNormalization folds into one multiply and one add
(which TFLite then fuses into a preceding convolution).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from buildsys.converter import int8safe, layout
from buildsys.converter.context import ConversionContext
from buildsys.converter.errors import Unsupported
from buildsys.converter.ir import Node
from buildsys.converter.registry import handles

TINY = float(np.finfo(np.float32).tiny)


def _channel_shape(perm: layout.Perm, channels: int) -> list[int]:
    """Shape putting a [C] vector on the stored position of ONNX axis 1."""
    shape = [1] * len(perm)
    shape[layout.tf_axis(perm, 1)] = channels
    return shape


def _per_channel(ctx: ConversionContext, name: str, perm: layout.Perm) -> tf.Tensor:
    """A [C] parameter (constant or computed) shaped to broadcast over the channel axis."""
    value = ctx.value(name)
    channels = int(np.prod(value.shape))
    if value.const is not None:
        return tf.constant(value.const.astype(np.float32).reshape(_channel_shape(perm, channels)))
    return tf.reshape(tf.cast(ctx.tensor(name), tf.float32), _channel_shape(perm, channels))


def _check_rank(ctx: ConversionContext, name: str) -> None:
    if ctx.value(name).rank < 2:
        raise Unsupported("input must be at least 2-D (N, C, ...)")


# -- BatchNormalization -------------------------------------------------------
def _folded_batch_norm(params: list[np.ndarray], epsilon: float) -> tuple[np.ndarray, np.ndarray]:
    """(multiplier, offset) so that y = x * multiplier + offset, in float32.

    Folded in float64 so the only rounding is the final cast."""
    scale, bias, mean, var = (np.asarray(p, np.float64).reshape(-1) for p in params)
    multiplier = scale / np.sqrt(var + epsilon)
    offset = bias - mean * multiplier
    return multiplier.astype(np.float32), offset.astype(np.float32)


@handles("BatchNormalization", since=9)
def batch_norm(ctx, node):
    # 14 adds training_mode (and extra outputs), 15 lets the statistics have their own type
    if node.attr("training_mode", 0):
        raise Unsupported("training_mode=1 (batch statistics) has no inference equivalent")
    if any(node.outputs[1:]):
        raise Unsupported("running mean/variance outputs only exist in training")
    src = node.input(0)
    _check_rank(ctx, src)
    perm = ctx.perm(src)
    epsilon = float(node.attr("epsilon", 1e-5))
    params = [ctx.const(node.input(i)) for i in range(1, 5)]
    x = ctx.tensor(src)
    if all(p is not None for p in params):
        multiplier, offset = _folded_batch_norm(params, epsilon)
        shape = _channel_shape(perm, multiplier.size)
        y = x * tf.constant(multiplier.reshape(shape)) + tf.constant(offset.reshape(shape))
    else:
        scale, bias, mean, var = (_per_channel(ctx, node.input(i), perm) for i in range(1, 5))
        multiplier = scale * int8safe.rsqrt(ctx, node.input(4), var + epsilon)
        y = x * multiplier + (bias - mean * multiplier)
    ctx.set(node.outputs[0], y, perm)


# -- statistics over some axes -------------------------------------------------
def _moments(x: tf.Tensor, axes: list[int]) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Mean, x - mean and the (biased) variance over TF `axes`, kept for broadcasting.

    Variance as mean((x - mean)^2), the two-pass form the ONNX functions use;
    d * d instead of a power so it quantizes."""
    mean = tf.reduce_mean(x, axis=axes, keepdims=True)
    centred = x - mean
    return mean, centred, tf.reduce_mean(centred * centred, axis=axes, keepdims=True)


@handles("InstanceNormalization", since=6)
def instance_norm(ctx, node):
    src = node.input(0)
    _check_rank(ctx, src)
    value = ctx.value(src)
    if value.rank < 3:
        raise Unsupported("needs spatial axes (N, C, D1, ...)")
    perm = value.perm
    epsilon = float(node.attr("epsilon", 1e-5))
    axes = [layout.tf_axis(perm, a) for a in range(2, value.rank)]
    _, centred, var = _moments(ctx.tensor(src), axes)
    scale = _per_channel(ctx, node.input(1), perm)
    bias = _per_channel(ctx, node.input(2), perm)
    ctx.set(node.outputs[0], int8safe.over_sqrt(centred, var + epsilon) * scale + bias, perm)


@handles("LayerNormalization", since=17)
def layer_norm(ctx, node):
    src = node.input(0)
    value = ctx.value(src)
    rank, perm = value.rank, value.perm
    axis = node.attr("axis", -1) % rank
    epsilon = float(node.attr("epsilon", 1e-5))
    axes = sorted(layout.tf_axis(perm, a) for a in range(axis, rank))
    mean, centred, var = _moments(ctx.tensor(src), axes)
    y = int8safe.over_sqrt(centred, var + epsilon) * ctx.align_to(node.input(1), rank, perm)
    if node.input(2):
        y = y + ctx.align_to(node.input(2), rank, perm)
    ctx.set(node.outputs[0], y, perm)
    # the optional Mean / InvStdDev outputs have the input's rank with unit reduced axes
    outputs = list(node.outputs[1:3]) + ["", ""]
    if outputs[0]:
        ctx.set(outputs[0], mean, perm)
    if outputs[1]:
        ctx.set(outputs[1], tf.math.rsqrt(var + epsilon), perm)


@handles("LpNormalization", since=1)
def lp_norm(ctx, node):
    src = node.input(0)
    perm = ctx.perm(src)
    p = node.attr("p", 2)
    axis = layout.tf_axis(perm, node.attr("axis", -1))
    x = ctx.tensor(src)
    if p == 2 and axis == len(perm) - 1:
        # TFLite maps this onto L2_NORMALIZATION when the axis is stored last; the
        # epsilon only keeps an all-zero vector at 0 (x / 0 would be NaN)
        y = tf.math.l2_normalize(x, axis=axis, epsilon=TINY)
    elif p == 2:
        # l2_normalize's own form squares with SQUARE, which has no int8 kernel
        y = x * tf.math.rsqrt(tf.maximum(tf.reduce_sum(x * x, axis=axis, keepdims=True), TINY))
    elif p == 1:
        # a computed divisor: no DIV, whose int8 kernel aborts on one at its zero point
        y = int8safe.divide(x, tf.maximum(tf.reduce_sum(tf.abs(x), axis=axis, keepdims=True), TINY), True)
    else:
        raise Unsupported(f"p={p} (only 1 and 2 are defined)")
    ctx.set(node.outputs[0], y, perm)


# -- GroupNormalization ---------------------------------------------------------
def _grouped(ctx: ConversionContext, name: str, shape: list[int], per_channel: bool) -> tf.Tensor:
    """A scale or bias shaped to broadcast over x viewed as [N, S, G, C/G]."""
    value = ctx.value(name)
    t = tf.constant(value.const.astype(np.float32)) if value.const is not None else ctx.tensor(name)
    return tf.reshape(t, [1, 1, shape[2], shape[3] if per_channel else 1])


def _group_norm(ctx: ConversionContext, node: Node, per_channel: bool) -> None:
    src = node.input(0)
    dims = ctx.static_shape(src)
    if len(dims) < 3:
        raise Unsupported("needs spatial axes (N, C, D1, ...)")
    groups = int(node.attr("num_groups"))
    channels = dims[1]
    if channels % groups:
        raise Unsupported(f"{channels} channels do not split into {groups} groups")
    # channels-last storage makes each group a contiguous run of the last axis:
    # [N, spatial..., C] -> [N, S, G, C/G] reduces over S and C/G with no transpose
    perm = layout.channels_last(len(dims))
    spatial = int(np.prod(dims[2:]))
    shape = [dims[0], spatial, groups, channels // groups]
    x = tf.reshape(ctx.tensor(src, perm), shape)
    _, centred, var = _moments(x, [1, 3])
    y = int8safe.over_sqrt(centred, var + float(node.attr("epsilon", 1e-5)))
    scale = _grouped(ctx, node.input(1), shape, per_channel)
    bias = _grouped(ctx, node.input(2), shape, per_channel)
    ctx.set(node.outputs[0], tf.reshape(y * scale + bias, layout.tf_shape(perm, dims)), perm)


@handles("GroupNormalization", since=18)
def group_norm_18(ctx, node):
    # scale and bias are per group ([G]) here
    _group_norm(ctx, node, per_channel=False)


@handles("GroupNormalization", since=21)
def group_norm_21(ctx, node):
    # opset 21 made scale and bias per channel ([C])
    _group_norm(ctx, node, per_channel=True)
