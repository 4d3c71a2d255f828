"""QuantizeLinear / DequantizeLinear (QDQ fake-quant in float) against onnxruntime.

Quantized outputs are compared exactly. Per-axis cases use [1, 4, 4, 4] inputs
with distinct per-channel scales, so a scale laid along the wrong stored axis
gives wrong numbers instead of a shape error.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx_harness import check, convert, make_model

from buildsys.converter.convert import Converter, convert_arrays
from buildsys.converter.errors import UnsupportedModel

RNG = np.random.default_rng(5)
IMAGE = [1, 4, 4, 4]


def image(shape=IMAGE, spread=1.0):
    return (RNG.standard_normal(shape) * spread).astype(np.float32)


def qparams(dtype, per_channel=0):
    """(scale, zero point); zero points off-centre so the zp arithmetic matters."""
    if per_channel:
        scale = np.array([0.01, 0.02, 0.04, 0.03][:per_channel], np.float32)
        zp = np.array([3, -5, 0, 7][:per_channel] if dtype == np.int8 else [120, 131, 128, 100][:per_channel], dtype)
        return scale, zp
    return np.array(0.02, np.float32), np.array(3 if dtype == np.int8 else 120, dtype)


# -- QDQ on activations -----------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
@pytest.mark.parametrize("opset", [10, 13, 19, 21])
def test_qdq_per_tensor_activation(dtype, opset):
    scale, zp = qparams(dtype)
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"]),
    ]
    model = make_model(nodes, {"x": IMAGE}, ["y", "q"], {"s": scale, "z": zp}, opset=opset)
    # spread 2: some values saturate at both ends of the int range
    check(model, {"x": image(spread=2.0)}, transposes=0, nhwc_outputs=["y", "q"])


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
@pytest.mark.parametrize("axis", [1, -1])
def test_qdq_per_axis_activation(dtype, axis):
    scale, zp = qparams(dtype, per_channel=4)
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], axis=axis),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], axis=axis),
    ]
    model = make_model(nodes, {"x": IMAGE}, ["y", "q"], {"s": scale, "z": zp}, opset=13)
    check(model, {"x": image(spread=1.5)}, transposes=0, nhwc_outputs=["y", "q"])


def test_quantize_rounds_half_to_even():
    # x / 0.25 is exactly k + 0.5 (a power-of-two scale keeps the division exact)
    halves = (np.arange(64, dtype=np.float32) - 32.0 + 0.5) * 0.25
    x = halves.reshape(IMAGE)
    node = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"])
    model = make_model([node], {"x": IMAGE}, ["q"], {"s": np.array(0.25, np.float32), "z": np.array(0, np.int8)})
    check(model, {"x": x}, transposes=0, nhwc_outputs=["q"])


@pytest.mark.parametrize("opset", [13, 21])
def test_quantize_default_uint8_without_zero_point(opset):
    node = helper.make_node("QuantizeLinear", ["x", "s"], ["q"])
    model = make_model([node], {"x": IMAGE}, ["q"], {"s": np.array(0.01, np.float32)}, opset=opset)
    conv = check(model, {"x": image(spread=1.5)}, transposes=0, nhwc_outputs=["q"])
    assert conv.signature.outputs[0].dtype == "uint8"


def test_quantize_output_dtype_attribute():
    node = helper.make_node("QuantizeLinear", ["x", "s"], ["q"], output_dtype=TensorProto.INT8)
    model = make_model([node], {"x": IMAGE}, ["q"], {"s": np.array(0.01, np.float32)}, opset=21)
    conv = check(model, {"x": image(spread=1.5)}, transposes=0, nhwc_outputs=["q"])
    assert conv.signature.outputs[0].dtype == "int8"


@pytest.mark.parametrize("dtype, zp", [(np.int8, 4), (np.uint8, 128), (np.int32, None)])
def test_dequantize_computed_integer_input(dtype, zp):
    inputs = ["q", "s", "z"] if zp is not None else ["q", "s"]
    inits = {"s": np.array(0.5, np.float32)}
    if zp is not None:
        inits["z"] = np.array(zp, dtype)
    node = helper.make_node("DequantizeLinear", inputs, ["y"])
    model = make_model([node], {"q": ([2, 3, 5], dtype)}, ["y"], inits, opset=13)
    q = RNG.integers(-100 if dtype != np.uint8 else 0, 100, size=[2, 3, 5]).astype(dtype)
    check(model, {"q": q}, transposes=0)


# -- constant weights fold --------------------------------------------------------
def _conv_weights(per_channel: bool):
    w = RNG.integers(-127, 128, size=[6, 4, 3, 3]).astype(np.int8)
    scale = np.array([0.002, 0.004, 0.003, 0.001, 0.005, 0.002], np.float32) if per_channel else np.float32(0.003)
    return w, np.asarray(scale, np.float32), np.zeros(scale.shape, np.int8)


@pytest.mark.parametrize("per_channel", [False, True])
def test_dequantized_weights_fold_into_conv(per_channel):
    w, w_scale, w_zp = _conv_weights(per_channel)
    nodes = [
        helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wf"], axis=0),
        helper.make_node("Conv", ["x", "wf"], ["y"], pads=[1, 1, 1, 1]),
    ]
    inits = {"w": w, "ws": w_scale, "wz": w_zp}
    model = make_model(nodes, {"x": IMAGE}, ["y"], inits, opset=13)
    conv = check(model, {"x": image()}, transposes=0, nhwc_outputs=["y"])
    assert conv.ops == {"CONV_2D": 1}, conv.ops


def test_qdq_conv_graph():
    # the QAT export pattern: QDQ activations, QDQ int8 weights per output channel, int32 bias
    w, w_scale, w_zp = _conv_weights(per_channel=True)
    x_scale, x_zp = np.float32(0.02), np.int8(0)
    bias = RNG.integers(-500, 500, size=[6]).astype(np.int32)
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xf"]),
        helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wf"], axis=0),
        helper.make_node("DequantizeLinear", ["b", "bs"], ["bf"], axis=0),
        helper.make_node("Conv", ["xf", "wf", "bf"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("QuantizeLinear", ["c", "ys", "yz"], ["yq"]),
        helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["y"]),
    ]
    inits = {
        "xs": np.array(x_scale),
        "xz": np.array(x_zp),
        "w": w,
        "ws": w_scale,
        "wz": w_zp,
        "b": bias,
        "bs": (x_scale * w_scale).astype(np.float32),
        "ys": np.array(0.05, np.float32),
        "yz": np.array(-3, np.int8),
    }
    model = make_model(nodes, {"x": IMAGE}, ["y"], inits, opset=13)
    feeds = {"x": image()}
    conv = convert(model, nhwc_outputs=["y"])
    # exact: the same float conv, then the same rounding to the 0.05 grid
    np.testing.assert_array_equal(conv.run(feeds)["y"], unfused_reference(model, feeds)["y"])
    assert conv.ops["CONV_2D"] == 1 and conv.transposes == 0, conv.ops


def unfused_reference(model, feeds):
    """onnxruntime with graph optimizations off. With them on, it fuses QDQ + Conv into
    QLinearConv, whose integer kernel is not the float math the ONNX graph defines
    (here it lands up to 16 quantization steps away); the converter implements the graph."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def test_constant_quantize_dequantize_folds():
    # float weights stored behind Q -> DQ (another exporter pattern) fold to a constant
    wf = image([4, 1, 1], spread=0.3)
    nodes = [
        helper.make_node("QuantizeLinear", ["wf", "s", "z"], ["wq"]),
        helper.make_node("DequantizeLinear", ["wq", "s", "z"], ["wd"]),
        helper.make_node("Add", ["x", "wd"], ["y"]),
    ]
    inits = {"wf": wf, "s": np.array(0.01, np.float32), "z": np.array(2, np.int8)}
    model = make_model(nodes, {"x": IMAGE}, ["y"], inits, opset=13)
    conv = check(model, {"x": image()}, transposes=0, nhwc_outputs=["y"])
    assert conv.ops == {"ADD": 1}, conv.ops


# -- rejections -------------------------------------------------------------------
def test_blocked_dequantize_is_unsupported():
    w = RNG.integers(-8, 8, size=[4, 8]).astype(np.int8)
    node = helper.make_node("DequantizeLinear", ["w", "s"], ["y"], axis=1, block_size=4)
    add = helper.make_node("Add", ["x", "y"], ["out"])
    model = make_model([node, add], {"x": [4, 8]}, ["out"], {"w": w, "s": np.full([4, 2], 0.1, np.float32)}, opset=21)
    with pytest.raises(UnsupportedModel, match="block_size=4"):
        convert_arrays(Converter(model), {"x": image([4, 8])})
