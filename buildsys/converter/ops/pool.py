"""MaxPool, AveragePool, LpPool and their global forms, computed channels-last.

Each window op resolves its padding to per-axis (begin, end) pads that also
cover ceil_mode's overhanging last window, then picks the cheapest TF form:
'VALID' without padding, 'SAME' when TF's own padding (which pooling never
counts, like max pool's implicit -inf and count_include_pad=0) is exactly
that, otherwise an explicit pad and 'VALID'. Max pooling pads with copies of
edge rows (never a sentinel value, which would ruin int8 ranges); an average
over a zero pad divides by the full window, so positions whose ONNX divisor
differs get a constant per-position correction factor.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from buildsys.converter import layout
from buildsys.converter.context import ConversionContext
from buildsys.converter.errors import Unsupported
from buildsys.converter.ir import Node
from buildsys.converter.ops.window import (
    Pads,
    attr_pads,
    auto_pad,
    drop_1d,
    ints,
    lift_1d,
    pad_spatial,
    same_pads,
    tf_same,
)
from buildsys.converter.registry import handles


class Window(NamedTuple):
    """A pooling window over the spatial axes, with everything in input coordinates."""

    in_dims: list[int]
    kernel: list[int]
    strides: list[int]
    pads: Pads  # ONNX pads, what count_include_pad counts
    out: list[int]

    @property
    def reach(self) -> Pads:
        """Pads after which TF 'VALID' gives exactly the ONNX windows: the ONNX begin pad, and at
        the end what the last window covers past the input. That is the ONNX end pad, less any
        part no window reaches, plus the overhang of a ceil_mode window (which no mode counts)."""
        return [
            (b, max((o - 1) * s + k - n - b, 0))
            for n, k, s, (b, e), o in zip(self.in_dims, self.kernel, self.strides, self.pads, self.out)
        ]

    def unpadded(self) -> bool:
        return not any(b or e for b, e in self.reach)

    def tf_same(self) -> bool:
        return tf_same(self.reach, self.in_dims, self.kernel, self.strides)

    def lift_1d(self) -> Window:
        """The same window over [1, W]: TFLite has no 1-D pooling."""
        return Window([1, *self.in_dims], [1, *self.kernel], [1, *self.strides], [(0, 0), *self.pads], [1, *self.out])


def output_size(n: int, k: int, s: int, pads: tuple[int, int], ceil: bool) -> int:
    span = n + pads[0] + pads[1] - k
    if not ceil:
        return span // s + 1
    out = -(-span // s) + 1
    # ONNX (and onnxruntime) drop a last window that would start inside the end padding
    return out - 1 if (out - 1) * s >= n + pads[0] else out


def pool_window(ctx: ConversionContext, node: Node, spatial: int) -> Window:
    kernel = ints(node, "kernel_shape", spatial, 0)
    if any(k < 1 for k in kernel):
        raise Unsupported(f"kernel_shape={node.attr('kernel_shape')}")
    strides = ints(node, "strides", spatial, 1)
    dilations = ints(node, "dilations", spatial, 1)
    if any(d != 1 and k != 1 for d, k in zip(dilations, kernel)):
        raise Unsupported(f"dilations={dilations}: TFLite pooling has no dilation")
    in_dims = ctx.static_shape(node.input(0))[2:]
    mode = auto_pad(node)
    if mode.startswith("SAME"):
        # ceil_mode does not apply: SAME always gives ceil(in / stride) outputs
        pads = same_pads(in_dims, kernel, strides, lower=mode == "SAME_LOWER")
        return Window(in_dims, kernel, strides, pads, [math.ceil(n / s) for n, s in zip(in_dims, strides)])
    pads = [(0, 0)] * spatial if mode == "VALID" else attr_pads(node, spatial)
    ceil = bool(node.attr("ceil_mode", 0))
    out = [output_size(n, k, s, p, ceil) for n, k, s, p in zip(in_dims, kernel, strides, pads)]
    return Window(in_dims, kernel, strides, pads, out)


def tf_pool(x: tf.Tensor, kind: str, win: Window, padding: str) -> tf.Tensor:
    fn = tf.nn.max_pool2d if kind == "MAX" else tf.nn.avg_pool2d
    return fn(x, [1, *win.kernel, 1], [1, *win.strides, 1], padding)


def max_pool(x: tf.Tensor, win: Window) -> tf.Tensor:
    if win.unpadded():
        return tf_pool(x, "MAX", win, "VALID")
    if win.tf_same():
        return tf_pool(x, "MAX", win, "SAME")
    return tf_pool(edge_pad(x, win), "MAX", win, "VALID")


def edge_pad(x: tf.Tensor, win: Window) -> tf.Tensor:
    """Pad so no pad value can beat a real one in any window, without a sentinel constant.

    A -inf or lowest-float pad would become part of the int8 range of everything quantized
    together with the PAD (it shares its input's scale), wiping out the precision upstream.
    Every window that reaches into the padding also holds the input's edge row on that side
    (ONNX windows always contain a real element), so copies of the edge rows are harmless.
    Mirroring (SYMMETRIC, one MIRROR_PAD) also only copies rows from inside such windows
    while the pad is at most half the kernel; beyond that, edge rows are concatenated."""
    reach = win.reach
    if all(max(b, e) <= min(k // 2, n) for (b, e), k, n in zip(reach, win.kernel, win.in_dims)):
        return tf.pad(x, [[0, 0], *[[b, e] for b, e in reach], [0, 0]], mode="SYMMETRIC")
    for axis, (b, e) in enumerate(reach, start=1):
        if b or e:
            n = x.shape[axis]
            first = tf.gather(x, [0], axis=axis)
            last = tf.gather(x, [n - 1], axis=axis)
            x = tf.concat([first] * b + [x] + [last] * e, axis=axis)
    return x


def divisors(win: Window, include_pad: bool) -> np.ndarray:
    """ONNX's divisor per output position (spatial dims): the window clipped to the padded
    input (count_include_pad=1) or to the input itself (count_include_pad=0)."""
    counts = []
    for n, k, s, (b, e), o in zip(win.in_dims, win.kernel, win.strides, win.pads, win.out):
        starts = np.arange(o) * s - b
        if include_pad:
            counts.append(np.minimum(starts + k, n + e) - starts)
        else:
            counts.append(np.minimum(starts + k, n) - np.maximum(starts, 0))
    return functools.reduce(np.multiply.outer, counts)


def window_sum_mean(x: tf.Tensor, win: Window) -> tf.Tensor:
    """Zero-padded windows averaged over the whole kernel area."""
    return tf_pool(pad_spatial(x, win.reach), "AVG", win, "VALID")


def avg_pool(x: tf.Tensor, win: Window, include_pad: bool) -> tf.Tensor:
    if win.unpadded():
        return tf_pool(x, "AVG", win, "VALID")
    if not include_pad and win.tf_same():
        return tf_pool(x, "AVG", win, "SAME")
    y = window_sum_mean(x, win)
    area = math.prod(win.kernel)
    count = divisors(win, include_pad)
    if np.all(count == area):
        return y
    scale = (area / count).astype(x.dtype.as_numpy_dtype)
    return y * tf.constant(scale[None, ..., None])


def lp_pool(x: tf.Tensor, win: Window, p: int) -> tf.Tensor:
    # padding adds zeros to the sum of |x|^p, so a zero-padded mean times the area is exact
    magnitude = x * x if p == 2 else tf.abs(x)
    total = window_sum_mean(magnitude, win) * float(math.prod(win.kernel))
    return tf.sqrt(total) if p == 2 else total


def lp_order(node: Node) -> int:
    p = node.attr("p", 2)
    if p not in (1, 2):
        raise Unsupported(f"p={p}: only p=1 and p=2 avoid POW")
    return int(p)


def spatial_input(ctx: ConversionContext, node: Node, supported: Sequence[int]) -> tuple[tf.Tensor, int]:
    rank = ctx.value(node.input(0)).rank
    spatial = rank - 2
    if spatial not in supported:
        raise Unsupported(f"{spatial}-D input: TFLite only pools 2-D (and 1-D as 2-D)")
    return ctx.tensor(node.input(0), layout.channels_last(rank)), spatial


def pool(ctx: ConversionContext, node: Node, compute) -> None:
    """compute(channels-last 2-D input, window) for 1-D and 2-D inputs."""
    x, spatial = spatial_input(ctx, node, (1, 2))
    win = pool_window(ctx, node, spatial)
    if spatial == 1:
        y = drop_1d(compute(lift_1d(x), win.lift_1d()))
    else:
        y = compute(x, win)
    ctx.set(node.outputs[0], y, layout.channels_last(spatial + 2))


@handles("MaxPool", since=1)  # written for versions 1, 8, 10, 11, 12
def max_pool_op(ctx, node):
    if len(node.outputs) > 1 and node.outputs[1]:
        raise Unsupported("the Indices output has no TFLite equivalent")
    pool(ctx, node, max_pool_any)


def max_pool_any(x: tf.Tensor, win: Window) -> tf.Tensor:
    if x.dtype.is_floating:
        return max_pool(x, win)
    # TFLite pools integers only as quantized tensors; int8/uint8 are exact in float32
    return tf.cast(max_pool(tf.cast(x, tf.float32), win), x.dtype)


@handles("AveragePool", since=1)  # written for versions 1, 7, 10, 11, 19
def average_pool(ctx, node):
    include_pad = bool(node.attr("count_include_pad", 0))
    pool(ctx, node, lambda x, win: avg_pool(x, win, include_pad))


@handles("LpPool", since=2)  # written for versions 2, 11, 18
def lp_pool_op(ctx, node):
    p = lp_order(node)
    pool(ctx, node, lambda x, win: lp_pool(x, win, p))


def global_pool(ctx: ConversionContext, node: Node, reduce) -> None:
    rank = ctx.value(node.input(0)).rank
    if rank < 3:
        raise Unsupported(f"rank-{rank} input has no spatial axes")
    x = ctx.tensor(node.input(0), layout.channels_last(rank))
    ctx.set(node.outputs[0], reduce(x, list(range(1, rank - 1))), layout.channels_last(rank))


@handles("GlobalAveragePool", since=1)
def global_average_pool(ctx, node):
    global_pool(ctx, node, lambda x, axes: tf.reduce_mean(x, axis=axes, keepdims=True))


@handles("GlobalMaxPool", since=1)
def global_max_pool(ctx, node):
    global_pool(ctx, node, lambda x, axes: tf.reduce_max(x, axis=axes, keepdims=True))


@handles("GlobalLpPool", since=2)
def global_lp_pool(ctx, node):
    p = lp_order(node)

    def reduce(x, axes):
        if p == 1:
            return tf.reduce_sum(tf.abs(x), axis=axes, keepdims=True)
        return tf.sqrt(tf.reduce_sum(x * x, axis=axes, keepdims=True))

    global_pool(ctx, node, reduce)
