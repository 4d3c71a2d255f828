"""Ops that create, cut, join and move tensor data: Constant, Concat, Split, Slice, Gather,
Pad, Tile, Expand, Range, DepthToSpace, SpaceToDepth, Where, NonZero, OneHot.

Every ONNX axis is remapped into the stored layout, so a channels-last tensor stays
channels-last through slicing, padding and joining; only DepthToSpace/SpaceToDepth insist
on channels-last, because that is the layout TF's kernels take. Values known at conversion
time are folded in numpy, which keeps shape arithmetic out of the TF graph.
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

# (attribute, dtype it implies); ONNX allows exactly one of them on a Constant
CONSTANT_ATTRS = (
    ("value", None),
    ("value_float", np.float32),
    ("value_floats", np.float32),
    ("value_int", np.int64),
    ("value_ints", np.int64),
)
# ONNX Pad modes; numpy's np.pad spells them the same way
PAD_MODES = ("constant", "reflect", "edge", "wrap")


# -- helpers --------------------------------------------------------------------------


def _ints(array) -> list[int]:
    return [int(v) for v in np.asarray(array).reshape(-1)]


def _optional_const(ctx: ConversionContext, node: Node, index: int, what: str) -> np.ndarray | None:
    return ctx.require_const(node, index, what) if node.input(index) else None


def _passthrough(ctx: ConversionContext, node: Node, src: str) -> None:
    value = ctx.value(src)
    if value.const is not None:
        ctx.set_const(node.outputs[0], value.const)
    else:
        ctx.set(node.outputs[0], value.tensor, value.perm)


def _strided(tensor: tf.Tensor, perm: Perm, spec: list[tuple[int, int, int]], shrink=()) -> tf.Tensor:
    """strided_slice of a stored tensor from a per-ONNX-axis (start, end, step) spec.

    `end == -1` (with a negative step) means "through index 0", which strided_slice can
    only say with an end mask; `shrink` names ONNX axes to drop (they must have length 1)."""
    begin, end, strides, end_mask, shrink_mask = [], [], [], 0, 0
    for i, axis in enumerate(perm):
        s, e, st = spec[axis]
        begin.append(s)
        strides.append(st)
        end.append(max(e, 0))
        if e < 0:
            end_mask |= 1 << i
        if axis in shrink:
            shrink_mask |= 1 << i
    return tf.strided_slice(tensor, begin, end, strides, end_mask=end_mask, shrink_axis_mask=shrink_mask)


def _numpy_slices(spec: list[tuple[int, int, int]]) -> tuple[slice, ...]:
    return tuple(slice(s, e if e >= 0 else None, st) for s, e, st in spec)


def _spec_length(start: int, end: int, step: int) -> int:
    return len(range(start, end, step))


# -- Constant, ConstantOfShape ----------------------------------------------------------


@handles("Constant", since=1)
def constant(ctx, node):
    for key, dtype in CONSTANT_ATTRS:
        if key in node.attrs:
            ctx.set_const(node.outputs[0], np.asarray(node.attrs[key], dtype=dtype))
            return
    present = ", ".join(sorted(node.attrs)) or "none"
    raise Unsupported(f"Constant with attribute {present}: only dense numeric tensors are supported")


@handles("ConstantOfShape", since=9)
def constant_of_shape(ctx, node):
    shape = _ints(ctx.require_const(node, 0, "shape"))
    fill = node.attr("value")
    fill = np.zeros(1, np.float32) if fill is None else np.asarray(fill).reshape(-1)
    ctx.set_const(node.outputs[0], np.full(shape, fill[0], dtype=fill.dtype))


# -- Concat, Split ----------------------------------------------------------------------


@handles("Concat", since=4)
def concat(ctx, node):
    # zero-length inputs add nothing, and TFLite kernels reject empty tensors
    names = [n for n in node.inputs if n and 0 not in ctx.shape(n)]
    if not names:
        raise Unsupported("every input of Concat is empty")
    axis = node.attr("axis")
    consts = [ctx.const(n) for n in names]
    if all(c is not None for c in consts):
        ctx.set_const(node.outputs[0], np.concatenate(consts, axis=axis))
        return
    if len(names) == 1:
        _passthrough(ctx, node, names[0])
        return
    # inputs with another layout are brought to the one most inputs already have
    tensors, perm = ctx.aligned(names)
    ctx.set(node.outputs[0], tf.concat(tensors, axis=layout.tf_axis(perm, axis)), perm)


def _even_split(dim: int, parts: int) -> list[int]:
    """ONNX's split without sizes: equal chunks, the last one smaller if it must be."""
    chunk = -(-dim // parts)
    return [chunk] * (parts - 1) + [dim - chunk * (parts - 1)]


def _split(ctx: ConversionContext, node: Node, sizes: list[int] | None, parts: int) -> None:
    src = node.input(0)
    shape = ctx.static_shape(src)
    axis = node.attr("axis", 0) % len(shape)
    sizes = _even_split(shape[axis], parts) if sizes is None else sizes
    if sum(sizes) != shape[axis] or min(sizes) <= 0:
        raise Unsupported(f"cannot split a dim of {shape[axis]} into {sizes}")
    value = ctx.value(src)
    if value.const is not None:
        pieces = np.split(value.const, np.cumsum(sizes)[:-1], axis=axis)
        for name, piece in zip(node.outputs, pieces):
            if name:
                ctx.set_const(name, piece)
        return
    pieces = tf.split(value.tensor, sizes, axis=layout.tf_axis(value.perm, axis))
    for name, piece in zip(node.outputs, pieces):
        if name:
            ctx.set(name, piece, value.perm)


@handles("Split", since=2)
def split_2(ctx, node):
    sizes = node.attr("split")
    _split(ctx, node, list(sizes) if sizes else None, len(node.outputs))


@handles("Split", since=13)
def split_13(ctx, node):
    sizes = _optional_const(ctx, node, 1, "split")
    _split(ctx, node, _ints(sizes) if sizes is not None else None, len(node.outputs))


@handles("Split", since=18)
def split_18(ctx, node):
    sizes = _optional_const(ctx, node, 1, "split")
    parts = node.attr("num_outputs", len(node.outputs))
    _split(ctx, node, _ints(sizes) if sizes is not None else None, parts)


# -- Slice ------------------------------------------------------------------------------


def _clamp(start: int, end: int, step: int, dim: int) -> tuple[int, int, int]:
    """ONNX Slice bounds: negatives count from the end, then clamp; differs from Python's
    slice.indices for far-negative starts with negative steps."""
    start = start + dim if start < 0 else start
    end = end + dim if end < 0 else end
    if step > 0:
        return min(max(start, 0), dim), min(max(end, 0), dim), step
    return min(max(start, 0), dim - 1), min(max(end, -1), dim - 1), step


def _slice(ctx: ConversionContext, node: Node, starts, ends, axes, steps) -> None:
    src = node.input(0)
    shape = ctx.static_shape(src)
    rank = len(shape)
    axes = list(range(len(starts))) if axes is None else [a % rank for a in axes]
    steps = [1] * len(starts) if steps is None else steps
    spec = [(0, d, 1) for d in shape]
    for s, e, a, st in zip(starts, ends, axes, steps):
        if st == 0:
            raise Unsupported("Slice step 0")
        spec[a] = _clamp(s, e, st, shape[a])
    if any(_spec_length(*sp) == 0 for sp in spec):
        raise Unsupported(f"Slice result is empty ({shape} sliced by {spec})")
    value = ctx.value(src)
    if value.const is not None:
        ctx.set_const(node.outputs[0], value.const[_numpy_slices(spec)])
        return
    if spec == [(0, d, 1) for d in shape]:
        _passthrough(ctx, node, src)
        return
    ctx.set(node.outputs[0], _strided(value.tensor, value.perm, spec), value.perm)


@handles("Slice", since=1)
def slice_1(ctx, node):
    axes = node.attr("axes")
    _slice(ctx, node, list(node.attr("starts")), list(node.attr("ends")), list(axes) if axes else None, None)


@handles("Slice", since=10)
def slice_10(ctx, node):
    starts = _ints(ctx.require_const(node, 1, "starts"))
    ends = _ints(ctx.require_const(node, 2, "ends"))
    axes = _optional_const(ctx, node, 3, "axes")
    steps = _optional_const(ctx, node, 4, "steps")
    _slice(ctx, node, starts, ends, None if axes is None else _ints(axes), None if steps is None else _ints(steps))


# -- Gather -----------------------------------------------------------------------------


def _progression(indices: np.ndarray) -> tuple[int, int, int] | None:
    """(start, end, step) if 1-D indices count up evenly, so a strided slice can replace GATHER."""
    if indices.ndim != 1 or indices.size == 0:
        return None
    step = int(indices[1] - indices[0]) if indices.size > 1 else 1
    if step <= 0 or np.any(np.diff(indices) != step):
        return None
    return int(indices[0]), int(indices[-1]) + 1, step


def _gather_perm(data_perm: Perm, axis: int, index_perm: Perm) -> Perm:
    """Perm of tf.gather(stored data, stored indices, stored axis): the index dims land
    where the gathered axis was, in the order the indices are stored."""
    q = len(index_perm)
    out: list[int] = []
    for a in data_perm:
        if a == axis:
            out.extend(axis + p for p in index_perm)
        else:
            out.append(a if a < axis else a + q - 1)
    return tuple(out)


def _gather_const_indices(ctx: ConversionContext, node: Node, axis: int, indices: np.ndarray) -> None:
    src = node.input(0)
    value = ctx.value(src)
    shape = ctx.static_shape(src)
    indices = np.where(indices < 0, indices + shape[axis], indices)
    run = _progression(indices)
    if indices.ndim == 0:
        spec = [(0, d, 1) for d in shape]
        spec[axis] = (int(indices), int(indices) + 1, 1)
        out = _strided(value.tensor, value.perm, spec, shrink=(axis,))
        ctx.set(node.outputs[0], out, layout.drop_axes(value.perm, [axis]))
    elif run is not None:
        spec = [(0, d, 1) for d in shape]
        spec[axis] = run
        ctx.set(node.outputs[0], _strided(value.tensor, value.perm, spec), value.perm)
    else:
        index_perm = layout.identity(indices.ndim)
        out = tf.gather(value.tensor, tf.constant(indices.astype(np.int32)), axis=layout.tf_axis(value.perm, axis))
        ctx.set(node.outputs[0], out, _gather_perm(value.perm, axis, index_perm))


@handles("Gather", since=1)
def gather(ctx, node):
    src, idx = node.input(0), node.input(1)
    rank = ctx.value(src).rank
    axis = node.attr("axis", 0) % rank
    data, indices = ctx.const(src), ctx.const(idx)
    if data is not None and indices is not None:
        ctx.set_const(node.outputs[0], np.take(data, indices, axis=axis))
        return
    if indices is not None:
        _gather_const_indices(ctx, node, axis, indices)
        return
    dim = ctx.static_shape(src)[axis]
    # indices may count from the end; floormod maps [-dim, dim) onto [0, dim) in one op
    index = tf.math.floormod(tf.cast(ctx.tensor(idx), tf.int32), dim)
    data_perm = ctx.perm(src)
    out = tf.gather(ctx.tensor(src), index, axis=layout.tf_axis(data_perm, axis))
    ctx.set(node.outputs[0], out, _gather_perm(data_perm, axis, ctx.perm(idx)))


# -- Pad --------------------------------------------------------------------------------


def _pads_per_axis(pads: list[int], rank: int, axes: list[int] | None) -> list[tuple[int, int]]:
    axes = list(range(rank)) if axes is None else [a % rank for a in axes]
    if len(pads) != 2 * len(axes):
        raise Unsupported(f"{len(pads)} pads for {len(axes)} axes")
    out = [(0, 0)] * rank
    for i, axis in enumerate(axes):
        out[axis] = (pads[i], pads[len(axes) + i])
    return out


def _crop(value, pads: list[tuple[int, int]], shape: list[int]):
    """Negative pads remove elements; onnxruntime crops first and pads what is left."""
    spec = [(max(-b, 0), d - max(-e, 0), 1) for (b, e), d in zip(pads, shape)]
    if any(_spec_length(*sp) <= 0 for sp in spec):
        raise Unsupported(f"negative pads {pads} remove all of {shape}")
    if value.const is not None:
        return value.const[_numpy_slices(spec)], None
    return None, _strided(value.tensor, value.perm, spec)


def _gather_pad(tensor: tf.Tensor, paddings: list[tuple[int, int]], index_of) -> tf.Tensor:
    """Pad each stored axis by gathering source positions: `index_of(positions, dim)` maps
    the padded range onto the input (clamp for edge, modulo for wrap)."""
    for i, (b, e) in enumerate(paddings):
        if b or e:
            dim = tensor.shape[i]
            positions = np.arange(-b, dim + e)
            tensor = tf.gather(tensor, tf.constant(index_of(positions, dim).astype(np.int32)), axis=i)
    return tensor


def _tf_pad(tensor: tf.Tensor, paddings: list[tuple[int, int]], mode: str, fill) -> tf.Tensor:
    dims = tensor.shape.as_list()
    if mode == "constant":
        fill = np.asarray(fill).astype(tensor.dtype.as_numpy_dtype)
        return tf.pad(tensor, paddings, constant_values=tf.constant(fill))
    if mode == "reflect":
        if any(max(p) >= d for p, d in zip(paddings, dims)):
            raise Unsupported(f"reflect pads {paddings} reach past the edge of {dims}")
        return tf.pad(tensor, paddings, mode="REFLECT")
    if mode == "edge":
        return _edge_pad(tensor, paddings)
    return _gather_pad(tensor, paddings, lambda pos, dim: np.mod(pos, dim))


def _edge_pad(tensor: tf.Tensor, paddings: list[tuple[int, int]]) -> tf.Tensor:
    # mirroring one element repeats the edge, so pads of 1 take one MIRROR_PAD for all
    # axes; wider pads gather the edge index again, one axis at a time
    narrow = [p if max(p) <= 1 else (0, 0) for p in paddings]
    wide = [p if max(p) > 1 else (0, 0) for p in paddings]
    if any(max(p) for p in narrow):
        tensor = tf.pad(tensor, narrow, mode="SYMMETRIC")
    return _gather_pad(tensor, wide, lambda pos, dim: np.clip(pos, 0, dim - 1))


def _pad(ctx: ConversionContext, node: Node, pads: list[int], fill, axes: list[int] | None) -> None:
    mode = node.attr("mode", "constant")
    if mode not in PAD_MODES:
        raise Unsupported(f"Pad mode {mode!r}")
    src = node.input(0)
    shape = ctx.static_shape(src)
    per_axis = _pads_per_axis(pads, len(shape), axes)
    value = ctx.value(src)
    array, tensor = (value.const, value.tensor)
    if any(min(p) < 0 for p in per_axis):
        array, tensor = _crop(value, per_axis, shape)
        per_axis = [(max(b, 0), max(e, 0)) for b, e in per_axis]
    if array is not None:
        extra = {"constant_values": fill} if mode == "constant" else {}
        padded = np.pad(array, per_axis, mode=mode, **extra).astype(array.dtype)
        ctx.set_const(node.outputs[0], padded)
        return
    if all(p == (0, 0) for p in per_axis):
        ctx.set(node.outputs[0], tensor, value.perm)
        return
    paddings = layout.tf_shape(value.perm, per_axis)
    ctx.set(node.outputs[0], _tf_pad(tensor, paddings, mode, fill), value.perm)


def _fill_value(ctx: ConversionContext, node: Node, index: int):
    fill = _optional_const(ctx, node, index, "constant_value")
    return 0 if fill is None or fill.size == 0 else fill.reshape(-1)[0].item()


@handles("Pad", since=2)
def pad_2(ctx, node):
    _pad(ctx, node, list(node.attr("pads")), node.attr("value", 0.0), None)


@handles("Pad", since=11)
def pad_11(ctx, node):
    _pad(ctx, node, _ints(ctx.require_const(node, 1, "pads")), _fill_value(ctx, node, 2), None)


@handles("Pad", since=18)
def pad_18(ctx, node):
    # opset 19 only adds mode "wrap", which _pad handles at any opset
    axes = _optional_const(ctx, node, 3, "axes")
    pads = _ints(ctx.require_const(node, 1, "pads"))
    _pad(ctx, node, pads, _fill_value(ctx, node, 2), None if axes is None else _ints(axes))


# -- Tile, Expand -----------------------------------------------------------------------


@handles("Tile", since=6)
def tile(ctx, node):
    src = node.input(0)
    repeats = _ints(ctx.require_const(node, 1, "repeats"))
    value = ctx.value(src)
    if value.const is not None:
        ctx.set_const(node.outputs[0], np.tile(value.const, repeats))
        return
    if all(r == 1 for r in repeats):
        _passthrough(ctx, node, src)
        return
    ctx.set(node.outputs[0], tf.tile(value.tensor, layout.tf_shape(value.perm, repeats)), value.perm)


@handles("Expand", since=8)
def expand(ctx, node):
    src = node.input(0)
    target = _ints(ctx.require_const(node, 1, "shape"))
    in_shape = ctx.static_shape(src)
    out_shape = list(np.broadcast_shapes(tuple(in_shape), tuple(target)))
    value = ctx.value(src)
    if value.const is not None:
        ctx.set_const(node.outputs[0], np.array(np.broadcast_to(value.const, out_shape)))
        return
    # new leading unit axes go in as a reshape of the stored tensor: no data moves
    lead = len(out_shape) - len(in_shape)
    perm = layout.insert_axes(value.perm, list(range(lead)))
    tensor = value.tensor
    if lead:
        tensor = tf.reshape(tensor, layout.tf_shape(perm, [1] * lead + in_shape))
    if out_shape != [1] * lead + in_shape:
        tensor = tf.broadcast_to(tensor, layout.tf_shape(perm, out_shape))
    ctx.set(node.outputs[0], tensor, perm)


# -- Range ------------------------------------------------------------------------------


@handles("Range", since=11)
def range_(ctx, node):
    start, limit, delta = (ctx.const(node.input(i)) for i in range(3))
    if start is not None and limit is not None and delta is not None:
        dtype = np.asarray(start).dtype
        count = max(math.ceil((limit.item() - start.item()) / delta.item()), 0)
        ctx.set_const(node.outputs[0], (start.item() + np.arange(count) * delta.item()).astype(dtype))
        return
    out = tf.range(*(ctx.tensor(node.input(i)) for i in range(3)))
    # prepare made every shape static; telling TF keeps later ops shape-static too
    info = ctx.graph.values.get(node.outputs[0])
    if info is not None and info.shape is not None and None not in info.shape:
        out = tf.ensure_shape(out, info.shape)
    ctx.set(node.outputs[0], out)


# -- DepthToSpace, SpaceToDepth ---------------------------------------------------------


def _crd_to_dcr(channels: int, block: int) -> np.ndarray:
    """Channel order that turns a CRD-packed tensor into the DCR packing TF expects:
    DCR channel (i*block + j)*C + c holds CRD channel c*block*block + i*block + j."""
    out_c = channels // (block * block)
    k = np.arange(channels)
    return ((k % out_c) * block * block + k // out_c).astype(np.int32)


@handles("DepthToSpace", since=1)
def depth_to_space(ctx, node):
    src = node.input(0)
    if ctx.value(src).rank != 4:
        raise Unsupported("DepthToSpace needs a 4-D input")
    block = node.attr("blocksize")
    perm = layout.channels_last(4)
    x = ctx.tensor(src, perm)
    if node.attr("mode", "DCR") == "CRD":
        # a channel gather, not a 5-D transpose: TFLite runs it as one GATHER
        x = tf.gather(x, tf.constant(_crd_to_dcr(ctx.static_shape(src)[1], block)), axis=3)
    ctx.set(node.outputs[0], tf.nn.depth_to_space(x, block), perm)


def _dcr_to_crd(channels: int, block: int) -> np.ndarray:
    """Channel order that turns TF's DCR packing into CRD: CRD channel c*block*block + b
    holds DCR channel b*C + c (b = i*block + j)."""
    in_c = channels // (block * block)
    k = np.arange(channels)
    return ((k % (block * block)) * in_c + k // (block * block)).astype(np.int32)


@handles("SpaceToDepth", since=1)
def space_to_depth(ctx, node):
    src = node.input(0)
    if ctx.value(src).rank != 4:
        raise Unsupported("SpaceToDepth needs a 4-D input")
    block = node.attr("blocksize")
    perm = layout.channels_last(4)
    # DCR (the only packing before opset 28) is what TF's NHWC kernel does
    out = tf.nn.space_to_depth(ctx.tensor(src, perm), block)
    if node.attr("mode", "DCR") == "CRD":
        out = tf.gather(out, tf.constant(_dcr_to_crd(out.shape[3], block)), axis=3)
    ctx.set(node.outputs[0], out, perm)


# -- Where, NonZero, OneHot -------------------------------------------------------------


@handles("Where", since=9)
def where(ctx, node):
    names = [node.input(i) for i in range(3)]
    consts = [ctx.const(n) for n in names]
    if all(c is not None for c in consts):
        ctx.set_const(node.outputs[0], np.where(*consts))
        return
    (cond, x, y), perm = ctx.aligned(names)
    ctx.set(node.outputs[0], tf.where(cond, x, y), perm)


@handles("NonZero", since=9)
def nonzero(ctx, node):
    value = ctx.const(node.input(0))
    if value is None:
        raise Unsupported("NonZero of a computed tensor has a data-dependent shape")
    ctx.set_const(node.outputs[0], np.array(np.nonzero(value), dtype=np.int64).reshape(value.ndim, -1))


@handles("OneHot", since=9)
def one_hot(ctx, node):
    src = node.input(0)
    depth = int(np.asarray(ctx.require_const(node, 1, "depth")).reshape(-1)[0])
    off, on = np.asarray(ctx.require_const(node, 2, "values")).reshape(-1)[:2]
    rank = ctx.value(src).rank + 1
    axis = node.attr("axis", -1) % rank
    indices = tf.cast(ctx.tensor(src), tf.int32)
    # negative indices count from the end; anything still out of range stays all-off
    indices = tf.where(indices < 0, indices + depth, indices)
    # the new axis goes where it keeps the index axes' stored order (ONNX's axis when the
    # indices are not permuted), so no data moves
    perm = layout.insert_axes(ctx.perm(src), [axis])
    stored_axis = perm.index(axis)
    out = tf.one_hot(indices, depth, on_value=tf.constant(on), off_value=tf.constant(off), axis=stored_axis)
    ctx.set(node.outputs[0], out, perm)
