"""Elementwise math: layouts pass straight through, broadcasting inputs are aligned first."""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

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


@handles("Div", since=7)
def div(ctx, node):
    def divide(a, b):
        if a.dtype.is_integer:
            # ONNX integer division truncates toward zero; TF floordiv rounds down
            return tf.truncatediv(a, b)
        return tf.divide(a, b)

    _binary(ctx, node, divide)


@handles("Pow", since=7)
def pow_(ctx, node):
    (a, b), perm = ctx.aligned([node.input(0), node.input(1)])
    exponent = ctx.const(node.input(1))
    if exponent is not None and exponent.size == 1 and float(exponent.reshape(-1)[0]) == 2.0:
        # x*x quantizes and runs everywhere; POW has no int8 kernel
        ctx.set(node.outputs[0], tf.multiply(a, a), perm)
        return
    ctx.set(node.outputs[0], tf.pow(a, tf.cast(b, a.dtype)), perm)


@handles("Mod", since=10)
def mod(ctx, node):
    if node.attr("fmod", 0):
        _binary(ctx, node, tf.truncatemod)
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
unary_sqrt = _unary_handler("Sqrt", tf.sqrt)
unary_neg = _unary_handler("Neg", tf.negative)
unary_abs = _unary_handler("Abs", tf.abs)
unary_floor = _unary_handler("Floor", tf.floor)
unary_ceil = _unary_handler("Ceil", tf.math.ceil)
unary_round = _unary_handler("Round", tf.round)
unary_sin = _unary_handler("Sin", tf.sin)
unary_cos = _unary_handler("Cos", tf.cos)
unary_sign = _unary_handler("Sign", tf.sign)
unary_erf = _unary_handler("Erf", tf.math.erf)


@handles("Reciprocal", since=6)
def reciprocal(ctx, node):
    _unary(ctx, node, lambda x: tf.math.reciprocal(x))


@handles("Identity", since=1)
def identity(ctx, node):
    ctx.set(node.outputs[0], tf.identity(ctx.tensor(node.input(0))), ctx.perm(node.input(0)))


@handles("Dropout", since=7)
def dropout(ctx, node):
    # inference: Dropout is the identity; the optional mask output is all true
    src = node.input(0)
    ctx.set(node.outputs[0], tf.identity(ctx.tensor(src)), ctx.perm(src))
    if len(node.outputs) > 1 and node.outputs[1]:
        ctx.set(node.outputs[1], tf.ones_like(ctx.tensor(src), dtype=tf.bool), ctx.perm(src))


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
