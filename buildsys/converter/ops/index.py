"""Ops that select by position: TopK, ArgMax/ArgMin, GatherElements, GatherND, CumSum, Trilu, ScatterND.

Axis ops (TopK, ArgMax, CumSum, GatherElements, Trilu) work in the stored layout
with remapped axes; GatherND and ScatterND index leading ONNX axes by
coordinate tuples, so they run in ONNX order. Index arithmetic is int32 (the
type every TFLite index kernel takes); only outputs that ONNX defines as int64
are cast back.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from buildsys.converter import layout
from buildsys.converter.context import ConversionContext
from buildsys.converter.errors import Unsupported
from buildsys.converter.ir import Node
from buildsys.converter.layout import Perm
from buildsys.converter.registry import handles

INT32_MAX = np.iinfo(np.int32).max


# -- shared helpers ---------------------------------------------------------------
def _scalar(array: np.ndarray, what: str) -> int:
    if array.size != 1:
        raise Unsupported(f"{what} must hold one value, got shape {list(array.shape)}")
    return int(array.reshape(-1)[0])


def _wrap_const(indices: np.ndarray, bound) -> np.ndarray:
    """Negative ONNX indices count from the end; TF wants them in [0, bound)."""
    idx = indices.astype(np.int64)
    idx = np.where(idx < 0, idx + bound, idx)
    if np.any(idx < 0) or np.any(idx >= bound):
        raise Unsupported("constant indices are out of range")
    return idx.astype(np.int32)


def _wrap_tensor(indices: tf.Tensor, bound) -> tf.Tensor:
    # floormod maps [-n, n) onto [0, n) in one builtin op
    return tf.math.floormod(tf.cast(indices, tf.int32), tf.constant(np.asarray(bound, dtype=np.int32)))


# -- TopK -------------------------------------------------------------------------
def _topk_layout(ctx: ConversionContext, name: str, onnx_axis: int) -> tuple[tf.Tensor, Perm]:
    """The input stored so the TopK axis is last (TOPK_V2 only works there)."""
    perm = ctx.value(name).perm
    rank = len(perm)
    if perm[-1] == onnx_axis:
        target = perm
    elif onnx_axis == rank - 1:
        # a transpose is needed anyway; ONNX order is what most consumers want
        target = layout.identity(rank)
    else:
        # keep the other axes in stored order: one transpose, no reordering beyond it
        target = tuple(a for a in perm if a != onnx_axis) + (onnx_axis,)
    return ctx.tensor(name, target), target


def _topk(ctx: ConversionContext, node: Node, k: int) -> None:
    src = node.input(0)
    rank = ctx.value(src).rank
    axis = node.attr("axis", -1) % rank
    dim = ctx.static_shape(src)[axis]
    if not 0 <= k <= dim:
        raise Unsupported(f"k={k} is outside [0, {dim}] for axis {axis}")
    # sorted=0 allows any order, so the always-sorted TOPK_V2 result is valid for it too
    x, perm = _topk_layout(ctx, src, axis)
    largest = bool(node.attr("largest", 1))
    if not largest and ctx.value(src).dtype.is_unsigned:
        raise Unsupported("largest=0 on unsigned data (the smallest-k trick negates the input)")
    values, indices = tf.math.top_k(x if largest else tf.negative(x), k=k, sorted=True)
    ctx.set(node.outputs[0], values if largest else tf.negative(values), perm)
    if len(node.outputs) > 1 and node.outputs[1]:
        ctx.set(node.outputs[1], tf.cast(indices, tf.int64), perm)


@handles("TopK", since=1)
def topk_v1(ctx, node):
    _topk(ctx, node, int(node.attr("k")))


@handles("TopK", since=10)
def topk_v10(ctx, node):
    _topk(ctx, node, _scalar(ctx.require_const(node, 1, "k"), "k"))


# -- ArgMax / ArgMin --------------------------------------------------------------
def _arg_reduce(ctx: ConversionContext, node: Node, fn) -> None:
    src = node.input(0)
    value = ctx.value(src)
    axis = node.attr("axis", 0) % value.rank
    t = layout.tf_axis(value.perm, axis)
    x = ctx.tensor(src)
    if node.attr("select_last_index", 0):
        # first hit in the reversed axis is the last hit in the original
        n = ctx.static_shape(src)[axis]
        first = fn(tf.reverse(x, [t]), axis=t, output_type=tf.int32)
        out = tf.cast(tf.constant(n - 1, tf.int32) - first, tf.int64)
    else:
        out = fn(x, axis=t, output_type=tf.int64)
    if node.attr("keepdims", 1):
        ctx.set(node.outputs[0], tf.expand_dims(out, t), value.perm)
    else:
        ctx.set(node.outputs[0], out, layout.drop_axes(value.perm, [axis]))


@handles("ArgMax", since=1)
def argmax(ctx, node):
    _arg_reduce(ctx, node, tf.math.argmax)


@handles("ArgMin", since=1)
def argmin(ctx, node):
    _arg_reduce(ctx, node, tf.math.argmin)


# -- GatherElements ---------------------------------------------------------------
def _strides(dims: list[int]) -> list[int]:
    return [math.prod(dims[i + 1 :]) for i in range(len(dims))]


def _flat_base(index_dims: list[int], data_dims: list[int], skip: int) -> np.ndarray:
    """Flat offsets of every index position in the data, leaving out axis `skip`."""
    strides = _strides(data_dims)
    grid = np.indices(index_dims, dtype=np.int64)
    base = np.zeros(index_dims, dtype=np.int64)
    for i, stride in enumerate(strides):
        if i != skip:
            base = base + grid[i] * stride
    return base


def _gather_elements_const(ctx: ConversionContext, node: Node, axis: int) -> bool:
    data, indices = ctx.const(node.input(0)), ctx.const(node.input(1))
    if data is None or indices is None:
        return False
    idx = _wrap_const(indices, data.shape[axis])
    ctx.set_const(node.outputs[0], np.take_along_axis(data, idx.astype(np.int64), axis=axis))
    return True


@handles("GatherElements", since=11)
def gather_elements(ctx, node):
    data_name, index_name = node.input(0), node.input(1)
    value = ctx.value(data_name)
    rank = value.rank
    axis = node.attr("axis", 0) % rank
    if ctx.value(index_name).rank != rank:
        raise Unsupported("indices must have the rank of the data")
    if _gather_elements_const(ctx, node, axis):
        return
    data_dims = ctx.static_shape(data_name)
    if math.prod(data_dims) > INT32_MAX:
        raise Unsupported("data too large for int32 flat indexing")
    perm = value.perm
    t = layout.tf_axis(perm, axis)
    stored_data = layout.tf_shape(perm, data_dims)
    stored_index = layout.tf_shape(perm, ctx.static_shape(index_name))
    # out[p] = flat_data[base(p) + idx[p] * stride(axis)], everything in stored order
    base = _flat_base(stored_index, stored_data, t)
    stride = _strides(stored_data)[t]
    flat_data = tf.reshape(ctx.tensor(data_name), [-1])
    consts = ctx.const(index_name)
    if consts is not None:
        idx = np.transpose(_wrap_const(consts, data_dims[axis]), perm).astype(np.int64)
        flat = tf.constant((base + idx * stride).astype(np.int32))
    else:
        idx = _wrap_tensor(ctx.align_to(index_name, rank, perm), data_dims[axis])
        flat = tf.constant(base.astype(np.int32)) + idx * stride
    ctx.set(node.outputs[0], tf.gather(flat_data, flat), perm)


# -- GatherND ---------------------------------------------------------------------
def _nd_indices(ctx: ConversionContext, name: str, bounds: list[int]):
    """Indices (last axis = coordinates into `bounds`) as int32 with negatives wrapped."""
    consts = ctx.const(name)
    if consts is not None:
        return tf.constant(_wrap_const(consts, np.asarray(bounds)))
    return _wrap_tensor(ctx.onnx_tensor(name), bounds)


@handles("GatherND", since=11)
def gather_nd(ctx, node):
    data_name, index_name = node.input(0), node.input(1)
    batch = node.attr("batch_dims", 0)
    data_dims = ctx.static_shape(data_name)
    index_dims = ctx.static_shape(index_name)
    depth = index_dims[-1]
    if depth is None or batch + depth > len(data_dims):
        raise Unsupported(f"indices of depth {depth} with batch_dims={batch} exceed data rank {len(data_dims)}")
    if data_dims[:batch] != index_dims[:batch]:
        raise Unsupported("batch dims of data and indices differ (broadcast batch dims are not supported)")
    idx = _nd_indices(ctx, index_name, data_dims[batch : batch + depth])
    out = tf.gather_nd(ctx.onnx_tensor(data_name), idx, batch_dims=batch)
    ctx.set(node.outputs[0], out)


# -- ScatterND --------------------------------------------------------------------
@handles("ScatterND", since=11)
def scatter_nd(ctx, node):
    data_name, index_name, update_name = node.input(0), node.input(1), node.input(2)
    reduction = node.attr("reduction", "none")
    scatter = {"none": tf.tensor_scatter_nd_update, "add": tf.tensor_scatter_nd_add}.get(reduction)
    if scatter is None:
        # TensorScatterMax/Min/Mul have no TFLite builtin
        raise Unsupported(f"reduction={reduction!r} has no TFLite builtin (only none and add)")
    data_dims = ctx.static_shape(data_name)
    depth = ctx.static_shape(index_name)[-1]
    if depth is None or depth > len(data_dims):
        raise Unsupported(f"indices of depth {depth} exceed data rank {len(data_dims)}")
    idx = _nd_indices(ctx, index_name, data_dims[:depth])
    out = scatter(ctx.onnx_tensor(data_name), idx, ctx.onnx_tensor(update_name))
    ctx.set(node.outputs[0], out)


# -- CumSum -----------------------------------------------------------------------
@handles("CumSum", since=11)
def cumsum(ctx, node):
    src = node.input(0)
    value = ctx.value(src)
    axis = _scalar(ctx.require_const(node, 1, "axis"), "axis") % value.rank
    out = tf.math.cumsum(
        ctx.tensor(src),
        axis=layout.tf_axis(value.perm, axis),
        exclusive=bool(node.attr("exclusive", 0)),
        reverse=bool(node.attr("reverse", 0)),
    )
    ctx.set(node.outputs[0], out, value.perm)


# -- Trilu ------------------------------------------------------------------------
def _trilu_mask(dims: list[int], k: int, upper: bool) -> np.ndarray:
    """Keep-mask over the full ONNX shape (unit leading axes) for the last two dims."""
    ones = np.ones(dims[-2:], dtype=bool)
    mask = np.triu(ones, k) if upper else np.tril(ones, k)
    return mask.reshape([1] * (len(dims) - 2) + dims[-2:])


@handles("Trilu", since=14)
def trilu(ctx, node):
    src = node.input(0)
    value = ctx.value(src)
    if value.rank < 2:
        raise Unsupported("Trilu needs rank >= 2")
    k = _scalar(ctx.require_const(node, 1, "k"), "k") if node.input(1) else 0
    mask = _trilu_mask(ctx.static_shape(src), k, bool(node.attr("upper", 1)))
    x = ctx.tensor(src)
    # select, not multiply: 0 * inf would turn masked-out infinities into NaN
    out = tf.where(tf.constant(np.transpose(mask, value.perm)), x, tf.zeros([], x.dtype))
    ctx.set(node.outputs[0], out, value.perm)
