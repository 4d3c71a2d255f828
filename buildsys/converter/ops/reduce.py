"""ReduceX: reductions over ONNX axes, done on the tensor as stored.

Each ONNX axis is remapped to where it lives in the stored tensor, so a channel
mean of a channels-last image is a MEAN over the last TF axis and needs no
transpose. keepdims=0 drops the reduced axes from the layout permutation.
Axes move from an attribute to an input at opset 13 (ReduceSum) or 18 (the rest).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from buildsys.converter import layout
from buildsys.converter.context import ConversionContext
from buildsys.converter.errors import Unsupported
from buildsys.converter.ir import Node
from buildsys.converter.registry import handles


@dataclass(frozen=True)
class Reduction:
    """One ONNX reduction as a TF function and its numpy twin (for constant inputs).

    Both take (x, axes, keepdims) with axes already in the operand's own order. `empty` is
    the result over zero elements (the reduction's identity); `on_bool` reduces bool data
    (ReduceMax/Min since opset 20), which TF's arithmetic reductions refuse."""

    tf_fn: Callable
    np_fn: Callable
    empty: float
    on_bool: Callable | None = None


def _tf_log_sum_exp(x, axes, keepdims):
    # subtract the max first, as onnxruntime does, so large inputs do not overflow exp
    peak = tf.reduce_max(x, axis=axes, keepdims=True)
    total = tf.math.log(tf.reduce_sum(tf.exp(x - peak), axis=axes, keepdims=True)) + peak
    return total if keepdims else tf.squeeze(total, axis=axes)


def _np_log_sum_exp(x, axes, keepdims):
    peak = np.max(x, axis=axes, keepdims=True)
    total = np.log(np.sum(np.exp(x - peak), axis=axes, keepdims=True)) + peak
    return total if keepdims else np.squeeze(total, axis=axes)


def _tf_all(x, axes, keepdims):
    # REDUCE_ANY is the boolean reduction TFLite has everywhere; all(x) = not any(not x)
    return tf.logical_not(tf.reduce_any(tf.logical_not(x), axis=axes, keepdims=keepdims))


MEAN = Reduction(
    lambda x, a, k: tf.reduce_mean(x, axis=a, keepdims=k), lambda x, a, k: np.mean(x, axis=a, keepdims=k), np.nan
)
MAX = Reduction(
    lambda x, a, k: tf.reduce_max(x, axis=a, keepdims=k),
    lambda x, a, k: np.max(x, axis=a, keepdims=k),
    -np.inf,
    lambda x, a, k: tf.reduce_any(x, axis=a, keepdims=k),
)
MIN = Reduction(
    lambda x, a, k: tf.reduce_min(x, axis=a, keepdims=k),
    lambda x, a, k: np.min(x, axis=a, keepdims=k),
    np.inf,
    _tf_all,
)
SUM = Reduction(
    lambda x, a, k: tf.reduce_sum(x, axis=a, keepdims=k), lambda x, a, k: np.sum(x, axis=a, keepdims=k), 0.0
)
PROD = Reduction(
    lambda x, a, k: tf.reduce_prod(x, axis=a, keepdims=k), lambda x, a, k: np.prod(x, axis=a, keepdims=k), 1.0
)
L1 = Reduction(
    lambda x, a, k: tf.reduce_sum(tf.abs(x), axis=a, keepdims=k),
    lambda x, a, k: np.sum(np.abs(x), axis=a, keepdims=k),
    0.0,
)
# x*x rather than a power: MUL quantizes, POW does not
L2 = Reduction(
    lambda x, a, k: tf.sqrt(tf.reduce_sum(x * x, axis=a, keepdims=k)),
    lambda x, a, k: np.sqrt(np.sum(x * x, axis=a, keepdims=k)),
    0.0,
)
SUM_SQUARE = Reduction(
    lambda x, a, k: tf.reduce_sum(x * x, axis=a, keepdims=k), lambda x, a, k: np.sum(x * x, axis=a, keepdims=k), 0.0
)
LOG_SUM = Reduction(
    lambda x, a, k: tf.math.log(tf.reduce_sum(x, axis=a, keepdims=k)),
    lambda x, a, k: np.log(np.sum(x, axis=a, keepdims=k)),
    -np.inf,
)
LOG_SUM_EXP = Reduction(_tf_log_sum_exp, _np_log_sum_exp, -np.inf)


def _requested_axes(ctx: ConversionContext, node: Node, input_since: int) -> list[int] | None:
    """The ONNX axes asked for, or None when none are given."""
    if ctx.opset(node) >= input_since:
        if not node.input(1):
            return None
        axes = ctx.require_const(node, 1, "axes").reshape(-1)
    else:
        axes = node.attr("axes")
        if axes is None:
            return None
    return [int(a) for a in axes]


def _reduce(ctx: ConversionContext, node: Node, op: Reduction, input_since: int) -> None:
    src, out = node.input(0), node.outputs[0]
    value = ctx.value(src)
    rank = value.rank
    axes = _requested_axes(ctx, node, input_since)
    if not axes:
        if ctx.opset(node) >= input_since and node.attr("noop_with_empty_axes", 0):
            _pass_through(ctx, src, out)
            return
        axes = list(range(rank))
    if any(not -rank <= a < rank for a in axes):
        raise Unsupported(f"axes {axes} out of range for rank {rank}")
    axes = sorted({a % rank for a in axes})
    keepdims = bool(node.attr("keepdims", 1))
    if 0 in value.shape:
        ctx.set_const(out, _over_nothing(op, value.shape, axes, keepdims, value.dtype.as_numpy_dtype))
        return
    if value.const is not None:
        ctx.set_const(out, np.asarray(op.np_fn(value.const, tuple(axes), keepdims), dtype=value.const.dtype))
        return
    tf_axes = sorted(layout.tf_axis(value.perm, a) for a in axes)
    if value.dtype == tf.bool:
        if op.on_bool is None:
            raise Unsupported("reduction of bool data")
        result = op.on_bool(value.tensor, tf_axes, keepdims)
    else:
        result = op.tf_fn(value.tensor, tf_axes, keepdims)
    ctx.set(out, result, value.perm if keepdims else layout.drop_axes(value.perm, axes))


def _over_nothing(op: Reduction, shape: list[int], axes: list[int], keepdims: bool, dtype) -> np.ndarray:
    """The result when the input holds no elements: the reduction's identity everywhere."""
    out_shape = [1 if i in axes else d for i, d in enumerate(shape) if keepdims or i not in axes]
    return np.full(out_shape, _identity_as(op.empty, np.dtype(dtype)), dtype=dtype)


def _identity_as(value: float, dtype: np.dtype):
    """An identity in a dtype: types without infinity use their extreme values instead."""
    if dtype.kind == "f" or not (np.isnan(value) or np.isinf(value)):
        return value
    if np.isnan(value):
        return 0
    if dtype.kind == "b":
        return value > 0
    info = np.iinfo(dtype)
    return info.max if value > 0 else info.min


def _pass_through(ctx: ConversionContext, src: str, out: str) -> None:
    value = ctx.value(src)
    if value.const is not None:
        ctx.set_const(out, value.const)
    else:
        ctx.set(out, tf.identity(value.tensor), value.perm)


# ONNX reductions that took axes as an attribute until opset 18 (ReduceSum: 13)
_AXES_INPUT_SINCE = 18


@handles("ReduceMean", since=1)  # written for versions 1, 18
def reduce_mean(ctx, node):
    _reduce(ctx, node, MEAN, _AXES_INPUT_SINCE)


@handles("ReduceMax", since=1)  # written for versions 1, 18, 20
def reduce_max(ctx, node):
    _reduce(ctx, node, MAX, _AXES_INPUT_SINCE)


@handles("ReduceMin", since=1)  # written for versions 1, 18, 20
def reduce_min(ctx, node):
    _reduce(ctx, node, MIN, _AXES_INPUT_SINCE)


@handles("ReduceSum", since=1)  # written for versions 1, 13
def reduce_sum(ctx, node):
    _reduce(ctx, node, SUM, 13)


@handles("ReduceProd", since=1)  # written for versions 1, 18
def reduce_prod(ctx, node):
    _reduce(ctx, node, PROD, _AXES_INPUT_SINCE)


@handles("ReduceL1", since=1)  # written for versions 1, 18
def reduce_l1(ctx, node):
    _reduce(ctx, node, L1, _AXES_INPUT_SINCE)


@handles("ReduceL2", since=1)  # written for versions 1, 18
def reduce_l2(ctx, node):
    _reduce(ctx, node, L2, _AXES_INPUT_SINCE)


@handles("ReduceSumSquare", since=1)  # written for versions 1, 18
def reduce_sum_square(ctx, node):
    _reduce(ctx, node, SUM_SQUARE, _AXES_INPUT_SINCE)


@handles("ReduceLogSum", since=1)  # written for versions 1, 18
def reduce_log_sum(ctx, node):
    _reduce(ctx, node, LOG_SUM, _AXES_INPUT_SINCE)


@handles("ReduceLogSumExp", since=1)  # written for versions 1, 18
def reduce_log_sum_exp(ctx, node):
    _reduce(ctx, node, LOG_SUM_EXP, _AXES_INPUT_SINCE)
