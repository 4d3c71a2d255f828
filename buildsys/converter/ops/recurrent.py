"""ONNX LSTM, GRU and RNN: read and check the node, then one cell per direction.

Layout-opaque: X, the initial states and every output are in ONNX axis order.
Weights, biases, peepholes and sequence_lens must be constants, and the sequence
length static. An LSTM becomes TFLite's fused UNIDIRECTIONAL_SEQUENCE_LSTM (one per
direction) unless it needs what that kernel cannot give: Y_c (the kernel outputs
only Y), peepholes or `clip` (the Keras route has neither). Everything else is the
exact primitive form unrolled over the sequence (recurrent_cells.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from buildsys.converter.context import ConversionContext
from buildsys.converter.errors import Unsupported
from buildsys.converter.ir import Node
from buildsys.converter.ops.recurrent_cells import Cell, Weights, fused_lstm, primitive
from buildsys.converter.registry import handles

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
DEFAULT_ACTIVATIONS = {"LSTM": ("sigmoid", "tanh", "tanh"), "GRU": ("sigmoid", "tanh"), "RNN": ("tanh",)}
REVERSED = {"forward": (False,), "reverse": (True,), "bidirectional": (False, True)}


@dataclass(frozen=True)
class Recurrence:
    """A checked node: its cell, directions, time axis and per-direction constants."""

    cell: Cell
    reverse: tuple[bool, ...]
    axis: int  # the time axis of X and of each direction's Y (0: layout 0, 1: layout 1)
    weights: tuple[Weights, ...]


@handles("LSTM", since=7)
def lstm(ctx: ConversionContext, node: Node) -> None:
    if node.attr("input_forget", 0):
        raise Unsupported("input_forget=1 (coupled input and forget gates) is not supported")
    _convert(ctx, node, "LSTM")


@handles("GRU", since=7)
def gru(ctx: ConversionContext, node: Node) -> None:
    _convert(ctx, node, "GRU")


@handles("RNN", since=7)
def rnn(ctx: ConversionContext, node: Node) -> None:
    _convert(ctx, node, "RNN")


def _convert(ctx: ConversionContext, node: Node, kind: str) -> None:
    x = ctx.onnx_tensor(node.input(0))
    rec = _read(ctx, node, kind, x.dtype.as_numpy_dtype)
    h0 = _initial_state(ctx, node.input(5), rec)
    c0 = _initial_state(ctx, node.input(6) if kind == "LSTM" else "", rec)
    fused = kind == "LSTM" and _fusable(ctx, node, rec)
    ys, hs, cs = [], [], []
    for d, reverse in enumerate(rec.reverse):
        if fused:
            y, h = fused_lstm(x, h0[d], c0[d], rec.weights[d], rec.axis, reverse, f"{node.index}_{d}")
            c = None
        else:
            y, h, c = primitive(x, h0[d], c0[d], rec.weights[d], rec.cell, rec.axis, reverse)
        ys.append(y)
        hs.append(h)
        cs.append(c)
    # Y: layout 0 [T, D, B, H], layout 1 [B, T, D, H]; Y_h, Y_c: [D, B, H] or [B, D, H]
    _set(ctx, node, 0, ys, rec.axis + 1)
    _set(ctx, node, 1, hs, rec.axis)
    _set(ctx, node, 2, cs, rec.axis)


def _set(ctx: ConversionContext, node: Node, index: int, per_direction: list, axis: int) -> None:
    name = node.outputs[index] if index < len(node.outputs) else ""
    if not name:
        return
    if any(v is None for v in per_direction):
        # the fused form's Y_c, only when no node reads it (_fusable): a placeholder
        ctx.set_const(name, np.zeros([0], np.float32))
    else:
        ctx.set(name, tf.stack(per_direction, axis=axis))


def _read(ctx: ConversionContext, node: Node, kind: str, dtype) -> Recurrence:
    direction = node.attr("direction", "forward")
    if direction not in REVERSED:
        raise Unsupported(f"direction {direction!r} is not one of {sorted(REVERSED)}")
    _check_activations(node, kind, len(REVERSED[direction]))
    layout = node.attr("layout", 0)
    if layout not in (0, 1):
        raise Unsupported(f"layout {layout} is not 0 or 1")
    dims = ctx.static_shape(node.input(0))
    if len(dims) != 3:
        raise Unsupported(f"X must be 3-D, got shape {dims}")
    _check_sequence_lens(ctx, node, dims[layout])
    clip = node.attr("clip")
    cell = Cell(kind, None if clip is None else float(clip), bool(node.attr("linear_before_reset", 0)))
    weights = _weights(ctx, node, kind, len(REVERSED[direction]))
    return Recurrence(cell, REVERSED[direction], layout, tuple(_cast(w, dtype) for w in weights))


def _check_activations(node: Node, kind: str, directions: int) -> None:
    given = node.attr("activations")
    if given is None:
        return
    wanted = DEFAULT_ACTIVATIONS[kind] * directions
    if tuple(a.lower() for a in given) != wanted:
        default = ", ".join(a.capitalize() for a in DEFAULT_ACTIVATIONS[kind])
        raise Unsupported(f"activations {list(given)} are not supported; only the default ({default} per direction)")


def _check_sequence_lens(ctx: ConversionContext, node: Node, steps: int) -> None:
    if not node.input(4):
        return
    lens = ctx.const(node.input(4))
    if lens is None:
        raise Unsupported("sequence_lens is computed at run time; only a constant full length is supported")
    if np.any(np.asarray(lens) != steps):
        raise Unsupported(f"sequence_lens {np.asarray(lens).tolist()} differ from the sequence length {steps}; "
                          "padded batches are not supported")  # fmt: skip


def _weights(ctx: ConversionContext, node: Node, kind: str, directions: int) -> tuple[Weights, ...]:
    w = ctx.require_const(node, 1, "W")
    r = ctx.require_const(node, 2, "R")
    hidden = r.shape[-1]
    gates = GATES[kind] * hidden
    if w.shape[:2] != (directions, gates) or r.shape != (directions, gates, hidden):
        raise Unsupported(f"W {list(w.shape)} and R {list(r.shape)} do not fit {directions} direction(s) "
                          f"of hidden size {hidden}")  # fmt: skip
    b = ctx.require_const(node, 3, "B") if node.input(3) else np.zeros([directions, 2 * gates], w.dtype)
    p = ctx.require_const(node, 7, "P") if kind == "LSTM" and node.input(7) else None
    if p is not None and not np.any(p):
        p = None  # all-zero peepholes add nothing, and the fused kernel then stays possible
    return tuple(
        Weights(w[d], r[d], b[d][:gates], b[d][gates:], None if p is None else p[d]) for d in range(directions)
    )


def _cast(wt: Weights, dtype) -> Weights:
    peep = None if wt.peep is None else wt.peep.astype(dtype)
    return Weights(wt.w.astype(dtype), wt.r.astype(dtype), wt.wb.astype(dtype), wt.rb.astype(dtype), peep)


def _initial_state(ctx: ConversionContext, name: str, rec: Recurrence) -> list:
    """Per direction: the [B, H] initial state, or None for zeros."""
    if not name:
        return [None] * len(rec.reverse)
    const = ctx.const(name)
    if const is not None and not np.any(const):
        return [None] * len(rec.reverse)
    state = ctx.onnx_tensor(name)
    # layout 0: [D, B, H]; layout 1: [B, D, H]
    return [state[d] if rec.axis == 0 else state[:, d] for d in range(len(rec.reverse))]


def _fusable(ctx: ConversionContext, node: Node, rec: Recurrence) -> bool:
    return rec.cell.clip is None and all(w.peep is None for w in rec.weights) and not _read_later(ctx, node, 2)


def _read_later(ctx: ConversionContext, node: Node, index: int) -> bool:
    """True if output `index` of the node is a graph output or an input of any node."""
    name = node.outputs[index] if index < len(node.outputs) else ""
    if not name:
        return False
    return any(o.name == name for o in ctx.graph.outputs) or any(name in n.inputs for n in ctx.graph.nodes)
