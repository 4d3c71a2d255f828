"""Converter core: layout algebra, the unsupported-node table, the registry."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from onnx_harness import check, convert, make_model

from buildsys.converter import layout
from buildsys.converter.errors import UnsupportedModel
from buildsys.converter.ops.shape import stored_reshape_perm
from buildsys.converter.registry import default_registry


def test_permutation_algebra() -> None:
    nhwc = layout.channels_last(4)
    assert nhwc == (0, 2, 3, 1)
    assert layout.relative(nhwc, layout.identity(4)) == (0, 3, 1, 2)
    assert layout.tf_axis(nhwc, 1) == 3 and layout.tf_axis(nhwc, -1) == 2
    assert layout.drop_axes(nhwc, [1]) == (0, 1, 2)
    # Transpose(NCHW->NHWC) of a channels-last tensor leaves the data where it is
    assert layout.is_identity(layout.apply_transpose(nhwc, (0, 2, 3, 1)))
    assert layout.moves_only_units((0, 3, 1, 2), [1, 1, 1, 8])
    assert not layout.moves_only_units((0, 3, 1, 2), [1, 2, 2, 8])


@pytest.mark.parametrize(
    "src,dst,expected",
    [
        ([1, 255, 4, 5], [1, 3, 85, 4, 5], (0, 3, 4, 1, 2)),  # split channels: still no transpose
        ([1, 8, 1, 1], [1, 8], (0, 1)),  # drop unit spatial dims
        ([1, 8, 4, 5], [1, 8, 20], (0, 2, 1)),  # H, W stay adjacent in NHWC: merged in place
        ([1, 8, 4, 5], [1, 160], None),  # C*H*W order mixes channels and space: needs ONNX order
    ],
)
def test_reshape_in_stored_layout(src, dst, expected) -> None:
    assert stored_reshape_perm(layout.channels_last(4), src, dst) == expected


def test_every_unsupported_node_is_in_one_table() -> None:
    model = make_model(
        [
            helper.make_node("Reshape", ["x", "s"], ["y"], name="dyn_reshape"),
            helper.make_node("Hardmax", ["x"], ["h"], name="hard"),
            helper.make_node("Relu", ["y"], ["z"], name="after_failure"),
        ],
        {"x": [2, 6], "s": ([2], np.int64)},
        ["z", "h"],
    )
    with pytest.raises(UnsupportedModel) as err:
        convert(model)
    rows = {(r.op_type, r.node) for r in err.value.rejected}
    assert rows == {("Reshape", "dyn_reshape"), ("Hardmax", "hard")}
    assert "must be a constant" in err.value.message and "no converter" in err.value.message
    assert err.value.exit_code == 1


def test_custom_domain_nodes_are_reported() -> None:
    graph = helper.make_graph(
        [helper.make_node("FastGelu", ["x"], ["y"], domain="com.microsoft", name="gelu0")],
        "g",
        [helper.make_tensor_value_info("x", 1, [1, 4])],
        [helper.make_tensor_value_info("y", 1, [1, 4])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    with pytest.raises(UnsupportedModel, match="custom domain 'com.microsoft'"):
        convert(model)


def test_registry_picks_the_newest_handler_not_newer_than_the_opset() -> None:
    registry = default_registry()
    assert registry.lookup("", "Conv", 11) is not None
    assert registry.lookup("ai.onnx", "Relu", 21) is registry.lookup("", "Relu", 14)
    assert registry.lookup("", "NoSuchOp", 17) is None


def test_hwc_equal_dims_follow_the_ops_not_the_shape() -> None:
    # H == W == C: a shape heuristic cannot tell the axes apart; the permutation can
    rng = np.random.default_rng(0)
    model = make_model(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[1, 1]),
            helper.make_node("Transpose", ["c"], ["t"], perm=[0, 2, 3, 1]),
            helper.make_node("ReduceSum", ["t", "axes"], ["r"], keepdims=1),
            helper.make_node("Transpose", ["r"], ["y"], perm=[0, 3, 1, 2]),
        ],
        {"x": [1, 4, 4, 4]},
        ["y"],
        {"w": rng.standard_normal((4, 4, 1, 1)).astype(np.float32), "axes": np.array([3], np.int64)},
    )
    check(model, transposes=0)
