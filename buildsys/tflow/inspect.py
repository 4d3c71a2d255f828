"""Read a .tflite flatbuffer without running it: ops, tensor dtypes, weight quantization.

Parsed with the schema module TensorFlow ships, so it works on any valid model
(fp32, fp16, int8, int16x8, with or without signatures) and allocates nothing.

`tensor_dtypes` speaks TFLite's type names (FLOAT32, INT8) as the report always
has; the newer readers speak the lower-case names device profiles and
`runtime.tflite_inputs_outputs` use (float32, int8), so checks compare directly.
The schema comes from tflschema, which does not import the tensorflow package.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import MappingProxyType
from typing import Any

from buildsys.errors import InputError
from buildsys.tflow.tflschema import enum_names, schema

_HINT = "re-export it or check the sha256"

# Ops whose weights are worth inspecting -> index of the weight (filter)
# input. TRANSPOSE_CONV's inputs are (output_shape, weights, input[, bias]).
_WEIGHT_INPUT = MappingProxyType(
    {"CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "FULLY_CONNECTED": 1, "TRANSPOSE_CONV": 1, "CONV_3D": 1}
)
# Ops that only re-encode a constant on its way to the op (fp16 and sparse weights).
_PASS_THROUGH = frozenset({"DEQUANTIZE", "DENSIFY"})


def op_histogram(model: bytes | Path) -> dict[str, int]:
    """Builtin (or custom) op name -> number of uses over all subgraphs, by name."""
    return _parsed(model, _op_counts)


def tensor_dtypes(model: bytes | Path) -> dict:
    """{"inputs": {name: dtype}, "outputs": {name: dtype}, "tensors": {dtype: count}}.

    Names come from the first signature when there is one (the names callers
    feed by), else from the main subgraph's tensors.
    """
    return _parsed(model, _dtype_summary)


def weight_scales(model: bytes | Path) -> dict[str, int]:
    """Weight tensor name -> number of quantization scales (0: not quantized).

    Weights are the constant filter inputs of conv / depthwise / fully
    connected / transpose conv ops, followed back through DEQUANTIZE (fp16).
    Per-channel weights have one scale per output channel, per-tensor one.
    """
    return _parsed(model, lambda root: {n: _scale_count(t) for n, t in _weights(root)})


def weight_dtypes(model: bytes | Path) -> dict[str, str]:
    """Weight tensor name -> stored dtype: float32, float16 or int8 (see weight_scales)."""
    return _parsed(model, lambda root: {n: _type_name(t) for n, t in _weights(root)})


def activation_dtypes(model: bytes | Path) -> dict[str, int]:
    """dtype (float32, int8, int16...) -> number of non-constant tensors over all subgraphs.

    Model inputs and outputs count too: a float-IO int8 model shows its two
    float32 tensors next to the int8 ones.
    """
    return _parsed(model, _activation_counts)


def io_dtypes(model: bytes | Path) -> dict[str, dict[str, str]]:
    """{"inputs": {name: dtype}, "outputs": {name: dtype}} with lower-case dtypes (float32, uint8...)."""
    summary = tensor_dtypes(model)
    return {side: {n: t.lower() for n, t in summary[side].items()} for side in ("inputs", "outputs")}


def _op_counts(root) -> dict[str, int]:
    names = [_op_name(root.OperatorCodes(i)) for i in range(root.OperatorCodesLength())]
    counts: Counter[str] = Counter()
    for sg in _subgraphs(root):
        for k in range(sg.OperatorsLength()):
            counts[names[sg.Operators(k).OpcodeIndex()]] += 1
    return dict(sorted(counts.items()))


def _dtype_summary(root) -> dict:
    main, inputs, outputs = _named_io(root)
    counts: Counter[str] = Counter(_dtype(sg.Tensors(t)) for sg in _subgraphs(root) for t in range(sg.TensorsLength()))
    return {
        "inputs": {n: _dtype(main.Tensors(i)) for n, i in inputs},
        "outputs": {n: _dtype(main.Tensors(i)) for n, i in outputs},
        "tensors": dict(sorted(counts.items())),
    }


def _weights(root) -> list[tuple[str, object]]:
    """(name, tensor) of each distinct weight tensor, in op order."""
    found: dict[str, object] = {}
    names = [_op_name(root.OperatorCodes(i)) for i in range(root.OperatorCodesLength())]
    for sg in _subgraphs(root):
        ops = [sg.Operators(k) for k in range(sg.OperatorsLength())]
        producers = {op.Outputs(j): op for op in ops for j in range(op.OutputsLength())}
        for op in ops:
            slot = _WEIGHT_INPUT.get(names[op.OpcodeIndex()])
            if slot is None or op.InputsLength() <= slot or op.Inputs(slot) < 0:
                continue
            index = _source_constant(root, sg, op.Inputs(slot), producers, names)
            if index is not None:
                tensor = sg.Tensors(index)
                found.setdefault(tensor.Name().decode("utf-8", errors="replace"), tensor)
    return list(found.items())


def _source_constant(root, sg, index: int, producers: dict, names: list[str]) -> int | None:
    """The constant tensor behind `index`, looking through DEQUANTIZE/DENSIFY; None if computed."""
    for _ in range(len(producers) + 1):  # bounded: a malformed graph may loop
        if _is_constant(root, sg.Tensors(index)):
            return index
        op = producers.get(index)
        if op is None or names[op.OpcodeIndex()] not in _PASS_THROUGH or op.InputsLength() < 1:
            return None
        index = op.Inputs(0)
    return None


def _is_constant(root, tensor) -> bool:
    # Buffer 0 is the empty sentinel; large models keep data outside the
    # flatbuffer (offset/size) instead of inline.
    if tensor.Buffer() <= 0 or tensor.IsVariable():
        return False
    buffer = root.Buffers(tensor.Buffer())
    return buffer.DataLength() > 0 or buffer.Offset() > 1


def _scale_count(tensor) -> int:
    quant = tensor.Quantization()
    return 0 if quant is None else quant.ScaleLength()


def _activation_counts(root) -> dict[str, int]:
    counts: Counter[str] = Counter(
        _type_name(t)
        for sg in _subgraphs(root)
        for t in (sg.Tensors(i) for i in range(sg.TensorsLength()))
        if not _is_constant(root, t)
    )
    return dict(sorted(counts.items()))


def output_ops(model: bytes | Path) -> dict[int, str]:
    """{op index: model output name} for the ops that make each output: its producer
    and, behind an IO-type QUANTIZE/DEQUANTIZE, the op that one reads. TFLite names
    those tensors after the signature ("PartitionedCall:0"), not after the op."""
    return _parsed(model, _output_ops)


def _output_ops(root) -> dict[int, str]:
    sg, _, outputs = _named_io(root)
    producers = {}
    for k in range(sg.OperatorsLength()):
        op = sg.Operators(k)
        for j in range(op.OutputsLength()):
            producers[op.Outputs(j)] = k
    found = {}
    for name, tensor in outputs:
        made = producers.get(tensor)
        if made is None:
            continue
        found[made] = name
        op = sg.Operators(made)
        if _op_name(root.OperatorCodes(op.OpcodeIndex())) in ("QUANTIZE", "DEQUANTIZE") and op.InputsLength():
            inner = producers.get(op.Inputs(0))
            if inner is not None:
                found[inner] = name
    return found


def _parsed(model: bytes | Path, read):
    """Run `read(root)`; the flatbuffer is parsed lazily, so damage can show up anywhere."""
    schema_module = schema()
    data, label = (bytes(model), "<tflite bytes>") if isinstance(model, (bytes, bytearray)) else _read(Path(model))
    if len(data) < 8 or not schema_module.Model.ModelBufferHasIdentifier(data, 0):
        raise InputError(f"{label} is not a TFLite model (no TFL3 identifier)", hint=_HINT, path=label)
    try:
        root = schema_module.Model.GetRootAs(data, 0)
        if root.SubgraphsLength() < 1:
            raise ValueError("no subgraphs")
        return read(root)
    except Exception as exc:  # noqa: BLE001 - a damaged flatbuffer fails in struct/index code
        raise InputError(f"{label} is a damaged TFLite model ({exc})", hint=_HINT, path=label) from None


def _read(path: Path) -> tuple[bytes, str]:
    try:
        return path.read_bytes(), str(path)
    except OSError as exc:
        raise InputError(f"cannot read TFLite model {path}: {exc.strerror}", path=str(path)) from None


def _subgraphs(root):
    return [root.Subgraphs(i) for i in range(root.SubgraphsLength())]


def _op_name(code) -> str:
    operators = schema().BuiltinOperator
    # Codes above 127 only fit in the newer int32 field; the deprecated int8
    # field then holds the placeholder 127, so the larger value is the real one.
    builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
    if builtin == operators.CUSTOM:
        return (code.CustomCode() or b"CUSTOM").decode("utf-8", errors="replace")
    return enum_names(operators).get(builtin, f"BUILTIN_{builtin}")


def _dtype(tensor) -> str:
    return enum_names(schema().TensorType).get(tensor.Type(), f"TYPE_{tensor.Type()}")


def _type_name(tensor) -> str:
    # TFLite's enum names lower-cased are numpy's names (float32, int8, bool).
    return _dtype(tensor).lower()


def _named_io(root) -> tuple[Any, list, list]:
    """The signature's subgraph and [(name, tensor index)] for its inputs and outputs."""
    if root.SignatureDefsLength() > 0:
        sig = root.SignatureDefs(0)
        ins = [sig.Inputs(i) for i in range(sig.InputsLength())]
        outs = [sig.Outputs(i) for i in range(sig.OutputsLength())]
        pairs = [[(t.Name().decode(), t.TensorIndex()) for t in side] for side in (ins, outs)]
        return root.Subgraphs(sig.SubgraphIndex()), pairs[0], pairs[1]
    main = root.Subgraphs(0)
    ins = [main.Inputs(i) for i in range(main.InputsLength())]
    outs = [main.Outputs(i) for i in range(main.OutputsLength())]
    pairs = [[(main.Tensors(i).Name().decode(), i) for i in side] for side in (ins, outs)]
    return main, pairs[0], pairs[1]
