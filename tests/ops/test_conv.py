"""Conv and ConvTranspose against onnxruntime.

Rank-4 inputs arrive channels-last and the convs compute there, so these
convert with no TRANSPOSE; the op histograms show which TF form was chosen
(SAME instead of an explicit pad, DEPTHWISE_CONV_2D, one conv per group, the
bias folded into the conv).
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from onnx_harness import check_ops, make_model, rejection

PADS = ("PAD", "PADV2")


def weights(shape, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def conv_model(op: str, x_shape, w_shape, bias: bool = True, opset: int = 17, seed: int = 0, **attrs):
    """`op` over x with constant weights (and bias sized for the output channels)."""
    group = attrs.get("group", 1)
    out_channels = w_shape[0] if op == "Conv" else w_shape[1] * group
    inits = {"w": weights(w_shape, seed)}
    if bias:
        inits["b"] = weights([out_channels], seed + 1)
    node = helper.make_node(op, ["x", *inits], ["y"], **attrs)
    return make_model([node], {"x": x_shape}, ["y"], inits, opset=opset)


def check_conv(model, transposes: int = 0, absent=(), present=()):
    # conv/pool outputs are compared in the NHWC layout the ops produce
    return check_ops(model, None, transposes, absent, present, nhwc_outputs=["y"])


# -- Conv -------------------------------------------------------------------------
# (x shape, weight shape, attrs, ops that must not appear, ops that must appear)
CONV_CASES = [
    pytest.param([1, 3, 8, 8], [6, 3, 3, 3], dict(pads=[1, 1, 1, 1]), PADS, (), id="pads-equal-same"),
    pytest.param([1, 3, 8, 8], [6, 3, 3, 3], {}, PADS, (), id="valid"),
    pytest.param([1, 3, 8, 8], [6, 3, 1, 1], {}, PADS, (), id="pointwise"),
    pytest.param(
        [1, 3, 8, 8], [6, 3, 3, 3], dict(pads=[0, 1, 1, 0], strides=[2, 2]), (), ("PAD",), id="asymmetric-stride2"
    ),
    pytest.param(
        [1, 3, 8, 8], [6, 3, 3, 3], dict(pads=[1, 1, 1, 1], strides=[2, 2]), (), ("PAD",), id="stride2-even-not-same"
    ),
    pytest.param(
        [1, 3, 9, 9], [6, 3, 3, 3], dict(pads=[1, 1, 1, 1], strides=[2, 2]), PADS, (), id="stride2-odd-is-same"
    ),
    pytest.param([1, 3, 9, 8], [6, 3, 3, 1], dict(pads=[1, 0, 1, 0], strides=[2, 1]), (), (), id="rectangular"),
    pytest.param([1, 3, 9, 9], [6, 3, 3, 3], dict(dilations=[2, 2], pads=[2, 2, 2, 2]), PADS, (), id="dilation2-same"),
    pytest.param(
        [1, 3, 11, 11],
        [6, 3, 3, 3],
        dict(dilations=[2, 2], strides=[2, 2], pads=[1, 2, 0, 1]),
        (),
        (),
        id="dilation2-stride2",
    ),
    pytest.param([1, 3, 8, 8], [6, 3, 3, 3], dict(auto_pad="SAME_UPPER", strides=[2, 2]), PADS, (), id="same-upper"),
    pytest.param(
        [1, 3, 8, 8], [6, 3, 3, 3], dict(auto_pad="SAME_LOWER", strides=[2, 2]), (), ("PAD",), id="same-lower"
    ),
    pytest.param([1, 3, 7, 7], [6, 3, 2, 2], dict(auto_pad="SAME_LOWER"), (), ("PAD",), id="same-lower-even-k"),
    pytest.param([1, 3, 8, 8], [6, 3, 3, 3], dict(auto_pad="VALID", strides=[2, 2]), PADS, (), id="auto-valid"),
    pytest.param([1, 4, 4, 4], [4, 4, 3, 3], dict(pads=[1, 1, 1, 1]), PADS, (), id="hwc-equal"),
    pytest.param([1, 4, 4, 4], [6, 4, 2, 2], dict(pads=[0, 1, 1, 0]), (), (), id="hwc-equal-asymmetric"),
    pytest.param(
        [1, 4, 8, 8],
        [6, 2, 3, 3],
        dict(group=2, pads=[1, 1, 1, 1]),
        ("DEPTHWISE_CONV_2D", "ADD"),
        ("SPLIT", "CONCATENATION"),
        id="group2",
    ),
    pytest.param(
        [1, 6, 8, 8],
        [6, 2, 3, 3],
        dict(group=3, strides=[2, 2], pads=[0, 1, 1, 0]),
        ("ADD",),
        (),
        id="group3-asymmetric",
    ),
    pytest.param(
        [1, 4, 8, 8],
        [4, 1, 3, 3],
        dict(group=4, pads=[1, 1, 1, 1]),
        ("CONV_2D", "ADD") + PADS,
        ("DEPTHWISE_CONV_2D",),
        id="depthwise",
    ),
    pytest.param(
        [1, 4, 8, 8],
        [8, 1, 3, 3],
        dict(group=4, pads=[1, 1, 1, 1]),
        ("CONV_2D",),
        ("DEPTHWISE_CONV_2D",),
        id="depthwise-multiplier2",
    ),
    pytest.param(
        [1, 4, 9, 9],
        [4, 1, 3, 3],
        dict(group=4, dilations=[2, 2], strides=[2, 2], pads=[2, 1, 1, 2]),
        ("CONV_2D", "SPACE_TO_BATCH_ND"),
        ("DEPTHWISE_CONV_2D",),
        id="depthwise-dilated-stride2",
    ),
    pytest.param(
        [1, 4, 8, 8],
        [12, 1, 5, 5],
        dict(group=4, strides=[2, 2], auto_pad="SAME_UPPER"),
        ("CONV_2D",) + PADS,
        ("DEPTHWISE_CONV_2D",),
        id="depthwise-multiplier3-same",
    ),
]


@pytest.mark.parametrize("x_shape, w_shape, attrs, absent, present", CONV_CASES)
def test_conv(x_shape, w_shape, attrs, absent, present, request):
    # alternate opsets 11 and 17 over the cases (same semantics, both handler lookups exercised)
    opset = 11 if request.node.callspec.indices["x_shape"] % 2 else 17
    check_conv(conv_model("Conv", x_shape, w_shape, opset=opset, **attrs), absent=absent, present=present)


@pytest.mark.parametrize("opset", [7, 11, 17])
def test_conv_opsets(opset):
    model = conv_model("Conv", [1, 3, 9, 9], [4, 3, 3, 3], opset=opset, pads=[0, 1, 1, 0], strides=[2, 2])
    check_conv(model)


def test_conv_bias_folds_into_conv():
    conv = check_conv(conv_model("Conv", [1, 3, 8, 8], [6, 3, 3, 3], pads=[1, 1, 1, 1]))
    assert conv.ops == {"CONV_2D": 1}


@pytest.mark.parametrize("group", [1, 2, 4])
def test_conv_without_bias(group):
    check_conv(conv_model("Conv", [1, 4, 8, 8], [8, 4 // group, 3, 3], bias=False, group=group, pads=[1, 0, 1, 0]))


def test_conv_runtime_bias():
    # a bias computed at run time (here a graph input) is added, not folded
    w = weights([6, 3, 3, 3], 0)
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1])
    model = make_model([node], {"x": [1, 3, 8, 8], "b": [6]}, ["y"], {"w": w})
    check_conv(model)


@pytest.mark.parametrize(
    "x_shape, w_shape, attrs",
    [
        pytest.param([1, 4, 9], [6, 4, 3], dict(pads=[1, 1]), id="same"),
        pytest.param([1, 4, 10], [6, 2, 3], dict(group=2, strides=[2], pads=[0, 1]), id="group2-asymmetric"),
        pytest.param([1, 4, 10], [8, 1, 3], dict(group=4, dilations=[2], pads=[2, 1]), id="depthwise-dilated"),
        pytest.param([1, 4, 10], [6, 4, 3], dict(strides=[2], auto_pad="SAME_LOWER"), id="same-lower"),
    ],
)
def test_conv_1d(x_shape, w_shape, attrs):
    # the rank-3 graph input arrives in ONNX order; the only transpose brings it channels-last
    check_conv(conv_model("Conv", x_shape, w_shape, **attrs), transposes=1)


@pytest.mark.parametrize(
    "w_shape, attrs",
    [
        pytest.param([6, 4, 3, 3, 3], dict(pads=[1, 1, 1, 1, 1, 1]), id="same"),
        pytest.param([6, 2, 3, 3, 3], dict(group=2, strides=[2, 2, 2], pads=[1, 0, 1, 0, 1, 1]), id="group2"),
    ],
)
def test_conv_3d(w_shape, attrs):
    check_conv(conv_model("Conv", [1, 4, 5, 6, 7], w_shape, **attrs), transposes=1, present=("CONV_3D",))


def test_conv_runtime_weights_rejected():
    node = helper.make_node("Conv", ["x", "w"], ["y"])
    model = make_model([node], {"x": [1, 3, 6, 6], "w": [4, 3, 3, 3]}, ["y"])
    assert "constant" in rejection(model)


def test_conv_chain_stays_channels_last():
    # conv -> depthwise -> conv: no layout changes anywhere in between
    inits = {"w1": weights([8, 4, 3, 3], 0), "w2": weights([8, 1, 3, 3], 1), "w3": weights([4, 8, 1, 1], 2)}
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Conv", ["a", "w2"], ["b"], group=8, pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["b", "w3"], ["y"]),
    ]
    check_conv(make_model(nodes, {"x": [1, 4, 8, 8]}, ["y"], inits))


# -- ConvTranspose ----------------------------------------------------------------
# (x shape, weight shape [C_in, C_out/group, k...], attrs, ops that must not appear, ops that must appear)
TRANSPOSE_CASES = [
    pytest.param(
        [1, 4, 5, 5],
        [4, 6, 3, 3],
        dict(strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1]),
        (),
        ("SLICE",),
        id="k3-s2-p1-outpad1",
    ),
    pytest.param(
        [1, 4, 5, 5], [4, 6, 4, 4], dict(strides=[2, 2], pads=[1, 1, 1, 1]), ("SLICE", "ADD"), (), id="k4-s2-p1-is-same"
    ),
    pytest.param(
        [1, 4, 5, 5], [4, 6, 3, 3], dict(strides=[2, 2], pads=[1, 0, 1, 0]), ("ADD",), ("SLICE",), id="k3-s2-pads-1010"
    ),
    pytest.param(
        [1, 4, 5, 5],
        [4, 6, 3, 3],
        dict(strides=[2, 2], pads=[1, 0, 1, 0], output_padding=[1, 0]),
        (),
        (),
        id="k3-s2-pads-1010-outpad10",
    ),
    pytest.param(
        [1, 4, 5, 6],
        [4, 6, 4, 3],
        dict(strides=[2, 2], pads=[0, 1, 1, 0], output_padding=[0, 1]),
        (),
        (),
        id="k4x3-pads-0110-outpad01",
    ),
    pytest.param(
        [1, 4, 5, 5], [4, 6, 3, 3], dict(strides=[3, 2], output_padding=[2, 1]), ("SLICE",) + PADS, (), id="outpad-only"
    ),
    pytest.param(
        [1, 4, 5, 5], [4, 6, 3, 3], dict(strides=[2, 2], dilations=[2, 2], pads=[1, 2, 0, 1]), (), (), id="dilation2"
    ),
    pytest.param(
        [1, 4, 5, 5],
        [4, 6, 3, 3],
        dict(strides=[1, 1], dilations=[2, 1], pads=[2, 1, 2, 1]),
        (),
        (),
        id="dilation-stride1",
    ),
    pytest.param(
        [1, 4, 5, 5],
        [4, 3, 3, 3],
        dict(group=2, strides=[2, 2], pads=[1, 1, 1, 1]),
        ("ADD",),
        ("SPLIT", "CONCATENATION"),
        id="group2",
    ),
    pytest.param(
        [1, 4, 5, 5],
        [4, 2, 3, 3],
        dict(group=4, strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1]),
        (),
        (),
        id="depthwise-like-group4",
    ),
    pytest.param(
        [1, 4, 5, 5], [4, 6, 3, 3], dict(strides=[2, 2], auto_pad="SAME_UPPER"), ("SLICE",), (), id="same-upper-k3"
    ),
    pytest.param(
        [1, 4, 5, 5], [4, 6, 3, 3], dict(strides=[2, 2], auto_pad="SAME_LOWER"), (), ("SLICE",), id="same-lower-k3"
    ),
    pytest.param(
        [1, 4, 5, 5], [4, 6, 4, 4], dict(strides=[2, 2], auto_pad="SAME_LOWER"), ("SLICE",), (), id="same-lower-k4"
    ),
    pytest.param([1, 4, 5, 5], [4, 6, 3, 3], dict(strides=[2, 2], auto_pad="VALID"), ("SLICE",), (), id="auto-valid"),
    pytest.param(
        [1, 4, 5, 5], [4, 6, 3, 3], dict(strides=[2, 2], output_shape=[10, 9]), (), (), id="output-shape-odd-total"
    ),
    pytest.param(
        [1, 4, 5, 5], [4, 6, 3, 3], dict(strides=[2, 2], output_shape=[8, 12]), (), (), id="output-shape-beyond-canvas"
    ),
    pytest.param(
        [1, 4, 5, 5],
        [4, 6, 3, 3],
        dict(strides=[2, 2], output_shape=[10, 10], auto_pad="SAME_UPPER"),
        (),
        (),
        id="output-shape-same-upper",
    ),
    pytest.param(
        [1, 4, 5, 5],
        [4, 6, 3, 3],
        dict(strides=[2, 2], output_shape=[9, 10], auto_pad="SAME_LOWER"),
        (),
        (),
        id="output-shape-same-lower",
    ),
    pytest.param(
        [1, 4, 4, 4],
        [4, 4, 3, 3],
        dict(strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1]),
        (),
        (),
        id="hwc-equal",
    ),
    pytest.param([1, 4, 4, 4], [4, 4, 2, 2], dict(strides=[2, 2]), ("SLICE",), (), id="hwc-equal-k2s2"),
]


@pytest.mark.parametrize("x_shape, w_shape, attrs, absent, present", TRANSPOSE_CASES)
def test_conv_transpose(x_shape, w_shape, attrs, absent, present, request):
    opset = 11 if request.node.callspec.indices["x_shape"] % 2 else 17
    model = conv_model("ConvTranspose", x_shape, w_shape, opset=opset, **attrs)
    check_conv(model, absent=absent, present=present + ("TRANSPOSE_CONV",))


@pytest.mark.parametrize("group", [1, 2])
def test_conv_transpose_without_bias(group):
    attrs = dict(group=group, strides=[2, 2], pads=[1, 0, 1, 0], output_padding=[1, 1])
    check_conv(conv_model("ConvTranspose", [1, 4, 5, 5], [4, 3, 3, 3], bias=False, **attrs))


def test_conv_transpose_opset1():
    attrs = dict(strides=[2, 2], pads=[1, 1, 0, 1], output_padding=[1, 0])
    check_conv(conv_model("ConvTranspose", [1, 3, 5, 5], [3, 4, 3, 3], opset=7, **attrs))


def test_conv_transpose_1d():
    attrs = dict(strides=[2], pads=[1, 0], output_padding=[1])
    check_conv(conv_model("ConvTranspose", [1, 4, 7], [4, 6, 3], **attrs), transposes=1)


def test_conv_transpose_3d():
    attrs = dict(strides=[2, 2, 2], pads=[1, 0, 1, 0, 1, 1], output_padding=[1, 0, 0])
    model = conv_model("ConvTranspose", [1, 4, 3, 4, 5], [4, 6, 3, 3, 3], **attrs)
    check_conv(model, transposes=1, present=("CONV_3D_TRANSPOSE",))


def test_conv_transpose_runtime_weights_rejected():
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"])
    model = make_model([node], {"x": [1, 3, 6, 6], "w": [3, 4, 3, 3]}, ["y"])
    assert "constant" in rejection(model)


def test_conv_transpose_output_padding_at_stride_rejected():
    # onnxruntime refuses this too; TF cannot place rows a whole stride past the last tap
    attrs = dict(strides=[1, 1], dilations=[2, 2], output_padding=[1, 1])
    model = conv_model("ConvTranspose", [1, 3, 5, 5], [3, 4, 3, 3], **attrs)
    assert "stride" in rejection(model)
