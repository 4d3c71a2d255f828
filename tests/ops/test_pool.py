"""MaxPool, AveragePool, LpPool and the global pools against onnxruntime.

Rank-4 inputs arrive channels-last and pooling stays there, so these convert
with no TRANSPOSE at all; the op histograms show which TF form was chosen
(SAME instead of an explicit pad, a divisor correction only where needed).
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from onnx_harness import check_ops, make_model, rejection

from buildsys.tflow.onnxsource import export_onnx
from buildsys.tflow.quantize import to_tflite
from buildsys.tflow.runtime import load_interpreter
from buildsys.tflow.samples import to_stored

PADS = ("PAD", "PADV2", "MIRROR_PAD")


def pool_model(op: str, shape, opset: int = 17, dtype=np.float32, outputs=("y",), **attrs):
    node = helper.make_node(op, ["x"], list(outputs), **attrs)
    return make_model([node], {"x": (shape, dtype)}, list(outputs), opset=opset)


def check_pool(model, transposes: int = 0, absent=(), present=(), feeds=None):
    # conv/pool outputs are compared in the NHWC layout the ops produce
    return check_ops(model, feeds, transposes, absent, present, nhwc_outputs=["y"])


# (shape, attrs, ops that must not appear, ops that must appear)
MAX_CASES = [
    pytest.param([1, 4, 7, 7], dict(kernel_shape=[3, 3], strides=[2, 2]), PADS, (), id="valid"),
    pytest.param(
        [1, 4, 8, 8], dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1), PADS, (), id="ceil-overhang-is-same"
    ),
    pytest.param(
        [1, 4, 7, 7], dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]), PADS, (), id="pads-equal-same"
    ),
    pytest.param(
        [1, 4, 8, 8],
        dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        (),
        ("MIRROR_PAD",),
        id="pads-not-same",
    ),
    pytest.param(
        [1, 4, 7, 7], dict(kernel_shape=[3, 3], strides=[2, 2], pads=[0, 1, 1, 0]), (), ("MIRROR_PAD",), id="asymmetric"
    ),
    pytest.param(
        [1, 4, 7, 7],
        dict(kernel_shape=[3, 3], strides=[2, 2], pads=[0, 1, 1, 0], ceil_mode=1),
        (),
        (),
        id="asymmetric-ceil",
    ),
    pytest.param(
        [1, 4, 8, 8],
        dict(kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 1, 1], ceil_mode=1),
        (),
        (),
        id="ceil-drops-window-in-end-pad",
    ),
    pytest.param(
        [1, 4, 9, 8],
        dict(kernel_shape=[3, 2], strides=[2, 3], pads=[1, 0, 1, 1], ceil_mode=1),
        (),
        (),
        id="rectangular-ceil",
    ),
    pytest.param(
        [1, 4, 8, 8],
        dict(kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 2, 2]),
        PADS,
        (),
        id="end-pad-partly-unused-is-same",
    ),
    pytest.param(
        [1, 4, 8, 8], dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"), PADS, (), id="same-upper"
    ),
    pytest.param(
        [1, 4, 8, 8],
        dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_LOWER"),
        (),
        ("MIRROR_PAD",),
        id="same-lower",
    ),
    pytest.param(
        [1, 4, 8, 8], dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="VALID", ceil_mode=1), (), (), id="valid-ceil"
    ),
    # ceil_mode overhang of 2 > kernel // 2: mirroring could copy a row from outside the window
    pytest.param(
        [1, 4, 7, 7],
        dict(kernel_shape=[3, 3], strides=[3, 3], ceil_mode=1),
        ("MIRROR_PAD",),
        ("CONCATENATION",),
        id="overhang-past-half-kernel",
    ),
    pytest.param(
        [1, 4, 7, 6],
        dict(kernel_shape=[3, 2], strides=[1, 2], pads=[2, 0, 0, 1]),
        ("MIRROR_PAD",),
        ("CONCATENATION",),
        id="pad-past-half-kernel",
    ),
    pytest.param([1, 4, 4, 4], dict(kernel_shape=[2, 2], strides=[2, 2]), PADS, (), id="hwc-equal"),
    pytest.param(
        [1, 4, 4, 4],
        dict(kernel_shape=[3, 3], strides=[1, 1], pads=[1, 0, 0, 1]),
        (),
        ("MIRROR_PAD",),
        id="hwc-equal-asymmetric",
    ),
]


@pytest.mark.parametrize("shape, attrs, absent, present", MAX_CASES)
def test_max_pool(shape, attrs, absent, present, request):
    # alternate opsets 11 and 17 over the cases (same semantics, both handler lookups exercised)
    opset = 11 if request.node.callspec.indices["shape"] % 2 else 17
    check_pool(pool_model("MaxPool", shape, opset, **attrs), absent=absent, present=present)


@pytest.mark.parametrize("k", [5, 9, 13])
def test_max_pool_spp(k):
    # YOLO's SPP block: stride 1, pad k//2 keeps the size, which is TF SAME (no PAD op)
    model = pool_model("MaxPool", [1, 8, 20, 20], kernel_shape=[k, k], strides=[1, 1], pads=[k // 2] * 4)
    conv = check_pool(model, absent=PADS)
    assert conv.ops == {"MAX_POOL_2D": 1}


@pytest.mark.parametrize("opset", [8, 10, 12])
def test_max_pool_older_opsets(opset):
    attrs = dict(kernel_shape=[3, 3], strides=[2, 2], pads=[0, 1, 1, 0])
    if opset >= 10:
        attrs["ceil_mode"] = 1
    check_pool(pool_model("MaxPool", [1, 3, 9, 9], opset, **attrs))


@pytest.mark.parametrize(
    "attrs, form",
    [
        pytest.param(dict(pads=[1, 0, 1, 0]), "MIRROR_PAD", id="mirrored"),
        pytest.param(dict(pads=[2, 0, 0, 2]), "CONCATENATION", id="edge-copies"),
    ],
)
def test_max_pool_padding_never_wins(attrs, form):
    # all inputs far below zero, smallest at the borders: a zero pad, or a border value copied
    # into a window that does not hold it, would show up as the maximum
    model = pool_model("MaxPool", [1, 2, 6, 6], kernel_shape=[3, 3], strides=[2, 2], **attrs)
    x = -100.0 - np.random.default_rng(0).random([1, 2, 6, 6]).astype(np.float32)
    x[:, :, [0, -1], :] -= 50
    x[:, :, :, [0, -1]] -= 50
    check_pool(model, feeds={"x": x}, present=(form,))


def test_max_pool_padding_keeps_int8_range(tmp_path):
    # a sentinel pad value (-inf, lowest float) would join the int8 range shared through the PAD
    # and flatten the conv before it to a few levels; edge padding keeps the calibrated range
    w = np.random.default_rng(0).standard_normal([4, 4, 3, 3]).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("MaxPool", ["c"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[0, 1, 1, 0]),
    ]
    model = make_model(nodes, {"x": [1, 4, 8, 8]}, ["y"], {"w": w})
    signature = export_onnx(model, tmp_path / "float.pb", nhwc_outputs=["y"])
    calib = to_stored(
        {"x": np.random.default_rng(1).standard_normal([8, 4, 8, 8]).astype(np.float32)}, signature.inputs
    )
    data = to_tflite(tmp_path / "float.pb", signature, "int8", calib)
    scales = [t["quantization"][0] for t in load_interpreter(data).get_tensor_details()]
    assert 0 < max(scales) < 1, scales


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
def test_max_pool_integer(dtype):
    # integer rank-4 inputs arrive NCHW (only float images come channels-last): one transpose in
    model = pool_model("MaxPool", [1, 3, 7, 7], 12, dtype, kernel_shape=[3, 3], strides=[2, 2], pads=[0, 1, 1, 0])
    info = np.iinfo(dtype)
    x = np.random.default_rng(1).integers(info.min, info.max, [1, 3, 7, 7], endpoint=True).astype(dtype)
    check_pool(model, transposes=1, feeds={"x": x})


def test_max_pool_1d():
    model = pool_model("MaxPool", [1, 4, 9], kernel_shape=[3], strides=[2], pads=[1, 0], ceil_mode=1)
    # the rank-3 graph input arrives in ONNX order; the only transpose brings it channels-last
    check_pool(model, transposes=1)


def test_max_pool_indices_rejected():
    model = pool_model("MaxPool", [1, 2, 6, 6], outputs=("y", "idx"), kernel_shape=[2, 2], strides=[2, 2])
    assert "Indices" in rejection(model)


def test_max_pool_dilation_rejected():
    model = pool_model("MaxPool", [1, 2, 9, 9], kernel_shape=[3, 3], dilations=[2, 2])
    assert "dilation" in rejection(model)


def test_max_pool_trivial_dilation():
    # a dilation along a unit kernel axis changes nothing
    check_pool(pool_model("MaxPool", [1, 2, 9, 9], kernel_shape=[1, 3], dilations=[2, 1], strides=[2, 2]))


# (shape, attrs), each run with count_include_pad 0 and 1
AVG_CASES = [
    pytest.param(
        [1, 4, 7, 7], dict(kernel_shape=[3, 3], strides=[2, 2], pads=[0, 1, 1, 0], ceil_mode=1), id="asymmetric-ceil"
    ),
    pytest.param([1, 4, 8, 8], dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1), id="ceil-overhang"),
    pytest.param(
        [1, 4, 8, 8],
        dict(kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 1, 1], ceil_mode=1),
        id="ceil-drops-window-in-end-pad",
    ),
    pytest.param(
        [1, 4, 9, 8], dict(kernel_shape=[3, 2], strides=[2, 3], pads=[1, 0, 1, 1], ceil_mode=1), id="rectangular-ceil"
    ),
    pytest.param(
        [1, 4, 8, 8], dict(kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 2, 2]), id="end-pad-partly-unused"
    ),
    pytest.param([1, 4, 8, 8], dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"), id="same-upper"),
    pytest.param([1, 4, 8, 8], dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_LOWER"), id="same-lower"),
    pytest.param(
        [1, 4, 7, 7], dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="VALID", ceil_mode=1), id="valid-ceil"
    ),
    pytest.param([1, 4, 4, 4], dict(kernel_shape=[3, 3], strides=[1, 1], pads=[1, 0, 0, 1]), id="hwc-equal-asymmetric"),
]


@pytest.mark.parametrize("count_include_pad", [0, 1])
@pytest.mark.parametrize("shape, attrs", AVG_CASES)
def test_average_pool(shape, attrs, count_include_pad):
    model = pool_model("AveragePool", shape, count_include_pad=count_include_pad, **attrs)
    check_pool(model)


@pytest.mark.parametrize(
    "shape, count_include_pad, absent, present",
    [
        # pads (1, 1) on 7 with stride 2 are TF SAME's; SAME never counts the pad: count_include_pad=0
        pytest.param([1, 4, 7, 7], 0, PADS + ("MUL",), (), id="exclude-is-same"),
        # counting the pad: zero PAD then VALID, whose divisor is already the full window
        pytest.param([1, 4, 7, 7], 1, ("MUL",), ("PAD",), id="include-is-pad-valid"),
        # on 8, TF SAME would pad (0, 1): explicit pad, and the border divisors need a correction
        pytest.param([1, 4, 8, 8], 0, (), ("PAD", "MUL"), id="exclude-needs-divisor-map"),
        pytest.param([1, 4, 8, 8], 1, ("MUL",), ("PAD",), id="include-not-same"),
    ],
)
def test_average_pool_forms(shape, count_include_pad, absent, present):
    attrs = dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=count_include_pad)
    check_pool(pool_model("AveragePool", shape, **attrs), absent=absent, present=present)


@pytest.mark.parametrize("opset", [7, 10, 11, 19])
def test_average_pool_opsets(opset):
    attrs = dict(kernel_shape=[3, 3], strides=[2, 2], pads=[0, 1, 1, 0], count_include_pad=1)
    if opset >= 10:
        attrs["ceil_mode"] = 1
    if opset >= 19:
        attrs["dilations"] = [1, 1]
    check_pool(pool_model("AveragePool", [1, 3, 9, 9], opset, **attrs))


def test_average_pool_dilation_rejected():
    model = pool_model("AveragePool", [1, 2, 9, 9], 19, kernel_shape=[3, 3], dilations=[2, 2])
    assert "dilation" in rejection(model)


@pytest.mark.parametrize("count_include_pad", [0, 1])
def test_average_pool_1d(count_include_pad):
    attrs = dict(kernel_shape=[3], strides=[2], pads=[1, 0], ceil_mode=1, count_include_pad=count_include_pad)
    check_pool(pool_model("AveragePool", [1, 4, 10], **attrs), transposes=1)


def test_average_pool_3d_rejected():
    model = pool_model("AveragePool", [1, 2, 4, 4, 4], kernel_shape=[2, 2, 2])
    assert "2-D" in rejection(model)


@pytest.mark.parametrize(
    "p, opset, attrs",
    [
        pytest.param(2, 11, dict(pads=[1, 0, 1, 0]), id="p2"),
        pytest.param(1, 11, dict(pads=[0, 1, 1, 0]), id="p1"),
        pytest.param(2, 18, dict(pads=[1, 0, 1, 0], ceil_mode=1), id="p2-ceil"),
        pytest.param(2, 17, dict(auto_pad="SAME_UPPER"), id="p2-same"),
    ],
)
def test_lp_pool(p, opset, attrs):
    model = pool_model("LpPool", [1, 4, 8, 8], opset, kernel_shape=[3, 3], strides=[2, 2], p=p, **attrs)
    check_pool(model, absent=("POW",))


def test_lp_pool_other_p_rejected():
    assert "p=3" in rejection(pool_model("LpPool", [1, 2, 6, 6], kernel_shape=[2, 2], p=3))


@pytest.mark.parametrize("shape, opset", [([1, 4, 4, 4], 11), ([1, 3, 5, 8], 17)])
@pytest.mark.parametrize("op, kernel", [("GlobalAveragePool", "MEAN"), ("GlobalMaxPool", "REDUCE_MAX")])
def test_global_pool(op, kernel, shape, opset):
    conv = check_pool(pool_model(op, shape, opset))
    assert conv.ops == {kernel: 1}


@pytest.mark.parametrize("p", [1, 2])
def test_global_lp_pool(p):
    check_pool(pool_model("GlobalLpPool", [1, 4, 5, 6], p=p), absent=("POW",))


def test_global_average_pool_1d():
    check_pool(pool_model("GlobalAveragePool", [1, 4, 9]), transposes=1)


def test_global_pool_then_pool_keeps_layout():
    # GAP then another channels-last op: the pooled value keeps its layout, no transpose between
    nodes = [
        helper.make_node("GlobalAveragePool", ["x"], ["g"]),
        helper.make_node("MaxPool", ["g"], ["y"], kernel_shape=[1, 1]),
    ]
    check_pool(make_model(nodes, {"x": [1, 4, 4, 4]}, ["y"]))
