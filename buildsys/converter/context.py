"""One ConversionContext per conversion: the values converted so far and their layouts."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from buildsys.converter import layout
from buildsys.converter.errors import Unsupported
from buildsys.converter.ir import Graph, Node
from buildsys.converter.layout import Perm


@dataclass(frozen=True)
class Value:
    """A converted ONNX value: a TF tensor stored as transpose(onnx, perm), or a
    constant known at conversion time (kept in ONNX order, materialised on use)."""

    tensor: Any
    perm: Perm
    const: np.ndarray | None = None

    @property
    def rank(self) -> int:
        return len(self.perm)

    @property
    def shape(self) -> list:
        """Static dims in ONNX order (None where TF does not know them)."""
        if self.const is not None:
            return list(self.const.shape)
        return layout.onnx_shape(self.perm, self.tensor.shape.as_list())

    @property
    def dtype(self) -> tf.DType:
        return tf.as_dtype(self.const.dtype) if self.const is not None else self.tensor.dtype


class ConversionContext:
    def __init__(self, graph: Graph):
        self.graph = graph
        self._values: dict[str, Value] = {}
        self._producers = {o: n for n in graph.nodes for o in n.outputs if o}

    # -- reading values -------------------------------------------------------
    def has(self, name: str) -> bool:
        return bool(name) and (name in self._values or name in self.graph.constants)

    def value(self, name: str) -> Value:
        if name not in self._values and name in self.graph.constants:
            self._values[name] = constant_value(self.graph.constants[name])
        return self._values[name]

    def const(self, name: str) -> np.ndarray | None:
        """The value in ONNX order if it is known at conversion time, else None."""
        if not name:
            return None
        return self.value(name).const

    def require_const(self, node: Node, index: int, what: str) -> np.ndarray:
        value = self.const(node.input(index))
        if value is None:
            raise Unsupported(f"input {index} ({what}) must be a constant, but is computed at run time")
        return value

    def shape(self, name: str) -> list:
        return self.value(name).shape

    def static_shape(self, name: str) -> list[int]:
        dims = self.shape(name)
        if any(d is None for d in dims):
            raise Unsupported(f"needs a static shape for {name!r}, got {dims}")
        return dims

    def tensor(self, name: str, perm: Perm | None = None) -> tf.Tensor:
        """The value as a TF tensor stored in `perm` (default: as it is stored)."""
        v = self.value(name)
        return to_layout(v, v.perm if perm is None else tuple(perm))

    def onnx_tensor(self, name: str) -> tf.Tensor:
        """The value in plain ONNX axis order (what layout-opaque ops need)."""
        return self.tensor(name, layout.identity(self.value(name).rank))

    def perm(self, name: str) -> Perm:
        return self.value(name).perm

    def producer(self, name: str) -> Node | None:
        """The node computing `name` (None for graph inputs and initializers): for
        handlers that pick a better form from a known pattern, e.g. x / Sqrt(v)."""
        return self._producers.get(name)

    def opset(self, node: Node) -> int:
        return self.graph.opset(node.domain)

    # -- writing values -------------------------------------------------------
    def set(self, name: str, tensor: tf.Tensor, perm: Perm | None = None) -> None:
        rank = tensor.shape.rank
        perm = layout.identity(rank) if perm is None else tuple(perm)
        if rank is not None and rank != len(perm):
            raise AssertionError(f"perm {perm} for rank-{rank} value {name!r}")
        self._values[name] = Value(tensor, perm)

    def set_const(self, name: str, array: np.ndarray) -> None:
        self._values[name] = constant_value(np.asarray(array))

    # -- layouts across several inputs ----------------------------------------
    def aligned(self, names: list[str]) -> tuple[list[tf.Tensor], Perm]:
        """Inputs of a broadcasting op as TF tensors in one common layout.

        Lower-rank inputs get leading unit axes in ONNX order first (numpy
        broadcasting), then everything is stored the way most full-rank
        computed inputs already are, so only the minority moves."""
        values = [self.value(n) for n in names]
        rank = max(v.rank for v in values)
        perm = majority_perm(values, rank)
        return [to_layout(full_rank(v, rank), perm) for v in values], perm

    def align_to(self, name: str, rank: int, perm: Perm) -> tf.Tensor:
        return to_layout(full_rank(self.value(name), rank), perm)


def constant_value(array: np.ndarray) -> Value:
    return Value(None, layout.identity(array.ndim), np.asarray(array))


def majority_perm(values: list[Value], rank: int) -> Perm:
    computed = [v.perm for v in values if v.rank == rank and v.const is None]
    if not computed:
        return layout.identity(rank)
    counts = Counter(computed)
    best = max(counts.values())
    # ties go to a permuted layout: it came from a layout-sensitive op on purpose
    tied = [p for p in computed if counts[p] == best]
    return next((p for p in tied if not layout.is_identity(p)), tied[0])


def full_rank(value: Value, rank: int) -> Value:
    if value.rank == rank:
        return value
    lead = (1,) * (rank - value.rank)
    if value.const is not None:
        return constant_value(value.const.reshape(lead + tuple(value.const.shape)))
    onnx_order = to_layout(value, layout.identity(value.rank))
    shaped = tf.reshape(onnx_order, list(lead) + [_dim(onnx_order, i) for i in range(value.rank)])
    return Value(shaped, layout.identity(rank))


def _dim(t: tf.Tensor, i: int):
    d = t.shape[i]
    return d if d is not None else tf.shape(t)[i]


def to_layout(value: Value, perm: Perm) -> tf.Tensor:
    if value.const is not None:
        return tf.constant(np.transpose(value.const, perm) if value.rank else value.const)
    return move_axes(value.tensor, layout.relative(value.perm, perm))


def move_axes(tensor: tf.Tensor, rel) -> tf.Tensor:
    """transpose(tensor, rel), as a free reshape when only unit axes move."""
    if layout.is_identity(rel):
        return tensor
    dims = tensor.shape.as_list()
    if layout.moves_only_units(rel, dims):
        return tf.reshape(tensor, [dims[a] for a in rel])
    return tf.transpose(tensor, rel)
