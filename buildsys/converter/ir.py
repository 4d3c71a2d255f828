"""The ONNX graph as the converter reads it: nodes in order, constants as numpy.

Only what conversion needs: attributes are plain Python/numpy values, constant
initializers and Constant nodes are numpy arrays, and every value's static
shape (from ONNX shape inference) is at hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper


@dataclass(frozen=True)
class Node:
    index: int
    name: str
    op_type: str
    domain: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict[str, Any]

    def attr(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)

    def input(self, i: int) -> str:
        """The i-th input name, or '' when absent (optional inputs)."""
        return self.inputs[i] if i < len(self.inputs) else ""

    @property
    def label(self) -> str:
        return self.name or f"#{self.index} ({self.op_type})"


@dataclass(frozen=True)
class ValueInfo:
    name: str
    shape: tuple[int | None, ...] | None
    dtype: np.dtype | None


@dataclass
class Graph:
    inputs: list[ValueInfo]
    outputs: list[ValueInfo]
    nodes: list[Node]
    constants: dict[str, np.ndarray]
    values: dict[str, ValueInfo] = field(default_factory=dict)
    opsets: dict[str, int] = field(default_factory=dict)

    def opset(self, domain: str) -> int:
        return self.opsets.get("" if domain == "ai.onnx" else domain, 0)


def from_model(model: onnx.ModelProto) -> Graph:
    g = model.graph
    constants = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    values = {v.name: _value_info(v) for v in [*g.input, *g.output, *g.value_info]}
    inputs = [values[v.name] for v in g.input if v.name not in constants]
    outputs = [values[v.name] for v in g.output]
    nodes = [_node(i, n) for i, n in enumerate(g.node)]
    opsets = {("" if o.domain == "ai.onnx" else o.domain): o.version for o in model.opset_import}
    return Graph(inputs, outputs, nodes, constants, values, opsets)


def _node(index: int, proto: onnx.NodeProto) -> Node:
    attrs = {a.name: _attr(a) for a in proto.attribute}
    return Node(index, proto.name, proto.op_type, proto.domain, tuple(proto.input), tuple(proto.output), attrs)


def _attr(a: onnx.AttributeProto) -> Any:
    value = helper.get_attribute_value(a)
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [v.decode("utf-8") for v in value]
    return value


def _value_info(v: onnx.ValueInfoProto) -> ValueInfo:
    t = v.type.tensor_type
    if not v.type.HasField("tensor_type"):
        return ValueInfo(v.name, None, None)
    dtype = np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type)) if t.elem_type else None
    if not t.HasField("shape"):
        return ValueInfo(v.name, None, dtype)
    dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)
    return ValueInfo(v.name, dims, dtype)
