"""ReduceX against onnxruntime: channel, spatial and full reductions of channels-last images,
keepdims 0/1, axes as attribute (opset 11) or input (13 for ReduceSum, 18 for all)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from onnx_harness import check, make_model

from buildsys.converter.convert import Converter, convert_arrays

OPS = [
    "ReduceMean",
    "ReduceMax",
    "ReduceMin",
    "ReduceSum",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceSumSquare",
    "ReduceLogSum",
    "ReduceLogSumExp",
]


def axes_as_input(op: str, opset: int) -> bool:
    return opset >= (13 if op == "ReduceSum" else 18)


def reduce_node(op, x, out, axes, keepdims, opset, inits, **attrs):
    """One reduce node; axes go to an initializer or an attribute as the opset wants."""
    inputs = [x]
    if axes is not None:
        if axes_as_input(op, opset):
            inits[f"{out}_axes"] = np.array(axes, dtype=np.int64)
            inputs.append(f"{out}_axes")
        else:
            attrs["axes"] = list(axes)
    return helper.make_node(op, inputs, [out], keepdims=keepdims, **attrs)


# LogSum needs a positive sum; a product of many values near 1 stays well scaled
POSITIVE = {"ReduceLogSum", "ReduceProd"}


def feeds(shape: list[int], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "x": rng.standard_normal(shape).astype(np.float32),
        "p": rng.uniform(0.5, 1.5, shape).astype(np.float32),
    }


def multi_reduce_model(ops, shape, cases, opset):
    """One model with an output per (op, axes, keepdims) case (fewer conversions to run);
    outputs are named op_case so a failure says which one."""
    nodes, inits, outs = [], {}, []
    for op in ops:
        for i, (axes, keepdims) in enumerate(cases):
            out = f"{op}_{i}"
            src = "p" if op in POSITIVE else "x"
            nodes.append(reduce_node(op, src, out, axes, keepdims, opset, inits))
            outs.append(out)
    return make_model(nodes, {"x": shape, "p": shape}, outs, inits, opset=opset)


# Reductions whose results reach the (ONNX-order) graph outputs without moving data:
# channel, spatial and full reductions of a channels-last image.
NO_TRANSPOSE_CASES = [
    ([1], 1),
    ([1], 0),
    ([2, 3], 1),
    ([2, 3], 0),
    ([-1, -2], 1),
    (None, 1),
    (None, 0),
    ([0, 1, 2, 3], 0),
]


# Conversion time grows with the node count, so the full op x case grid runs once (axes as
# inputs, opset 18) and the other opsets cover the attribute / ReduceSum-13 forms on fewer cases.
IMAGE_GRID = [
    (18, OPS, NO_TRANSPOSE_CASES),
    (11, OPS, [([1], 1), ([2, 3], 0), (None, 0)]),
    (13, ["ReduceSum", "ReduceMean"], NO_TRANSPOSE_CASES),
]


@pytest.mark.parametrize("opset, ops, cases", IMAGE_GRID, ids=["opset18-all", "opset11-attr", "opset13-input"])
def test_image_reductions_need_no_transpose(opset, ops, cases):
    # [1, 4, 4, 4]: H == W == C, so a wrongly mapped axis still gives the right shape
    model = multi_reduce_model(ops, [1, 4, 4, 4], cases, opset)
    check(model, feeds([1, 4, 4, 4]), transposes=0)


# Single spatial axes keep C after W in the stored result, so ONNX-order outputs need one
# transpose each; these check the axis mapping rather than the op count.
MIXED_CASES = [([2], 0), ([3], 0), ([2], 1), ([-1], 1), ([1, 3], 0), ([0, 2], 0)]


@pytest.mark.parametrize("opset, ops", [(11, ["ReduceMean", "ReduceMax"]), (18, ["ReduceSum", "ReduceL2"])])
def test_image_reductions_over_single_spatial_axes(opset, ops):
    model = multi_reduce_model(ops, [2, 3, 5, 4], MIXED_CASES, opset)
    check(model, feeds([2, 3, 5, 4]))


@pytest.mark.parametrize(
    "opset, ops, shape",
    [
        (18, OPS, [2, 7, 3]),
        (11, ["ReduceMean", "ReduceMin", "ReduceProd", "ReduceL1"], [6, 5]),
        (13, ["ReduceSum", "ReduceSumSquare"], [6, 5]),
    ],
    ids=["rank3-18", "rank2-11", "rank2-13"],
)
def test_low_rank_reductions(opset, ops, shape):
    rank = len(shape)
    cases = [([0], 1), ([-1], 0), (list(range(rank)), 0)]
    if len(ops) <= 4:
        cases += [(None, 1), ([1], 0)]
    model = multi_reduce_model(ops, shape, cases, opset)
    check(model, feeds(shape), transposes=0)


@pytest.mark.parametrize("op", ["ReduceMean", "ReduceSum"])
def test_noop_with_empty_axes(op):
    opset = 18
    inits = {"none": np.array([], dtype=np.int64)}
    nodes = [
        helper.make_node(op, ["x"], ["all"], keepdims=0),
        helper.make_node(op, ["x", "none"], ["empty"], keepdims=1),
        helper.make_node(op, ["x"], ["noop"], keepdims=0, noop_with_empty_axes=1),
        helper.make_node(op, ["x", "none"], ["noop_empty"], keepdims=1, noop_with_empty_axes=1),
    ]
    model = make_model(nodes, {"x": [3, 4, 5]}, ["all", "empty", "noop", "noop_empty"], inits, opset=opset)
    check(model, transposes=0)


def test_reduce_sum_opset13_axes_input_on_channels():
    inits = {"axes": np.array([1], dtype=np.int64)}
    nodes = [helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=1)]
    model = make_model(nodes, {"x": [1, 4, 4, 4]}, ["y"], inits, opset=13)
    conv = check(model, transposes=0)
    assert conv.ops.get("SUM", 0) == 1


def test_channel_mean_feeds_elementwise_in_channels_last():
    """A channel mean broadcast back onto the image stays channels-last end to end."""
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["m"], axes=[1], keepdims=1),
        helper.make_node("Sub", ["x", "m"], ["d"]),
        helper.make_node("ReduceMax", ["d"], ["y"], axes=[2, 3], keepdims=0),
    ]
    model = make_model(nodes, {"x": [1, 4, 4, 4]}, ["y"], opset=13)
    check(model, transposes=0)


def test_constant_input_is_folded():
    w = np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 10
    nodes = [
        helper.make_node("ReduceSum", ["w"], ["s"], axes=[0, 2], keepdims=0),
        helper.make_node("Add", ["x", "s"], ["y"]),
    ]
    model = make_model(nodes, {"x": [2, 3]}, ["y"], {"w": w}, opset=11)
    conv = check(model, transposes=0)
    assert "SUM" not in conv.ops


def test_log_sum_exp_large_inputs_do_not_overflow():
    nodes = [helper.make_node("ReduceLogSumExp", ["x"], ["y"], axes=[1], keepdims=0)]
    model = make_model(nodes, {"x": [1, 4, 4, 4]}, ["y"], opset=13)
    rng = np.random.default_rng(1)
    x = (rng.standard_normal([1, 4, 4, 4]) * 10 + 100).astype(np.float32)
    check(model, {"x": x}, transposes=0)


def test_bool_max_and_min_opset20():
    """ReduceMax/Min of bool data (opset 20) are any/all: REDUCE_ANY with LOGICAL_NOTs."""
    inits = {"c": np.array([1], dtype=np.int64), "hw": np.array([2, 3], dtype=np.int64)}
    nodes = [
        helper.make_node("ReduceMax", ["b", "c"], ["any_c"], keepdims=0),
        helper.make_node("ReduceMin", ["b", "c"], ["all_c"], keepdims=0),
        helper.make_node("ReduceMin", ["b", "hw"], ["all_hw"], keepdims=1),
    ]
    model = make_model(nodes, {"b": ([1, 4, 4, 4], np.bool_)}, ["any_c", "all_c", "all_hw"], inits, opset=20)
    rng = np.random.default_rng(0)
    conv = check(model, {"b": rng.random([1, 4, 4, 4]) > 0.3}, transposes=0)
    assert "REDUCE_ANY" in conv.ops


def test_empty_input_reduces_to_the_identity():
    """Over zero elements each reduction gives its identity, as a constant. Checked on the
    converted TF values: TFLite cannot hold the zero-size input, and its converter turns a
    constant -inf into -FLT_MAX."""
    cases = {
        "ReduceMax": -np.inf,
        "ReduceMin": np.inf,
        "ReduceSum": 0.0,
        "ReduceProd": 1.0,
        "ReduceLogSumExp": -np.inf,
        "ReduceSumSquare": 0.0,
    }
    inits = {"axes": np.array([1], dtype=np.int64)}
    nodes = [helper.make_node(op, ["x", "axes"], [op], keepdims=1) for op in cases]
    model = make_model(nodes, {"x": [2, 0, 4]}, list(cases), inits, opset=18)
    got = convert_arrays(Converter(model), {"x": np.zeros([2, 0, 4], np.float32)})
    for op, value in cases.items():
        np.testing.assert_array_equal(got[op], np.full([2, 1, 4], value, np.float32), err_msg=op)
