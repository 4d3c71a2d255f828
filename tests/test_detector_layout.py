"""YOLOv8/YOLO11 layouts (issue 13.5): the DFL box decoder and C2PSA attention, as ultralytics
exports them. The fp32 TFLite must match onnxruntime at 1e-4, the cpu-int8 one (BATCH_MATMUL
unrolled per head) stay close, and neither carry the transposes the old converter added:
DFL's pointwise conv over [N, 16, 4, anchors] made it transpose the softmax and flip the
box/score Concat; C2PSA's Q, K and V, split along the channels of a [N, heads, channels,
tokens] reshape, each needed a TRANSPOSE before BATCH_MATMUL."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from onnx import helper, numpy_helper
from onnx_harness import check, make_model, run_ort

TOL = {"atol": 1e-4, "rtol": 1e-4}
F = np.float32


def node(op, inputs, outputs, **attrs):
    outputs = [outputs] if isinstance(outputs, str) else outputs
    return helper.make_node(op, inputs, outputs, name=f"n_{outputs[0]}", **attrs)


def onnx_transposes(m) -> int:
    return sum(n.op_type == "Transpose" for n in m.graph.node)


def image(shape, seed=0) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(seed).standard_normal(shape).astype(F)}


def cpu_int8(m, calib, nhwc_outputs=()):
    """cpu-int8's conversion of `m` (per-channel, int8 IO, BATCH_MATMUL unrolled): the .tflite and its signature."""
    from buildsys.onnxprep.prepare import prepare_model
    from buildsys.tflow.onnxsource import export_onnx
    from buildsys.tflow.quantize import to_tflite
    from buildsys.tflow.samples import to_stored

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "float.pb"
        sig = export_onnx(prepare_model(m), path, nhwc_outputs=nhwc_outputs)
        data = to_tflite(
            path,
            sig,
            "int8",
            to_stored(calib, sig.inputs),
            per_channel=True,
            input_type="int8",
            output_type="int8",
            forms=["unfold_batchmatmul"],
        )
    return data, sig


def int8_transposes_and_cosine(m, shape, nhwc_outputs=()) -> tuple[int, float]:
    """cpu-int8's conversion (per-channel, int8 IO, BATCH_MATMUL unrolled): its TRANSPOSE
    count and the cosine of its output to onnxruntime's."""
    from buildsys.tflow.inspect import op_histogram
    from buildsys.tflow.runtime import run_tflite
    from buildsys.tflow.samples import to_onnx_layout, to_stored

    calib = image((8, *shape[1:]), seed=100)
    data, sig = cpu_int8(m, calib, nhwc_outputs)
    feeds = image(shape, seed=7)
    want = run_ort(m, feeds)["y"].reshape(-1).astype(np.float64)
    got = to_onnx_layout(run_tflite(data, to_stored(feeds, sig.inputs)), sig.outputs)["y"]
    got = got.reshape(-1).astype(np.float64)
    return op_histogram(data).get("TRANSPOSE", 0), float(want @ got / (np.linalg.norm(want) * np.linalg.norm(got)))


# -- DFL: YOLOv8/YOLO11's Detect head -------------------------------------------------
CLASSES, H, W = 3, 4, 5
ANCHORS = H * W


def dfl_head(seed: int = 0):
    """Box logits [N, 64, A] -> [N, 4, 16, A] -> Transpose -> Softmax over 16 bins -> 1x1 conv
    with weights 0..15 -> distances; boxes from anchors; Concat with the class sigmoids."""
    rng = np.random.default_rng(seed)
    consts = {
        "w_feat": rng.standard_normal((64 + CLASSES, 8, 1, 1)) * 0.5,
        "b_feat": rng.standard_normal(64 + CLASSES) * 0.1,
        "w_dfl": np.arange(16, dtype=np.float64).reshape(1, 16, 1, 1),
        "flat": np.array([1, 64 + CLASSES, ANCHORS], np.int64),
        "bins": np.array([1, 4, 16, ANCHORS], np.int64),
        "dist": np.array([1, 4, ANCHORS], np.int64),
        "sizes": np.array([64, CLASSES], np.int64),
        "anchors": rng.uniform(0, 5, (1, 2, ANCHORS)),
        "strides": np.full((1, ANCHORS), 8.0),
        "two": np.array(2.0),
        **{k: np.array([v], np.int64) for k, v in {"i0": 0, "i2": 2, "i4": 4, "ax1": 1}.items()},
    }
    nodes = [
        node("Conv", ["x", "w_feat", "b_feat"], "feat", kernel_shape=[1, 1]),
        node("Reshape", ["feat", "flat"], "feat_flat"),
        node("Split", ["feat_flat", "sizes"], ["box", "cls"], axis=1),
        node("Reshape", ["box", "bins"], "box_bins"),
        node("Transpose", ["box_bins"], "box_t", perm=[0, 2, 1, 3]),
        node("Softmax", ["box_t"], "box_p", axis=1),
        node("Conv", ["box_p", "w_dfl"], "box_e", kernel_shape=[1, 1]),
        node("Reshape", ["box_e", "dist"], "ltrb"),
        node("Slice", ["ltrb", "i0", "i2", "ax1"], "lt"),
        node("Slice", ["ltrb", "i2", "i4", "ax1"], "rb"),
        node("Sub", ["anchors", "lt"], "x1y1"),
        node("Add", ["anchors", "rb"], "x2y2"),
        node("Add", ["x1y1", "x2y2"], "sum"),
        node("Div", ["sum", "two"], "cxy"),
        node("Sub", ["x2y2", "x1y1"], "wh"),
        node("Concat", ["cxy", "wh"], "xywh", axis=1),
        node("Mul", ["xywh", "strides"], "dbox"),
        node("Sigmoid", ["cls"], "scores"),
        node("Concat", ["dbox", "scores"], "y", axis=1),
    ]
    inits = {k: v if v.dtype == np.int64 else v.astype(F) for k, v in consts.items()}
    return make_model(nodes, {"x": [1, 8, H, W]}, ["y"], inits, opset=13)


def test_dfl_head_fp32_matches_with_no_more_transposes_than_onnx():
    m = dfl_head()
    conv = check(m, image((1, 8, H, W)), **TOL)
    # the one TRANSPOSE left puts [N, anchors, 4 + classes] into the output's ONNX order;
    # the old converter also transposed the softmax for the 1x1 conv and the boxes for the Concat
    assert conv.transposes <= onnx_transposes(m) == 1, conv.ops


def test_dfl_head_int8_no_more_transposes_than_onnx():
    count, cos = int8_transposes_and_cosine(dfl_head(), (1, 8, H, W))
    assert count <= 1
    assert cos > 0.99


def swapped_pointwise(kernel: int, stride: int, pad: int, seed: int = 0):
    """conv 3x3 -> Transpose(H <-> W) -> conv (kernel, stride, pad) -> Transpose back -> conv 3x3."""
    rng = np.random.default_rng(seed)
    inits = {
        "w1": rng.standard_normal((6, 4, 3, 3)).astype(F) * 0.3,
        "w2": rng.standard_normal((5, 6, kernel, kernel)).astype(F) * 0.3,
        "b2": rng.standard_normal(5).astype(F),
        "w3": rng.standard_normal((3, 5, 3, 3)).astype(F) * 0.3,
    }
    nodes = [
        node("Conv", ["x", "w1"], "a", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        node("Transpose", ["a"], "a_t", perm=[0, 1, 3, 2]),
        node("Conv", ["a_t", "w2", "b2"], "b", kernel_shape=[kernel] * 2, strides=[stride] * 2, pads=[pad] * 4),
        node("Transpose", ["b"], "b_t", perm=[0, 1, 3, 2]),
        node("Conv", ["b_t", "w3"], "y", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
    ]
    return make_model(nodes, {"x": [1, 4, 6, 9]}, ["y"], inits, opset=13)


def test_pointwise_conv_keeps_swapped_spatial_axes():
    # both Transposes compose into the layouts: nothing moves but the NHWC output into NCHW order
    conv = check(swapped_pointwise(1, 1, 0), image((1, 4, 6, 9)), **TOL, nhwc_outputs=["y"])
    assert conv.transposes == 0, conv.ops


@pytest.mark.parametrize("kernel,stride,pad", [(1, 2, 0), (1, 1, 1), (3, 1, 1)])
def test_conv_that_is_not_pointwise_still_matches(kernel, stride, pad):
    # strides, pads and kernels are per spatial axis: these convs must see H and W in place
    check(swapped_pointwise(kernel, stride, pad), image((1, 4, 6, 9), seed=1), **TOL)


# -- C2PSA: YOLO11's attention ----------------------------------------------------------
HEADS, KEY_DIM, HEAD_DIM = 2, 8, 16
CHANNELS = HEADS * HEAD_DIM


def c2psa_attention(seed: int = 0, heads: int = HEADS):
    """ultralytics Attention: qkv 1x1 conv -> [N, heads, 2*key_dim + head_dim, tokens] -> Split
    along the channels; (q * scale)^T k, softmax, v @ attn^T; plus a depthwise conv of v."""
    rng = np.random.default_rng(seed)
    channels = heads * HEAD_DIM
    qkv = heads * (2 * KEY_DIM + HEAD_DIM)
    consts = {
        "w_qkv": rng.standard_normal((qkv, channels, 1, 1)) * 0.3,
        "b_qkv": rng.standard_normal(qkv) * 0.3,
        "w_pe": rng.standard_normal((channels, 1, 3, 3)) * 0.3,
        "w_proj": rng.standard_normal((channels, channels, 1, 1)) * 0.3,
        "heads": np.array([1, heads, 2 * KEY_DIM + HEAD_DIM, H * W], np.int64),
        "image": np.array([1, channels, H, W], np.int64),
        "sizes": np.array([KEY_DIM, KEY_DIM, HEAD_DIM], np.int64),
        "scale": np.array(KEY_DIM**-0.5),
    }
    nodes = [
        node("Conv", ["x", "w_qkv", "b_qkv"], "qkv", kernel_shape=[1, 1]),
        node("Reshape", ["qkv", "heads"], "qkv_h"),
        node("Split", ["qkv_h", "sizes"], ["q", "k", "v"], axis=2),
        node("Mul", ["q", "scale"], "qs"),
        node("Transpose", ["qs"], "qt", perm=[0, 1, 3, 2]),
        node("MatMul", ["qt", "k"], "logits"),
        node("Softmax", ["logits"], "attn", axis=-1),
        node("Transpose", ["attn"], "attn_t", perm=[0, 1, 3, 2]),
        node("MatMul", ["v", "attn_t"], "ctx"),
        node("Reshape", ["ctx", "image"], "ctx_img"),
        node("Reshape", ["v", "image"], "v_img"),
        node("Conv", ["v_img", "w_pe"], "pe", kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=channels),
        node("Add", ["ctx_img", "pe"], "sum"),
        node("Conv", ["sum", "w_proj"], "y", kernel_shape=[1, 1]),
    ]
    inits = {k: v if v.dtype == np.int64 else v.astype(F) for k, v in consts.items()}
    return make_model(nodes, {"x": [1, channels, H, W]}, ["y"], inits, opset=13)


def test_c2psa_attention_fp32_matches_with_one_move_of_qkv():
    m = c2psa_attention()
    conv = check(m, image((1, CHANNELS, H, W)), **TOL, nhwc_outputs=["y"])
    assert conv.ops.get("BATCH_MATMUL") == 2, conv.ops
    # one move of QKV with its heads forward (Q, K and V in one), V to [n, k] for int8's
    # per-head FULLY_CONNECTED, the heads-first product back to channels-last for the Add;
    # the old converter moved Q, K and V each (4)
    assert conv.transposes == 3, conv.ops
    assert onnx_transposes(m) == 2


def test_c2psa_attention_int8_unrolled_has_no_transpose_per_head():
    # the old converter: Q, K, V moved each, and K transposed again for every head (6)
    count, cos = int8_transposes_and_cosine(c2psa_attention(), (1, CHANNELS, H, W), nhwc_outputs=["y"])
    assert count <= 3
    assert cos > 0.99


def test_attention_with_k_from_elsewhere_still_matches():
    # Q^T Q^T^T instead of Q^T K: the moved pieces and the stored ones must not get mixed up
    m = c2psa_attention()
    for n in m.graph.node:
        if n.name == "n_logits":
            n.input[1] = "qt_k"
    m.graph.node.insert(5, node("Transpose", ["qt"], "qt_k", perm=[0, 1, 3, 2]))
    check(m, image((1, CHANNELS, H, W), seed=3), **TOL)


def test_c2psa_one_head_keeps_v_adjoint():
    # one head: the heads-first move only shifts a unit axis (a reshape), and V has no per-head
    # transposes to save, so fp32 keeps BATCH_MATMUL's adj_x; only the Add's move is left
    m = c2psa_attention(heads=1)
    conv = check(m, image((1, HEAD_DIM, H, W), seed=4), **TOL, nhwc_outputs=["y"])
    assert conv.transposes == 1, conv.ops


def test_split_piece_read_later_by_a_mul_of_values_not_converted_yet():
    # K also gated by its own sigmoid after the attention: looking ahead at K's readers must not
    # read the gate, which is converted only after the MatMul
    m = c2psa_attention()
    nodes = [
        *m.graph.node,
        node("Sigmoid", ["k"], "k_gate"),
        node("Mul", ["k", "k_gate"], "k_gated"),
        node("ReduceSum", ["k_gated"], "extra", keepdims=0),
    ]
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    gated = make_model(nodes, {"x": [1, CHANNELS, H, W]}, ["y", "extra"], inits, opset=13)
    check(gated, image((1, CHANNELS, H, W), seed=6), **TOL)


def test_two_splits_of_one_source_each_cut_their_own_pieces():
    # a second Split of the same [N, heads, channels, tokens] tensor, in other sizes, feeding
    # another Q^T K: its pieces come from its own cut of the moved source
    m = c2psa_attention()
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    inits["halves"] = np.array([16, 16], np.int64)
    nodes = [
        *m.graph.node,
        node("Split", ["qkv_h", "halves"], ["p", "r"], axis=2),
        node("Transpose", ["p"], "pt", perm=[0, 1, 3, 2]),
        node("MatMul", ["pt", "r"], "pr"),
        node("ReduceSum", ["pr"], "extra", keepdims=0),
    ]
    both = make_model(nodes, {"x": [1, CHANNELS, H, W]}, ["y", "extra"], inits, opset=13)
    check(both, image((1, CHANNELS, H, W), seed=8), **TOL)


# -- attention whose K and V must move anyway (torch's MultiheadAttention, LeViT) ------------
TOKENS, DIM = 10, 24


def moved_kv_attention(seed: int = 0):
    """Q, K, V from three projections, each reshaped to [1, T, H, d] and transposed into heads-
    first order: K to [1, H, d, T] for Q K^T, V to [1, H, T, d] for attn V."""
    rng = np.random.default_rng(seed)
    inits = {f"w{c}": (rng.standard_normal((DIM, DIM)) * 0.3).astype(F) for c in "qkv"}
    inits["split"] = np.array([1, TOKENS, HEADS, DIM // HEADS], np.int64)
    inits["merge"] = np.array([1, TOKENS, DIM], np.int64)
    nodes = []
    for c, perm in (("q", [0, 2, 1, 3]), ("k", [0, 2, 3, 1]), ("v", [0, 2, 1, 3])):
        nodes += [
            node("MatMul", ["x", f"w{c}"], f"{c}_lin"),
            node("Reshape", [f"{c}_lin", "split"], f"{c}_heads"),
            node("Transpose", [f"{c}_heads"], c, perm=perm),
        ]
    nodes += [
        node("MatMul", ["q", "k"], "logits"),
        node("Softmax", ["logits"], "attn", axis=-1),
        node("MatMul", ["attn", "v"], "ctx"),
        node("Transpose", ["ctx"], "ctx_t", perm=[0, 2, 1, 3]),
        node("Reshape", ["ctx_t", "merge"], "y"),
    ]
    return make_model(nodes, {"x": [1, TOKENS, DIM]}, ["y"], inits, opset=13)


def test_moved_kv_attention_fp32_matches_with_transposes_of_onnx():
    m = moved_kv_attention()
    x = {"x": np.random.default_rng(5).standard_normal((1, TOKENS, DIM)).astype(F)}
    conv = check(m, x, **TOL)
    # Q, K, V and the heads merge move once each, as in ONNX; K and V go to [n, k] (adj_y)
    assert conv.transposes <= onnx_transposes(m) == 4, conv.ops


def test_moved_kv_attention_int8_has_no_transpose_per_head():
    """K and V that must move anyway move to the [n, k] weights order of int8's per-head
    FULLY_CONNECTED; moved to [k, n] they were transposed again per head (8 TRANSPOSE ops here)."""
    from buildsys.tflow.inspect import op_histogram
    from buildsys.tflow.runtime import run_tflite
    from buildsys.tflow.samples import to_onnx_layout, to_stored

    m = moved_kv_attention()
    calib = {"x": np.random.default_rng(100).standard_normal((8, TOKENS, DIM)).astype(F)}
    data, sig = cpu_int8(m, calib)
    ops = op_histogram(data)
    assert "BATCH_MATMUL" not in ops and ops.get("TRANSPOSE", 0) <= onnx_transposes(m), ops
    x = {"x": np.random.default_rng(7).standard_normal((1, TOKENS, DIM)).astype(F)}
    want = run_ort(m, x)["y"].reshape(-1).astype(np.float64)
    got = to_onnx_layout(run_tflite(data, to_stored(x, sig.inputs)), sig.outputs)["y"].reshape(-1)
    assert float(want @ got / (np.linalg.norm(want) * np.linalg.norm(got))) > 0.99
