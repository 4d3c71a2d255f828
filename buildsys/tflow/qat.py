"""int8 TFLite from a pre-quantized model's fake-quant graph: the model's own scales, no calibration.

The fake-quant float model (`float_qat.pb`) carries FakeQuantWithMinMaxVars at every
activation Q -> DQ pair, so the TFLite converter runs its quantization-aware-training
path: activation scales and zero points come from those ranges, and weights get
symmetric int8 scales from their (already quantized) values, which is the model's
own scale when its largest weight per channel is |q| = 127 (qdq.forbidden refuses
the rest before conversion). Per-tensor weights get a fake-quant of their own here.

TFLITE_BUILTINS_INT8 is not set: TF 2.21 then demands a representative dataset even
for a QAT graph. Instead the result is checked to hold no float tensor inside.
"""

from __future__ import annotations

from pathlib import Path

from buildsys.errors import StageError
from buildsys.signature import Signature
from buildsys.tflow.quantize import _check_signature, _check_tflite_io, _convert, _options, _servable


def to_tflite_qat(
    float_path: Path,
    signature: Signature,
    per_tensor: bool,
    input_type: str | None,
    output_type: str | None,
    label: str = "the model",
) -> bytes:
    """Deterministic int8 .tflite bytes; `per_tensor`: the model's weights have one scale each;
    `label` names the source model in errors."""
    import tensorflow as tf

    from buildsys.tflow.frozen import read_float

    options = _options("int8", not per_tensor, input_type, output_type)
    float_path = Path(float_path)
    graph_def, stored = read_float(float_path)
    _check_signature(stored, signature, float_path)
    if per_tensor:
        # a per-tensor target's model has its scales: stages/quantize.py refuses one without
        graph_def = fake_quant_weights(graph_def, (signature.quantized or {})["weights"])
    module, concrete = _servable(graph_def, signature, float_path)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], module)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.inference_input_type = tf.as_dtype(options.input_type)
    converter.inference_output_type = tf.as_dtype(options.output_type)
    # private, the only per-tensor switches; TF 2.21's QAT path honours neither for every op
    # (hence fake_quant_weights), they are set for a TF that does
    converter._experimental_disable_per_channel = per_tensor
    converter._experimental_disable_per_channel_quantization_for_dense_layers = per_tensor
    data = _convert(converter, options, float_path)
    _check_tflite_io(data, signature, options, float_path)
    _check_integer(data, signature, label)
    return data


# TF ops whose input 1 is a weight TFLite quantizes (per output channel unless told otherwise)
WEIGHT_OPS = ("Conv2D", "Conv3D", "DepthwiseConv2dNative", "MatMul", "Conv2DBackpropInput", "BatchMatMulV2")


def fake_quant_weights(graph_def, weights: list[dict]):
    """A copy with each constant weight of a per-tensor quantized ONNX node behind a narrow-range
    fake-quant of the model's scale: in its QAT path TFLite ignores the per-tensor switch and
    would derive per-channel scales. The TF name scope of an op is its ONNX node's name."""
    from tensorflow.core.framework import graph_pb2

    scales = {w["node"]: w["scale"][0] for w in weights if len(w["scale"]) == 1}
    out = graph_pb2.GraphDef()
    out.CopyFrom(graph_def)
    consts = {n.name for n in out.node if n.op == "Const"}
    for node in out.node:
        scope = node.name.split("/")[0]
        if node.op not in WEIGHT_OPS or scope not in scales or len(node.input) < 2 or node.input[1] not in consts:
            continue
        fq = out.node.add(name=f"{node.input[1]}/weight_fake_quant", op="FakeQuantWithMinMaxArgs")
        fq.input.append(node.input[1])
        fq.attr["T"].type = 1  # DT_FLOAT
        fq.attr["min"].f, fq.attr["max"].f = -127 * scales[scope], 127 * scales[scope]
        fq.attr["num_bits"].i, fq.attr["narrow_range"].b = 8, True
        node.input[1] = fq.name
    return out


def _check_integer(data: bytes, signature: Signature, label: str) -> None:
    """No float tensor between the IO: a tensor without Q -> DQ would leave its op in float."""
    from buildsys.tflow.quiet import no_interpreter_warning
    from buildsys.tflow.runtime import interpreter_class

    with no_interpreter_warning():
        interpreter = interpreter_class()(model_content=data)
    # float IO is converted by QUANTIZE/DEQUANTIZE, whose float side is the IO tensor itself
    io = {d["index"] for d in interpreter.get_input_details() + interpreter.get_output_details()}
    details = interpreter.get_tensor_details()
    floats = [d["name"] for d in details if d["dtype"].__name__ == "float32" and d["index"] not in io]
    if floats:
        nodes = sorted({_node_of(n, signature) for n in floats})
        raise StageError(
            f"{label} leaves tensors without QuantizeLinear -> DequantizeLinear, so these ONNX nodes would "
            f"stay float in the int8 model: {', '.join(nodes[:10])}{' ...' if len(nodes) > 10 else ''}",
            hint="quantize the model with QDQ on every tensor, or recalibrate: "
            "`quantization: {requantize: true}` on the target and a `calibration:` section",
        )


def _node_of(tensor: str, signature: Signature) -> str:
    scopes = signature.nodes or {}
    first = tensor.split(";")[0]
    for scope in sorted(scopes, key=len, reverse=True):
        if first == scope or first.startswith(scope + "/"):
            return scopes[scope]
    return first
