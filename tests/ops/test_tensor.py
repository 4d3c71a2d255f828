"""Constant, Concat, Split, Slice, Gather, Pad, Tile, Expand, Range, DepthToSpace, SpaceToDepth,
Where, NonZero, OneHot: onnxruntime vs converted fp32 TFLite.

Rank-4 float inputs arrive channels-last, so every axis-taking op here runs on a permuted
tensor. Outputs that stay channels-last are read back in NHWC (`nhwc_outputs`), so a
TRANSPOSE count of 0 proves the op itself moved no data; [1, 4, 4, 4] inputs catch axis
mix-ups that equal dims would hide.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from onnx_harness import check, convert, make_model, random_feeds

from buildsys.converter.errors import UnsupportedModel

node = helper.make_node
INT64_MAX = np.iinfo(np.int64).max
INT64_MIN = np.iinfo(np.int64).min


def run(nodes, inputs, initializers=None, *, opset=17, outputs=("y",), nhwc=False, **kw):
    """Build, convert and compare; `nhwc` reads the outputs back channels-last."""
    model = make_model(nodes, inputs, list(outputs), initializers or {}, opset=opset)
    return check(model, nhwc_outputs=list(outputs) if nhwc else (), **kw)


def i64(*values):
    return np.array(values, dtype=np.int64)


# -- Constant, ConstantOfShape ----------------------------------------------------------


@pytest.mark.parametrize("opset", [11, 13])
def test_constant_tensor_broadcast_on_channels(opset):
    bias = helper.make_tensor("b", 1, [1, 4, 1, 1], np.arange(4, dtype=np.float32) - 1.5)
    nodes = [node("Constant", [], ["c"], value=bias), node("Add", ["x", "c"], ["y"])]
    run(nodes, {"x": [1, 4, 4, 4]}, opset=opset, nhwc=True, transposes=0)


@pytest.mark.parametrize(
    "attr, value",
    [("value_float", 2.5), ("value_floats", [1.0, -2.0, 3.0, 0.5, 4.0])],
)
def test_constant_float_attributes(attr, value):
    nodes = [node("Constant", [], ["c"], **{attr: value}), node("Mul", ["x", "c"], ["y"])]
    run(nodes, {"x": [1, 3, 4, 5]}, opset=13, nhwc=True, transposes=0)


def test_constant_int_attributes_drive_shape_ops():
    nodes = [
        node("Constant", [], ["shape"], value_ints=[1, 4, 16]),
        node("Constant", [], ["idx"], value_int=2),
        node("Gather", ["x", "idx"], ["g"], axis=1),  # [1, 4, 4]
        node("Reshape", ["x", "shape"], ["y"]),
    ]
    model = make_model(nodes, {"x": [1, 4, 4, 4]}, ["y", "g"], opset=13)
    check(model)


@pytest.mark.parametrize("fill", [None, 2.0])
def test_constant_of_shape_from_shape(fill):
    attrs = {} if fill is None else {"value": helper.make_tensor("v", 1, [1], [fill])}
    nodes = [
        node("Shape", ["x"], ["s"]),
        node("ConstantOfShape", ["s"], ["c"], **attrs),
        node("Add", ["x", "c"], ["y"]),
    ]
    run(nodes, {"x": [1, 3, 4, 5]}, opset=13, nhwc=True, transposes=0)


def test_constant_of_shape_int():
    value = helper.make_tensor("v", 7, [1], [3])  # int64
    nodes = [node("ConstantOfShape", ["s"], ["c"], value=value), node("Add", ["i", "c"], ["y"])]
    run(nodes, {"i": ([2, 3], np.int64)}, {"s": i64(2, 3)}, opset=13, transposes=0)


# -- Concat -----------------------------------------------------------------------------


@pytest.mark.parametrize("axis, opset", [(1, 11), (1, 13), (-1, 13), (2, 13), (0, 13)])
def test_concat_two_nchw_inputs(axis, opset):
    run(
        [node("Concat", ["a", "b"], ["y"], axis=axis)],
        {"a": [1, 4, 4, 4], "b": [1, 4, 4, 4]},
        opset=opset,
        nhwc=True,
        transposes=0,
    )


def test_concat_with_constant_on_channels():
    const = np.random.default_rng(1).standard_normal((1, 2, 5, 6)).astype(np.float32)
    run([node("Concat", ["x", "c", "x"], ["y"], axis=1)], {"x": [1, 3, 5, 6]}, {"c": const}, nhwc=True, transposes=0)


def test_concat_with_transposed_input_moves_the_minority():
    # b's Transpose leaves it stored in another order; only b moves
    nodes = [node("Transpose", ["b"], ["bt"], perm=[0, 3, 1, 2]), node("Concat", ["a", "bt"], ["y"], axis=1)]
    run(nodes, {"a": [1, 4, 4, 4], "b": [1, 4, 4, 4]}, nhwc=True, transposes=1)


def test_concat_with_reshaped_input():
    # the reshaped value is in ONNX order, the image channels-last: one of them moves
    nodes = [node("Reshape", ["v", "s"], ["r"]), node("Concat", ["x", "r"], ["y"], axis=1)]
    run(nodes, {"x": [1, 4, 4, 4], "v": [1, 32]}, {"s": i64(1, 2, 4, 4)}, nhwc=True, transposes=1)


def test_concat_majority_in_onnx_order():
    # two ONNX-order inputs outvote one channels-last input; the output stays ONNX-order
    nodes = [
        node("Reshape", ["u", "s"], ["r1"]),
        node("Reshape", ["v", "s"], ["r2"]),
        node("Concat", ["r1", "x", "r2"], ["y"], axis=3),
    ]
    run(nodes, {"x": [1, 2, 3, 4], "u": [24], "v": [24]}, {"s": i64(1, 2, 3, 4)}, transposes=1)


def test_concat_rank3_and_shape_arithmetic():
    # Shape -> Gather -> Unsqueeze -> Concat folds into a constant Reshape target
    nodes = [
        node("Shape", ["t"], ["sh"]),
        node("Gather", ["sh", "zero"], ["n"], axis=0),
        node("Unsqueeze", ["n", "ax"], ["n1"]),
        node("Concat", ["n1", "minus1"], ["target"], axis=0),
        node("Reshape", ["t", "target"], ["flat"]),
        node("Concat", ["t", "t"], ["y"], axis=-1),
    ]
    # shape inference cannot see through the folded target, so output shapes are given
    model = make_model(
        nodes,
        {"t": [2, 3, 5]},
        {"y": [2, 3, 10], "flat": [2, 15]},
        {"zero": i64(0)[0], "ax": i64(0), "minus1": i64(-1)},
        opset=13,
    )
    assert check(model).transposes == 0


# -- Split ------------------------------------------------------------------------------


def test_split_attr_opset11_channels():
    nodes = [node("Split", ["x"], ["y", "z"], axis=1, split=[1, 3])]
    run(nodes, {"x": [1, 4, 6, 6]}, opset=11, outputs=("y", "z"), nhwc=True, transposes=0)


def test_split_equal_opset11_height():
    run(
        [node("Split", ["x"], ["y", "z"], axis=2)],
        {"x": [1, 4, 4, 4]},
        opset=11,
        outputs=("y", "z"),
        nhwc=True,
        transposes=0,
    )


@pytest.mark.parametrize("opset", [13, 18])
def test_split_sizes_input_negative_axis(opset):
    nodes = [node("Split", ["x", "s"], ["y", "z", "w"], axis=-1)]
    run(nodes, {"x": [1, 4, 4, 7]}, {"s": i64(2, 4, 1)}, opset=opset, outputs=("y", "z", "w"), nhwc=True, transposes=0)


def test_split_opset13_equal_without_sizes():
    run(
        [node("Split", ["x"], ["y", "z"], axis=1)],
        {"x": [1, 4, 3, 3]},
        opset=13,
        outputs=("y", "z"),
        nhwc=True,
        transposes=0,
    )


@pytest.mark.parametrize("dim, parts", [(7, 3), (6, 3)])
def test_split_num_outputs_opset18(dim, parts):
    outs = tuple(f"o{i}" for i in range(parts))
    run(
        [node("Split", ["x"], list(outs), axis=3, num_outputs=parts)],
        {"x": [1, 4, 5, dim]},
        opset=18,
        outputs=outs,
        nhwc=True,
        transposes=0,
    )


# -- Slice ------------------------------------------------------------------------------


@pytest.mark.parametrize("opset", [11, 13])
def test_slice_space_to_depth_stem(opset):
    # YOLOv5 Focus: x[..., ::2, ::2], x[..., 1::2, ::2], ... concatenated on channels
    nodes, names = [], []
    for k, _offsets in enumerate([(0, 0), (1, 0), (0, 1), (1, 1)]):
        names.append(f"s{k}")
        nodes.append(node("Slice", ["x", f"b{k}", "end", "axes", "two"], [names[-1]]))
    nodes.append(node("Concat", names, ["y"], axis=1))
    inits = {f"b{k}": i64(h, w) for k, (h, w) in enumerate([(0, 0), (1, 0), (0, 1), (1, 1)])}
    inits.update(end=i64(INT64_MAX, INT64_MAX), axes=i64(2, 3), two=i64(2, 2))
    conv = run(nodes, {"x": [1, 3, 8, 8]}, inits, opset=opset, nhwc=True, transposes=0)
    assert conv.ops.get("STRIDED_SLICE") == 4


@pytest.mark.parametrize(
    "starts, ends, axes, steps",
    [
        ([1], [3], [1], [1]),  # channels
        ([-3, 1], [-1, INT64_MAX], [1, 3], [1, 2]),  # negative starts/ends
        ([-1], [INT64_MIN], [3], [-1]),  # reverse the width
        ([3, -2], [0, -100], [2, 1], [-2, -1]),  # negative steps on H and C, end clamped
        ([-10], [-100], [2], [-1]),  # far-negative start: ONNX clamps it to 0
        ([0, 1, 0, 2], [1, 4, 4, 4], [0, 1, 2, 3], [1, 1, 3, 1]),  # every axis
        ([1], [1000], [-3], [2]),  # negative axis, end past the dim
    ],
)
def test_slice_channels_last(starts, ends, axes, steps):
    inits = {"b": i64(*starts), "e": i64(*ends), "a": i64(*axes), "s": i64(*steps)}
    run([node("Slice", ["x", "b", "e", "a", "s"], ["y"])], {"x": [1, 4, 4, 4]}, inits, nhwc=True, transposes=0)


def test_slice_without_axes_and_steps():
    inits = {"b": i64(0, 1, 1), "e": i64(1, 3, -1)}
    run([node("Slice", ["x", "b", "e"], ["y"])], {"x": [1, 4, 5, 6]}, inits, opset=13, nhwc=True, transposes=0)


def test_slice_opset9_attributes():
    n = node("Slice", ["x"], ["y"], starts=[1, -3], ends=[3, INT64_MAX], axes=[1, 2])
    run([n], {"x": [1, 4, 5, 6]}, opset=9, nhwc=True, transposes=0)


def test_slice_rank3_onnx_order():
    inits = {"b": i64(1, 0), "e": i64(-1, 7), "a": i64(1, 2), "s": i64(1, 3)}
    run([node("Slice", ["t", "b", "e", "a", "s"], ["y"])], {"t": [2, 5, 7]}, inits, transposes=0)


def test_slice_of_shape_folds():
    nodes = [
        node("Shape", ["x"], ["sh"]),
        node("Slice", ["sh", "b", "e"], ["hw"]),
        node("Concat", ["lead", "hw"], ["target"], axis=0),
        node("Reshape", ["x", "target"], ["y"]),
    ]
    inits = {"b": i64(2), "e": i64(4), "lead": i64(-1)}
    model = make_model(nodes, {"x": [1, 4, 5, 6]}, {"y": [4, 5, 6]}, inits, opset=13)
    conv = check(model)
    assert "SLICE" not in conv.ops and "STRIDED_SLICE" not in conv.ops


# -- Gather -----------------------------------------------------------------------------


@pytest.mark.parametrize("index", [2, -1])
def test_gather_scalar_index_drops_channels(index):
    # the channel axis goes, leaving [1, H, W] in ONNX order: nothing to transpose
    run([node("Gather", ["x", "i"], ["y"], axis=1)], {"x": [1, 4, 4, 4]}, {"i": i64(index)[0]}, transposes=0)


@pytest.mark.parametrize(
    "indices, opset",
    [([3, 0, 2], 11), ([3, 0, 2], 13), ([1, 2], 13), ([-1, -4, 1], 13), ([0, 2], 13)],
)
def test_gather_vector_index_channels(indices, opset):
    run(
        [node("Gather", ["x", "i"], ["y"], axis=1)],
        {"x": [1, 4, 4, 4]},
        {"i": i64(*indices)},
        opset=opset,
        nhwc=True,
        transposes=0,
    )


@pytest.mark.parametrize("axis", [2, -1])
def test_gather_scalar_spatial(axis):
    # dropping H or W leaves [1, C, W] stored as [1, W, C]: only the output is transposed
    run([node("Gather", ["x", "i"], ["y"], axis=axis)], {"x": [1, 4, 4, 4]}, {"i": i64(1)[0]}, transposes=1)


def test_gather_matrix_index():
    conv = run([node("Gather", ["x", "i"], ["y"], axis=1)], {"x": [1, 4, 3, 5]}, {"i": np.array([[3, 0], [1, -2]])})
    assert conv.ops.get("GATHER") == 1


def test_gather_computed_indices_with_negatives():
    model = make_model([node("Gather", ["x", "i"], ["y"], axis=1)], {"x": [1, 5, 3, 3], "i": ([4], np.int64)}, ["y"])
    feeds = random_feeds(model)
    feeds["i"] = i64(4, -1, 0, -5)
    check(model, feeds, nhwc_outputs=["y"], transposes=0)


def test_gather_embedding_table():
    table = np.random.default_rng(2).standard_normal((10, 6)).astype(np.float32)
    model = make_model([node("Gather", ["w", "i"], ["y"])], {"i": ([2, 3], np.int64)}, ["y"], {"w": table})
    check(model, transposes=0)


def test_gather_on_shape_folds():
    nodes = [
        node("Shape", ["x"], ["sh"]),
        node("Gather", ["sh", "i"], ["c"]),
        node("Unsqueeze", ["c", "ax"], ["c1"]),
        node("Concat", ["one", "c1", "minus1"], ["target"], axis=0),
        node("Reshape", ["x", "target"], ["y"]),
    ]
    inits = {"i": i64(1)[0], "ax": i64(0), "one": i64(1), "minus1": i64(-1)}
    model = make_model(nodes, {"x": [1, 4, 4, 4]}, {"y": [1, 4, 16]}, inits, opset=13)
    conv = check(model)
    assert "GATHER" not in conv.ops


# -- Pad --------------------------------------------------------------------------------


PADS_HW = [0, 0, 1, 2, 0, 0, 3, 1]  # asymmetric on H and W
PADS_ALL = [0, 1, 2, 0, 0, 2, 1, 3]  # C, H and W, begin != end


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
@pytest.mark.parametrize("pads, opset", [(PADS_HW, 11), (PADS_ALL, 13), (PADS_ALL, 18)])
def test_pad_modes(mode, pads, opset):
    run(
        [node("Pad", ["x", "p"], ["y"], mode=mode)],
        {"x": [1, 4, 4, 4]},
        {"p": i64(*pads)},
        opset=opset,
        nhwc=True,
        transposes=0,
    )


def test_pad_edge_of_one_is_a_mirror_pad():
    conv = run(
        [node("Pad", ["x", "p"], ["y"], mode="edge")],
        {"x": [1, 3, 4, 5]},
        {"p": i64(0, 0, 1, 0, 0, 0, 1, 1)},
        opset=13,
        nhwc=True,
        transposes=0,
    )
    assert conv.ops.get("MIRROR_PAD") == 1 and "GATHER" not in conv.ops


def test_pad_constant_value_input():
    inits = {"p": i64(*PADS_ALL), "v": np.array(1.5, np.float32)}
    run([node("Pad", ["x", "p", "v"], ["y"])], {"x": [1, 3, 4, 5]}, inits, opset=13, nhwc=True, transposes=0)


@pytest.mark.parametrize("pads, mode", [([0, 0, 4, 1, 0, 0, 2, 5], "wrap"), ([0, 0, 1, 0, 0, 0, 0, 2], "wrap")])
def test_pad_wrap_opset19(pads, mode):
    run(
        [node("Pad", ["x", "p"], ["y"], mode=mode)],
        {"x": [1, 4, 4, 4]},
        {"p": i64(*pads)},
        opset=19,
        nhwc=True,
        transposes=0,
    )


@pytest.mark.parametrize("mode", ["constant", "edge", "reflect"])
def test_pad_negative_pads_crop(mode):
    pads = [0, 0, -1, 2, 0, -1, 1, -2]
    run(
        [node("Pad", ["x", "p"], ["y"], mode=mode)],
        {"x": [1, 4, 5, 6]},
        {"p": i64(*pads)},
        opset=13,
        nhwc=True,
        transposes=0,
    )


@pytest.mark.parametrize("axes", [[2, 3], [-1, 1]])
def test_pad_axes_input_opset18(axes):
    inits = {"p": i64(1, 2, 0, 3), "v": np.array(-1.0, np.float32), "a": i64(*axes)}
    run([node("Pad", ["x", "p", "v", "a"], ["y"])], {"x": [1, 4, 4, 4]}, inits, opset=18, nhwc=True, transposes=0)


def test_pad_opset10_attributes():
    n = node("Pad", ["x"], ["y"], mode="constant", pads=[0, 1, 1, 0, 0, 0, 2, 1], value=0.5)
    run([n], {"x": [1, 3, 4, 5]}, opset=10, nhwc=True, transposes=0)


def test_pad_int_tensor():
    n = node("Pad", ["i", "p", "v"], ["y"])
    run([n], {"i": ([2, 3], np.int64)}, {"p": i64(1, 0, 0, 2), "v": i64(7)[0]}, opset=13, transposes=0)


# -- Tile, Expand -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "repeats, opset", [([1, 2, 1, 3], 11), ([1, 2, 1, 3], 13), ([2, 1, 1, 1], 13), ([1, 1, 1, 1], 13)]
)
def test_tile_channels_last(repeats, opset):
    run(
        [node("Tile", ["x", "r"], ["y"])],
        {"x": [1, 4, 4, 4]},
        {"r": i64(*repeats)},
        opset=opset,
        nhwc=True,
        transposes=0,
    )


def test_tile_rank2():
    run([node("Tile", ["t", "r"], ["y"])], {"t": [3, 2]}, {"r": i64(2, 3)}, transposes=0)


@pytest.mark.parametrize(
    "in_shape, target",
    [
        ([1, 4, 1, 1], [1, 4, 3, 5]),  # per-channel value over the image
        ([1, 3, 4, 5], [4, 1]),  # lower-rank target: nothing to do
        ([1, 3, 1, 5], [2, 1, 4, 1]),  # target dims of 1 keep the input's
        ([1, 4, 4, 4], [1, 1, 1, 1]),
    ],
)
def test_expand_channels_last(in_shape, target):
    run([node("Expand", ["x", "s"], ["y"])], {"x": in_shape}, {"s": i64(*target)}, opset=13, nhwc=True, transposes=0)


def test_expand_grows_rank():
    run([node("Expand", ["t", "s"], ["y"])], {"t": [3, 1]}, {"s": i64(2, 3, 4)}, opset=13, transposes=0)


def test_expand_grows_rank_of_channels_last():
    # new leading axis on an NHWC tensor: the expand itself moves nothing; only the
    # rank-5 output is transposed back to ONNX order
    run([node("Expand", ["x", "s"], ["y"])], {"x": [1, 4, 1, 3]}, {"s": i64(2, 1, 4, 2, 3)}, opset=13, transposes=1)


# -- Range ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "start, limit, delta",
    [(0.5, 6.5, 1.0), (5.0, -1.0, -1.0), (0.0, 7.5, 1.25)],
)
def test_range_constant_float(start, limit, delta):
    inits = {"a": np.array(start, np.float32), "b": np.array(limit, np.float32), "c": np.array(delta, np.float32)}
    nodes = [node("Range", ["a", "b", "c"], ["r"]), node("Add", ["x", "r"], ["y"])]
    conv = run(nodes, {"x": [1, 3, 4, 6]}, inits, opset=13, nhwc=True, transposes=0)
    assert "RANGE" not in conv.ops


def test_range_constant_int():
    nodes = [node("Range", ["a", "b", "c"], ["r"]), node("Add", ["i", "r"], ["y"])]
    inits = {"a": i64(1)[0], "b": i64(10)[0], "c": i64(3)[0]}
    run(nodes, {"i": ([2, 3], np.int64)}, inits, opset=11, transposes=0)


@pytest.mark.parametrize("dtype", [np.int64, np.float32])
def test_range_computed_start(dtype):
    # a run-time start gives a data-dependent length: TFLite's RANGE handles it
    model = make_model(
        [node("Range", ["a", "b", "c"], ["y"])],
        {"a": ([], dtype)},
        ["y"],
        {"b": np.array(9, dtype), "c": np.array(2, dtype)},
        opset=13,
    )
    assert check(model, {"a": np.array(1, dtype)}).ops.get("RANGE") == 1


# -- DepthToSpace, SpaceToDepth ---------------------------------------------------------


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
@pytest.mark.parametrize("shape, block, opset", [([1, 8, 3, 5], 2, 11), ([1, 4, 4, 4], 2, 13), ([1, 18, 2, 3], 3, 13)])
def test_depth_to_space(mode, shape, block, opset):
    conv = run(
        [node("DepthToSpace", ["x"], ["y"], blocksize=block, mode=mode)],
        {"x": shape},
        opset=opset,
        nhwc=True,
        transposes=0,
    )
    assert conv.ops.get("DEPTH_TO_SPACE") == 1


def test_depth_to_space_default_mode_is_dcr():
    run([node("DepthToSpace", ["x"], ["y"], blocksize=2)], {"x": [1, 8, 3, 3]}, opset=11, nhwc=True, transposes=0)


def test_depth_to_space_after_reshape_needs_channels_last():
    # a value in ONNX order must be moved channels-last once for the kernel
    nodes = [node("Reshape", ["v", "s"], ["r"]), node("DepthToSpace", ["r"], ["y"], blocksize=2, mode="CRD")]
    run(nodes, {"v": [1, 128]}, {"s": i64(1, 8, 4, 4)}, opset=13, nhwc=True, transposes=1)


@pytest.mark.parametrize("shape, block", [([1, 3, 4, 6], 2), ([1, 4, 4, 4], 2), ([1, 2, 6, 3], 3)])
def test_space_to_depth(shape, block):
    run([node("SpaceToDepth", ["x"], ["y"], blocksize=block)], {"x": shape}, opset=13, nhwc=True, transposes=0)


@pytest.mark.parametrize("block", [2, 3])
def test_space_to_depth_crd_opset28(block):
    # onnxruntime stops short of opset 28, so the reference is ONNX's CRD definition in numpy
    model = make_model(
        [node("SpaceToDepth", ["x"], ["y"], blocksize=block, mode="CRD")], {"x": [1, 3, 6, 6]}, ["y"], opset=28
    )
    x = random_feeds(model)["x"]
    conv = convert(model, nhwc_outputs=["y"])
    n, c, h, w = x.shape
    blocks = x.reshape(n, c, h // block, block, w // block, block).transpose(0, 1, 3, 5, 2, 4)
    np.testing.assert_array_equal(conv.run({"x": x})["y"], blocks.reshape(n, c * block * block, h // block, w // block))
    assert conv.transposes == 0


def test_space_to_depth_then_depth_to_space_round_trip():
    nodes = [node("SpaceToDepth", ["x"], ["s"], blocksize=2), node("DepthToSpace", ["s"], ["y"], blocksize=2)]
    run(nodes, {"x": [1, 4, 4, 4]}, opset=13, nhwc=True, transposes=0)


# -- Where, NonZero, OneHot -------------------------------------------------------------


@pytest.mark.parametrize("opset", [11, 16])
def test_where_constant_condition_broadcast(opset):
    cond = np.random.default_rng(3).random((1, 1, 4, 4)) > 0.5
    run(
        [node("Where", ["c", "x", "z"], ["y"])],
        {"x": [1, 4, 4, 4], "z": [1, 4, 4, 4]},
        {"c": cond},
        opset=opset,
        nhwc=True,
        transposes=0,
    )


def test_where_scalar_branch():
    cond = np.random.default_rng(4).random((4,)) > 0.5
    inits = {"c": cond, "zero": np.array(0.0, np.float32)}
    run([node("Where", ["c", "x", "zero"], ["y"])], {"x": [1, 3, 5, 4]}, inits, opset=13, nhwc=True, transposes=0)


def test_where_computed_condition_in_onnx_order():
    # a bool graph input is not an image: it is stored in ONNX order and meets NHWC data
    model = make_model(
        [node("Where", ["c", "x", "z"], ["y"])],
        {"c": ([1, 4, 4, 4], np.bool_), "x": [1, 4, 4, 4], "z": [1, 4, 4, 4]},
        ["y"],
        opset=13,
    )
    check(model, nhwc_outputs=["y"], transposes=1)


def test_nonzero_of_constant_feeds_gather():
    mask = np.array([0, 1, 0, 1], dtype=np.float32)
    nodes = [
        node("NonZero", ["m"], ["nz"]),
        node("Reshape", ["nz", "flat"], ["idx"]),
        node("Gather", ["x", "idx"], ["y"], axis=1),
    ]
    run(nodes, {"x": [1, 4, 4, 4]}, {"m": mask, "flat": i64(-1)}, opset=13, nhwc=True, transposes=0)


def test_nonzero_of_computed_tensor_is_unsupported():
    model = make_model([node("NonZero", ["x"], ["y"])], {"x": [1, 4, 4, 4]}, ["y"], opset=13)
    with pytest.raises(UnsupportedModel, match="data-dependent shape"):
        convert(model)


@pytest.mark.parametrize("axis", [-1, 0, 1])
@pytest.mark.parametrize("opset", [11, 13])
def test_one_hot(axis, opset):
    model = make_model(
        [node("OneHot", ["i", "d", "v"], ["y"], axis=axis)],
        {"i": ([2, 3], np.int64)},
        ["y"],
        {"d": i64(5)[0], "v": np.array([-1.0, 2.0], np.float32)},
        opset=opset,
    )
    feeds = {"i": np.array([[0, 4, -1], [2, -5, 3]], dtype=np.int64)}
    check(model, feeds, transposes=0)


# -- rejections -------------------------------------------------------------------------


def test_slice_with_computed_bounds_is_unsupported():
    model = make_model(
        [node("Slice", ["x", "b", "e"], ["y"])],
        {"x": [1, 4, 4, 4], "b": ([1], np.int64)},
        ["y"],
        {"e": i64(3)},
        opset=13,
    )
    with pytest.raises(UnsupportedModel, match="starts"):
        convert(model)


# -- newest opset -----------------------------------------------------------------------


def test_chain_at_opset21():
    # the highest registered versions (Split 18, Pad 18, Slice 10, ...) serve opset 21 too
    nodes = [
        node("Pad", ["x", "p"], ["a"], mode="wrap"),
        node("Split", ["a"], ["s1", "s2"], axis=1, num_outputs=2),
        node("Slice", ["s2", "b", "e", "ax", "st"], ["c"]),
        node("Concat", ["s1", "c"], ["d"], axis=1),
        node("Gather", ["d", "gi"], ["g"], axis=1),
        node("Expand", ["g", "es"], ["y"]),
    ]
    inits = {
        "p": i64(0, 0, 1, 2, 0, 0, 2, 1),
        "b": i64(-1),
        "e": i64(INT64_MIN),
        "ax": i64(1),
        "st": i64(-1),
        "gi": i64(3, 0, 1),
        "es": i64(1, 1, 1, 1),
    }
    run(nodes, {"x": [1, 4, 4, 4]}, inits, opset=21, nhwc=True, transposes=0)
