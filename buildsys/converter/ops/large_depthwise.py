"""Depthwise convolutions with more than 25 taps as a sum of convolutions of at most 25.

XNNPACK (LiteRT's default CPU delegate) runs depthwise kernels of up to 25 taps
(5x5) in one pass and larger ones (ConvNeXt's 7x7) through a path that is
pathologically slow on x86 with ai-edge-litert (1 thread, 56x56x40 input): 5x5
takes 0.16 ms fp32 / 0.21 ms int8, 7x7 2.9 ms fp32 / 39 ms int8. The same 7x7 as
one PAD and three depthwise convs over row bands of the padded input (3x7, 3x7,
1x7 taps) takes 0.57 ms fp32 / 0.69 ms int8. Exact in real arithmetic; float
sums reassociate, int8 requantizes each partial sum once more.

Not a handler module: conv.py calls `split_depthwise` (no registry entry).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

MAX_TAPS = 25


def pieces(kh: int, kw: int) -> list[tuple[int, int, int, int]]:
    """(row0, row1, col0, col1) rectangles of at most MAX_TAPS taps tiling a kh x kw kernel:
    full-width bands of rows (their windows differ in rows only: contiguous NHWC slices, 10%
    faster than 5x5 + 5x2 + 2x7 for a 7x7), or a row cut into chunks when it is too wide."""
    if kw <= MAX_TAPS:
        rows = MAX_TAPS // kw
        return [(r0, min(kh, r0 + rows), 0, kw) for r0 in range(0, kh, rows)]
    return [(r, r + 1, c0, min(kw, c0 + MAX_TAPS)) for r in range(kh) for c0 in range(0, kw, MAX_TAPS)]


def wants_split(x: tf.Tensor, filt: np.ndarray, dilations) -> bool:
    """Over MAX_TAPS taps, dilation 1, on a map at least as big as the kernel: smaller maps
    cost little either way, and XNNPACK refused the int8 split on a 2x2 map (7x7 kernel)."""
    kh, kw = filt.shape[:2]
    big = x.shape[1] is not None and x.shape[1] >= kh and x.shape[2] is not None and x.shape[2] >= kw
    return kh * kw > MAX_TAPS and all(d == 1 for d in dilations) and big


def same_pads(size: int, k: int, stride: int) -> tuple[int, int]:
    """TF's SAME split: the odd pixel goes at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


def split_depthwise(x: tf.Tensor, filt: np.ndarray, strides, padding: str, bias=None) -> tf.Tensor:
    """DepthwiseConv2dNative(x, filt, strides, padding) + bias as one PAD and a sum of small convs.

    `filt` is TF's [kh, kw, C, m]; dilation 1 only (wants_split). The bias (numpy, a tensor or
    None) goes on the first piece, where TFLite folds it into that conv: no ADD of its own."""
    kh, kw = filt.shape[:2]
    sh, sw = strides
    if padding == "SAME":
        (t, b), (left, r) = same_pads(x.shape[1], kh, sh), same_pads(x.shape[2], kw, sw)
        x = tf.pad(x, [[0, 0], [t, b], [left, r], [0, 0]])
    ho, wo = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
    total = None
    for r0, r1, c0, c1 in pieces(kh, kw):
        window = x[:, r0 : r0 + (ho - 1) * sh + (r1 - r0), c0 : c0 + (wo - 1) * sw + (c1 - c0), :]
        part = tf.raw_ops.DepthwiseConv2dNative(
            input=window, filter=tf.constant(filt[r0:r1, c0:c1]), strides=[1, sh, sw, 1], padding="VALID"
        )
        if total is None and bias is not None:
            part = tf.nn.bias_add(part, tf.constant(bias) if isinstance(bias, np.ndarray) else bias)
        total = part if total is None else total + part
    return total
