"""A private Reshape/Transpose chain (converter/relayout.py) as at most one transpose.

The stored input is reshaped into its atoms, one transpose orders them for the
output layout, and a reshape gives the output. The output keeps the layout the atoms
already follow when there is one (no transpose at all, as converting node by node
would); otherwise it is stored channels-last for a conv-like reader, as the input was
when the rank is the same (a channel shuffle), and in ONNX order for anything else:
the layouts the readers would otherwise move it to.
"""

from __future__ import annotations

import tensorflow as tf

from buildsys.converter import layout
from buildsys.converter.context import ConversionContext
from buildsys.converter.ir import Node
from buildsys.converter.ops import shape
from buildsys.converter.registry import handles
from buildsys.converter.relayout import Movement, free_order, merged_transpose, movement, stored_atoms

# TFLite's TRANSPOSE takes at most 6-D tensors
MAX_RANK = 6


@handles("Relayout", domain="buildsys.fused")  # relayout.RELAYOUT in fusions.FUSED: inspect reads literals
def relayout(ctx, node):
    chain = node.attr("chain")
    x = ctx.value(chain[0].input(0))
    in_shape = ctx.static_shape(chain[0].input(0)) if x.const is None else None
    if in_shape is None or not _as_one_movement(ctx, node, chain, in_shape):
        _one_by_one(ctx, chain)


def _as_one_movement(ctx: ConversionContext, node: Node, chain: tuple[Node, ...], in_shape: list[int]) -> bool:
    steps, out_shape = _steps(ctx, chain, in_shape)
    mv = movement(in_shape, steps)
    return mv is not None and _moved(ctx, node, mv, out_shape)


def _steps(
    ctx: ConversionContext, chain: tuple[Node, ...], dims: list[int]
) -> tuple[list[tuple[str, list[int]]], list[int]]:
    """The chain as ("reshape", dims) / ("transpose", perm) steps, and the output shape."""
    steps: list[tuple[str, list[int]]] = []
    for n in chain:
        if n.op_type == "Transpose":
            order = list(n.attr("perm") or reversed(range(len(dims))))
            dims = [dims[a] for a in order]
            steps.append(("transpose", order))
        else:
            requested = ctx.require_const(n, 1, "shape")
            dims = shape.resolve_shape(requested, dims, bool(n.attr("allowzero", 0)))
            steps.append(("reshape", dims))
    return steps, dims


def _moved(ctx: ConversionContext, node: Node, mv: Movement, out_shape: list[int]) -> bool:
    """Set the output through the atoms; False (nothing done) when the transpose is too wide."""
    x = ctx.value(node.input(0))
    src = stored_atoms(mv.in_axes, x.perm)
    perm = _out_perm(node, mv, src, len(out_shape), x.perm)
    dst = stored_atoms(mv.out_axes, perm)
    y_dims = layout.tf_shape(perm, out_shape)
    if src == dst:
        ctx.set(node.outputs[0], tf.reshape(x.tensor, y_dims), perm)
        return True
    dims, rel = merged_transpose(src, dst, mv.sizes)
    if len(dims) > MAX_RANK:
        return False
    moved = tf.transpose(tf.reshape(x.tensor, dims), rel)
    ctx.set(node.outputs[0], tf.reshape(moved, y_dims), perm)
    return True


def _out_perm(node: Node, mv: Movement, src: list[int], rank: int, in_perm: layout.Perm) -> layout.Perm:
    order = free_order(mv, src)
    if order is not None:
        return shape.with_unit_axes(order, [j for j, axis in enumerate(mv.out_axes) if not axis])
    if rank >= 3 and node.attr("channels_last_reader"):
        return layout.channels_last(rank)
    # a channel shuffle ([N, C, H, W] back to [N, C, H, W]) keeps the map's layout for the
    # Split and convs after it; a change of rank (patches to tokens) goes to ONNX order
    return in_perm if len(in_perm) == rank else layout.identity(rank)


def _one_by_one(ctx: ConversionContext, chain: tuple[Node, ...]) -> None:
    for n in chain:
        if n.op_type == "Transpose":
            shape.transpose(ctx, n)
        else:
            shape.reshape(ctx, n)
