"""Elementwise math: layouts pass straight through, broadcasting inputs are aligned first."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from buildsys.converter import int8safe
from buildsys.converter.context import ConversionContext
from buildsys.converter.errors import Unsupported
from buildsys.converter.ir import Node
from buildsys.converter.registry import handles


def _binary(ctx: ConversionContext, node: Node, fn: Callable) -> None:
    (a, b), perm = ctx.aligned([node.input(0), node.input(1)])
    ctx.set(node.outputs[0], fn(a, b), perm)


def _unary(ctx: ConversionContext, node: Node, fn: Callable) -> None:
    name = node.input(0)
    ctx.set(node.outputs[0], fn(ctx.tensor(name)), ctx.perm(name))


def _variadic(ctx: ConversionContext, node: Node, fn: Callable) -> None:
    tensors, perm = ctx.aligned([i for i in node.inputs if i])
    out = tensors[0]
    for t in tensors[1:]:
        out = fn(out, t)
    ctx.set(node.outputs[0], out, perm)


@handles("Add", since=7)
def add(ctx, node):
    _binary(ctx, node, tf.add)


@handles("Sub", since=7)
def sub(ctx, node):
    _binary(ctx, node, tf.subtract)


@handles("Mul", since=7)
def mul(ctx, node):
    _binary(ctx, node, tf.multiply)


def _truncated_div(a, b):
    """ONNX integer division (toward zero) with the one TFLite kernel that does it:
    int32 DIV. Other integer types (int64 shape math, int8...) are divided in int32."""
    if a.dtype == tf.int32:
        return tf.truncatediv(a, b)
    return tf.cast(tf.truncatediv(tf.cast(a, tf.int32), tf.cast(b, tf.int32)), a.dtype)


@handles("Div", since=7)
def div(ctx, node):
    num, den = node.input(0), node.input(1)
    if not ctx.value(num).dtype.is_floating:
        # ONNX integer division truncates toward zero; TF floordiv rounds down
        _binary(ctx, node, _truncated_div)
        return
    if ctx.const(den) is not None:
        # TFLite folds a constant divisor into MUL by its reciprocal: no DIV kernel runs
        _binary(ctx, node, tf.divide)
        return
    root = _sqrt_producer(ctx, den)
    if root is not None:
        # x / Sqrt(v) (decomposed LayerNorm, attention scaling): no DIV and no SQRT result
        (a, v), perm = ctx.aligned([num, root])
        v = v if int8safe.nonnegative(ctx, root) else tf.nn.relu(v)
        ctx.set(node.outputs[0], int8safe.over_sqrt(a, v), perm)
        return
    # a computed divisor: the int8 DIV kernel aborts on one that quantizes to its zero point
    (a, b), perm = ctx.aligned([num, den])
    ctx.set(node.outputs[0], int8safe.divide(a, b, int8safe.nonnegative(ctx, den)), perm)


def _sqrt_producer(ctx: ConversionContext, name: str) -> str | None:
    """The input of the Sqrt node that computes `name` at run time, if one does."""
    node = ctx.producer(name)
    return node.input(0) if node is not None and node.op_type == "Sqrt" and not node.domain else None


@handles("Pow", since=7)
def pow_(ctx, node):
    (a, b), perm = ctx.aligned([node.input(0), node.input(1)])
    exponent = ctx.const(node.input(1))
    if exponent is not None and exponent.size == 1 and float(exponent.reshape(-1)[0]) == 2.0:
        # x*x quantizes and runs everywhere; POW has no int8 kernel
        ctx.set(node.outputs[0], tf.multiply(a, a), perm)
        return
    ctx.set(node.outputs[0], tf.pow(a, tf.cast(b, a.dtype)), perm)


def _truncated_mod(a, b):
    """C fmod (result takes the dividend's sign) built on FLOOR_MOD (the divisor's
    sign): TFLite has no TruncateMod kernel, and no division means no rounding of
    a quotient (exact for integers, within one ulp of `b` for floats)."""
    r = tf.math.floormod(a, b)
    other_sign = tf.logical_and(tf.not_equal(r, tf.zeros_like(r)), tf.not_equal(r < 0, a < 0))
    return tf.where(other_sign, r - b, r)


@handles("Mod", since=10)
def mod(ctx, node):
    if node.attr("fmod", 0):
        _binary(ctx, node, _truncated_mod)
    else:
        _binary(ctx, node, tf.math.floormod)


@handles("Max", since=8)
def max_(ctx, node):
    _variadic(ctx, node, tf.maximum)


@handles("Min", since=8)
def min_(ctx, node):
    _variadic(ctx, node, tf.minimum)


@handles("Sum", since=8)
def sum_(ctx, node):
    _variadic(ctx, node, tf.add)


@handles("Mean", since=8)
def mean(ctx, node):
    tensors, perm = ctx.aligned([i for i in node.inputs if i])
    out = tensors[0]
    for t in tensors[1:]:
        out = tf.add(out, t)
    ctx.set(node.outputs[0], out / float(len(tensors)), perm)


def _unary_handler(op_type: str, fn: Callable):
    @handles(op_type, since=6)
    def handler(ctx, node):
        _unary(ctx, node, fn)

    handler.__name__ = f"unary_{op_type.lower()}"
    return handler


unary_exp = _unary_handler("Exp", tf.exp)
unary_log = _unary_handler("Log", tf.math.log)
unary_neg = _unary_handler("Neg", tf.negative)
unary_abs = _unary_handler("Abs", tf.abs)
unary_floor = _unary_handler("Floor", tf.floor)
unary_ceil = _unary_handler("Ceil", tf.math.ceil)
unary_round = _unary_handler("Round", tf.round)
unary_sin = _unary_handler("Sin", tf.sin)
unary_cos = _unary_handler("Cos", tf.cos)
unary_sign = _unary_handler("Sign", tf.sign)

# Abramowitz & Stegun 7.1.26: erf(x) = 1 - t*P(t)*exp(-x^2), t = 1/(1 + p*x) for x >= 0,
# absolute error <= 1.5e-7 (about 5e-7 once evaluated in float32)
ERF_P = 0.3275911
ERF_COEFFS = (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592)


def _erf(x):
    """erf from builtins (TFLite has no ERF kernel); odd, so computed on |x|."""
    ax = tf.abs(x)
    # 1/(1+p|x|) as rsqrt(.)^2: int8 DIV fails on any divisor whose raw value is 0,
    # which a perfectly normal activation range can contain
    r = tf.math.rsqrt(1.0 + ERF_P * ax)
    t = r * r
    poly = ERF_COEFFS[0]
    for c in ERF_COEFFS[1:]:
        poly = poly * t + c
    return tf.sign(x) * (1.0 - poly * t * tf.exp(-ax * ax))


unary_erf = _unary_handler("Erf", _erf)


@handles("Sqrt", since=6)
def sqrt(ctx, node):
    # the int8 SQRT kernel aborts on a negative input, where the ONNX op is undefined anyway
    name = node.input(0)
    ctx.set(node.outputs[0], int8safe.sqrt(ctx, name, ctx.tensor(name)), ctx.perm(name))


@handles("Reciprocal", since=6)
def reciprocal(ctx, node):
    # tf.math.reciprocal becomes DIV(1, x) in TFLite, which int8 aborts on x at its zero point
    name = node.input(0)
    if ctx.const(name) is not None:
        ctx.set_const(node.outputs[0], np.reciprocal(ctx.const(name)))
        return
    x = ctx.tensor(name)
    if not x.dtype.is_floating:
        raise Unsupported(f"Reciprocal of {x.dtype.name} has no TFLite kernel")
    ctx.set(node.outputs[0], int8safe.divide(None, x, int8safe.nonnegative(ctx, name)), ctx.perm(name))


@handles("Identity", since=1)
def identity(ctx, node):
    value = ctx.const(node.input(0))
    if value is not None:
        # stays usable where a constant is required (Reshape shapes, Clip bounds...)
        ctx.set_const(node.outputs[0], value)
        return
    ctx.set(node.outputs[0], tf.identity(ctx.tensor(node.input(0))), ctx.perm(node.input(0)))


def _dropout(ctx: ConversionContext, node: Node, mask: bool) -> None:
    # inference: Dropout is the identity and its optional mask output a constant
    src = node.input(0)
    ctx.set(node.outputs[0], tf.identity(ctx.tensor(src)), ctx.perm(src))
    if len(node.outputs) > 1 and node.outputs[1]:
        fill = tf.ones_like if mask else tf.zeros_like
        ctx.set(node.outputs[1], fill(ctx.tensor(src), dtype=tf.bool), ctx.perm(src))


@handles("Dropout", since=7)
def dropout_7(ctx, node):
    # the spec leaves the test-mode mask open; onnxruntime, the reference users
    # compare against, returns all false before opset 12
    _dropout(ctx, node, mask=False)


@handles("Dropout", since=12)
def dropout_12(ctx, node):
    # ratio and training_mode became inputs; the inference mask is all true
    if node.input(2):
        training = ctx.const(node.input(2))
        if training is None or bool(training.reshape(-1)[0]):
            raise Unsupported("training_mode must be a constant false: training-mode dropout is random")
    _dropout(ctx, node, mask=True)


@handles("Cast", since=6)
def cast(ctx, node):
    from onnx import helper

    to = tf.as_dtype(helper.tensor_dtype_to_np_dtype(node.attr("to")))
    src = node.input(0)
    value = ctx.const(src)
    if value is not None:
        ctx.set_const(node.outputs[0], value.astype(to.as_numpy_dtype))
        return
    if to == tf.string:
        raise Unsupported("casts to string have no TFLite kernel")
    ctx.set(node.outputs[0], tf.cast(ctx.tensor(src), to), ctx.perm(src))
