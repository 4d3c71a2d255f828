"""Facts read straight from an ONNX model: header, graph inputs and outputs, op counts, nodes."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import onnx

from buildsys.errors import InputError

DEFAULT_DOMAINS = ("", "ai.onnx")


@dataclass(frozen=True)
class Tensor:
    """A graph input or output; dims are ints, dim_param names or "?" (None: rank unknown)."""

    name: str
    dtype: str
    dims: tuple[int | str, ...] | None

    @property
    def dynamic(self) -> bool:
        return self.dims is None or any(not isinstance(d, int) for d in self.dims)


@dataclass(frozen=True)
class NodeLine:
    index: int
    name: str
    op: str  # domain.op_type for custom domains
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    @property
    def label(self) -> str:
        return self.name or f"#{self.index}"


@dataclass(frozen=True)
class Header:
    file: str
    size: int
    ir_version: int
    opsets: dict[str, int]  # "ai.onnx" for the default domain
    producer: str
    producer_version: str
    node_count: int
    initializers: int
    parameters: int


def read_model(path: Path) -> onnx.ModelProto:
    """The model without external weights (inspect needs their shapes only); InputError names the file."""
    if not path.is_file():
        what = "is a directory, not an ONNX file" if path.is_dir() else "does not exist"
        raise InputError(f"{path} {what}", hint="give an .onnx file or a recipe .yaml", path=str(path))
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot read ONNX model {path}: {first}", hint="re-export it", path=str(path)) from None
    if not model.HasField("graph") or not model.ir_version:
        # protobuf takes empty and some foreign files as an empty message
        raise InputError(f"{path} is not an ONNX model (no graph or IR version)", hint="re-export it", path=str(path))
    return model


def domain_name(domain: str) -> str:
    return "ai.onnx" if domain in DEFAULT_DOMAINS else domain


def qualified(domain: str, op_type: str) -> str:
    return op_type if domain in DEFAULT_DOMAINS else f"{domain}.{op_type}"


def op_name(node: onnx.NodeProto) -> str:
    return qualified(node.domain, node.op_type)


def opsets(model: onnx.ModelProto) -> dict[str, int]:
    return {domain_name(o.domain): o.version for o in model.opset_import}


def header(model: onnx.ModelProto, path: Path, label: str) -> Header:
    graph = model.graph
    return Header(
        file=label,
        size=path.stat().st_size,
        ir_version=model.ir_version,
        opsets=opsets(model),
        producer=model.producer_name,
        producer_version=model.producer_version,
        node_count=len(graph.node),
        initializers=len(graph.initializer),
        parameters=sum(math.prod(t.dims) for t in graph.initializer),
    )


def graph_inputs(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    """Inputs the caller feeds: old exporters also list initializers as inputs."""
    inits = {t.name for t in graph.initializer}
    return [v for v in graph.input if v.name not in inits]


def tensor(v: onnx.ValueInfoProto) -> Tensor:
    kind = v.type.WhichOneof("value")
    if kind != "tensor_type":
        return Tensor(v.name, (kind or "unknown").removesuffix("_type"), None)
    t = v.type.tensor_type
    dims = tuple(_dim(d) for d in t.shape.dim) if t.HasField("shape") else None
    return Tensor(v.name, dtype_name(t.elem_type), dims)


def _dim(d: onnx.TensorShapeProto.Dimension) -> int | str:
    if d.HasField("dim_value"):
        # -1 and 0 are how some exporters (PaddlePaddle) write a dynamic dim
        return d.dim_value if d.dim_value > 0 else "?"
    return d.dim_param or "?"


def dtype_name(elem_type: int) -> str:
    try:
        return onnx.helper.tensor_dtype_to_np_dtype(elem_type).name
    except (KeyError, ValueError, TypeError):
        return onnx.TensorProto.DataType.Name(elem_type).lower() if elem_type else "undefined"


def histogram(graph: onnx.GraphProto) -> list[tuple[str, int]]:
    """(op, count), most frequent first, ties by name."""
    counts = Counter(op_name(n) for n in graph.node)
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def node_lines(graph: onnx.GraphProto, ops: list[str] | None = None) -> list[NodeLine]:
    """Nodes whose op (op_type or domain.op_type, any case) is in `ops`; every node for None."""
    wanted = {o.lower() for o in ops} if ops else None
    lines = []
    for i, n in enumerate(graph.node):
        if wanted is None or n.op_type.lower() in wanted or op_name(n).lower() in wanted:
            lines.append(NodeLine(i, n.name, op_name(n), tuple(n.input), tuple(n.output)))
    return lines
