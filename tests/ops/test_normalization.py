"""Normalizations: onnxruntime vs converted fp32 TFLite, with layout checks."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_harness import check, make_model

from buildsys.converter.convert import Converter, convert_arrays
from buildsys.converter.errors import UnsupportedModel

IMAGE = [1, 4, 4, 4]  # H == W == C: a wrong axis choice still has the right shape
NCHW = [2, 3, 5, 7]


def rng(seed=0):
    return np.random.default_rng(seed)


def nhwc(shape):
    """Keep a 4-D result channels-last at the output, as a following conv would take it."""
    return {"nhwc_outputs": ["y"]} if len(shape) == 4 else {}


def feeds(shape, seed=0, offset=0.0, scale=1.0):
    return {"x": (rng(seed).standard_normal(shape) * scale + offset).astype(np.float32)}


def bn_params(channels, seed=1):
    r = rng(seed)
    return {
        "scale": r.uniform(-2, 2, channels).astype(np.float32),
        "bias": r.uniform(-1, 1, channels).astype(np.float32),
        "mean": r.uniform(-1, 1, channels).astype(np.float32),
        "var": r.uniform(0.05, 3, channels).astype(np.float32),
    }


# -- BatchNormalization ----------------------------------------------------------
@pytest.mark.parametrize(
    "shape,opset,epsilon",
    [
        (IMAGE, 9, None),
        (IMAGE, 15, 1e-3),
        (NCHW, 14, None),
        (NCHW, 11, 0.1),
        ([3, 6], 15, None),  # [N, C]: the channel axis is the last one
        ([3, 6], 9, 1e-2),
        ([2, 3, 10], 15, None),
        ([1, 3, 2, 3, 4], 15, None),
    ],
    ids=str,
)
def test_batch_norm_folds_to_per_channel_mul_add(shape, opset, epsilon):
    attrs = {} if epsilon is None else {"epsilon": epsilon}
    node = helper.make_node("BatchNormalization", ["x", "scale", "bias", "mean", "var"], ["y"], **attrs)
    model = make_model([node], {"x": shape}, ["y"], bn_params(shape[1]), opset=opset)
    conv = check(model, feeds(shape), transposes=0, **nhwc(shape))
    assert set(conv.ops) <= {"MUL", "ADD", "RESHAPE"}, conv.ops


def test_batch_norm_after_relu_on_channels_last_trap():
    # the per-channel vectors must land on NHWC's last axis, not on H (also 4 wide)
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("BatchNormalization", ["r", "scale", "bias", "mean", "var"], ["b"]),
        helper.make_node("Sigmoid", ["b"], ["y"]),
    ]
    model = make_model(nodes, {"x": IMAGE}, ["y"], bn_params(4, seed=3), opset=15)
    check(model, feeds(IMAGE), transposes=0, nhwc_outputs=["y"])


def test_batch_norm_computed_statistics():
    node = helper.make_node("BatchNormalization", ["x", "scale", "bias", "mean", "var"], ["y"])
    params = bn_params(3)
    var = params.pop("var")
    model = make_model([node], {"x": NCHW, "var": [3]}, ["y"], params, opset=15)
    check(model, {**feeds(NCHW), "var": var}, transposes=0, nhwc_outputs=["y"])


def test_batch_norm_training_mode_is_unsupported():
    node = helper.make_node(
        "BatchNormalization", ["x", "scale", "bias", "mean", "var"], ["y", "rm", "rv"], training_mode=1
    )
    model = make_model([node], {"x": IMAGE}, ["y"], bn_params(4), opset=15)
    with pytest.raises(UnsupportedModel, match="training"):
        convert_arrays(Converter(model), feeds(IMAGE))


# -- InstanceNormalization ------------------------------------------------------------
@pytest.mark.parametrize(
    "shape,opset,epsilon",
    [(IMAGE, 11, None), (NCHW, 17, 1e-3), ([2, 3, 10], 11, None), ([2, 3, 10], 17, 0.5)],
    ids=str,
)
def test_instance_norm(shape, opset, epsilon):
    attrs = {} if epsilon is None else {"epsilon": epsilon}
    node = helper.make_node("InstanceNormalization", ["x", "scale", "bias"], ["y"], **attrs)
    params = bn_params(shape[1])
    inits = {"scale": params["scale"], "bias": params["bias"]}
    model = make_model([node], {"x": shape}, ["y"], inits, opset=opset)
    check(model, feeds(shape, offset=0.7, scale=2.0), transposes=0, **nhwc(shape))


# -- LayerNormalization ----------------------------------------------------------------
@pytest.mark.parametrize(
    "shape,axis,epsilon,bias",
    [
        ([1, 6, 16], -1, None, True),  # [1, S, D]: the transformer case
        ([1, 6, 16], -1, 1e-3, False),
        ([1, 6, 16], 1, None, True),
        (IMAGE, 1, None, True),  # over C, H, W
        (IMAGE, -1, None, True),  # over W, which NHWC stores in the middle
        (NCHW, -1, 1e-2, False),
        (NCHW, 2, None, True),
        (NCHW, 0, None, True),
    ],
    ids=str,
)
def test_layer_norm(shape, axis, epsilon, bias):
    r = rng(2)
    normalized = shape[axis:] if axis != -1 else shape[-1:]
    inits = {"scale": r.uniform(-2, 2, normalized).astype(np.float32)}
    names = ["x", "scale"]
    if bias:
        inits["bias"] = r.uniform(-1, 1, normalized).astype(np.float32)
        names.append("bias")
    attrs = {"axis": axis} | ({} if epsilon is None else {"epsilon": epsilon})
    node = helper.make_node("LayerNormalization", names, ["y"], **attrs)
    model = make_model([node], {"x": shape}, ["y"], inits, opset=17)
    check(model, feeds(shape, offset=0.5, scale=3.0), transposes=0, **nhwc(shape))


def test_layer_norm_statistics_outputs():
    shape = [2, 5, 8]
    node = helper.make_node("LayerNormalization", ["x", "scale"], ["y", "mean", "inv_std"], axis=1)
    inits = {"scale": rng(4).uniform(-2, 2, [5, 8]).astype(np.float32)}
    model = make_model([node], {"x": shape}, ["y", "mean", "inv_std"], inits, opset=17)
    check(model, feeds(shape, offset=1.0), transposes=0)


# -- LpNormalization ---------------------------------------------------------------
@pytest.mark.parametrize(
    "shape,axis,p",
    [([3, 10], -1, 2), ([3, 10], 0, 1), (IMAGE, 1, 2), (IMAGE, -1, 2), (NCHW, 1, 1)],
    ids=str,
)
def test_lp_norm(shape, axis, p):
    node = helper.make_node("LpNormalization", ["x"], ["y"], axis=axis, p=p)
    model = make_model([node], {"x": shape}, ["y"], opset=17)
    conv = check(model, feeds(shape), transposes=0, **nhwc(shape))
    if p == 2 and len(shape) == 4 and axis == 1:
        assert conv.ops.get("L2_NORMALIZATION") == 1, conv.ops


def test_lp_norm_zero_vector_stays_zero():
    x = np.zeros([2, 6], np.float32)
    x[1] = np.arange(6)
    node = helper.make_node("LpNormalization", ["x"], ["y"], axis=1, p=2)
    check(make_model([node], {"x": [2, 6]}, ["y"], opset=17), {"x": x})


# -- GroupNormalization -----------------------------------------------------------------
def unchecked_model(node, shape, inits, opset):
    """onnx.checker refuses GroupNormalization-18 as deprecated, but exporters wrote it
    for opsets 18-20 and onnxruntime still runs it."""
    graph = helper.make_graph(
        [node],
        "test",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 9
    return model


@pytest.mark.parametrize(
    "shape,groups,opset",
    [(IMAGE, 2, 18), (IMAGE, 2, 21), ([2, 6, 3, 5], 3, 21), ([2, 6, 3, 5], 6, 18), ([2, 6, 10], 2, 21)],
    ids=str,
)
def test_group_norm(shape, groups, opset):
    params = shape[1] if opset >= 21 else groups
    r = rng(5)
    inits = {
        "scale": r.uniform(-2, 2, params).astype(np.float32),
        "bias": r.uniform(-1, 1, params).astype(np.float32),
    }
    node = helper.make_node("GroupNormalization", ["x", "scale", "bias"], ["y"], num_groups=groups)
    model = (
        unchecked_model(node, shape, inits, opset)
        if opset < 21
        else make_model(
            [node],
            {"x": shape},
            {"y": shape},
            inits,
            opset=opset,  # inference cannot see into the function
        )
    )
    # groups are runs of the stored last axis, so 3-D input in ONNX order moves there and back
    transposes = 0 if len(shape) == 4 else 2
    check(model, feeds(shape, offset=0.3, scale=2.0), transposes=transposes, **nhwc(shape))
