"""Conv and ConvTranspose, computed channels-last with the weights rearranged in numpy.

Padding is resolved to per-axis (begin, end) pairs first, then mapped onto TF:
'VALID' when there is none, 'SAME' when TF's own split (extra pad at the end)
gives exactly those pads, otherwise an explicit zero PAD followed by 'VALID'.
1-D ops run as 2-D ops over a unit height axis. The padding helpers shared
with the pooling ops are in padding.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

from buildsys.converter import layout
from buildsys.converter.context import ConversionContext
from buildsys.converter.errors import Unsupported
from buildsys.converter.ir import Node
from buildsys.converter.ops.large_depthwise import split_depthwise, wants_split
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


# -- padding (the arithmetic shared with pool.py is in window.py) --------------
def effective_kernel(kernel: Sequence[int], dilations: Sequence[int]) -> list[int]:
    return [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]


def conv_padding(x: tf.Tensor, pads: Pads, in_dims, eff, strides) -> tuple[tf.Tensor, str]:
    """The input to feed TF and the TF padding mode that together apply `pads` with zeros."""
    if not any(b or e for b, e in pads):
        return x, "VALID"
    if tf_same(pads, in_dims, eff, strides):
        return x, "SAME"
    return pad_spatial(x, pads), "VALID"


# -- 1-D as 2-D ------------------------------------------------------------------
def lift_list(values: Sequence, unit) -> list:
    return [unit, *values]


# -- Conv ------------------------------------------------------------------------
class Spec(NamedTuple):
    """How TF slides the kernel: per-axis strides and dilations, and the TF padding mode."""

    strides: list[int]
    dilations: list[int]
    padding: str


def read_bias(ctx: ConversionContext, node: Node, dtype: tf.DType):
    """The optional bias input (index 2): numpy when constant, so it can be split per group."""
    name = node.input(2)
    if not name:
        return None
    bias = ctx.const(name)
    return bias.astype(dtype.as_numpy_dtype) if bias is not None else ctx.onnx_tensor(name)


def with_bias(y: tf.Tensor, bias) -> tf.Tensor:
    # BiasAdd right after the conv is what TFLite folds into the conv's bias input
    return y if bias is None else tf.nn.bias_add(y, tf.constant(bias) if isinstance(bias, np.ndarray) else bias)


def per_group(x: tf.Tensor, w: np.ndarray, bias, group: int, fn) -> tf.Tensor:
    """fn(input part, weight part) per group, each with its share of the bias, concatenated.

    TFLite's grouped CONV_2D is not supported by every delegate or by the int8 quantizer,
    and TRANSPOSE_CONV has no groups at all: one plain op per group works everywhere."""
    parts = tf.split(x, group, axis=-1)
    weights = np.split(w, group, axis=0)
    if bias is None:
        biases: list[Any] = [None] * group
    else:
        biases = np.split(bias, group) if isinstance(bias, np.ndarray) else tf.split(bias, group)
    return tf.concat([with_bias(fn(p, wg), b) for p, wg, b in zip(parts, weights, biases)], axis=-1)


def conv_filter(w: np.ndarray) -> np.ndarray:
    """ONNX [C_out, C_in, k...] -> TF [k..., C_in, C_out]."""
    return np.transpose(w, (*range(2, w.ndim), 1, 0))


def depthwise_filter(w: np.ndarray, channels: int) -> np.ndarray:
    """ONNX [C*m, 1, kh, kw] -> TF depthwise [kh, kw, C, m]; ONNX output c*m+j is TF's too."""
    multiplier = w.shape[0] // channels
    return np.transpose(w.reshape(channels, multiplier, *w.shape[2:]), (2, 3, 0, 1))


def plain_conv(x: tf.Tensor, w: np.ndarray, spec: Spec) -> tf.Tensor:
    filt = tf.constant(conv_filter(w))
    strides, rates = [1, *spec.strides, 1], [1, *spec.dilations, 1]
    if len(spec.strides) == 3:
        return tf.nn.conv3d(x, filt, strides, spec.padding, dilations=rates)
    return tf.nn.conv2d(x, filt, strides, spec.padding, dilations=rates)


def depthwise_conv(x: tf.Tensor, w: np.ndarray, spec: Spec) -> tf.Tensor:
    filt = tf.constant(depthwise_filter(w, x.shape[-1]))
    # the native op keeps dilation an attribute (DEPTHWISE_CONV_2D has dilation factors);
    # tf.nn.depthwise_conv2d would wrap a dilated conv in SPACE_TO_BATCH/BATCH_TO_SPACE
    return tf.raw_ops.DepthwiseConv2dNative(
        input=x,
        filter=filt,
        strides=[1, *spec.strides, 1],
        padding=spec.padding,
        dilations=[1, *spec.dilations, 1],
    )


def grouped_conv(x: tf.Tensor, w: np.ndarray, bias, group: int, spec: Spec) -> tf.Tensor:
    channels = x.shape[-1]
    if group < 1 or channels % group or w.shape[1] * group != channels or w.shape[0] % group:
        raise Unsupported(f"group={group} does not fit {channels} input / {w.shape[0]} output channels")
    if group == 1:
        return with_bias(plain_conv(x, w, spec), bias)
    if group == channels and len(spec.strides) == 2:
        if wants_split(x, depthwise_filter(w, channels), spec.dilations):
            return split_depthwise(x, depthwise_filter(w, channels), spec.strides, spec.padding, bias)
        return with_bias(depthwise_conv(x, w, spec), bias)
    return per_group(x, w, bias, group, lambda part, wg: plain_conv(part, wg, spec))


def conv_pads(node: Node, in_dims, eff, strides) -> Pads:
    mode = auto_pad(node)
    if mode == "VALID":
        return [(0, 0)] * len(in_dims)
    if mode.startswith("SAME"):
        return same_pads(in_dims, eff, strides, lower=mode == "SAME_LOWER")
    return attr_pads(node, len(in_dims))


def const_weights(ctx: ConversionContext, node: Node, dtype: tf.DType) -> np.ndarray:
    w = ctx.const(node.input(1))
    if w is None:
        raise Unsupported("weights must be a constant initializer, but are computed at run time")
    return np.asarray(w, dtype=dtype.as_numpy_dtype)


def spatial_rank(ctx: ConversionContext, name: str, supported: Sequence[int]) -> int:
    spatial = ctx.value(name).rank - 2
    if spatial not in supported:
        raise Unsupported(f"{spatial}-D input: only {'/'.join(map(str, supported))}-D is supported")
    return spatial


@handles("Conv", since=1)  # written for versions 1, 11
def conv(ctx, node):
    src = node.input(0)
    spatial = spatial_rank(ctx, src, (1, 2, 3))
    in_dims = ctx.static_shape(src)[2:]
    strides = ints(node, "strides", spatial, 1)
    dilations = ints(node, "dilations", spatial, 1)
    weights = ctx.const(node.input(1))
    kernel = list(weights.shape[2:]) if weights is not None else [0] * spatial
    pads = conv_pads(node, in_dims, effective_kernel(kernel, dilations), strides)
    perm = conv_perm(ctx.perm(src), kernel, strides, pads)
    x = ctx.tensor(src, perm)
    w = const_weights(ctx, node, x.dtype)
    if spatial == 1:
        x, w = lift_1d(x), w[:, :, None, :]
        in_dims, kernel = lift_list(in_dims, 1), lift_list(kernel, 1)
        strides, dilations, pads = lift_list(strides, 1), lift_list(dilations, 1), lift_list(pads, (0, 0))
    x, padding = conv_padding(x, pads, in_dims, effective_kernel(kernel, dilations), strides)
    spec = Spec(strides, dilations, padding)
    y = grouped_conv(x, w, read_bias(ctx, node, x.dtype), int(node.attr("group", 1)), spec)
    if spatial == 1:
        y = drop_1d(y)
    ctx.set(node.outputs[0], y, perm)


def conv_perm(stored: layout.Perm, kernel: list[int], strides: list[int], pads: Pads) -> layout.Perm:
    """The layout to compute in: channels-last, with the spatial axes in the order the input
    already holds them when the conv is pointwise (1x1 kernel, stride 1, no pads), because
    then their order is irrelevant. YOLO's DFL runs a 1x1 conv over [N, 16, 4, anchors] whose
    input arrives as [N, anchors, 4, 16]: channels last but its spatial axes swapped."""
    pointwise = all(k == 1 for k in kernel) and all(s == 1 for s in strides) and not any(b or e for b, e in pads)
    if pointwise and len(stored) > 2 and stored[0] == 0 and stored[-1] == 1:
        return tuple(stored)
    return layout.channels_last(len(stored))


# -- ConvTranspose ---------------------------------------------------------------
Region = list[tuple[int, int]]


def dilate_kernel(w: np.ndarray, dilations: Sequence[int]) -> np.ndarray:
    """Zeros between the taps: TFLite's TRANSPOSE_CONV has no dilation, and a dilated
    transposed conv is exactly a plain one with this kernel."""
    if all(d == 1 for d in dilations):
        return w
    out = np.zeros((*w.shape[:2], *effective_kernel(w.shape[2:], dilations)), w.dtype)
    out[(slice(None), slice(None), *[slice(None, None, d) for d in dilations])] = w
    return out


def transpose_region(node: Node, in_dims, eff, strides, out_pad) -> Region:
    """Per axis, the ONNX output as [start, stop) of the transposed conv's canvas
    ((in-1)*s + k + output_padding, the output_padding rows only get the bias)."""
    spatial = len(in_dims)
    canvas = [(n - 1) * s + k + a for n, s, k, a in zip(in_dims, strides, eff, out_pad)]
    shape = node.attr("output_shape")
    mode = auto_pad(node)
    if shape is not None and len(shape):
        sizes = [int(v) for v in shape][-spatial:]
        return [_split_total(c - o, o, lower=mode != "SAME_UPPER") for c, o in zip(canvas, sizes)]
    if mode.startswith("SAME"):
        sizes = [n * s for n, s in zip(in_dims, strides)]
        return [_split_total(c - o, o, lower=mode == "SAME_LOWER") for c, o in zip(canvas, sizes)]
    pads = [(0, 0)] * spatial if mode == "VALID" else attr_pads(node, spatial)
    return [(b, c - e) for c, (b, e) in zip(canvas, pads)]


def _split_total(total: int, size: int, lower: bool) -> tuple[int, int]:
    # as the ONNX spec and onnxruntime do it: the odd pad goes first for SAME_LOWER and for an
    # explicit output_shape without auto_pad, last for SAME_UPPER; an output larger than the
    # canvas (onnxruntime allows up to stride-1 more) is unpadded, its extra rows get the bias
    total = max(total, 0)
    begin = total - total // 2 if lower else total // 2
    return begin, begin + size


def transpose_filter(w: np.ndarray) -> np.ndarray:
    """ONNX [C_in, C_out, k...] -> TF [k..., C_out, C_in] (no flip: both scatter x * w)."""
    return np.transpose(w, (*range(2, w.ndim), 1, 0))


def transpose_conv(x: tf.Tensor, w: np.ndarray, sizes: Sequence[int], spec: Spec) -> tf.Tensor:
    filt = tf.constant(transpose_filter(w))
    shape = [x.shape[0], *sizes, w.shape[1]]
    if len(spec.strides) == 3:
        return tf.nn.conv3d_transpose(x, filt, shape, [1, *spec.strides, 1], spec.padding)
    return tf.nn.conv2d_transpose(x, filt, shape, [1, *spec.strides, 1], spec.padding)


def grouped_transpose(x: tf.Tensor, w: np.ndarray, bias, group: int, sizes, spec: Spec) -> tf.Tensor:
    channels = x.shape[-1]
    if group < 1 or channels % group or w.shape[0] != channels:
        raise Unsupported(f"group={group} does not fit {channels} input channels")
    if group == 1:
        return with_bias(transpose_conv(x, w, sizes, spec), bias)
    return per_group(x, w, bias, group, lambda part, wg: transpose_conv(part, wg, sizes, spec))


def transpose_plan(region: Region, in_dims, eff, strides) -> tuple[str, list[int], Region]:
    """TF padding mode, TF output sizes, and the ONNX output as [start, stop) of TF's output."""
    same_sizes = [n * s for n, s in zip(in_dims, strides)]
    same_begin = [((n - 1) * s + k - o) // 2 for n, s, k, o in zip(in_dims, strides, eff, same_sizes)]
    fits = all((n - 1) * s + k >= o for n, s, k, o in zip(in_dims, strides, eff, same_sizes))
    if fits and [tuple(r) for r in region] == [(b, b + o) for b, o in zip(same_begin, same_sizes)]:
        return "SAME", same_sizes, [(0, o) for o in same_sizes]
    # with VALID, TF takes up to stride-1 extra output rows and leaves them zero,
    # which covers output_padding without a separate PAD
    canvas = [(n - 1) * s + k for n, s, k in zip(in_dims, strides, eff)]
    sizes = [c + min(max(stop - c, 0), s - 1) for c, (_, stop), s in zip(canvas, region, strides)]
    return "VALID", sizes, list(region)


def crop(y: tf.Tensor, region: Region) -> tf.Tensor:
    sizes = y.shape[1:-1]
    if all(start == 0 and stop == n for (start, stop), n in zip(region, sizes)):
        return y
    begin = [0, *[start for start, _ in region], 0]
    size = [-1, *[stop - start for start, stop in region], -1]
    return tf.slice(y, begin, size)


@handles("ConvTranspose", since=1)  # written for versions 1, 11
def conv_transpose(ctx, node):
    src = node.input(0)
    spatial = spatial_rank(ctx, src, (1, 2, 3))
    x = ctx.tensor(src, layout.channels_last(spatial + 2))
    in_dims = ctx.static_shape(src)[2:]
    strides = ints(node, "strides", spatial, 1)
    out_pad = ints(node, "output_padding", spatial, 0)
    w = dilate_kernel(const_weights(ctx, node, x.dtype), ints(node, "dilations", spatial, 1))
    eff = list(w.shape[2:])
    region = transpose_region(node, in_dims, eff, strides, out_pad)
    if spatial == 1:
        x, w = lift_1d(x), w[:, :, None, :]
        in_dims, eff, strides = lift_list(in_dims, 1), lift_list(eff, 1), lift_list(strides, 1)
        region = lift_list(region, (0, 1))
    padding, sizes, region = transpose_plan(region, in_dims, eff, strides)
    if any(stop > n for (_, stop), n in zip(region, sizes)):
        # onnxruntime rejects these too (output_padding must be below the stride)
        raise Unsupported("output extends stride or more rows past the transposed conv's reach")
    spec = Spec(strides, [1] * len(strides), padding)
    y = grouped_transpose(x, w, read_bias(ctx, node, x.dtype), int(node.attr("group", 1)), sizes, spec)
    y = crop(y, region)
    if spatial == 1:
        y = drop_1d(y)
    ctx.set(node.outputs[0], y, layout.channels_last(spatial + 2))
