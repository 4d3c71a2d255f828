"""An .onnx model -> op views (geometry, tensors) the device rules read.

ONNX is NCHW: kernels come from `kernel_shape` or the weight initializer
[O, I/group, H, W], channels from dim 1 of image ops. Shapes come from the
model's value_info after shape inference. Tensors made by DequantizeLinear
from a constant count as constant weights with that many scales (QDQ models).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np
import onnx
from onnx import numpy_helper

from buildsys.compat.rules import GraphView, OpView, TensorView
from buildsys.errors import InputError

_HINT = "re-export the model or check that the file is an .onnx model"

KERNEL_OPS = frozenset({"Conv", "ConvTranspose", "MaxPool", "AveragePool", "LpPool"})
DILATION_OPS = frozenset({"Conv", "ConvTranspose", "MaxPool"})
# explicit pads equal to SAME are recognised only where SAME has the forward-conv meaning
SAME_AWARE_OPS = frozenset({"Conv", "MaxPool", "AveragePool", "LpPool"})
# one weight input per op: for LSTM/GRU/RNN that is W (the recurrence R is input 2)
WEIGHTS_INPUT = MappingProxyType({"Conv": 1, "ConvTranspose": 1, "Gemm": 1, "MatMul": 1, "LSTM": 1, "GRU": 1, "RNN": 1})
RESIZE_OPS = frozenset({"Resize", "Upsample"})
# ops whose activations are NCHW images: channels are dim 1, elsewhere the last dim
NCHW_OPS = frozenset(
    {
        "Conv", "ConvTranspose", "MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool",
        "BatchNormalization", "InstanceNormalization", "LRN", "Resize", "Upsample", "DepthToSpace", "SpaceToDepth",
    }
)  # fmt: skip
_AUTO_PAD = MappingProxyType({"SAME_UPPER": "SAME", "SAME_LOWER": "SAME", "VALID": "VALID"})


@dataclass(frozen=True)
class _Facts:
    """Per tensor name: (elem_type, dims) where known, constant values, and DQ scale counts."""

    types: dict
    constants: dict  # name -> TensorProto (initializers and Constant outputs)
    dq_scales: dict  # DequantizeLinear(constant) output -> number of scales


def read_graph(path: Path) -> GraphView:
    """Every node of the model's main graph at `path`, as op views (subgraph 0)."""
    graph = _load(Path(path)).graph
    facts = _facts(graph)
    views: dict[str, TensorView] = {}

    def view(name: str) -> TensorView:
        if name not in views:
            views[name] = _tensor(name, len(views), facts)
        return views[name]

    inputs = tuple(view(v.name) for v in graph.input if v.name not in facts.constants)
    ops = tuple(_op(node, i, view, facts) for i, node in enumerate(graph.node))
    outputs = tuple(view(v.name) for v in graph.output)
    used = {t.key: t for t in (*inputs, *outputs, *(t for op in ops for t in (*op.inputs, *op.outputs)))}
    return GraphView(ops, inputs, outputs, tuple(used[k] for k in sorted(used)))


def _load(path: Path) -> onnx.ModelProto:
    try:
        # external weights stay on disk: only their dims and the small constants matter here
        model = onnx.load(str(path), load_external_data=False)
    except OSError as exc:
        raise InputError(f"cannot read ONNX model {path}: {exc.strerror}", hint=_HINT, path=str(path)) from None
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError and friends on damage
        raise InputError(f"{path} is a damaged ONNX model ({type(exc).__name__})", hint=_HINT, path=str(path)) from None
    if model.ir_version <= 0 or not (model.graph.node or model.graph.output):
        # random bytes can decode as an empty protobuf message
        raise InputError(f"{path} is not an ONNX model (no graph)", hint=_HINT, path=str(path))
    try:
        return onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # noqa: BLE001 - a model shape inference rejects keeps the shapes it states
        return model


def _facts(graph) -> _Facts:
    types = {}
    for info in (*graph.input, *graph.value_info, *graph.output):
        if info.type.HasField("tensor_type"):
            types[info.name] = (info.type.tensor_type.elem_type, _dims(info.type.tensor_type))
    constants = {t.name: t for t in graph.initializer}
    for node in graph.node:
        value = next((a.t for a in node.attribute if a.name == "value" and a.type == onnx.AttributeProto.TENSOR), None)
        if node.op_type == "Constant" and value is not None and node.output:
            constants[node.output[0]] = value
    for t in constants.values():
        types[t.name] = (t.data_type, tuple(int(d) for d in t.dims))
    return _Facts(types, constants, _dq_scales(graph, constants))


def _dims(tensor_type) -> tuple[int, ...]:
    if not tensor_type.HasField("shape"):
        return ()
    return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in tensor_type.shape.dim)


def _dq_scales(graph, constants: dict) -> dict[str, int]:
    out = {}
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in constants and len(node.input) > 1:
            scale = constants.get(node.input[1])
            out[node.output[0]] = math.prod(scale.dims) if scale is not None else 1
    return out


def _tensor(name: str, index: int, facts: _Facts) -> TensorView:
    elem, dims = facts.types.get(name, (0, ()))
    return TensorView(
        name=name,
        subgraph=0,
        index=index,
        shape=dims,
        shape_signature=dims,
        dtype=_dtype(elem),
        is_constant=name in facts.constants or name in facts.dq_scales,
        scales=facts.dq_scales.get(name, 0),
    )


def _dtype(elem: int) -> str:
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem)).name
    except Exception:  # noqa: BLE001 - undefined or exotic types (bfloat16, float8) have no numpy twin
        return onnx.TensorProto.DataType.Name(elem).lower() if elem in onnx.TensorProto.DataType.values() else "unknown"


def _op(node, index: int, view, facts: _Facts) -> OpView:
    kind = node.op_type
    at = {pos: view(n) for pos, n in enumerate(node.input) if n}  # "" marks an omitted optional input
    ins = tuple(at[p] for p in sorted(at))
    outs = tuple(view(n) for n in node.output if n)
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    data = next((t for t in ins if not t.is_constant), None)
    spatial = _spatial(kind, attrs, at)
    return OpView(
        index=index,
        subgraph=0,
        op=kind,
        name=node.name or (outs[0].name if outs else f"{kind}_{index}"),
        inputs=ins,
        outputs=outs,
        kernel=_pair(spatial),
        stride=_pair(_spatial_attr(attrs, "strides", spatial)) if kind in KERNEL_OPS else None,
        dilation=_pair(_spatial_attr(attrs, "dilations", spatial)) if kind in DILATION_OPS else None,
        padding=_padding(kind, attrs, spatial, data) if kind in KERNEL_OPS else None,
        depth_multiplier=_depth_multiplier(kind, attrs, at, data),
        pads=_pads(kind, attrs, at, facts),
        resize=_resize(kind, ins, outs),
        channels=_channels(kind, data),
        weights=at.get(WEIGHTS_INPUT[kind]) if kind in WEIGHTS_INPUT else None,
    )


def _spatial(kind: str, attrs: dict, at: dict) -> tuple[int, ...] | None:
    """The kernel's spatial sizes: kernel_shape, else the weights' dims after [O, I/group]."""
    if kind not in KERNEL_OPS:
        return None
    if "kernel_shape" in attrs:
        return tuple(int(k) for k in attrs["kernel_shape"])
    weights = at.get(1)
    if weights is None or len(weights.shape) < 3 or min(weights.shape[2:]) <= 0:
        return None
    return weights.shape[2:]


def _spatial_attr(attrs: dict, name: str, spatial) -> tuple[int, ...] | None:
    if spatial is None:
        return None
    return _spatial_values(attrs, name, spatial)


def _spatial_values(attrs: dict, name: str, spatial: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(v) for v in attrs.get(name, [1] * len(spatial)))


def _pair(values) -> tuple[int, int] | None:
    # a 1-D kernel k is a 1xk 2-D one (how TFLite runs Conv1D); 3-D and up have no pair
    if values is None or not 1 <= len(values) <= 2:
        return None
    return (1, int(values[0])) if len(values) == 1 else (int(values[0]), int(values[1]))


def _padding(kind: str, attrs: dict, spatial, data: TensorView | None) -> str | None:
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    if auto in _AUTO_PAD:
        return _AUTO_PAD[auto]
    pads = [int(p) for p in attrs.get("pads", [])]
    if not any(pads):
        return "VALID"
    if kind in SAME_AWARE_OPS and spatial and data is not None and pads in _same_pads(attrs, spatial, data):
        return "SAME"
    return "EXPLICIT"


def _same_pads(attrs: dict, spatial, data: TensorView) -> list[list[int]]:
    """The explicit pads SAME_UPPER and SAME_LOWER amount to for this input (TF's SAME is UPPER)."""
    sizes = data.shape[2:]
    if len(sizes) != len(spatial) or min(sizes, default=0) <= 0:
        return []
    strides = _spatial_values(attrs, "strides", spatial)
    dilations = _spatial_values(attrs, "dilations", spatial)
    totals = [
        max((math.ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)
        for n, k, s, d in zip(sizes, spatial, strides, dilations, strict=True)
    ]
    upper = [t // 2 for t in totals] + [t - t // 2 for t in totals]
    lower = [t - t // 2 for t in totals] + [t // 2 for t in totals]
    return [upper, lower]


def _depth_multiplier(kind: str, attrs: dict, at: dict, data: TensorView | None) -> int | None:
    # depthwise = one group per input channel; the multiplier is output channels per group
    group = int(attrs.get("group", 1))
    weights = at.get(1)
    if kind != "Conv" or group <= 1 or data is None or weights is None or len(data.shape) < 2:
        return None
    if data.shape[1] != group or not weights.shape or weights.shape[0] <= 0:
        return None
    return weights.shape[0] // group


def _pads(kind: str, attrs: dict, at: dict, facts: _Facts) -> int | None:
    if kind in KERNEL_OPS:
        pads = attrs.get("pads")
    elif kind == "Pad":
        # opset >= 11 takes pads as input 1, older opsets as an attribute
        source = at.get(1)
        pads = attrs.get("pads") if source is None else _values(facts.constants.get(source.name))
    else:
        return None
    return int(max(pads)) if pads is not None and len(pads) else None


def _values(tensor) -> list[int] | None:
    if tensor is None:
        return None
    try:
        return [int(v) for v in numpy_helper.to_array(tensor).ravel()]
    except Exception:  # noqa: BLE001 - data stored externally is not loaded
        return None


def _resize(kind: str, ins: tuple, outs: tuple) -> tuple[float, float] | None:
    # NCHW: height and width are dims 2 and 3
    if kind not in RESIZE_OPS or not ins or not outs:
        return None
    src, dst = ins[0].shape, outs[0].shape
    if len(src) != 4 or len(dst) != 4 or min(*src[2:], *dst[2:]) <= 0:
        return None
    return dst[2] / src[2], dst[3] / src[3]


def _channels(kind: str, data: TensorView | None) -> int | None:
    if data is None or not data.shape:
        return None
    axis = 1 if kind in NCHW_OPS and len(data.shape) >= 3 else -1
    return data.shape[axis] if data.shape[axis] > 0 else None
