"""What a device rule sees (op and tensor views) and one registry of rules per profile key.

The readers (tflite_ops, onnx_ops) turn an artifact into these views; every
rule is a function (view, limit) -> reason | None, None meaning "holds or does
not apply" (a pool has no dilation, an ADD no kernel). A reason names the value,
the profile key and its limit so a user can tell which line of the profile bit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import MappingProxyType

from buildsys.errors import UsageError


@dataclass(frozen=True)
class TensorView:
    name: str
    subgraph: int
    index: int  # position in its subgraph's tensor table (ONNX: order of appearance)
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...]  # -1 marks a dimension only known at run time
    dtype: str  # lower-case numpy-style name: int8, float32...
    is_constant: bool
    scales: int = 0  # quantization scales: 1 per-tensor, >1 per-channel, 0 not quantized

    @property
    def key(self) -> tuple[int, int]:
        return self.subgraph, self.index

    @property
    def dynamic(self) -> bool:
        return any(d < 0 for d in self.shape_signature) or any(d < 0 for d in self.shape)


@dataclass(frozen=True)
class OpView:
    index: int  # position in its subgraph's execution order
    subgraph: int
    op: str  # TFLite builtin name (CONV_2D), custom code, or ONNX op_type
    name: str
    inputs: tuple[TensorView, ...]
    outputs: tuple[TensorView, ...]
    kernel: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None
    dilation: tuple[int, int] | None = None
    padding: str | None = None  # SAME, VALID (ONNX: EXPLICIT for other explicit pads)
    fused_activation: str | None = None
    depth_multiplier: int | None = None
    pads: int | None = None  # largest explicit padding on any side
    resize: tuple[float, float] | None = None  # output/input height and width
    channels: int | None = None  # input channels of the first activation input
    weights: TensorView | None = None  # the weights input of conv/fully-connected ops

    @property
    def activations(self) -> tuple[TensorView, ...]:
        return tuple(t for t in (*self.inputs, *self.outputs) if not t.is_constant)


@dataclass(frozen=True)
class GraphView:
    ops: tuple[OpView, ...]  # subgraph 0 first, each subgraph in execution order
    inputs: tuple[TensorView, ...]  # graph inputs of every subgraph
    outputs: tuple[TensorView, ...]
    tensors: tuple[TensorView, ...]  # every tensor an op or a graph boundary uses, once


OpRule = Callable[[OpView, object], "str | None"]
TensorRule = Callable[[TensorView, object, str], "str | None"]


def op_rules() -> MappingProxyType:
    """op_rules key of schemas/device.schema.json -> rule(op, limit)."""
    return MappingProxyType(
        {
            "kernel": _allowed_pair("kernel", "kernel"),
            "max_kernel": _max_pair("max_kernel", "kernel"),
            "max_kernel_area": _max_kernel_area,
            "square_kernel": _equal_pair("square_kernel", "kernel"),
            "stride": _allowed_pair("stride", "stride"),
            "max_stride": _max_pair("max_stride", "stride"),
            "equal_strides": _equal_pair("equal_strides", "stride"),
            "dilation": _allowed_pair("dilation", "dilation"),
            "padding": _allowed_value("padding", "padding"),
            "fused_activation": _allowed_value("fused_activation", "fused_activation"),
            "depth_multiplier": _allowed_value("depth_multiplier", "depth_multiplier"),
            "max_rank": _op_tensors("max_rank", _tensor_max_rank),
            "max_dim": _op_tensors("max_dim", _tensor_max_dim),
            "max_channels": _max_channels,
            "channel_multiple": _channel_multiple,
            "resize_factor": _resize_factor,
            "max_pad": _max_pad,
            "dtypes": _op_tensors("dtypes", _tensor_dtypes),
        }
    )


def tensor_rules() -> MappingProxyType:
    """tensors key of schemas/device.schema.json -> rule(tensor, limit, key_path)."""
    return MappingProxyType(
        {
            "max_rank": _tensor_max_rank,
            "max_inner_rank": _tensor_max_inner_rank,
            "max_dim": _tensor_max_dim,
            "static": _tensor_static,
            "dtypes": _tensor_dtypes,
        }
    )


def weights_reason(op: OpView, per_channel: bool | None) -> str | None:
    """quantization.per_channel: false means the device only takes one scale per weight tensor."""
    w = op.weights
    if per_channel is not False or w is None or not w.is_constant or w.scales <= 1:
        return None
    return (
        f"weights '{w.name}' have {w.scales} scales (per-channel); "
        "the device takes per-tensor (quantization.per_channel: false)"
    )


def check_op(op: OpView, limits: dict | None) -> list[str]:
    """Reasons `op` breaks its ops.<OP> limits (empty when it meets them all), in registry order."""
    registry = op_rules()
    limits = _known(limits, registry, f"ops.{op.op}")
    reasons = [registry[key](op, limits[key]) for key in registry if limits.get(key) is not None]
    return [r for r in reasons if r]


def check_tensor(tensor: TensorView, limits: dict | None, skip: Iterable[str] = ()) -> list[str]:
    """Reasons `tensor` breaks the profile's `tensors` limits; keys in `skip` are not checked."""
    registry = tensor_rules()
    limits = _known(limits, registry, "tensors")
    reasons = [
        registry[key](tensor, limits[key], f"tensors.{key}")
        for key in registry
        if limits.get(key) is not None and key not in skip
    ]
    return [r for r in reasons if r]


def _known(limits: dict | None, registry: MappingProxyType, where: str) -> dict:
    # the schema rejects unknown keys; this guards profiles that skipped validation
    unknown = sorted(set(limits or {}) - set(registry))
    if unknown:
        raise UsageError(
            f"{where}.{unknown[0]} is not a device rule",
            hint=f"the rules there are {', '.join(registry)} (schemas/device.schema.json)",
        )
    return dict(limits or {})


# -- op rules: built per key so a reason names ops.<OP>.<key> --------------------------------------


def _path(op: OpView, key: str) -> str:
    return f"ops.{op.op}.{key}"


def _pair_rule(key: str, attr: str, holds, verdict: str) -> OpRule:
    """A rule on an (h, w) pair of the op; `verdict` formats the reason when `holds` fails."""

    def rule(op: OpView, limit) -> str | None:
        pair = getattr(op, attr)
        if pair is None or holds(pair, limit):
            return None
        return verdict.format(
            attr=attr,
            pair=_x(pair),
            path=_path(op, key),
            limit=limit,
            allowed=_list(limit) if isinstance(limit, (list, tuple)) else limit,
        )

    return rule


def _allowed_pair(key: str, attr: str) -> OpRule:
    return _pair_rule(
        key, attr, lambda pair, allowed: all(v in allowed for v in pair), "{attr} {pair}: {path} allows {allowed}"
    )


def _max_pair(key: str, attr: str) -> OpRule:
    return _pair_rule(key, attr, lambda pair, limit: max(pair) <= limit, "{attr} {pair} > {path} {limit}")


def _equal_pair(key: str, attr: str) -> OpRule:
    return _pair_rule(key, attr, lambda pair, required: not required or pair[0] == pair[1], "{attr} {pair}: {path}")


def _allowed_value(key: str, attr: str) -> OpRule:
    def rule(op: OpView, allowed) -> str | None:
        value = getattr(op, attr)
        if value is None or value in allowed:
            return None
        return f"{attr.replace('_', ' ')} {value}: {_path(op, key)} allows {_list(allowed)}"

    return rule


def _op_tensors(key: str, tensor_rule: TensorRule) -> OpRule:
    """An op rule that holds when every activation tensor of the op meets `tensor_rule`."""

    def rule(op: OpView, limit) -> str | None:
        for tensor in op.activations:
            reason = tensor_rule(tensor, limit, _path(op, key))
            if reason:
                return reason  # one reason per rule: the op is out either way
        return None

    return rule


def _max_kernel_area(op: OpView, limit) -> str | None:
    if op.kernel is None or op.kernel[0] * op.kernel[1] <= limit:
        return None
    return f"kernel {_x(op.kernel)} (area {op.kernel[0] * op.kernel[1]}) > {_path(op, 'max_kernel_area')} {limit}"


def _max_channels(op: OpView, limit) -> str | None:
    if op.channels is None or op.channels <= limit:
        return None
    return f"input channels {op.channels} > {_path(op, 'max_channels')} {limit}"


def _channel_multiple(op: OpView, multiple) -> str | None:
    if op.channels is None or op.channels % multiple == 0:
        return None
    return f"input channels {op.channels}: {_path(op, 'channel_multiple')} needs a multiple of {multiple}"


def _resize_factor(op: OpView, allowed) -> str | None:
    if op.resize is None:
        return None
    whole = all(float(f).is_integer() for f in op.resize)
    if whole and all(int(f) in allowed for f in op.resize):
        return None
    note = "" if whole else " (not an integer)"
    return f"resize factor {_x(op.resize)}{note}: {_path(op, 'resize_factor')} allows {_list(allowed)}"


def _max_pad(op: OpView, limit) -> str | None:
    if op.pads is None or op.pads <= limit:
        return None
    return f"padding {op.pads} > {_path(op, 'max_pad')} {limit}"


# -- tensor rules -------------------------------------------------------------------------------


def _tensor_max_rank(t: TensorView, limit, key: str) -> str | None:
    if len(t.shape) <= limit:
        return None
    return f"tensor '{t.name}' rank {len(t.shape)} > {key} {limit}"


def _tensor_max_inner_rank(t: TensorView, limit, key: str) -> str | None:
    # leading 1s are free; the build-time shape is judged (a dynamic batch is tensors.static's business)
    shape = t.shape
    first = next((i for i, d in enumerate(shape) if d != 1), len(shape))
    inner = len(shape) - first
    if inner <= limit:
        return None
    return f"tensor '{t.name}' shape {_shape(shape)} has {inner} dimensions from the first one > 1; {key} {limit}"


def _tensor_max_dim(t: TensorView, limit, key: str) -> str | None:
    largest = max(t.shape, default=0)
    if largest <= limit:
        return None
    return f"tensor '{t.name}' shape {_shape(t.shape)} has dimension {largest} > {key} {limit}"


def _tensor_static(t: TensorView, required, key: str) -> str | None:
    if not required or not t.dynamic:
        return None
    shape = tuple(min(a, b) for a, b in zip(t.shape, t.shape_signature, strict=False)) or t.shape
    return f"tensor '{t.name}' shape {_shape(shape)} is dynamic; {key} needs every dimension known"


def _tensor_dtypes(t: TensorView, allowed, key: str) -> str | None:
    if t.dtype in allowed:
        return None
    return f"tensor '{t.name}' is {t.dtype}; {key} allows {_list(allowed)}"


# -- formatting ---------------------------------------------------------------------------------


def _x(values) -> str:
    return "x".join(_num(v) for v in values)


def _num(value) -> str:
    return str(int(value)) if float(value).is_integer() else f"{float(value):.3g}"


def _shape(shape) -> str:
    return "x".join("?" if d < 0 else str(d) for d in shape) or "scalar"


def _list(values) -> str:
    return ", ".join(str(v) for v in values)
