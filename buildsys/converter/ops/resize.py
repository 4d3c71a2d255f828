"""Resize and Upsample: ONNX sampling rules computed in numpy, then mapped onto TFLite.

Resizing is separable, so each resized axis is described by its taps: for every
output position, the input positions it reads and their weights (one tap for
nearest, two for linear, four for cubic). The taps follow onnxruntime's float32
arithmetic (coordinate transform, rounding, clamping), so ties such as
round_prefer_floor at x.5 land where onnxruntime puts them. Scales given as
input are used as given: 1.5 on 3 pixels makes 4, sampled at steps of 1/1.5.

The taps are then compared with what TFLite's RESIZE_NEAREST_NEIGHBOR and
RESIZE_BILINEAR kernels compute for each of their flag combinations
(align_corners, half_pixel_centers), replaying the kernels' own float32
formulas. When one combination reproduces every resized axis, the builtin is
used on the channels-last tensor (integer-factor upsampling always lands here).
Otherwise each resized axis becomes GATHERs with constant indices plus a
weighted sum, done on the tensor as stored, so it is exact and moves no data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from buildsys.converter import layout
from buildsys.converter.context import ConversionContext
from buildsys.converter.errors import Unsupported
from buildsys.converter.ir import Node
from buildsys.converter.registry import handles

F32 = np.float32
COORD_MODES = (
    "half_pixel",
    "half_pixel_symmetric",
    "pytorch_half_pixel",
    "align_corners",
    "asymmetric",
    "tf_half_pixel_for_nn",
)
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
# onnxruntime takes a float32 coordinate within this of x.5 as the tie exact arithmetic
# would give (7 -> 4 asymmetric: 2 / (4/7) is 3.4999998 in float32, a tie of 3.5)
TIE_TOLERANCE = 1e-6
# weights this close to the builtin kernels' count as the same interpolation
KERNEL_WEIGHT_ATOL = 1e-6


@dataclass(frozen=True)
class Method:
    """How output positions map to input positions along one axis."""

    mode: str  # nearest | linear | cubic
    coord: str  # coordinate_transformation_mode
    nearest: str  # nearest_mode, or "simple" (Upsample and Resize-10)
    cubic_a: float = -0.75
    exclude_outside: bool = False


@dataclass(frozen=True)
class Taps:
    """Input index and weight of each of k taps per output position: [out, k] arrays."""

    index: np.ndarray
    weight: np.ndarray

    def is_identity(self, in_len: int) -> bool:
        out_len = self.index.shape[0]
        return out_len == in_len and bool(np.all(self.dense(in_len) == np.eye(in_len)))

    def compact(self, in_len: int) -> Taps:
        """The same interpolation with repeated indices merged and zero weights dropped, so a
        linear axis that only hits whole input positions becomes a single gather."""
        dense = self.dense(in_len)
        width = max(int(np.count_nonzero(dense, axis=1).max()), 1)
        index = np.zeros((dense.shape[0], width), np.int64)
        weight = np.zeros((dense.shape[0], width), F32)
        for row, values in enumerate(dense):
            hits = np.flatnonzero(values)
            index[row, : hits.size] = hits
            index[row, hits.size :] = hits[0] if hits.size else 0
            weight[row, : hits.size] = values[hits]
        return Taps(index, weight)

    def dense(self, in_len: int) -> np.ndarray:
        """The [out, in] interpolation matrix (float64) the taps describe."""
        out = np.zeros((self.index.shape[0], in_len))
        rows = np.repeat(np.arange(self.index.shape[0]), self.index.shape[1])
        np.add.at(out, (rows, self.index.reshape(-1)), self.weight.reshape(-1).astype(np.float64))
        return out


# -- onnxruntime's sampling rules ------------------------------------------------
def original_coords(coord: str, in_len: int, out_len: int, scale: np.float32) -> np.ndarray:
    """Input coordinate of every output position, in onnxruntime's float32 arithmetic."""
    x = np.arange(out_len, dtype=F32)
    half = F32(0.5)
    if coord == "asymmetric":
        return x / scale
    if coord == "half_pixel":
        return (x + half) / scale - half
    if coord == "pytorch_half_pixel":
        return (x + half) / scale - half if out_len > 1 else np.zeros(out_len, F32)
    if coord == "tf_half_pixel_for_nn":
        return (x + half) / scale
    if coord == "align_corners":
        return x * F32(in_len - 1) / F32(out_len - 1) if out_len > 1 else np.zeros(out_len, F32)
    if coord == "half_pixel_symmetric":
        adjustment = F32(out_len) / (scale * F32(in_len))
        offset = F32(in_len) / F32(2) * (F32(1) - adjustment)
        # onnxruntime adds the double constant 0.5 here, so this part runs in double
        return (np.float64(offset) + (x.astype(np.float64) + 0.5) / np.float64(scale) - 0.5).astype(F32)
    raise Unsupported(f"coordinate_transformation_mode {coord!r} is not supported")


def round_half_away(v: np.ndarray | np.floating) -> np.ndarray:
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


def nearest_index(orig: np.ndarray, rule: str, downsampling: bool) -> np.ndarray:
    v = orig.astype(np.float64)  # exact: every float32 is a float64, and x + 0.5 stays exact
    if rule == "simple":
        return np.ceil(v) if downsampling else np.trunc(v)
    if rule == "floor":
        return np.floor(v)
    if rule == "ceil":
        return np.ceil(v)
    tie = np.abs(v - np.floor(v) - 0.5) <= TIE_TOLERANCE
    rounded = round_half_away(v)
    if rule == "round_prefer_ceil":
        return np.where(tie, np.ceil(v), rounded)
    return np.where(tie, np.floor(v), rounded)


def cubic_coeffs(s: np.ndarray, a: float) -> np.ndarray:
    """Keys' cubic convolution weights of the 4 taps around a fractional offset s: [n, 4]."""
    s = np.abs(s.astype(np.float64))
    a = float(a)

    def outer(d):
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a

    def inner(d):
        return ((a + 2) * d - (a + 3)) * d * d + 1

    return np.stack([outer(s + 1), inner(s), inner(1 - s), outer(2 - s)], axis=-1).astype(F32)


def axis_taps(method: Method, in_len: int, out_len: int, scale: np.float32) -> Taps:
    if scale == F32(1):
        # onnxruntime samples a unit-scale axis one to one, whatever the coordinate mode
        return identity_taps(out_len)
    orig = original_coords(method.coord, in_len, out_len, scale)
    if method.mode == "nearest":
        index = np.clip(nearest_index(orig, method.nearest, bool(scale < 1)), 0, in_len - 1).astype(np.int64)
        return Taps(index[:, None], np.ones((out_len, 1), F32))
    if method.mode == "linear":
        return linear_taps(orig, in_len).compact(in_len)
    return cubic_taps(orig, in_len, method).compact(in_len)


def linear_taps(orig: np.ndarray, in_len: int) -> Taps:
    v = np.clip(orig, F32(0), F32(in_len - 1))
    lo = np.minimum(v.astype(np.int64), in_len - 1)
    hi = np.minimum(lo + 1, in_len - 1)
    w_hi = np.abs(v - lo.astype(F32))
    w_lo = np.abs(v - hi.astype(F32))
    same = lo == hi
    w_lo, w_hi = np.where(same, F32(0.5), w_lo), np.where(same, F32(0.5), w_hi)
    return Taps(np.stack([lo, hi], axis=1), np.stack([w_lo, w_hi], axis=1).astype(F32))


def cubic_taps(orig: np.ndarray, in_len: int, method: Method) -> Taps:
    base = np.floor(orig).astype(np.int64)
    coeffs = cubic_coeffs(orig - base.astype(F32), method.cubic_a)
    index = base[:, None] + np.arange(-1, 3)[None, :]
    if method.exclude_outside:
        coeffs = np.where((index >= 0) & (index < in_len), coeffs, F32(0))
        coeffs = (coeffs / coeffs.sum(axis=1, keepdims=True)).astype(F32)
    return Taps(np.clip(index, 0, in_len - 1), coeffs)


# -- what TFLite's kernels compute -------------------------------------------------
def kernel_scale(in_len: int, out_len: int, align_corners: bool) -> np.float32:
    if align_corners and out_len > 1:
        return F32(in_len - 1) / F32(out_len - 1)
    return F32(in_len) / F32(out_len)


def tflite_nearest(in_len: int, out_len: int, align_corners: bool, half_pixel: bool) -> np.ndarray:
    """RESIZE_NEAREST_NEIGHBOR's source index of every output position."""
    scaled = (np.arange(out_len, dtype=F32) + F32(0.5 if half_pixel else 0)) * kernel_scale(
        in_len, out_len, align_corners
    )
    v = scaled.astype(np.float64)
    index = np.minimum(round_half_away(v) if align_corners else np.floor(v), in_len - 1)
    return np.maximum(index, 0) if half_pixel else index


def tflite_bilinear(in_len: int, out_len: int, align_corners: bool, half_pixel: bool) -> np.ndarray:
    """RESIZE_BILINEAR's [out, in] interpolation matrix."""
    x = np.arange(out_len, dtype=F32)
    scale = kernel_scale(in_len, out_len, align_corners)
    v = (x + F32(0.5)) * scale - F32(0.5) if half_pixel else x * scale
    lo = np.maximum(np.floor(v), 0).astype(np.int64)
    hi = np.minimum(np.ceil(v), in_len - 1).astype(np.int64)
    w_hi = (v - lo.astype(F32)).astype(np.float64)
    dense = np.zeros((out_len, in_len))
    np.add.at(dense, (np.arange(out_len), lo), 1 - w_hi)
    np.add.at(dense, (np.arange(out_len), hi), w_hi)
    return dense


# TF has no kernel for align_corners with half-pixel centers
KERNEL_FLAGS = ((False, False), (False, True), (True, False))


def kernel_flags(mode: str, axes: list[tuple[int, int, Taps]]) -> tuple[bool, bool] | None:
    """(align_corners, half_pixel_centers) under which the TFLite kernel reproduces every
    (in_len, out_len, taps) axis, or None."""
    for flags in KERNEL_FLAGS:
        if all(kernel_matches(mode, in_len, out_len, taps, flags) for in_len, out_len, taps in axes):
            return flags
    return None


def kernel_matches(mode: str, in_len: int, out_len: int, taps: Taps, flags: tuple[bool, bool]) -> bool:
    if mode == "nearest":
        return bool(np.array_equal(tflite_nearest(in_len, out_len, *flags), taps.index[:, 0]))
    want = taps.dense(in_len)
    return bool(np.allclose(tflite_bilinear(in_len, out_len, *flags), want, rtol=0, atol=KERNEL_WEIGHT_ATOL))


# -- output size and scales, as onnxruntime derives them -----------------------------
def full_rank(values: np.ndarray, axes: list[int] | None, rank: int, fill, what: str) -> np.ndarray:
    values = np.asarray(values).reshape(-1)
    if axes is None:
        if values.size != rank:
            raise Unsupported(f"{what} has {values.size} values for a rank-{rank} input")
        return values
    if values.size != len(axes):
        raise Unsupported(f"{what} has {values.size} values for axes {axes}")
    out = np.full(rank, fill, dtype=values.dtype)
    out[axes] = values
    return out


def sizes_from_scales(scales: np.ndarray, in_shape: list[int]) -> tuple[list[int], np.ndarray]:
    scales = scales.astype(F32)
    if np.any(scales <= 0):
        raise Unsupported(f"scales {scales.tolist()} must be positive")
    return [int(s * F32(n)) for s, n in zip(scales, in_shape)], scales


def scales_from_sizes(sizes: np.ndarray, in_shape: list[int], policy: str, axes) -> tuple[list[int], np.ndarray]:
    wanted = [int(s) for s in sizes]
    scales = np.array([F32(o) / F32(n) for o, n in zip(wanted, in_shape)], dtype=F32)
    if policy == "stretch":
        return wanted, scales
    if policy not in ("not_larger", "not_smaller"):
        raise Unsupported(f"keep_aspect_ratio_policy {policy!r} is not supported")
    chosen = axes if axes else list(range(len(in_shape)))
    pick = min if policy == "not_larger" else max
    common = pick(scales[a] for a in chosen)
    out = list(in_shape)
    scales = np.ones(len(in_shape), F32)
    for a in chosen:
        scales[a] = common
        out[a] = int(round_half_away(np.float64(common * F32(in_shape[a]))))
    return out, scales


def optional_const(ctx: ConversionContext, node: Node, index: int, what: str) -> np.ndarray | None:
    """A constant optional input, or None when absent or empty."""
    if not node.input(index):
        return None
    value = ctx.require_const(node, index, what)
    return None if value.size == 0 else value


def resize_target(ctx: ConversionContext, node: Node, in_shape: list[int]) -> tuple[list[int], np.ndarray]:
    """Output shape and per-axis float32 scales of a Resize-11+ node."""
    rank = len(in_shape)
    axes = node.attr("axes")
    axes = [int(a) % rank for a in axes] if axes is not None and len(axes) else None
    sizes = optional_const(ctx, node, 3, "sizes")
    if sizes is not None:
        policy = node.attr("keep_aspect_ratio_policy", "stretch")
        full = full_rank(sizes, axes, rank, 0, "sizes")
        if axes is not None:
            # axes left out keep their size
            full = np.array([full[i] if i in axes else in_shape[i] for i in range(rank)])
        return scales_from_sizes(full, in_shape, policy, axes)
    scales = optional_const(ctx, node, 2, "scales")
    if scales is None:
        raise Unsupported("Resize needs constant scales or sizes")
    return sizes_from_scales(full_rank(scales, axes, rank, 1.0, "scales"), in_shape)


# -- emitting TF ---------------------------------------------------------------------
def gather_axis(x: tf.Tensor, axis: int, taps: Taps) -> tf.Tensor:
    """Resample one axis of the stored tensor: sum over taps of weight * x[index]."""
    rank = x.shape.rank
    out = None
    for k in range(taps.index.shape[1]):
        weight = taps.weight[:, k]
        if not np.any(weight):
            continue
        picked = tf.gather(x, tf.constant(taps.index[:, k].astype(np.int32)), axis=axis)
        if not np.all(weight == 1):
            shape = [1] * rank
            shape[axis] = weight.size
            picked = picked * tf.constant(weight.reshape(shape).astype(x.dtype.as_numpy_dtype))
        out = picked if out is None else out + picked
    return out


def numpy_axis(x: np.ndarray, axis: int, taps: Taps) -> np.ndarray:
    picked = np.take(x, taps.index, axis=axis)  # the tap axis lands right after `axis`
    shape = [1] * x.ndim + [1]
    shape[axis], shape[axis + 1] = taps.weight.shape
    return np.sum(picked * taps.weight.reshape(shape), axis=axis + 1).astype(x.dtype)


def builtin_resize(x: tf.Tensor, mode: str, size: list[int], flags: tuple[bool, bool]) -> tf.Tensor:
    align_corners, half_pixel = flags
    size_t = tf.constant(size, dtype=tf.int32)
    if mode == "nearest":
        return tf.raw_ops.ResizeNearestNeighbor(
            images=x, size=size_t, align_corners=align_corners, half_pixel_centers=half_pixel
        )
    return tf.raw_ops.ResizeBilinear(images=x, size=size_t, align_corners=align_corners, half_pixel_centers=half_pixel)


def emit_resize(ctx: ConversionContext, node: Node, method: Method, out_shape: list[int], scales: np.ndarray) -> None:
    src, dst = node.input(0), node.outputs[0]
    value = ctx.value(src)
    in_shape = ctx.static_shape(src)
    rank = len(in_shape)
    if len(out_shape) != rank or any(n <= 0 for n in out_shape):
        raise Unsupported(f"cannot resize {in_shape} to {out_shape}")
    if out_shape == in_shape:
        # onnxruntime copies the input when no size changes, whatever the scales say
        pass_through(ctx, src, dst)
        return
    if method.mode != "nearest" and not value.dtype.is_floating:
        raise Unsupported(f"{method.mode} resize of {value.dtype.name} data is not supported")
    plan = {a: axis_taps(method, in_shape[a], out_shape[a], scales[a]) for a in range(rank)}
    plan = {a: t for a, t in plan.items() if not t.is_identity(in_shape[a])}
    if value.const is not None:
        out = value.const
        for a, taps in plan.items():
            out = numpy_axis(out, a, taps)
        ctx.set_const(dst, out)
        return
    flags = builtin_flags(value, method, in_shape, out_shape, plan)
    if flags is not None:
        nhwc = layout.channels_last(4)
        y = builtin_resize(ctx.tensor(src, nhwc), method.mode, out_shape[2:], flags)
        ctx.set(dst, y, nhwc)
        return
    x = value.tensor
    # shrink first so later axes resample fewer values
    for a in sorted(plan, key=lambda a: out_shape[a] / in_shape[a]):
        x = gather_axis(x, layout.tf_axis(value.perm, a), plan[a])
    ctx.set(dst, x, value.perm)


def builtin_flags(value, method: Method, in_shape, out_shape, plan: dict[int, Taps]) -> tuple[bool, bool] | None:
    """Kernel flags if a TFLite resize builtin computes exactly this resize, else None."""
    if len(in_shape) != 4 or not set(plan) <= {2, 3} or value.dtype != tf.float32:
        return None
    if method.mode not in ("nearest", "linear"):
        return None
    axes = [(in_shape[a], out_shape[a], plan.get(a) or identity_taps(in_shape[a])) for a in (2, 3)]
    return kernel_flags(method.mode, axes)


def identity_taps(n: int) -> Taps:
    return Taps(np.arange(n)[:, None], np.ones((n, 1), F32))


def pass_through(ctx: ConversionContext, src: str, dst: str) -> None:
    value = ctx.value(src)
    if value.const is not None:
        ctx.set_const(dst, value.const)
    else:
        ctx.set(dst, tf.identity(value.tensor), value.perm)


# -- attributes ----------------------------------------------------------------------
def interpolation_mode(node: Node) -> str:
    mode = node.attr("mode", "nearest")
    if mode not in ("nearest", "linear", "cubic"):
        raise Unsupported(f"mode {mode!r} is not supported")
    return mode


def resize_method(node: Node) -> Method:
    mode = interpolation_mode(node)
    coord = node.attr("coordinate_transformation_mode", "half_pixel")
    if coord == "tf_crop_and_resize":
        raise Unsupported("coordinate_transformation_mode 'tf_crop_and_resize' (roi crop) is not supported")
    if coord not in COORD_MODES:
        raise Unsupported(f"coordinate_transformation_mode {coord!r} is not supported")
    nearest = node.attr("nearest_mode", "round_prefer_floor")
    if mode == "nearest" and nearest not in NEAREST_MODES:
        raise Unsupported(f"nearest_mode {nearest!r} is not supported")
    return Method(
        mode,
        coord,
        nearest,
        float(node.attr("cubic_coeff_a", -0.75)),
        bool(node.attr("exclude_outside", 0)) and mode == "cubic",
    )


def check_antialias(node: Node, method: Method, scales: np.ndarray) -> None:
    """antialias widens the linear/cubic filter only when an axis shrinks; when none does,
    onnxruntime's result is the plain filter's (checked for every coordinate mode)."""
    if node.attr("antialias", 0) and method.mode != "nearest" and np.any(scales < 1):
        raise Unsupported(f"antialias=1 when downscaling (scales {scales.tolist()}) is not supported")


# -- handlers ------------------------------------------------------------------------
@handles("Resize", since=11)  # written for versions 11, 13, 18, 19
def resize(ctx, node):
    method = resize_method(node)
    in_shape = ctx.static_shape(node.input(0))
    out_shape, scales = resize_target(ctx, node, in_shape)
    check_antialias(node, method, scales)
    emit_resize(ctx, node, method, out_shape, scales)


@handles("Resize", since=10)
def resize_10(ctx, node):
    method = Method(interpolation_mode(node), "asymmetric", "simple")
    in_shape = ctx.static_shape(node.input(0))
    scales = ctx.require_const(node, 1, "scales")
    out_shape, scales = sizes_from_scales(full_rank(scales, None, len(in_shape), 1.0, "scales"), in_shape)
    emit_resize(ctx, node, method, out_shape, scales)


def upsample(ctx: ConversionContext, node: Node, scales: np.ndarray) -> None:
    method = Method(interpolation_mode(node), "asymmetric", "simple")
    in_shape = ctx.static_shape(node.input(0))
    out_shape, scales = sizes_from_scales(full_rank(scales, None, len(in_shape), 1.0, "scales"), in_shape)
    if np.any(scales < 1):
        raise Unsupported(f"Upsample scales {scales.tolist()} must be >= 1")
    emit_resize(ctx, node, method, out_shape, scales)


@handles("Upsample", since=7)
def upsample_7(ctx, node):
    upsample(ctx, node, np.asarray(node.attr("scales"), dtype=F32))


@handles("Upsample", since=9)
def upsample_9(ctx, node):
    upsample(ctx, node, ctx.require_const(node, 1, "scales"))
