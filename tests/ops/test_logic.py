"""Comparisons, boolean logic, IsNaN/IsInf against onnxruntime.

Image inputs arrive channels-last; comparison results feed Where or Cast and
must stay channels-last (no TRANSPOSE) whatever the broadcast partner is.
Inputs are small integers in float so Equal and the *OrEqual ops see ties.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx_harness import check, make_model

RNG = np.random.default_rng(11)
COMPARISONS = ["Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual"]


def ints(shape, dtype=np.float32):
    return RNG.integers(-2, 3, size=shape).astype(dtype)


# broadcast partner of an NCHW x: (input shape or None, initializer or None)
PARTNERS = {
    "same": ([1, 4, 4, 4], None),
    "per_channel_const": (None, ints([4, 1, 1])),
    "scalar_const": (None, np.array(1.0, np.float32)),
    "row_input": ([4], None),  # a rank-1 computed input broadcasts over W
}


@pytest.mark.parametrize("op", COMPARISONS)
@pytest.mark.parametrize("partner", ["same", "per_channel_const"])
def test_comparison_feeds_where(op, partner):
    model, feeds = _comparison_where(op, partner, opset=13)
    # condition, x and zero all stay channels-last; outputs are asked for NHWC
    check(model, feeds, transposes=0, nhwc_outputs=["y", "c"])


@pytest.mark.parametrize("op, partner", [("Less", "scalar_const"), ("Equal", "row_input"), ("Greater", "row_input")])
def test_comparison_broadcast_forms(op, partner):
    model, feeds = _comparison_where(op, partner, opset=11 if op != "Equal" else 19)
    # a rank-1 computed partner becomes [1,1,1,W] and reaches NHWC by a reshape, not a transpose
    check(model, feeds, transposes=0, nhwc_outputs=["y", "c"])


def _comparison_where(op, partner, opset):
    shape, init = PARTNERS[partner]
    inputs = {"x": [1, 4, 4, 4]}
    feeds = {"x": ints([1, 4, 4, 4])}
    if shape is not None:
        inputs["b"] = shape
        feeds["b"] = ints(shape)
    inits = {"zero": np.zeros([1], np.float32)}
    if init is not None:
        inits["b"] = init
    nodes = [
        helper.make_node(op, ["x", "b"], ["c"]),
        helper.make_node("Where", ["c", "x", "zero"], ["y"]),
    ]
    return make_model(nodes, inputs, ["y", "c"], inits, opset=opset), feeds


@pytest.mark.parametrize("op", ["Greater", "LessOrEqual"])
def test_comparison_cast_to_float(op):
    nodes = [
        helper.make_node(op, ["x", "y"], ["c"]),
        helper.make_node("Cast", ["c"], ["f"], to=TensorProto.FLOAT),
    ]
    model = make_model(nodes, {"x": [1, 3, 5, 6], "y": [1, 3, 5, 6]}, ["f"], opset=13)
    check(model, {"x": ints([1, 3, 5, 6]), "y": ints([1, 3, 5, 6])}, transposes=0, nhwc_outputs=["f"])


@pytest.mark.parametrize("op", ["Equal", "Greater", "Less"])
def test_int64_comparisons(op):
    node = helper.make_node(op, ["a", "b"], ["c"])
    model = make_model([node], {"a": ([2, 5], np.int64)}, ["c"], {"b": np.array([0, 1, 2, 3, 4], np.int64)})
    check(model, {"a": RNG.integers(0, 5, size=[2, 5]).astype(np.int64)}, transposes=0)


def test_all_const_comparison_folds():
    # shape-style arithmetic: Equal(const, const) must not reach TFLite
    nodes = [
        helper.make_node("Equal", ["s", "m"], ["c"]),
        helper.make_node("Where", ["c", "one", "two"], ["w"]),
        helper.make_node("Mul", ["x", "w"], ["y"]),
    ]
    inits = {
        "s": np.array([1, -1, 4, 4], np.int64),
        "m": np.array(-1, np.int64),
        "one": np.ones([1, 4, 1, 1], np.float32),
        "two": np.full([1, 4, 1, 1], 2.0, np.float32),
    }
    model = make_model(nodes, {"x": [1, 4, 4, 4]}, ["y"], inits, opset=13)
    conv = check(model, transposes=0, nhwc_outputs=["y"])
    assert "EQUAL" not in conv.ops and "SELECT_V2" not in conv.ops, conv.ops


# -- boolean logic ----------------------------------------------------------------
@pytest.mark.parametrize("op", ["And", "Or", "Xor"])
def test_logic_on_channels_last_masks(op):
    # masks from comparisons of NCHW inputs keep the NHWC layout through the logic op and Not
    nodes = [
        helper.make_node("Greater", ["x", "zero"], ["a"]),
        helper.make_node("Less", ["y", "half"], ["b"]),
        helper.make_node(op, ["a", "b"], ["l"]),
        helper.make_node("Not", ["l"], ["n"]),
        helper.make_node("Cast", ["n"], ["f"], to=TensorProto.FLOAT),
    ]
    inits = {"zero": np.zeros([1], np.float32), "half": np.full([4, 1, 1], 0.5, np.float32)}
    model = make_model(nodes, {"x": [1, 4, 4, 4], "y": [1, 4, 4, 4]}, ["f", "l"], inits, opset=13)
    check(model, transposes=0, nhwc_outputs=["f", "l"])


@pytest.mark.parametrize("op", ["And", "Or", "Xor"])
def test_logic_bool_inputs_broadcast(op):
    node = helper.make_node(op, ["a", "b"], ["c"])
    model = make_model([node], {"a": ([2, 3], np.bool_), "b": ([3], np.bool_)}, ["c"], opset=11)
    feeds = {"a": np.array([[True, False, True], [False, False, True]]), "b": np.array([True, False, False])}
    check(model, feeds, transposes=0)


def test_not_bool_input():
    node = helper.make_node("Not", ["a"], ["c"])
    model = make_model([node], {"a": ([3, 4], np.bool_)}, ["c"], opset=13)
    check(model, transposes=0)


# -- IsNaN / IsInf ----------------------------------------------------------------
def special_image():
    x = RNG.standard_normal([1, 4, 4, 4]).astype(np.float32)
    flat = x.reshape(-1)
    flat[[0, 5, 17]] = np.nan
    flat[[3, 22, 40]] = np.inf
    flat[[9, 33, 63]] = -np.inf
    # the largest finite floats are not infinite (the converter turns inf constants into these)
    flat[[11, 50]] = np.finfo(np.float32).max
    flat[[12, 51]] = -np.finfo(np.float32).max
    return x


@pytest.mark.parametrize("opset", [13, 20])
def test_isnan(opset):
    nodes = [
        helper.make_node("IsNaN", ["x"], ["c"]),
        helper.make_node("Cast", ["c"], ["f"], to=TensorProto.FLOAT),
    ]
    model = make_model(nodes, {"x": [1, 4, 4, 4]}, ["f"], opset=opset)
    check(model, {"x": special_image()}, transposes=0, nhwc_outputs=["f"])


@pytest.mark.parametrize("positive, negative, opset", [(1, 1, 10), (1, 0, 13), (0, 1, 20), (0, 0, 20)])
def test_isinf(positive, negative, opset):
    nodes = [
        helper.make_node("IsInf", ["x"], ["c"], detect_positive=positive, detect_negative=negative),
        helper.make_node("Cast", ["c"], ["f"], to=TensorProto.FLOAT),
    ]
    model = make_model(nodes, {"x": [1, 4, 4, 4]}, ["f"], opset=opset)
    check(model, {"x": special_image()}, transposes=0, nhwc_outputs=["f"])
