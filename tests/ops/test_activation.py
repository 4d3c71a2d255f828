"""Activations and Softmax: onnxruntime vs converted fp32 TFLite, with layout checks."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from buildsys.converter.convert import Converter, convert_arrays
from buildsys.converter.errors import UnsupportedModel
from onnx_harness import check, make_model

RNG = np.random.default_rng(7)
IMAGE = [1, 4, 4, 4]  # H == W == C: a wrong axis choice still has the right shape


def wide(shape, scale=4.0, seed=0):
    """Inputs spread over [-3*scale, 3*scale] so every branch of a piecewise op is hit."""
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def one_op(op, shape, attrs=None, opset=17, inputs=None, inits=None):
    names = inputs or ["x"]
    node = helper.make_node(op, names, ["y"], **(attrs or {}))
    return make_model([node], {"x": shape}, ["y"], inits, opset=opset)


POINTWISE = [
    ("Relu", {}, 11, None),
    ("Relu", {}, 17, None),
    ("LeakyRelu", {}, 11, "LEAKY_RELU"),
    ("LeakyRelu", {"alpha": 0.2}, 17, "LEAKY_RELU"),
    ("Elu", {}, 11, "ELU"),
    ("Elu", {"alpha": 0.5}, 17, None),
    ("Selu", {}, 11, None),
    ("Selu", {"alpha": 1.5, "gamma": 2.0}, 17, None),
    ("Celu", {}, 12, None),
    ("Celu", {"alpha": 2.5}, 17, None),
    ("Sigmoid", {}, 11, "LOGISTIC"),
    ("Sigmoid", {}, 17, "LOGISTIC"),
    ("HardSigmoid", {}, 11, None),
    ("HardSigmoid", {"alpha": 0.5, "beta": 0.25}, 17, None),
    ("HardSigmoid", {"alpha": 1 / 6, "beta": 0.5}, 17, None),
    ("HardSwish", {}, 14, "HARD_SWISH"),
    ("HardSwish", {}, 17, "HARD_SWISH"),
    ("Tanh", {}, 11, "TANH"),
    ("Softplus", {}, 11, None),
    ("Softplus", {}, 17, None),
    ("Softsign", {}, 11, None),
    ("Mish", {}, 18, None),
    ("Gelu", {}, 20, "GELU"),
    ("Gelu", {"approximate": "tanh"}, 20, "GELU"),
    ("ThresholdedRelu", {}, 11, None),
    ("ThresholdedRelu", {"alpha": -0.5}, 17, None),
    ("ThresholdedRelu", {"alpha": 2.0}, 17, None),
]


@pytest.mark.parametrize("op,attrs,opset,builtin", POINTWISE, ids=lambda v: str(v))
@pytest.mark.parametrize("shape", [IMAGE, [1, 3, 5, 7]], ids=["trap", "nchw"])
def test_pointwise_keeps_channels_last(op, attrs, opset, builtin, shape):
    model = one_op(op, shape, attrs, opset)
    conv = check(model, {"x": wide(shape)}, transposes=0)
    if builtin:
        assert conv.ops.get(builtin) == 1, conv.ops


@pytest.mark.parametrize("op", ["Relu", "Sigmoid", "Softplus", "Mish", "Elu"])
def test_pointwise_rank2_and_rank3(op):
    check(one_op(op, [3, 10], opset=18), {"x": wide([3, 10])}, transposes=0)
    check(one_op(op, [2, 5, 6], opset=18), {"x": wide([2, 5, 6])}, transposes=0)


def test_softplus_and_mish_do_not_overflow():
    # log(1 + exp(x)) is inf in float32 from x ~ 89; the result must stay x
    x = np.array([[-200.0, -90.0, -20.0, -1.0, 0.0, 1.0, 20.0, 90.0, 200.0, 1e4]], dtype=np.float32)
    for op in ("Softplus", "Mish"):
        check(one_op(op, list(x.shape), opset=18), {"x": x}, transposes=0)


# -- PRelu ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "shape,slope_shape",
    [
        (IMAGE, [4, 1, 1]),
        ([1, 3, 5, 7], [3, 1, 1]),
        ([1, 3, 5, 7], [1, 3, 1, 1]),
        ([1, 3, 5, 7], [7]),
        ([2, 6], [6]),
        ([2, 6], [1]),
        (IMAGE, [1]),
    ],
)
@pytest.mark.parametrize("opset", [11, 17])
def test_prelu_slope_broadcast(shape, slope_shape, opset):
    slope = RNG.uniform(-0.5, 0.5, slope_shape).astype(np.float32)
    model = one_op("PRelu", shape, opset=opset, inputs=["x", "slope"], inits={"slope": slope})
    conv = check(model, {"x": wide(shape)}, transposes=0)
    expected = "LEAKY_RELU" if slope.size == 1 else "PRELU"
    assert conv.ops.get(expected) == 1, conv.ops


def test_prelu_computed_slope():
    node = helper.make_node("PRelu", ["x", "s"], ["y"])
    model = make_model([node], {"x": [2, 6], "s": [6]}, ["y"])
    check(model, {"x": wide([2, 6]), "s": wide([6], 0.3, seed=1)}, transposes=0)


# -- Clip -----------------------------------------------------------------------
def clip_model(opset, lo, hi, shape=IMAGE):
    """lo/hi: a number, or None to leave the bound out."""
    if opset < 11:
        attrs = {k: v for k, v in (("min", lo), ("max", hi)) if v is not None}
        return one_op("Clip", shape, attrs, opset)
    inits = {}
    names = ["x", "", ""]
    for i, (key, v) in enumerate((("lo", lo), ("hi", hi)), start=1):
        if v is not None:
            names[i] = key
            inits[key] = np.array(v, dtype=np.float32)
    while names[-1] == "":
        names.pop()
    return one_op("Clip", shape, opset=opset, inputs=names, inits=inits)


@pytest.mark.parametrize("opset", [10, 11, 13])
@pytest.mark.parametrize(
    "lo,hi,builtin",
    [
        (0.0, 6.0, "RELU6"),
        (0.0, None, "RELU"),
        (-1.0, 1.0, "RELU_N1_TO_1"),
        (-1.5, None, None),
        (None, 2.5, None),
        (None, None, None),
        (-0.5, 3.0, None),
        (2.0, -2.0, None),  # min > max: everything becomes max
    ],
)
def test_clip_bounds(opset, lo, hi, builtin):
    conv = check(clip_model(opset, lo, hi), {"x": wide(IMAGE)}, transposes=0)
    if builtin:
        assert conv.ops.get(builtin) == 1, conv.ops


def test_clip_computed_bound():
    node = helper.make_node("Clip", ["x", "lo", "hi"], ["y"])
    model = make_model([node], {"x": [1, 3, 5, 7], "lo": [], "hi": []}, ["y"], opset=13)
    feeds = {"x": wide([1, 3, 5, 7]), "lo": np.array(-1.25, np.float32), "hi": np.array(2.0, np.float32)}
    check(model, feeds, transposes=0)


def test_clip_int32():
    node = helper.make_node("Clip", ["x", "lo", "hi"], ["y"])
    inits = {"lo": np.array(1, np.int32), "hi": np.array(3, np.int32)}
    model = make_model([node], {"x": ([2, 6], np.int32)}, ["y"], inits, opset=13)
    check(model, {"x": np.arange(-3, 9, dtype=np.int32).reshape(2, 6)})


# -- Softmax / LogSoftmax ----------------------------------------------------------
SOFTMAX_CASES = [
    # (shape, opset, axis or None for the default, TRANSPOSE ops expected)
    (IMAGE, 13, 1, 0),  # channels: already last in NHWC
    ([1, 3, 5, 7], 13, 1, 0),
    (IMAGE, 13, -1, 1),  # W: to ONNX order once, output stays there
    ([1, 3, 5, 7], 13, None, 1),
    ([1, 3, 5, 7], 13, 2, None),
    ([3, 10], 13, 1, 0),
    ([3, 10], 13, -1, 0),
    ([3, 10], 13, 0, None),
    ([2, 5, 6], 13, 1, None),
    # opset < 13: flatten axes [axis:] ("coerce to 2D"), default axis 1
    (IMAGE, 11, 1, 1),
    ([1, 3, 5, 7], 11, None, 1),
    ([1, 3, 5, 7], 11, 2, 1),
    ([1, 3, 5, 7], 11, -1, 1),
    ([1, 3, 5, 7], 11, 0, 1),
    ([3, 10], 11, 1, 0),
    ([3, 10], 11, 0, 0),
    ([2, 5, 6], 11, 1, 0),
]


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("shape,opset,axis,transposes", SOFTMAX_CASES, ids=lambda v: str(v))
def test_softmax_axes(op, shape, opset, axis, transposes):
    attrs = {} if axis is None else {"axis": axis}
    conv = check(one_op(op, shape, attrs, opset), {"x": wide(shape, 2.0)}, transposes=transposes)
    assert conv.ops.get("SOFTMAX" if op == "Softmax" else "LOG_SOFTMAX") == 1, conv.ops


def test_softmax_after_relu_stays_channels_last():
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Softmax", ["r"], ["s"], axis=1),
        helper.make_node("Sigmoid", ["s"], ["y"]),
    ]
    model = make_model(nodes, {"x": IMAGE}, ["y"], opset=13)
    check(model, {"x": wide(IMAGE)}, transposes=0, nhwc_outputs=["y"])


# -- rejections -------------------------------------------------------------------
def test_gelu_rejects_unknown_approximation():
    model = one_op("Gelu", IMAGE, {"approximate": "tanh"}, 20)
    model.graph.node[0].attribute[0].s = b"fast"  # past the checker, which would refuse it
    with pytest.raises(UnsupportedModel, match="approximate='fast'"):
        convert_arrays(Converter(model), {"x": wide(IMAGE)})
