"""Permutations between a tensor's ONNX axis order and the order TF holds it in.

A value with permutation `p` is stored as `tf = transpose(onnx, p)`: TF axis i
is ONNX axis p[i]. Pure functions over tuples; nothing here imports TF.
"""

from __future__ import annotations

from collections.abc import Sequence

Perm = tuple[int, ...]


def identity(rank: int) -> Perm:
    return tuple(range(rank))


def channels_last(rank: int) -> Perm:
    """N, C, D1.. -> N, D1.., C: the layout TF's conv and pooling kernels take."""
    if rank < 3:
        return identity(rank)
    return (0, *range(2, rank), 1)


def is_identity(perm: Sequence[int]) -> bool:
    return all(i == a for i, a in enumerate(perm))


def inverse(perm: Sequence[int]) -> Perm:
    out = [0] * len(perm)
    for i, a in enumerate(perm):
        out[a] = i
    return tuple(out)


def relative(current: Sequence[int], target: Sequence[int]) -> Perm:
    """The transpose taking a tensor stored in `current` to one stored in `target`."""
    return tuple(current.index(a) for a in target)


def tf_axis(perm: Sequence[int], onnx_axis: int) -> int:
    """Where ONNX axis `onnx_axis` (negative allowed) lives in the TF tensor."""
    rank = len(perm)
    return list(perm).index(onnx_axis % rank if rank else 0)


def tf_shape(perm: Sequence[int], onnx_shape: Sequence) -> list:
    return [onnx_shape[a] for a in perm]


def onnx_shape(perm: Sequence[int], tf_dims: Sequence) -> list:
    return [tf_dims[i] for i in inverse(perm)]


def apply_transpose(perm: Sequence[int], transpose: Sequence[int]) -> Perm:
    """Perm of `y = Transpose(x, transpose)` when x has `perm` and the data stays put."""
    inv = inverse(transpose)
    return tuple(inv[a] for a in perm)


def drop_axes(perm: Sequence[int], onnx_axes: Sequence[int]) -> Perm:
    """Perm after removing ONNX axes (reductions with keepdims=0, Squeeze)."""
    dropped = {a % len(perm) for a in onnx_axes}
    kept = [a for a in perm if a not in dropped]
    rank = sorted(kept)
    return tuple(rank.index(a) for a in kept)


def insert_axes(perm: Sequence[int], onnx_axes: Sequence[int]) -> Perm:
    """Perm after Unsqueeze at ONNX output axes; each new unit axis sits before the axis
    that follows it in ONNX order, so no data moves."""
    out_rank = len(perm) + len(onnx_axes)
    new = sorted(a % out_rank for a in onnx_axes)
    old_to_new = [i for i in range(out_rank) if i not in new]
    stored = [old_to_new[a] for a in perm]
    for axis in new:
        # place the unit axis just before the stored position of ONNX axis+1 (or at the end)
        following = [i for i, a in enumerate(stored) if a > axis]
        pos = min(following) if following else len(stored)
        stored.insert(pos, axis)
    return tuple(stored)


def moves_only_units(rel: Sequence[int], dims: Sequence) -> bool:
    """True if the transpose `rel` of a tensor with `dims` keeps every non-unit axis in
    order, so a reshape does the same job without moving data."""
    order = [a for a in rel if dims[a] != 1]
    return order == sorted(order) and all(d is not None for d in dims)
