"""Sliding-window helpers shared by the conv and pooling handlers: padding arithmetic and
running 1-D windows as 2-D ones.

Not a handler module (no registry entry): pool.py importing these from conv.py
made one op family depend on another's handler module.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import tensorflow as tf

from buildsys.converter.errors import Unsupported
from buildsys.converter.ir import Node

Pads = list[tuple[int, int]]


def ints(node: Node, key: str, count: int, default: int) -> list[int]:
    value = node.attr(key)
    if value is None or len(value) == 0:
        return [default] * count
    value = [int(v) for v in value]
    if len(value) != count:
        raise Unsupported(f"attribute {key}={value} does not match {count} spatial axes")
    return value


def attr_pads(node: Node, spatial: int) -> Pads:
    flat = ints(node, "pads", 2 * spatial, 0)
    pads = list(zip(flat[:spatial], flat[spatial:]))
    if any(b < 0 or e < 0 for b, e in pads):
        raise Unsupported(f"negative pads {flat}")
    return pads


def same_pads(in_dims: Sequence[int], eff: Sequence[int], strides: Sequence[int], lower: bool) -> Pads:
    """ONNX SAME_UPPER/SAME_LOWER pads: output ceil(in / stride); UPPER puts the odd pad at the end."""
    out = []
    for n, k, s in zip(in_dims, eff, strides):
        total = max((math.ceil(n / s) - 1) * s + k - n, 0)
        small = total // 2
        out.append((total - small, small) if lower else (small, total - small))
    return out


def auto_pad(node: Node) -> str:
    value = node.attr("auto_pad", "NOTSET")
    if value not in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"):
        raise Unsupported(f"auto_pad={value!r}")
    return value


def tf_same(pads: Pads, in_dims: Sequence[int], eff: Sequence[int], strides: Sequence[int]) -> bool:
    """True if TF 'SAME' pads exactly `pads` (and so gives the same output size)."""
    return list(pads) == same_pads(in_dims, eff, strides, lower=False) and any(b or e for b, e in pads)


def pad_spatial(x: tf.Tensor, pads: Pads, value: float = 0) -> tf.Tensor:
    """Pad the spatial axes of a channels-last tensor."""
    if not any(b or e for b, e in pads):
        return x
    return tf.pad(x, [[0, 0], *[[b, e] for b, e in pads], [0, 0]], constant_values=value)


def lift_1d(x: tf.Tensor) -> tf.Tensor:
    """[N, W, C] -> [N, 1, W, C]: TFLite has no 1-D conv or pooling kernels."""
    return tf.expand_dims(x, 1)


def drop_1d(y: tf.Tensor) -> tf.Tensor:
    return tf.squeeze(y, axis=1)
