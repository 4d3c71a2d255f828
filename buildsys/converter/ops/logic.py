"""Comparisons, boolean logic and NaN/Inf tests: elementwise, so layouts pass straight through.

All-constant inputs are folded in numpy: exported shape arithmetic often
compares constant shapes (e.g. Equal(shape, -1) feeding Where), and keeping
those as constants lets Reshape and friends see static values.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from buildsys.converter.context import ConversionContext
from buildsys.converter.errors import Unsupported
from buildsys.converter.ir import Node
from buildsys.converter.registry import handles

NARROW_INTS = (tf.uint8, tf.int8, tf.int16, tf.uint16)


def _fold(ctx: ConversionContext, node: Node, names: list[str], np_fn: Callable) -> bool:
    consts = [ctx.const(n) for n in names]
    if any(c is None for c in consts):
        return False
    ctx.set_const(node.outputs[0], np.asarray(np_fn(*consts)))
    return True


def _binary(ctx: ConversionContext, node: Node, tf_fn: Callable, np_fn: Callable) -> None:
    names = [node.input(0), node.input(1)]
    if _fold(ctx, node, names, np_fn):
        return
    (a, b), perm = ctx.aligned(names)
    if a.dtype == tf.string or b.dtype == tf.string:
        raise Unsupported("string comparisons have no TFLite kernel")
    if a.dtype in NARROW_INTS:
        # TFLite's comparison kernels abort the interpreter on unquantized narrow ints
        a, b = tf.cast(a, tf.int32), tf.cast(b, tf.int32)
    ctx.set(node.outputs[0], tf_fn(a, b), perm)


def _unary(ctx: ConversionContext, node: Node, tf_fn: Callable, np_fn: Callable) -> None:
    name = node.input(0)
    if _fold(ctx, node, [name], np_fn):
        return
    ctx.set(node.outputs[0], tf_fn(ctx.tensor(name)), ctx.perm(name))


def _binary_handler(op_type: str, since: int, tf_fn: Callable, np_fn: Callable):
    @handles(op_type, since=since)
    def handler(ctx, node):
        _binary(ctx, node, tf_fn, np_fn)

    handler.__name__ = f"logic_{op_type.lower()}"
    return handler


# since=7: numpy broadcasting; the older `broadcast` attribute form predates the supported opsets
logic_equal = _binary_handler("Equal", 7, tf.equal, np.equal)
logic_greater = _binary_handler("Greater", 7, tf.greater, np.greater)
logic_less = _binary_handler("Less", 7, tf.less, np.less)
logic_greaterorequal = _binary_handler("GreaterOrEqual", 12, tf.greater_equal, np.greater_equal)
logic_lessorequal = _binary_handler("LessOrEqual", 12, tf.less_equal, np.less_equal)
logic_and = _binary_handler("And", 7, tf.logical_and, np.logical_and)
logic_or = _binary_handler("Or", 7, tf.logical_or, np.logical_or)
# on bools, xor is inequality: one NOT_EQUAL instead of TF's and/or/not expansion
logic_xor = _binary_handler("Xor", 7, tf.not_equal, np.logical_xor)


@handles("Not", since=1)
def logic_not(ctx, node):
    _unary(ctx, node, tf.logical_not, np.logical_not)


@handles("IsNaN", since=9)
def is_nan(ctx, node):
    # NaN is the only value unequal to itself; tf.math.is_nan has no TFLite builtin
    _unary(ctx, node, lambda x: tf.not_equal(x, x), np.isnan)


def _inf_test(positive: bool, negative: bool) -> tuple[Callable, Callable]:
    # The TFLite converter clamps an inf constant to the largest finite float, so
    # `x == inf` would never hold; `x > largest finite` is the same test and survives.
    def tf_fn(x):
        biggest = tf.constant(np.finfo(x.dtype.as_numpy_dtype).max, x.dtype)
        if positive and negative:
            return tf.greater(tf.abs(x), biggest)
        if positive:
            return tf.greater(x, biggest)
        if negative:
            return tf.less(x, -biggest)
        return tf.zeros_like(x, dtype=tf.bool)

    def np_fn(x):
        return (np.isposinf(x) & positive) | (np.isneginf(x) & negative)

    return tf_fn, np_fn


@handles("IsInf", since=10)
def is_inf(ctx, node):
    positive = bool(node.attr("detect_positive", 1))
    negative = bool(node.attr("detect_negative", 1))
    _unary(ctx, node, *_inf_test(positive, negative))
