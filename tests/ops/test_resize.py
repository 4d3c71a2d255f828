"""Resize / Upsample against onnxruntime over coordinate modes, nearest modes and scales.

Each model holds several Resize nodes reading one channels-last image, with the outputs
kept channels-last (nhwc_outputs), so `transposes=0` checks the resizes themselves move no
data; fewer, larger models keep the conversion count (the slow part) down."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from onnx_harness import check, convert, make_model

from buildsys.converter.errors import UnsupportedModel

NEAREST_MODES = ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]
# (label, scales for [N, C, H, W] or None, sizes or None) on a [1, C, 4, 3] image
TARGETS = [
    ("x2", [1, 1, 2.0, 2.0], None),
    ("half", [1, 1, 0.5, 0.5], None),
    ("x1.5", [1, 1, 1.5, 1.5], None),
    ("sizes7x5", None, [1, 3, 7, 5]),
]
IMAGE = [1, 3, 4, 3]


class Builder:
    """Resize nodes on input x with their scales/sizes as initializers, inputs laid out
    as the opset wants them (roi and scales are required inputs before opset 13)."""

    def __init__(self, opset: int):
        self.opset, self.nodes, self.inits, self.outs = opset, [], {}, []

    def add(self, out: str, scales=None, sizes=None, src: str = "x", **attrs) -> None:
        empty = ""
        if self.opset < 13:
            self.inits["empty"] = np.array([], dtype=np.float32)
            empty = "empty"
        if sizes is not None:
            self.inits[f"{out}_sizes"] = np.array(sizes, dtype=np.int64)
            inputs = [src, empty, empty, f"{out}_sizes"]
        else:
            self.inits[f"{out}_scales"] = np.array(scales, dtype=np.float32)
            inputs = [src, empty, f"{out}_scales"]
        self.nodes.append(helper.make_node("Resize", inputs, [out], **attrs))
        self.outs.append(out)

    def model(self, shape=IMAGE):
        return make_model(self.nodes, {"x": shape}, self.outs, self.inits, opset=self.opset)

    def check(self, shape=IMAGE, transposes=0, **kw):
        return check(self.model(shape), transposes=transposes, nhwc_outputs=self.outs, **kw)


NEAREST_COORDS = [
    "half_pixel",
    "pytorch_half_pixel",
    "align_corners",
    "asymmetric",
    "tf_half_pixel_for_nn",
    "half_pixel_symmetric",
]


@pytest.mark.parametrize("coord", NEAREST_COORDS)
def test_nearest_every_mode_and_scale(coord):
    b = Builder(19)
    for rule in NEAREST_MODES:
        for label, scales, sizes in TARGETS:
            b.add(
                f"{rule}_{label}",
                scales,
                sizes,
                mode="nearest",
                coordinate_transformation_mode=coord,
                nearest_mode=rule,
            )
    conv = b.check()
    assert "TRANSPOSE" not in conv.ops


LINEAR_COORDS = ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "half_pixel_symmetric"]


@pytest.mark.parametrize("coord", LINEAR_COORDS)
def test_linear_every_scale(coord):
    b = Builder(19)
    for label, scales, sizes in TARGETS:
        b.add(label, scales, sizes, mode="linear", coordinate_transformation_mode=coord)
    b.check()


@pytest.mark.parametrize("opset", [11, 13, 18])
def test_opsets_scales_and_sizes(opset):
    b = Builder(opset)
    for label, scales, sizes in TARGETS:
        b.add(
            f"n_{label}",
            scales,
            sizes,
            mode="nearest",
            coordinate_transformation_mode="asymmetric",
            nearest_mode="floor",
        )
        b.add(f"l_{label}", scales, sizes, mode="linear", coordinate_transformation_mode="half_pixel")
    b.add("default_nearest", [1, 1, 1.5, 0.5])  # half_pixel + round_prefer_floor by default
    b.check()


# Integer-factor nearest upsampling, as PyTorch/YOLO/FPN export it, is the builtin kernel.
@pytest.mark.parametrize(
    "opset, attrs",
    [
        (11, {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}),
        (13, {"mode": "nearest"}),
        (18, {"mode": "nearest", "coordinate_transformation_mode": "pytorch_half_pixel"}),
    ],
)
def test_integer_nearest_upsample_is_builtin(opset, attrs):
    b = Builder(opset)
    b.add("y", [1, 1, 2, 2], **attrs)
    b.add("z", [1, 1, 3, 2], **attrs)
    conv = b.check([1, 4, 4, 4])  # H == W == C
    assert conv.ops.get("RESIZE_NEAREST_NEIGHBOR", 0) == 2, conv.ops
    assert "GATHER" not in conv.ops


@pytest.mark.parametrize(
    "coord, flags",
    [
        ("half_pixel", "half_pixel_centers"),
        ("asymmetric", "none"),
        ("align_corners", "align_corners"),
        ("pytorch_half_pixel", "half_pixel_centers"),
    ],
)
def test_bilinear_builtin_when_it_matches(coord, flags):
    b = Builder(13)
    b.add("y", [1, 1, 2, 2], mode="linear", coordinate_transformation_mode=coord)
    b.add("z", None, [1, 4, 7, 5], mode="linear", coordinate_transformation_mode=coord)
    conv = b.check([1, 4, 4, 4])
    assert conv.ops.get("RESIZE_BILINEAR", 0) == 2, conv.ops


def test_non_integer_scale_uses_the_given_scale():
    """Scale 1.7 on 4 gives 6 outputs; onnxruntime maps with 1/1.7, not 4/6 as the TF kernels
    would, so neither may become the builtin."""
    b = Builder(13)
    b.add("n", [1, 1, 1.7, 1.7], mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    b.add("l", [1, 1, 1.7, 1.7], mode="linear", coordinate_transformation_mode="half_pixel")
    conv = b.check([1, 2, 4, 4])
    assert "RESIZE_NEAREST_NEIGHBOR" not in conv.ops and "RESIZE_BILINEAR" not in conv.ops, conv.ops


def test_pytorch_half_pixel_output_dim_1():
    b = Builder(13)
    for mode in ("nearest", "linear"):
        b.add(f"{mode}_h1", None, [1, 3, 1, 5], mode=mode, coordinate_transformation_mode="pytorch_half_pixel")
        b.add(f"{mode}_w1", None, [1, 3, 6, 1], mode=mode, coordinate_transformation_mode="pytorch_half_pixel")
    b.check()


def test_mixed_axes_on_hwc_trap():
    b = Builder(13)
    b.add("a", [1, 1, 2, 0.5], mode="nearest")
    b.add("b", [1, 1, 0.5, 2], mode="linear", coordinate_transformation_mode="align_corners")
    b.add("c", [1, 1, 1, 3], mode="linear", coordinate_transformation_mode="asymmetric")
    b.add(
        "d",
        None,
        [1, 4, 3, 4],
        mode="nearest",
        coordinate_transformation_mode="half_pixel",
        nearest_mode="round_prefer_ceil",
    )
    b.check([1, 4, 4, 4])


def test_cubic():
    b = Builder(13)
    b.add("up", [1, 1, 2, 2], mode="cubic")
    b.add("down", [1, 1, 0.6, 0.8], mode="cubic", coordinate_transformation_mode="asymmetric")
    b.add("excl", None, [1, 3, 7, 5], mode="cubic", exclude_outside=1)
    b.add("coeff", [1, 1, 1.5, 2.5], mode="cubic", cubic_coeff_a=-0.5, coordinate_transformation_mode="align_corners")
    b.check()


def test_opset18_axes_policy_and_antialias():
    b = Builder(18)
    b.add("axes_sizes", None, [7, 5], axes=[2, 3], mode="linear")
    b.add("axes_scales", [2.0, 0.5], axes=[-1, 2], mode="nearest")
    b.add("not_larger", None, [8, 9], axes=[2, 3], keep_aspect_ratio_policy="not_larger", mode="nearest")
    b.add("not_smaller", None, [8, 9], axes=[2, 3], keep_aspect_ratio_policy="not_smaller", mode="linear")
    # antialias only matters when shrinking
    b.add("aa_up", [1, 1, 2, 1.5], mode="linear", antialias=1)
    b.add("aa_cubic_up", [1, 1, 2, 2], mode="cubic", antialias=1)
    b.check()


def test_half_pixel_symmetric_opset19():
    b = Builder(19)
    b.add("n", [1, 1, 2.5, 0.7], mode="nearest", coordinate_transformation_mode="half_pixel_symmetric")
    b.add("l", [1, 1, 1.7, 2.0], mode="linear", coordinate_transformation_mode="half_pixel_symmetric")
    b.check([1, 2, 5, 4])


def test_identity_resize_and_constant_input():
    b = Builder(13)
    b.add("same", [1, 1, 1, 1], mode="linear")
    b.nodes.append(helper.make_node("Resize", ["k", "", "k_scales"], ["kr"], mode="nearest"))
    b.nodes.append(helper.make_node("Add", ["x", "kr"], ["sum"]))
    b.inits["k"] = np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3)
    b.inits["k_scales"] = np.array([1, 1, 2, 1], dtype=np.float32)
    b.outs.append("sum")
    conv = b.check()
    assert not {"GATHER", "RESIZE_NEAREST_NEIGHBOR"} & set(conv.ops)


def test_rank3_linear_resize_in_place():
    """A rank-3 [N, C, L] tensor is not channels-last; the gather path resizes it as stored."""
    nodes = [helper.make_node("Resize", ["x", "", "s"], ["y"], mode="linear")]
    model = make_model(nodes, {"x": [1, 3, 5]}, ["y"], {"s": np.array([1, 1, 1.6], np.float32)}, opset=13)
    check(model, transposes=0)


def test_resize_10():
    nodes = [
        helper.make_node("Resize", ["x", "up"], ["y"], mode="nearest"),
        helper.make_node("Resize", ["x", "down"], ["z"], mode="nearest"),
        helper.make_node("Resize", ["x", "lin"], ["w"], mode="linear"),
    ]
    inits = {
        "up": np.array([1, 1, 2, 3], np.float32),
        "down": np.array([1, 1, 0.5, 0.7], np.float32),
        "lin": np.array([1, 1, 1.5, 2], np.float32),
    }
    model = make_model(nodes, {"x": [1, 2, 4, 6]}, ["y", "z", "w"], inits, opset=10)
    check(model, transposes=0, nhwc_outputs=["y", "z", "w"])


def test_upsample_7_attribute_scales():
    nodes = [
        helper.make_node("Upsample", ["x"], ["y"], mode="nearest", scales=[1.0, 1.0, 2.0, 2.0]),
        helper.make_node("Upsample", ["x"], ["z"], mode="linear", scales=[1.0, 1.0, 1.5, 3.0]),
    ]
    model = make_model(nodes, {"x": [1, 4, 4, 4]}, ["y", "z"], opset=7)
    conv = check(model, transposes=0, nhwc_outputs=["y", "z"])
    assert conv.ops.get("RESIZE_NEAREST_NEIGHBOR", 0) == 1, conv.ops


def test_upsample_9_input_scales():
    nodes = [
        helper.make_node("Upsample", ["x", "s2"], ["y"], mode="nearest"),
        helper.make_node("Upsample", ["x", "s3"], ["z"], mode="linear"),
    ]
    inits = {"s2": np.array([1, 1, 2, 2], np.float32), "s3": np.array([1, 1, 2.5, 1], np.float32)}
    model = make_model(nodes, {"x": [1, 3, 4, 3]}, ["y", "z"], inits, opset=9)
    check(model, transposes=0, nhwc_outputs=["y", "z"])


def unsupported_reason(model) -> str:
    with pytest.raises(UnsupportedModel) as info:
        convert(model)
    return str(info.value)


def test_unsupported_combinations_say_why():
    b = Builder(18)
    b.add("crop", [1, 1, 2, 2], mode="linear", coordinate_transformation_mode="tf_crop_and_resize")
    assert "tf_crop_and_resize" in unsupported_reason(b.model())
    b = Builder(18)
    b.add("aa_down", [1, 1, 0.5, 0.5], mode="linear", antialias=1)
    assert "antialias" in unsupported_reason(b.model())
