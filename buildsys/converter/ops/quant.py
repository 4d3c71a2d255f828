"""QuantizeLinear / DequantizeLinear: QDQ graphs become float fake-quant math.

A QDQ model (quantization-aware training export) is converted as the float
model it describes: QuantizeLinear emits the integer tensor ONNX defines (round
half to even, saturate, cast) and DequantizeLinear maps it back to float, so a
Q -> DQ pair computes exactly what onnxruntime does. Constant weights behind
DequantizeLinear fold to float constants here, so Conv/Gemm handlers see plain
constant weights.

Per-axis scales are laid out along the remapped axis of the stored tensor, so
a channels-last activation quantized per channel needs no transpose.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from onnx import helper

from buildsys.converter.context import ConversionContext
from buildsys.converter.errors import Unsupported
from buildsys.converter.ir import Node
from buildsys.converter.layout import Perm
from buildsys.converter.registry import handles

# integer types with a TFLite CAST kernel; int4/float8 need packing TFLite cannot do
QUANT_TYPES = ("int8", "uint8", "int16", "uint16")


def _check_blocked(node: Node) -> None:
    if node.attr("block_size", 0):
        raise Unsupported(f"blocked quantization (block_size={node.attr('block_size')}) is not supported")


def _axis_shape(node: Node, rank: int, size: int) -> list[int]:
    """Shape that puts a per-axis parameter of `size` values on the node's axis (ONNX order)."""
    shape = [1] * rank
    if rank:
        shape[node.attr("axis", 1) % rank] = size
    return shape


def _np_param(node: Node, array: np.ndarray, rank: int) -> np.ndarray:
    """A scale or zero point broadcastable against the ONNX-order input."""
    if array.size == 1:
        return array.reshape([])
    if array.ndim != 1:
        raise Unsupported(f"scale/zero point of shape {list(array.shape)}: only scalars and 1-D per-axis")
    return array.reshape(_axis_shape(node, rank, array.size))


def _tf_param(ctx: ConversionContext, node: Node, name: str, rank: int, perm: Perm) -> tf.Tensor:
    """A float32 scale or zero point broadcastable against the input as it is stored."""
    value = ctx.value(name)
    if value.const is not None:
        array = _np_param(node, value.const.astype(np.float32), rank)
        return tf.constant(np.transpose(array, perm) if array.ndim else array)
    if value.rank == 0 or value.shape == [1]:
        return tf.reshape(tf.cast(ctx.tensor(name), tf.float32), [])
    raise Unsupported("per-axis scale/zero point computed at run time")


def _np_dtype(ctx: ConversionContext, name: str) -> np.dtype:
    # constants keep their numpy type, which covers int4 (TF has no such dtype)
    const = ctx.const(name)
    return const.dtype if const is not None else np.dtype(ctx.value(name).dtype.as_numpy_dtype)


# -- QuantizeLinear ---------------------------------------------------------------
def _quant_dtype(ctx: ConversionContext, node: Node) -> np.dtype:
    """ONNX: the zero point's type; without one, output_dtype (opset 21) or uint8."""
    zero_point = node.input(2)
    if zero_point:
        dtype = _np_dtype(ctx, zero_point)
    elif node.attr("output_dtype", 0):
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(node.attr("output_dtype")))
    else:
        dtype = np.dtype(np.uint8)
    if dtype.name not in QUANT_TYPES:
        raise Unsupported(f"quantized type {dtype.name}: only {', '.join(QUANT_TYPES)}")
    return dtype


def _quantize_const(node: Node, x: np.ndarray, scale: np.ndarray, zp: np.ndarray | None, dtype: np.dtype):
    rank = x.ndim
    # float32 division and half-to-even rounding, in the order onnxruntime computes them
    q = np.rint(x.astype(np.float32) / _np_param(node, scale.astype(np.float32), rank))
    if zp is not None:
        q = q + _np_param(node, zp.astype(np.float32), rank)
    info = np.iinfo(dtype)
    return np.clip(q, info.min, info.max).astype(dtype)


@handles("QuantizeLinear", since=10)
def quantize_linear(ctx, node):
    _check_blocked(node)
    dtype = _quant_dtype(ctx, node)
    src, scale, zp = node.input(0), node.input(1), node.input(2)
    consts = [ctx.const(src), ctx.const(scale), ctx.const(zp) if zp else None]
    if consts[0] is not None and consts[1] is not None and (not zp or consts[2] is not None):
        ctx.set_const(node.outputs[0], _quantize_const(node, consts[0], consts[1], consts[2], dtype))
        return
    value = ctx.value(src)
    x = ctx.tensor(src)
    if x.dtype != tf.float32:
        x = tf.cast(x, tf.float32)
    # tf.round rounds half to even, as ONNX specifies. (TFLite turns division by a
    # constant into multiplication by its reciprocal: for scales that are not powers
    # of two, an element within one ulp of a rounding tie can land one step apart
    # from onnxruntime.)
    q = tf.round(x / _tf_param(ctx, node, scale, value.rank, value.perm))
    if zp:
        q = q + _tf_param(ctx, node, zp, value.rank, value.perm)
    info = np.iinfo(dtype)
    q = tf.clip_by_value(q, float(info.min), float(info.max))
    ctx.set(node.outputs[0], tf.cast(q, tf.as_dtype(dtype)), value.perm)


# -- DequantizeLinear -------------------------------------------------------------
def _is_integer(dtype: np.dtype) -> bool:
    return dtype.kind in "iu" or dtype.name in ("int4", "uint4")


def _dequantize_const(node: Node, x: np.ndarray, scale: np.ndarray, zp: np.ndarray | None) -> np.ndarray:
    rank = x.ndim
    # integer subtraction first, then one float multiply: onnxruntime's order
    q = x.astype(np.int32)
    if zp is not None:
        q = q - _np_param(node, zp.astype(np.int32), rank)
    out = q.astype(np.float32) * _np_param(node, scale.astype(np.float32), rank)
    return out.astype(scale.dtype)


def _out_dtype(ctx: ConversionContext, scale: str) -> tf.DType:
    """Opset 19+: the output has the scale's float type."""
    return ctx.value(scale).dtype


@handles("DequantizeLinear", since=10)
def dequantize_linear(ctx, node):
    _check_blocked(node)
    src, scale, zp = node.input(0), node.input(1), node.input(2)
    in_dtype = _np_dtype(ctx, src)
    if not _is_integer(in_dtype):
        raise Unsupported(f"dequantizing {in_dtype.name}: only integer types")
    consts = [ctx.const(src), ctx.const(scale), ctx.const(zp) if zp else None]
    if consts[0] is not None and consts[1] is not None and (not zp or consts[2] is not None):
        ctx.set_const(node.outputs[0], _dequantize_const(node, consts[0], consts[1], consts[2]))
        return
    if in_dtype.name not in QUANT_TYPES + ("int32",):
        raise Unsupported(f"dequantizing a computed {in_dtype.name} tensor")
    value = ctx.value(src)
    y = tf.cast(ctx.tensor(src), tf.float32)
    if zp and not _is_zero(ctx.const(zp)):
        y = y - _tf_param(ctx, node, zp, value.rank, value.perm)
    y = y * _tf_param(ctx, node, scale, value.rank, value.perm)
    out_dtype = _out_dtype(ctx, scale)
    ctx.set(node.outputs[0], y if out_dtype == tf.float32 else tf.cast(y, out_dtype), value.perm)


def _is_zero(array: np.ndarray | None) -> bool:
    return array is not None and not np.any(array)


# -- FakeQuant (pre-quantized models built with their own scales) -------------------
# A Q -> DQ pair on an activation, rewritten by buildsys.tflow.qdq into one node of
# this domain when a target keeps the model's quantization: TF's fake-quant op is
# what the TFLite converter reads trained ranges from.
QAT_DOMAIN = "buildsys.qat"


def fake_quant_range(scale: float, zero_point: int, qmin: int, qmax: int) -> tuple[float, float]:
    """min/max whose TF nudging (scale (max-min)/(qmax-qmin), zero point qmin-min/scale) gives back
    exactly `scale` and `zero_point`: the grid's two ends."""
    return float((qmin - zero_point) * np.float64(scale)), float((qmax - zero_point) * np.float64(scale))


@handles("FakeQuant", since=1, domain="buildsys.qat")
def fake_quant(ctx, node):
    scale = ctx.require_const(node, 1, "scale")
    zero_point = ctx.require_const(node, 2, "zero point") if node.input(2) else np.zeros(1, np.int32)
    if scale.size != 1 or zero_point.size != 1:
        raise Unsupported("per-axis activation quantization cannot keep its scales in TFLite")
    qmin, qmax = int(node.attr("qmin")), int(node.attr("qmax"))
    low, high = fake_quant_range(scale.item(), int(zero_point.item()), qmin, qmax)
    x = ctx.tensor(node.input(0))
    if x.dtype != tf.float32:
        raise Unsupported(f"fake quantization of a {x.dtype.name} tensor")
    bits = int(np.log2(qmax - qmin + 1))
    y = tf.quantization.fake_quant_with_min_max_vars(x, low, high, num_bits=bits, narrow_range=False)
    ctx.set(node.outputs[0], y, ctx.perm(node.input(0)))
