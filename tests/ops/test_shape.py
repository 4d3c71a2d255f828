"""Reshape, Flatten, Transpose, Squeeze, Unsqueeze, Shape, Size: layout traps.

Rank-4 float inputs arrive channels-last (TF holds NHWC for ONNX NCHW). A reshape that
keeps the stored axis groups contiguous runs on the stored tensor; one that mixes channel
and spatial axes needs the tensor in ONNX order first. The TRANSPOSE counts pin which is
which, counting the transpose of a permuted graph output back to ONNX order (`nhwc`
reads rank-4 outputs back channels-last instead). [1, 4, 4, 4] shapes catch any axis
choice made from dims rather than from the layout.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from onnx_harness import check, make_model

from buildsys.converter.registry import default_registry

node = helper.make_node


def run(nodes, inputs, initializers=None, *, opset=17, outputs=("y",), nhwc=False, **kw):
    model = make_model(nodes, inputs, list(outputs), initializers or {}, opset=opset)
    return check(model, nhwc_outputs=list(outputs) if nhwc else (), **kw)


def i64(*values):
    return np.array(values, dtype=np.int64)


def registered(op_type: str) -> bool:
    return default_registry().lookup("", op_type, 17) is not None


# -- Reshape ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "in_shape, target, transposes",
    [
        # [1, C, H*W]: H and W merge in the stored tensor, but the rank-3 output is stored
        # [1, H*W, C] and goes back to ONNX order at the output
        ([1, 4, 4, 4], [1, 4, 16], 1),
        ([1, 3, 5, 6], [1, 3, -1], 1),
        # C*H*W mixes channels with space: ONNX order first, then a plain reshape
        ([1, 4, 4, 4], [1, 64], 1),
        ([1, 3, 5, 6], [1, -1], 1),
        # [1, H, W, C]-shaped target: a reinterpretation of NCHW memory, not a transpose
        ([1, 4, 4, 4], [1, 4, 4, 4], 1),
        ([1, 3, 5, 6], [1, 5, 6, 3], 1),
        # [1, C*H, W] merges C and H, which are apart in NHWC
        ([1, 3, 5, 6], [1, 15, 6], 1),
        # split of a spatial axis stays in the stored layout, only the output moves
        ([1, 3, 4, 6], [1, 3, 2, 2, 6], 1),
    ],
)
def test_reshape_mixing_axes(in_shape, target, transposes):
    run([node("Reshape", ["x", "s"], ["y"])], {"x": in_shape}, {"s": i64(*target)}, transposes=transposes)


def test_reshape_identity_shape_keeps_layout():
    run([node("Reshape", ["x", "s"], ["y"])], {"x": [1, 4, 4, 4]}, {"s": i64(0, 0, 0, 0)}, nhwc=True, transposes=0)


def test_reshape_then_transpose_to_tokens():
    # [1, C, H, W] -> [1, C, H*W] -> [1, H*W, C]: the attention-token pattern is free
    nodes = [node("Reshape", ["x", "s"], ["r"]), node("Transpose", ["r"], ["y"], perm=[0, 2, 1])]
    run(nodes, {"x": [1, 4, 4, 4]}, {"s": i64(1, 4, 16)}, transposes=0)


def test_transpose_then_reshape_to_tokens():
    # NCHW -> NHWC is what the stored tensor already is; the reshape then merges H and W
    nodes = [node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]), node("Reshape", ["t", "s"], ["y"])]
    run(nodes, {"x": [1, 4, 4, 4]}, {"s": i64(1, 16, 4)}, transposes=0)


@pytest.mark.parametrize(
    "in_shape, target",
    [([1, 4, 1, 5], [4, 5]), ([1, 4, 4, 4], [4, 16]), ([1, 6, 1, 1], [6, 1]), ([1, 4, 1, 5], [1, 4, 5])],
)
def test_reshape_ignores_unit_axes_then_transpose_is_free(in_shape, target):
    # unit axes hold no data: dropping the batch or a unit height keeps NHWC memory order,
    # and swapping the last two axes then matches it exactly
    rank = len(target)
    swap = list(range(rank - 2)) + [rank - 1, rank - 2]
    nodes = [node("Reshape", ["x", "s"], ["r"]), node("Transpose", ["r"], ["y"], perm=swap)]
    run(nodes, {"x": in_shape}, {"s": i64(*target)}, transposes=0)


def test_reshape_splits_channels_and_back():
    # [1, 2C, H, W] -> [1, 2, C, H, W] -> [1, 2C, H, W]: channels stay last throughout
    nodes = [node("Reshape", ["x", "s5"], ["r"]), node("Reshape", ["r", "s4"], ["y"])]
    inits = {"s5": i64(1, 2, 4, 3, 5), "s4": i64(1, 8, 3, 5)}
    run(nodes, {"x": [1, 8, 3, 5]}, inits, nhwc=True, transposes=0)


@pytest.mark.parametrize("h, w", [(4, 4), (5, 3)])
def test_yolo_head_needs_one_transpose(h, w):
    # [1, 3*85, H, W] -> [1, 3, 85, H, W] -> (0, 1, 3, 4, 2) -> [1, 3*H*W, 85]:
    # the split and the transpose are free; only gathering anchors before space moves data
    nodes = [
        node("Reshape", ["x", "s5"], ["r"]),
        node("Transpose", ["r"], ["t"], perm=[0, 1, 3, 4, 2]),
        node("Reshape", ["t", "s3"], ["y"]),
    ]
    inits = {"s5": i64(1, 3, 85, h, w), "s3": i64(1, 3 * h * w, 85)}
    run(nodes, {"x": [1, 3 * 85, h, w]}, inits, opset=13, transposes=1)


def test_reshape_adds_and_drops_unit_dims():
    nodes = [node("Reshape", ["x", "s"], ["r"]), node("Reshape", ["r", "back"], ["y"])]
    inits = {"s": i64(1, 1, 4, 4, 4, 1), "back": i64(1, 4, 4, 4)}
    run(nodes, {"x": [1, 4, 4, 4]}, inits, nhwc=True, transposes=0)


def test_reshape_allowzero_opset14():
    run(
        [node("Reshape", ["x", "s"], ["y"], allowzero=1)],
        {"x": [1, 3, 4, 5]},
        {"s": i64(1, 3, 20)},
        opset=14,
        transposes=1,
    )


def test_reshape_of_constant_folds():
    w = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    nodes = [node("Reshape", ["w", "s"], ["r"]), node("Add", ["x", "r"], ["y"])]
    conv = run(nodes, {"x": [1, 2, 3, 4]}, {"w": w, "s": i64(1, 2, 3, 4)}, nhwc=True, transposes=0)
    assert "RESHAPE" not in conv.ops


# -- Flatten ----------------------------------------------------------------------------


@pytest.mark.parametrize("axis", [1, 2, 0, -1, 4, -3])
def test_flatten_channels_last(axis):
    # every split of NCHW into (prefix, suffix) mixes C with space in NHWC
    run([node("Flatten", ["x"], ["y"], axis=axis)], {"x": [1, 4, 4, 4]}, opset=13, transposes=1)


@pytest.mark.parametrize("opset", [11, 13])
def test_flatten_after_1x1_map_is_free(opset):
    run([node("Flatten", ["x"], ["y"], axis=1)], {"x": [1, 8, 1, 1]}, opset=opset, transposes=0)


def test_flatten_rank3_onnx_order():
    run([node("Flatten", ["t"], ["y"], axis=-1)], {"t": [2, 3, 5]}, opset=13, transposes=0)


@pytest.mark.skipif(not registered("MatMul"), reason="MatMul handler not available yet")
def test_flatten_into_matmul():
    w = np.random.default_rng(0).standard_normal((8, 5)).astype(np.float32)
    nodes = [node("Flatten", ["x"], ["f"]), node("MatMul", ["f", "w"], ["y"])]
    run(nodes, {"x": [1, 8, 1, 1]}, {"w": w}, opset=13, transposes=0, atol=1e-5, rtol=1e-5)


# -- Transpose --------------------------------------------------------------------------


def test_transpose_chain_cancels():
    nodes = [
        node("Transpose", ["x"], ["a"], perm=[0, 2, 3, 1]),
        node("Transpose", ["a"], ["b"], perm=[0, 3, 1, 2]),
        node("Add", ["b", "x"], ["y"]),
    ]
    run(nodes, {"x": [1, 4, 4, 4]}, nhwc=True, transposes=0)


def test_transpose_to_nhwc_is_free():
    run([node("Transpose", ["x"], ["y"], perm=[0, 2, 3, 1])], {"x": [1, 3, 5, 6]}, transposes=0)


def test_transpose_default_reverses():
    run([node("Transpose", ["t"], ["y"])], {"t": [2, 3, 5]}, transposes=1)


def test_transpose_swapping_spatial_axes_moves_data():
    run([node("Transpose", ["x"], ["y"], perm=[0, 1, 3, 2])], {"x": [1, 4, 4, 4]}, nhwc=True, transposes=1)


def test_transpose_of_constant_folds():
    w = np.arange(12, dtype=np.float32).reshape(1, 4, 3, 1)
    nodes = [node("Transpose", ["w"], ["wt"], perm=[0, 1, 3, 2]), node("Add", ["x", "wt"], ["y"])]
    run(nodes, {"x": [1, 4, 1, 3]}, {"w": w}, nhwc=True, transposes=0)


# -- Squeeze, Unsqueeze -----------------------------------------------------------------


def _squeeze(opset, op, src, dst, axes):
    """Squeeze/Unsqueeze node with axes as attribute (< 13) or input (>= 13)."""
    if opset >= 13:
        return node(op, [src, f"{dst}_axes"], [dst]), {f"{dst}_axes": i64(*axes)}
    return node(op, [src], [dst], axes=axes), {}


@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("axes", [[2], [-2]])
def test_squeeze_unsqueeze_round_trip_keeps_channels_last(opset, axes):
    sq, a = _squeeze(opset, "Squeeze", "x", "s", axes)
    un, b = _squeeze(opset, "Unsqueeze", "s", "y", axes)
    run([sq, un], {"x": [1, 4, 1, 5]}, {**a, **b}, opset=opset, nhwc=True, transposes=0)


@pytest.mark.parametrize("opset", [11, 13])
def test_squeeze_batch_of_channels_last(opset):
    # [1, C, H, W] -> [C, H, W] is stored [H, W, C]: only the output goes back
    sq, a = _squeeze(opset, "Squeeze", "x", "y", [0])
    run([sq], {"x": [1, 4, 4, 4]}, a, opset=opset, transposes=1)


def test_squeeze_all_unit_dims():
    run([node("Squeeze", ["x"], ["y"])], {"x": [1, 8, 1, 1]}, opset=13, transposes=0)


@pytest.mark.parametrize("opset", [11, 13])
def test_unsqueeze_rank2_to_image(opset):
    un, a = _squeeze(opset, "Unsqueeze", "t", "y", [-1, -2])
    run([un], {"t": [1, 8]}, a, opset=opset, transposes=0)


@pytest.mark.parametrize("opset", [11, 13])
def test_unsqueeze_channels_last_new_axes(opset):
    # two new unit axes on NHWC data, then back to rank 4 by Squeeze
    un, a = _squeeze(opset, "Unsqueeze", "x", "u", [0, -1])
    sq, b = _squeeze(opset, "Squeeze", "u", "y", [0, 5])
    run([un, sq], {"x": [1, 4, 4, 4]}, {**a, **b}, opset=opset, nhwc=True, transposes=0)


# -- Shape, Size ------------------------------------------------------------------------


def test_shape_of_channels_last_is_in_onnx_order():
    # the shape is [1, 3, 4, 5] whatever the storage: the reshape target must say so
    nodes = [
        node("Shape", ["x"], ["sh"]),
        node("Reshape", ["z", "sh"], ["r"]),
        node("Add", ["x", "r"], ["y"]),
    ]
    model = make_model(nodes, {"x": [1, 3, 4, 5], "z": [60]}, {"y": [1, 3, 4, 5]}, opset=13)
    assert check(model, nhwc_outputs=["y"]).transposes == 1


def test_shape_start_end_opset15():
    nodes = [
        node("Shape", ["x"], ["hw"], start=-2),
        node("Concat", ["lead", "hw"], ["target"], axis=0),
        node("Reshape", ["x", "target"], ["y"]),
    ]
    model = make_model(nodes, {"x": [1, 4, 4, 4]}, {"y": [4, 4, 4]}, {"lead": i64(-1)}, opset=15)
    check(model, transposes=1)


def test_size_feeds_reshape():
    nodes = [
        node("Size", ["x"], ["n"]),
        node("Unsqueeze", ["n", "ax"], ["n1"]),
        node("Reshape", ["x", "n1"], ["y"]),
    ]
    model = make_model(nodes, {"x": [1, 3, 4, 5]}, {"y": [60]}, {"ax": i64(0)}, opset=13)
    check(model, transposes=1)
