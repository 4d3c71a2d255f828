"""Reshape, Flatten, Transpose, Squeeze, Unsqueeze, Shape: ops that relabel axes.

Reshape is done in the stored layout whenever it only splits or merges axes
that are contiguous there too, so a channels-last tensor split into
(anchors, fields) needs no transpose. Transpose only composes permutations.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from buildsys.converter import layout
from buildsys.converter.context import ConversionContext
from buildsys.converter.errors import Unsupported
from buildsys.converter.ir import Node
from buildsys.converter.registry import handles


def axis_groups(src: list[int], dst: list[int]) -> list[tuple[list[int], list[int]]] | None:
    """Pair runs of source axes with runs of target axes of equal element count."""
    groups, i, j = [], 0, 0
    while i < len(src) or j < len(dst):
        gi, gj, pa, pb = [], [], 1, 1
        if i < len(src):
            pa, i = pa * src[i], i + 1
            gi.append(i - 1)
        if j < len(dst):
            pb, j = pb * dst[j], j + 1
            gj.append(j - 1)
        while pa != pb:
            if pa < pb and i < len(src):
                pa, i = pa * src[i], i + 1
                gi.append(i - 1)
            elif pb < pa and j < len(dst):
                pb, j = pb * dst[j], j + 1
                gj.append(j - 1)
            else:
                return None
        groups.append((gi, gj))
    return groups


def stored_reshape_perm(perm: tuple[int, ...], src: list[int], dst: list[int]) -> tuple[int, ...] | None:
    """Output perm if reshaping the stored tensor gives transpose(onnx_result, perm), else None.

    Unit axes hold no data, so only the non-unit axes must split or merge in runs that
    follow each other, in order, in the stored tensor; unit axes may sit anywhere. That
    keeps e.g. [1, C, 1, W] -> [C, W] free on a channels-last tensor."""
    src_big = [a for a, d in enumerate(src) if d != 1]
    dst_big = [a for a, d in enumerate(dst) if d != 1]
    groups = axis_groups([src[a] for a in src_big], [dst[a] for a in dst_big])
    if groups is None:
        return None
    group_of = {k: g for g, (ins, _) in enumerate(groups) for k in ins}
    stored = [src_big.index(a) for a in perm if src[a] != 1]
    out: list[int] = []
    k = 0
    while k < len(stored):
        ins, outs = groups[group_of[stored[k]]]
        if stored[k : k + len(ins)] != ins:
            return None
        out.extend(dst_big[j] for j in outs)
        k += len(ins)
    return with_unit_axes(out, [a for a, d in enumerate(dst) if d == 1])


def with_unit_axes(stored: list[int], units: list[int]) -> tuple[int, ...]:
    """Place unit axes in a stored order; each goes before the first axis that follows it
    in ONNX order, so axes that were in ONNX order stay so."""
    stored = list(stored)
    for axis in units:
        following = [i for i, a in enumerate(stored) if a > axis]
        stored.insert(following[0] if following else len(stored), axis)
    return tuple(stored)


def reshape_to(ctx: ConversionContext, node: Node, src: str, dst_shape: list[int]) -> None:
    value = ctx.value(src)
    if value.const is not None:
        ctx.set_const(node.outputs[0], value.const.reshape(dst_shape))
        return
    in_shape = ctx.static_shape(src)
    perm = None if layout.is_identity(value.perm) else stored_reshape_perm(value.perm, in_shape, dst_shape)
    if perm is None:
        out = tf.reshape(ctx.onnx_tensor(src), dst_shape)
        ctx.set(node.outputs[0], out, layout.identity(len(dst_shape)))
        return
    ctx.set(node.outputs[0], tf.reshape(value.tensor, layout.tf_shape(perm, dst_shape)), perm)


def resolve_shape(requested: np.ndarray, in_shape: list[int], allowzero: bool) -> list[int]:
    dims = [int(d) for d in requested.reshape(-1)]
    if not allowzero:
        dims = [in_shape[i] if d == 0 else d for i, d in enumerate(dims)]
    if dims.count(-1) > 1:
        raise Unsupported(f"shape {dims} has more than one -1")
    if -1 in dims:
        known = math.prod(d for d in dims if d != -1)
        dims[dims.index(-1)] = math.prod(in_shape) // known if known else 0
    if math.prod(dims) != math.prod(in_shape):
        raise Unsupported(f"cannot reshape {in_shape} to {dims}")
    return dims


@handles("Reshape", since=5)
def reshape(ctx, node):
    requested = ctx.require_const(node, 1, "shape")
    in_shape = ctx.static_shape(node.input(0))
    dims = resolve_shape(requested, in_shape, bool(node.attr("allowzero", 0)))
    reshape_to(ctx, node, node.input(0), dims)


@handles("Flatten", since=1)
def flatten(ctx, node):
    in_shape = ctx.static_shape(node.input(0))
    axis = node.attr("axis", 1)
    # negative axes count from the rank, not rank + 1: axis -1 keeps the last dim apart
    axis = axis + len(in_shape) if axis < 0 else axis
    reshape_to(ctx, node, node.input(0), [math.prod(in_shape[:axis]), math.prod(in_shape[axis:])])


@handles("Transpose", since=1)
def transpose(ctx, node):
    src = node.input(0)
    value = ctx.value(src)
    order = node.attr("perm") or list(reversed(range(value.rank)))
    if value.const is not None:
        ctx.set_const(node.outputs[0], np.transpose(value.const, order))
        return
    ctx.set(node.outputs[0], value.tensor, layout.apply_transpose(value.perm, order))


def _axes(ctx: ConversionContext, node: Node, since_input: int) -> list[int] | None:
    if ctx.opset(node) >= since_input:
        if not node.input(1):
            return None
        return [int(a) for a in ctx.require_const(node, 1, "axes").reshape(-1)]
    axes = node.attr("axes")
    return None if axes is None else list(axes)


def _unit_axes_changed(ctx: ConversionContext, node: Node, dst: list[int], new_perm) -> None:
    """Squeeze/Unsqueeze: only unit axes come or go, so the stored tensor is just reshaped."""
    value = ctx.value(node.input(0))
    if value.const is not None:
        ctx.set_const(node.outputs[0], value.const.reshape(dst))
        return
    perm = new_perm(value.perm)
    ctx.set(node.outputs[0], tf.reshape(value.tensor, layout.tf_shape(perm, dst)), perm)


@handles("Squeeze", since=1)
def squeeze(ctx, node):
    src = node.input(0)
    shape = ctx.static_shape(src)
    axes = _axes(ctx, node, 13)
    axes = [i for i, d in enumerate(shape) if d == 1] if axes is None else [a % len(shape) for a in axes]
    if any(shape[a] != 1 for a in axes):
        raise Unsupported(f"cannot squeeze axes {axes} of shape {shape}")
    dst = [d for i, d in enumerate(shape) if i not in axes]
    _unit_axes_changed(ctx, node, dst, lambda perm: layout.drop_axes(perm, axes))


@handles("Unsqueeze", since=1)
def unsqueeze(ctx, node):
    src = node.input(0)
    shape = ctx.static_shape(src)
    axes = _axes(ctx, node, 13) or []
    rank = len(shape) + len(axes)
    axes = sorted(a % rank for a in axes)
    dst = list(shape)
    for a in axes:
        dst.insert(a, 1)
    _unit_axes_changed(ctx, node, dst, lambda perm: layout.insert_axes(perm, axes))


@handles("Shape", since=1)
def shape_(ctx, node):
    # static after prepare, so Shape is a constant in ONNX order whatever the layout
    dims = ctx.static_shape(node.input(0))
    rank = len(dims)
    start = node.attr("start", 0)
    end = node.attr("end", rank)
    ctx.set_const(node.outputs[0], np.asarray(dims[slice(start, end)], dtype=np.int64))


@handles("Size", since=1)
def size(ctx, node):
    ctx.set_const(node.outputs[0], np.asarray(math.prod(ctx.static_shape(node.input(0))), dtype=np.int64))
