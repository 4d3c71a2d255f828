"""A .tflite flatbuffer -> op views (geometry, tensors) the device rules read.

Options are read through the schema classes: the operator's BuiltinOptions
union table is re-initialised as the class its BuiltinOptionsType names, and
geometry is taken from whichever accessors that class has (StrideH, Padding,
FusedActivationFunction...), so every op that carries an option is covered
without a per-op table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import Any

import numpy as np

from buildsys.compat.rules import GraphView, OpView, TensorView
from buildsys.errors import InputError
from buildsys.tflow.tflschema import enum_names, schema

_HINT = "re-export the artifact (rebuild the target) or check that the file is a .tflite model"

# input that holds the constant weights (one scale each: per-tensor; one per output channel: per-channel)
WEIGHTS_INPUT = MappingProxyType({"CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "FULLY_CONNECTED": 1, "TRANSPOSE_CONV": 1})
# filters are [O, H, W, I] (conv, transpose conv) or [1, H, W, C*M] (depthwise): the kernel is dims 1..2
FILTER_INPUT = MappingProxyType({"CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "TRANSPOSE_CONV": 1})
PADDINGS_INPUT = MappingProxyType({"PAD": 1, "PADV2": 1, "MIRROR_PAD": 1})
RESIZE_OPS = frozenset({"RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR"})
_INT_DTYPES = MappingProxyType({"int32": "<i4", "int64": "<i8", "int16": "<i2", "int8": "i1", "uint8": "u1"})


@dataclass(frozen=True)
class _Model:
    """What every reader function needs: the schema, the parsed root and the raw bytes."""

    s: ModuleType
    root: Any  # the schema module's Model, generated at run time
    data: bytes
    op_names: tuple[str, ...]  # by opcode index


def read_graph(path: Path) -> GraphView:
    """Every operator of every subgraph of the .tflite file at `path`, as views."""
    data = _read(path)
    s = schema()
    if len(data) < 8 or not s.Model.ModelBufferHasIdentifier(data, 0):
        raise InputError(f"{path} is not a TFLite model (no TFL3 identifier)", hint=_HINT, path=str(path))
    try:
        root = s.Model.GetRootAs(data, 0)
        if root.SubgraphsLength() < 1:
            raise ValueError("no subgraphs")
        names = tuple(_op_name(s, root.OperatorCodes(i)) for i in range(root.OperatorCodesLength()))
        return _graph(_Model(s, root, data, names))
    except Exception as exc:  # noqa: BLE001 - a damaged flatbuffer fails in struct/index code anywhere
        message = f"{path} is a damaged TFLite model ({type(exc).__name__}: {exc})"
        raise InputError(message, hint=_HINT, path=str(path)) from None


def _read(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read TFLite model {path}: {exc.strerror}", hint=_HINT, path=str(path)) from None


def _graph(model: _Model) -> GraphView:
    ops, inputs, outputs = [], [], []
    for sgi in range(model.root.SubgraphsLength()):
        sg = model.root.Subgraphs(sgi)
        tensors = [_tensor(model, sg, sgi, i) for i in range(sg.TensorsLength())]
        ops += [_op(model, sg.Operators(k), sgi, k, tensors) for k in range(sg.OperatorsLength())]
        inputs += [tensors[i] for i in _indices(sg.InputsLength(), sg.Inputs)]
        outputs += [tensors[i] for i in _indices(sg.OutputsLength(), sg.Outputs)]
    used = {t.key: t for t in (*inputs, *outputs, *(t for op in ops for t in (*op.inputs, *op.outputs)))}
    return GraphView(tuple(ops), tuple(inputs), tuple(outputs), tuple(used[k] for k in sorted(used)))


def _indices(length: int, at) -> list[int]:
    # -1 marks an omitted optional input (e.g. a conv without bias)
    return [i for i in (at(j) for j in range(length)) if i >= 0]


def _tensor(model: _Model, sg, sgi: int, index: int) -> TensorView:
    t = sg.Tensors(index)
    shape = tuple(int(t.Shape(j)) for j in range(t.ShapeLength()))
    signature = tuple(int(t.ShapeSignature(j)) for j in range(t.ShapeSignatureLength())) or shape
    quant = t.Quantization()
    return TensorView(
        name=(t.Name() or b"").decode("utf-8", errors="replace"),
        subgraph=sgi,
        index=index,
        shape=shape,
        shape_signature=signature,
        dtype=enum_names(model.s.TensorType).get(t.Type(), f"type_{t.Type()}").lower(),
        is_constant=_buffer_bytes(model, t) is not None,
        scales=quant.ScaleLength() if quant is not None else 0,
    )


def _buffer_bytes(model: _Model, tensor) -> bytes | None:
    """The tensor's constant data, None for activations (buffer 0 or an empty buffer)."""
    index = tensor.Buffer()
    if index <= 0 or index >= model.root.BuffersLength():
        return None
    buf = model.root.Buffers(index)
    if buf.DataLength() > 0:
        return buf.DataAsNumpy().tobytes()
    # models over 2 GB keep buffers after the flatbuffer; offset 1 is the "empty" marker
    if buf.Offset() > 1:
        return model.data[buf.Offset() : buf.Offset() + buf.Size()]
    return None


def _op_name(s: ModuleType, code) -> str:
    # codes above 127 only fit the newer int32 field; the deprecated int8 one then holds 127
    builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
    if builtin == s.BuiltinOperator.CUSTOM:
        return (code.CustomCode() or b"CUSTOM").decode("utf-8", errors="replace")
    return enum_names(s.BuiltinOperator).get(builtin, f"BUILTIN_{builtin}")


def _op(model: _Model, op, sgi: int, index: int, tensors: list[TensorView]) -> OpView:
    name = model.op_names[op.OpcodeIndex()]
    raw_in = [op.Inputs(j) for j in range(op.InputsLength())]
    ins = tuple(tensors[i] for i in raw_in if i >= 0)
    outs = tuple(tensors[i] for i in _indices(op.OutputsLength(), op.Outputs))
    at = {pos: tensors[i] for pos, i in enumerate(raw_in) if i >= 0}  # by input position
    opts = _options(model.s, op)
    data = next((t for t in ins if not t.is_constant), None)
    return OpView(
        index=index,
        subgraph=sgi,
        op=name,
        name=outs[0].name if outs else f"{name}_{index}",
        inputs=ins,
        outputs=outs,
        kernel=_kernel(name, opts, at),
        stride=_pair(opts, "StrideH", "StrideW"),
        dilation=_pair(opts, "DilationHFactor", "DilationWFactor"),
        padding=_enum(model.s.Padding, opts, "Padding"),
        fused_activation=_enum(model.s.ActivationFunctionType, opts, "FusedActivationFunction"),
        depth_multiplier=_depth_multiplier(name, opts, at, data),
        pads=_pads(model, name, at),
        resize=_resize(name, ins, outs),
        channels=data.shape[-1] if data is not None and data.shape and data.shape[-1] > 0 else None,
        weights=at.get(WEIGHTS_INPUT[name]) if name in WEIGHTS_INPUT else None,
    )


def _options(s: ModuleType, op):
    """The operator's builtin options as their schema class, or None."""
    kind = op.BuiltinOptionsType()
    table = op.BuiltinOptions() if kind else None
    cls = getattr(s, enum_names(s.BuiltinOptions).get(kind, ""), None) if table is not None else None
    if cls is None or table is None:
        return None
    options = cls()
    options.Init(table.Bytes, table.Pos)
    return options


def _pair(opts, h: str, w: str) -> tuple[int, int] | None:
    if opts is None or not hasattr(opts, h):
        return None
    return int(getattr(opts, h)()), int(getattr(opts, w)())


def _enum(enum_class: type, opts, accessor: str) -> str | None:
    if opts is None or not hasattr(opts, accessor):
        return None
    value = getattr(opts, accessor)()
    return enum_names(enum_class).get(value, str(value))


def _kernel(name: str, opts, at: dict[int, TensorView]) -> tuple[int, int] | None:
    if name in FILTER_INPUT:
        filt = at.get(FILTER_INPUT[name])
        return (filt.shape[1], filt.shape[2]) if filt is not None and len(filt.shape) == 4 else None
    return _pair(opts, "FilterHeight", "FilterWidth")


def _depth_multiplier(name: str, opts, at: dict[int, TensorView], data: TensorView | None) -> int | None:
    if opts is None or not hasattr(opts, "DepthMultiplier"):
        return None
    # the runtime derives it from the shapes (filter channels / input channels); the
    # option is only a hint some converters leave at 1, so the shapes win when known
    filt = at.get(FILTER_INPUT.get(name, 1))
    if filt is not None and data is not None and filt.shape and data.shape and data.shape[-1] > 0:
        return filt.shape[-1] // data.shape[-1]
    return int(opts.DepthMultiplier())


def _pads(model: _Model, name: str, at: dict[int, TensorView]) -> int | None:
    paddings = at.get(PADDINGS_INPUT[name]) if name in PADDINGS_INPUT else None
    if paddings is None or paddings.dtype not in _INT_DTYPES:
        return None
    sg = model.root.Subgraphs(paddings.subgraph)
    raw = _buffer_bytes(model, sg.Tensors(paddings.index))
    if raw is None:
        return None  # computed at run time: nothing to judge before
    values = np.frombuffer(raw, dtype=_INT_DTYPES[paddings.dtype])
    return int(values.max()) if values.size else 0


def _resize(name: str, ins: tuple[TensorView, ...], outs: tuple[TensorView, ...]) -> tuple[float, float] | None:
    # NHWC: height and width are dims 1 and 2
    if name not in RESIZE_OPS or not ins or not outs:
        return None
    src, dst = ins[0].shape, outs[0].shape
    if len(src) != 4 or len(dst) != 4 or min(*src[1:3], *dst[1:3]) <= 0:
        return None
    return dst[1] / src[1], dst[2] / src[2]
