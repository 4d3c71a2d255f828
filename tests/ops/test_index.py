"""TopK, ArgMax/ArgMin, GatherElements, GatherND, ScatterND, CumSum, Trilu against onnxruntime.

Float inputs are random normals (no ties), so TopK/ArgMax indices are unique and
compared exactly. [1, 4, 4, 4] inputs are the layout trap: every axis has the
same size, so a wrong axis remap still produces the right shape.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from onnx_harness import check, make_model, random_feeds

from buildsys.converter.convert import Converter, convert_arrays
from buildsys.converter.errors import UnsupportedModel

RNG = np.random.default_rng(7)


def _unique_feeds(model, seed=0):
    """Random normals are tie-free with probability 1, but check anyway: ties make indices ambiguous."""
    feeds = random_feeds(model, seed)
    for v in feeds.values():
        if v.dtype.kind == "f":
            assert np.unique(v).size == v.size
    return feeds


# -- TopK -------------------------------------------------------------------------
# ONNX axis -> expected TRANSPOSE ops with channels-last outputs: C is already last
# in NHWC (none); W is taken in ONNX order (the input moves once, outputs are NCHW
# so they move back); H moves last as N,W,C,H (input once, each output once).
TOPK_TRANSPOSES = {1: 0, -1: 3, 2: 3}


@pytest.mark.parametrize(
    "shape, axis, largest",
    [([1, 4, 4, 4], 1, 1), ([1, 4, 4, 4], 1, 0), ([1, 3, 5, 6], -1, 1), ([1, 3, 5, 6], 2, 0), ([1, 4, 4, 4], 2, 1)],
)
def test_topk_opset11(shape, axis, largest):
    node = helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=axis, largest=largest)
    model = make_model([node], {"x": shape}, ["v", "i"], {"k": np.array([3], np.int64)}, opset=11)
    check(model, _unique_feeds(model), transposes=TOPK_TRANSPOSES[axis], nhwc_outputs=["v", "i"])


def test_topk_last_onnx_axis_outputs_onnx_order():
    # W is last in ONNX order: one transpose in, outputs already NCHW
    node = helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=3)
    model = make_model([node], {"x": [1, 3, 5, 6]}, ["v", "i"], {"k": np.array([2], np.int64)}, opset=11)
    check(model, _unique_feeds(model), transposes=1)


@pytest.mark.parametrize("opset", [10, 13])
def test_topk_k_input_default_axis(opset):
    node = helper.make_node("TopK", ["x", "k"], ["v", "i"])
    model = make_model([node], {"x": [2, 7]}, ["v", "i"], {"k": np.array([4], np.int64)}, opset=opset)
    check(model, _unique_feeds(model), transposes=0)


def test_topk_channels_feed_elementwise():
    # the values stay channels-last, so adding them back to a channels-last tensor needs no transpose
    nodes = [
        helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=1),
        helper.make_node("Neg", ["v"], ["n"]),
        helper.make_node("Add", ["n", "y"], ["out"]),
    ]
    model = make_model(
        nodes, {"x": [1, 6, 4, 4], "y": [1, 2, 4, 4]}, ["out", "i"], {"k": np.array([2], np.int64)}, opset=13
    )
    # only the index output (asked for in NCHW) moves
    check(model, _unique_feeds(model), transposes=1, nhwc_outputs=["out"])


# -- ArgMax / ArgMin --------------------------------------------------------------
ARG_CASES = [(op, [1, 4, 4, 4], axis, keep) for op in ("ArgMax", "ArgMin") for axis in (1, -1) for keep in (0, 1)]


@pytest.mark.parametrize(
    "op, shape, axis, keepdims", ARG_CASES + [("ArgMax", [1, 3, 5, 6], 1, 0), ("ArgMin", [1, 3, 5, 6], -1, 1)]
)
def test_argmax_argmin(op, shape, axis, keepdims):
    node = helper.make_node(op, ["x"], ["y"], axis=axis, keepdims=keepdims)
    model = make_model([node], {"x": shape}, ["y"], opset=13)
    # over C the result is [1,1,H,W] / [1,H,W]: no data moves back to ONNX order;
    # over W the stored N,H,C result must be transposed to N,C,H
    check(model, _unique_feeds(model), transposes=0 if axis == 1 else 1)


@pytest.mark.parametrize("op, opset", [("ArgMax", 12), ("ArgMin", 13)])
def test_argmax_select_last_index(op, opset):
    # small integers guarantee repeats, which is what select_last_index is about
    x = RNG.integers(0, 3, size=[1, 4, 4, 4]).astype(np.float32)
    node = helper.make_node(op, ["x"], ["y"], axis=1, keepdims=1, select_last_index=1)
    model = make_model([node], {"x": [1, 4, 4, 4]}, ["y"], opset=opset)
    check(model, {"x": x}, transposes=0)


def test_argmax_opset11_negative_axis():
    node = helper.make_node("ArgMax", ["x"], ["y"], axis=-3, keepdims=0)
    model = make_model([node], {"x": [2, 5, 3]}, ["y"], opset=11)
    check(model, _unique_feeds(model), transposes=0)


# -- GatherElements ---------------------------------------------------------------
@pytest.mark.parametrize("shape, axis", [([1, 4, 4, 4], 0), ([1, 4, 4, 4], 1), ([1, 4, 4, 4], -1), ([1, 3, 5, 6], 1)])
def test_gather_elements_const_indices(shape, axis):
    index_shape = list(shape)
    index_shape[axis] = 2 if axis != 0 else 1
    index_shape[2] = 3  # a smaller extent on a non-gather axis too
    bound = shape[axis]
    idx = RNG.integers(-bound, bound, size=index_shape).astype(np.int64)
    node = helper.make_node("GatherElements", ["x", "idx"], ["y"], axis=axis)
    model = make_model([node], {"x": shape}, ["y"], {"idx": idx}, opset=13)
    # data stays channels-last; only the graph output goes back to NCHW
    check(model, transposes=1)


@pytest.mark.parametrize("axis, opset", [(1, 11), (-1, 13)])
def test_gather_elements_computed_indices(axis, opset):
    # indices from ArgMax (keepdims) select the max along the axis: y == ReduceMax
    nodes = [
        helper.make_node("ArgMax", ["x"], ["idx"], axis=axis, keepdims=1),
        helper.make_node("GatherElements", ["x", "idx"], ["y"], axis=axis),
    ]
    model = make_model(nodes, {"x": [1, 4, 4, 4]}, ["y"], opset=opset)
    # over W the [1,4,4,1] result is stored N,H,1,C and must move to ONNX order
    check(model, _unique_feeds(model), transposes=0 if axis == 1 else 1)


def test_gather_elements_computed_indices_from_input():
    node = helper.make_node("GatherElements", ["x", "idx"], ["y"], axis=0)
    model = make_model([node], {"x": [3, 4], "idx": ([2, 4], np.int64)}, ["y"], opset=13)
    idx = np.array([[0, -1, 2, 1], [-3, 2, 0, -2]], np.int64)
    check(model, {"x": RNG.standard_normal([3, 4]).astype(np.float32), "idx": idx}, transposes=0)


def test_gather_elements_all_const_folds():
    nodes = [
        helper.make_node("GatherElements", ["c", "idx"], ["g"], axis=1),
        helper.make_node("Add", ["x", "g"], ["y"]),
    ]
    c = RNG.standard_normal([2, 3]).astype(np.float32)
    idx = np.array([[2, 0, 1], [1, 1, 0]], np.int64)
    model = make_model(nodes, {"x": [2, 3]}, ["y"], {"c": c, "idx": idx}, opset=13)
    conv = check(model)
    assert "GATHER" not in conv.ops


# -- GatherND ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "batch, index, opset",
    [
        (0, np.array([[0, 1], [0, -1], [0, 2]], np.int64), 11),  # picks rows [C, W] of an NCHW tensor
        (0, np.array([[[0, 3, 1, 2]], [[0, 0, -1, 0]]], np.int64), 13),  # full-depth scalar picks
        (1, np.array([[1], [3]], np.int64), 12),
        (1, np.array([[[2, 1], [0, 3]], [[3, 3], [-1, 0]]], np.int64), 13),
    ],
)
def test_gather_nd(batch, index, opset):
    shape = [2, 4, 4, 4] if batch else [1, 4, 4, 4]
    attrs = {"batch_dims": batch} if batch else {}  # the attribute only exists from opset 12
    node = helper.make_node("GatherND", ["x", "idx"], ["y"], **attrs)
    model = make_model([node], {"x": shape}, ["y"], {"idx": index}, opset=opset)
    check(model, transposes=1)  # GatherND indexes ONNX axes: the NHWC input goes to NCHW once


def test_gather_nd_computed_indices_opset11():
    node = helper.make_node("GatherND", ["x", "idx"], ["y"])
    model = make_model([node], {"x": [3, 4, 5], "idx": ([2, 2], np.int64)}, ["y"], opset=11)
    idx = np.array([[2, -1], [0, 3]], np.int64)
    check(model, {"x": RNG.standard_normal([3, 4, 5]).astype(np.float32), "idx": idx}, transposes=0)


# -- ScatterND --------------------------------------------------------------------
@pytest.mark.parametrize("reduction", [None, "add"])
def test_scatter_nd(reduction):
    attrs = {"reduction": reduction} if reduction else {}
    node = helper.make_node("ScatterND", ["x", "idx", "u"], ["y"], **attrs)
    idx = np.array([[0, 2], [0, 0]], np.int64)
    model = make_model([node], {"x": [1, 4, 4, 4], "u": [2, 4, 4]}, ["y"], {"idx": idx}, opset=16)
    check(model, transposes=1)


def test_scatter_nd_max_unsupported():
    node = helper.make_node("ScatterND", ["x", "idx", "u"], ["y"], reduction="max")
    idx = np.array([[1]], np.int64)
    model = make_model([node], {"x": [3, 4], "u": [1, 4]}, ["y"], {"idx": idx}, opset=18)
    with pytest.raises(UnsupportedModel, match="reduction='max'"):
        convert_arrays(Converter(model), random_feeds(model))


# -- CumSum -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "shape, axis, exclusive, reverse",
    [
        ([1, 4, 4, 4], 1, 0, 0),
        ([1, 4, 4, 4], 1, 1, 1),
        ([1, 4, 4, 4], -1, 1, 0),
        ([1, 4, 4, 4], 2, 0, 1),
        ([1, 3, 5, 6], 1, 1, 0),
    ],
)
def test_cumsum(shape, axis, exclusive, reverse):
    node = helper.make_node("CumSum", ["x", "axis"], ["y"], exclusive=exclusive, reverse=reverse)
    model = make_model([node], {"x": shape}, ["y"], {"axis": np.array(axis, np.int64)}, opset=14)
    # the sum stays channels-last; only the graph output returns to NCHW
    check(model, transposes=1)


def test_cumsum_opset11_int32_axis():
    node = helper.make_node("CumSum", ["x", "axis"], ["y"], exclusive=1)
    model = make_model([node], {"x": [2, 6]}, ["y"], {"axis": np.array(1, np.int32)}, opset=11)
    check(model, transposes=0)


# -- Trilu ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "upper, k, shape", [(1, None, [1, 4, 4, 4]), (0, None, [1, 4, 4, 4]), (0, -1, [1, 3, 5, 6]), (1, 2, [1, 3, 5, 6])]
)
def test_trilu(upper, k, shape):
    inputs = ["x", "k"] if k is not None else ["x"]
    inits = {"k": np.array(k, np.int64)} if k is not None else {}
    node = helper.make_node("Trilu", inputs, ["y"], upper=upper)
    model = make_model([node], {"x": shape}, ["y"], inits, opset=14)
    check(model, transposes=1)
