"""Activations and Softmax: onnxruntime vs converted fp32 TFLite, with layout checks."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from onnx_harness import check, make_model

from buildsys.converter.convert import Converter, convert_arrays
from buildsys.converter.errors import UnsupportedModel

RNG = np.random.default_rng(7)
IMAGE = [1, 4, 4, 4]  # H == W == C: a wrong axis choice still has the right shape


def wide(shape, scale=4.0, seed=0):
    """Inputs spread over [-3*scale, 3*scale] so every branch of a piecewise op is hit."""
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def nhwc(shape):
    """Keep a 4-D result channels-last at the output, as a following conv would take it."""
    return {"nhwc_outputs": ["y"]} if len(shape) == 4 else {}


def one_op(op, shape, attrs=None, opset=17, inputs=None, inits=None):
    names = inputs or ["x"]
    node = helper.make_node(op, names, ["y"], **(attrs or {}))
    return make_model([node], {"x": shape}, ["y"], inits, opset=opset)


NCHW = [1, 3, 5, 7]
POINTWISE = [
    # (op, attrs, opset, input shape, TFLite builtin it must map onto or None)
    ("Relu", {}, 11, IMAGE, None),
    ("Relu", {}, 17, NCHW, None),
    ("LeakyRelu", {}, 11, IMAGE, "LEAKY_RELU"),
    ("LeakyRelu", {"alpha": 0.2}, 17, NCHW, "LEAKY_RELU"),
    ("Elu", {}, 11, IMAGE, "ELU"),
    ("Elu", {"alpha": 0.5}, 17, NCHW, None),
    ("Selu", {}, 11, IMAGE, None),
    ("Selu", {"alpha": 1.5, "gamma": 2.0}, 17, NCHW, None),
    ("Celu", {}, 12, IMAGE, None),
    ("Celu", {"alpha": 2.5}, 17, NCHW, None),
    ("Sigmoid", {}, 11, IMAGE, "LOGISTIC"),
    ("HardSigmoid", {}, 11, IMAGE, None),
    ("HardSigmoid", {"alpha": 0.5, "beta": 0.25}, 17, NCHW, None),
    ("HardSigmoid", {"alpha": 1 / 6, "beta": 0.5}, 17, IMAGE, None),
    ("HardSwish", {}, 14, IMAGE, "HARD_SWISH"),
    ("HardSwish", {}, 17, NCHW, "HARD_SWISH"),
    ("Tanh", {}, 11, NCHW, "TANH"),
    ("Softplus", {}, 11, IMAGE, None),
    ("Softplus", {}, 17, NCHW, None),
    ("Softsign", {}, 11, IMAGE, None),
    ("Mish", {}, 18, NCHW, None),
    ("Gelu", {}, 20, IMAGE, "GELU"),
    ("Gelu", {"approximate": "tanh"}, 20, NCHW, "GELU"),
    ("ThresholdedRelu", {}, 11, IMAGE, None),
    ("ThresholdedRelu", {"alpha": -0.5}, 17, NCHW, None),
    ("ThresholdedRelu", {"alpha": 2.0}, 17, IMAGE, None),
]


@pytest.mark.parametrize("op,attrs,opset,shape,builtin", POINTWISE, ids=lambda v: str(v))
def test_pointwise_keeps_channels_last(op, attrs, opset, shape, builtin):
    model = one_op(op, shape, attrs, opset)
    conv = check(model, {"x": wide(shape)}, transposes=0, **nhwc(shape))
    if builtin:
        assert conv.ops.get(builtin) == 1, conv.ops


@pytest.mark.parametrize("op,shape", [("Softplus", [3, 10]), ("Elu", [2, 5, 6]), ("Relu", [2, 5, 6])])
def test_pointwise_rank2_and_rank3(op, shape):
    check(one_op(op, shape, opset=18), {"x": wide(shape)}, transposes=0)


def test_softplus_and_mish_do_not_overflow():
    # log(1 + exp(x)) is inf in float32 from x ~ 89; the result must stay x
    x = np.array([[-200.0, -90.0, -20.0, -1.0, 0.0, 1.0, 20.0, 90.0, 200.0, 1e4]], dtype=np.float32)
    for op in ("Softplus", "Mish"):
        check(one_op(op, list(x.shape), opset=18), {"x": x}, transposes=0)


# -- PRelu ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "shape,slope_shape,opset",
    [
        (IMAGE, [4, 1, 1], 11),
        (NCHW, [3, 1, 1], 17),
        (NCHW, [1, 3, 1, 1], 11),
        (NCHW, [7], 17),
        ([2, 6], [6], 11),
        ([2, 6], [1], 17),
        (IMAGE, [1], 17),
    ],
)
def test_prelu_slope_broadcast(shape, slope_shape, opset):
    slope = RNG.uniform(-0.5, 0.5, slope_shape).astype(np.float32)
    model = one_op("PRelu", shape, opset=opset, inputs=["x", "slope"], inits={"slope": slope})
    conv = check(model, {"x": wide(shape)}, transposes=0, **nhwc(shape))
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


@pytest.mark.parametrize(
    "opset,lo,hi,builtin",
    [
        (10, 0.0, 6.0, "RELU6"),
        (10, -1.5, None, None),
        (10, None, 2.5, None),
        (10, None, None, None),
        (11, 0.0, 6.0, "RELU6"),
        (11, 0.0, None, "RELU"),
        (11, -1.0, 1.0, "RELU_N1_TO_1"),
        (11, -1.5, None, None),
        (11, None, 2.5, None),
        (11, None, None, None),
        (13, -0.5, 3.0, None),
        (13, 2.0, -2.0, None),  # min > max: everything becomes max (Clip-6 in onnxruntime refuses this)
        (13, 0.0, 6.0, "RELU6"),
    ],
)
def test_clip_bounds(opset, lo, hi, builtin):
    conv = check(clip_model(opset, lo, hi), {"x": wide(IMAGE)}, transposes=0, nhwc_outputs=["y"])
    if builtin:
        assert conv.ops.get(builtin) == 1, conv.ops


def test_clip_computed_bound():
    node = helper.make_node("Clip", ["x", "lo", "hi"], ["y"])
    model = make_model([node], {"x": NCHW, "lo": [], "hi": []}, ["y"], opset=13)
    feeds = {"x": wide(NCHW), "lo": np.array(-1.25, np.float32), "hi": np.array(2.0, np.float32)}
    check(model, feeds, transposes=0, nhwc_outputs=["y"])


def test_clip_int32():
    node = helper.make_node("Clip", ["x", "lo", "hi"], ["y"])
    inits = {"lo": np.array(1, np.int32), "hi": np.array(3, np.int32)}
    model = make_model([node], {"x": ([2, 6], np.int32)}, ["y"], inits, opset=13)
    check(model, {"x": np.arange(-3, 9, dtype=np.int32).reshape(2, 6)})


# -- Softmax / LogSoftmax ----------------------------------------------------------
SOFTMAX_CASES = [
    # (shape, opset, axis or None for the default, result taken channels-last, TRANSPOSE ops)
    (IMAGE, 13, 1, True, 0),  # channels: already last in NHWC
    (NCHW, 13, 1, True, 0),
    (IMAGE, 13, -1, False, 1),  # W: to ONNX order once, the output stays there
    (NCHW, 13, None, False, 1),
    (NCHW, 13, 2, False, 2),  # H: to a layout with H last, then to ONNX order at the output
    ([3, 10], 13, 1, False, 0),
    ([3, 10], 13, -1, False, 0),
    ([3, 10], 13, 0, False, 2),
    ([2, 5, 6], 13, 1, False, 2),
    # opset < 13: flatten axes [axis:] ("coerce to 2D"), default axis 1; the
    # flattened axes' order is irrelevant, so NHWC serves for axis 0 and 1
    (IMAGE, 11, 1, True, 0),
    (NCHW, 11, None, True, 0),
    (NCHW, 11, 0, True, 0),
    (NCHW, 11, 2, False, 1),
    (NCHW, 11, -1, False, 1),
    ([3, 10], 11, 1, False, 0),
    ([3, 10], 11, 0, False, 0),
    ([2, 5, 6], 11, 1, False, 0),
]
LOG_SOFTMAX_CASES = [SOFTMAX_CASES[i] for i in (0, 2, 5, 9, 12)]


@pytest.mark.parametrize(
    "op,shape,opset,axis,channels_last,transposes",
    [("Softmax", *c) for c in SOFTMAX_CASES] + [("LogSoftmax", *c) for c in LOG_SOFTMAX_CASES],
    ids=lambda v: str(v),
)
def test_softmax_axes(op, shape, opset, axis, channels_last, transposes):
    attrs = {} if axis is None else {"axis": axis}
    options = nhwc(shape) if channels_last else {}
    conv = check(one_op(op, shape, attrs, opset), {"x": wide(shape, 2.0)}, transposes=transposes, **options)
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
