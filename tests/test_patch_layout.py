"""MobileViT's patch unfold -> attention -> fold (issue 13.5), as timm's MobileVitBlock exports it:
[B, C, H, W] -> Reshape [B*C*nh, ph, nw, pw] -> Transpose -> Reshape [B, C, N, P] -> Transpose ->
Reshape [B*P, N, C], a transformer over the patches, and the mirror chain back to a feature map
between convs. Each chain is one permutation of the map's factors: the fp32 TFLite must match
onnxruntime at 1e-4 and carry no more TRANSPOSE ops than the ONNX graph (one per chain here, where
node by node took two, and the transformer got its tokens in a layout every MatMul had to move)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from onnx_harness import check, make_model, run_ort

HEADS, HEAD_DIM = 2, 8
DIM = HEADS * HEAD_DIM
IN_CH, OUT = 3, 10
TOL = {"atol": 1e-4, "rtol": 1e-4}
F = np.float32


def node(op, inputs, outputs, **attrs):
    outputs = [outputs] if isinstance(outputs, str) else outputs
    return helper.make_node(op, inputs, outputs, name=f"n_{outputs[0]}", **attrs)


def i64(*values):
    return np.array(values, np.int64)


def chain(x: str, prefix: str, shapes: list, perms: list, out: str) -> tuple[list, dict, str]:
    """Reshape to shapes[0], Transpose by perms[0], Reshape to shapes[1], ... ending in a Reshape to `out`."""
    consts = {f"{prefix}{i + 1}": i64(*shape) for i, shape in enumerate(shapes)}
    nodes, last = [], x
    for i, name in enumerate(consts):
        reshaped = out if i == len(shapes) - 1 else f"{prefix}_r{i + 1}"
        nodes.append(node("Reshape", [last, name], reshaped))
        if i < len(perms):
            last = f"{prefix}_t{i + 1}"
            nodes.append(node("Transpose", [reshaped], last, perm=perms[i]))
    return nodes, consts, out


def unfold(x: str, b: int, h: int, w: int, ph: int, pw: int) -> tuple[list, dict, str]:
    nh, nw = h // ph, w // pw
    shapes = [(b * DIM * nh, ph, nw, pw), (b, DIM, nh * nw, ph * pw), (b * ph * pw, nh * nw, -1)]
    return chain(x, "u", shapes, [[0, 2, 1, 3], [0, 3, 2, 1]], "tokens")


def fold(x: str, b: int, h: int, w: int, ph: int, pw: int) -> tuple[list, dict, str]:
    nh, nw = h // ph, w // pw
    shapes = [(b, ph * pw, nh * nw, -1), (b * DIM * nh, nw, ph, pw), (b, DIM, h, w)]
    return chain(x, "f", shapes, [[0, 3, 2, 1], [0, 2, 1, 3]], "folded")


def attention(x: str, batch: int, tokens: int, rng) -> tuple[list, dict, str]:
    """timm's attention over [batch, tokens, DIM] (LayerNorm, QKV split by Transpose + Split)."""
    consts = {
        "ln_g": rng.standard_normal(DIM) * 0.2 + 1,
        "ln_b": rng.standard_normal(DIM) * 0.1,
        "wqkv": rng.standard_normal((DIM, 3 * DIM)) * 0.3,
        "wproj": rng.standard_normal((DIM, DIM)) * 0.3,
        "scale": np.array(HEAD_DIM**-0.5),
        "qkv5": i64(batch, tokens, 3, HEADS, HEAD_DIM),
        "merged3": i64(batch, tokens, DIM),
        "axis0": i64(0),
    }
    nodes = [
        node("LayerNormalization", [x, "ln_g", "ln_b"], "ln", axis=-1),
        node("MatMul", ["ln", "wqkv"], "qkv"),
        node("Reshape", ["qkv", "qkv5"], "qkv_r"),
        node("Transpose", ["qkv_r"], "qkv_t", perm=[2, 0, 3, 1, 4]),
        node("Split", ["qkv_t"], ["q5", "k5", "v5"], axis=0, num_outputs=3),
        node("Squeeze", ["q5", "axis0"], "q"),
        node("Squeeze", ["k5", "axis0"], "k"),
        node("Squeeze", ["v5", "axis0"], "v"),
        node("Transpose", ["k"], "kt", perm=[0, 1, 3, 2]),
        node("Mul", ["q", "scale"], "qs"),
        node("MatMul", ["qs", "kt"], "logits"),
        node("Softmax", ["logits"], "attn", axis=-1),
        node("MatMul", ["attn", "v"], "ctx"),
        node("Transpose", ["ctx"], "ctx_t", perm=[0, 2, 1, 3]),
        node("Reshape", ["ctx_t", "merged3"], "merged"),
        node("MatMul", ["merged", "wproj"], "proj"),
        node("Add", [x, "proj"], "attended"),
    ]
    return nodes, consts, "attended"


def mobilevit_block(b=1, h=8, w=12, ph=2, pw=2, seed=0):
    """conv in -> unfold -> attention -> fold -> conv out, concat with the input map (as
    MobileViT's conv_fusion), then a full-map conv: its output depends on every position."""
    rng = np.random.default_rng(seed)
    tokens = (h // ph) * (w // pw)
    consts = {
        "w_in": rng.standard_normal((DIM, IN_CH, 3, 3)) * 0.3,
        "w_proj": rng.standard_normal((IN_CH, DIM, 1, 1)) * 0.3,
        "w_head": rng.standard_normal((OUT, 2 * IN_CH, h, w)) * 0.1,
    }
    nodes = [node("Conv", ["x", "w_in"], "mapped", pads=[1, 1, 1, 1])]
    parts = (
        unfold("mapped", b, h, w, ph, pw),
        attention("tokens", b * ph * pw, tokens, rng),
        fold("attended", b, h, w, ph, pw),
    )
    for more, more_consts, _ in parts:
        nodes += more
        consts.update(more_consts)
    nodes += [
        node("Conv", ["folded", "w_proj"], "projected"),
        node("Concat", ["x", "projected"], "fused", axis=1),
        node("Conv", ["fused", "w_head"], "head"),
        node("Flatten", ["head"], "y"),
    ]
    inits = {k: v if v.dtype == np.int64 else v.astype(F) for k, v in consts.items()}
    return make_model(nodes, {"x": [b, IN_CH, h, w]}, ["y"], inits, opset=18)


def onnx_transposes(m) -> int:
    return sum(n.op_type == "Transpose" for n in m.graph.node)


def feeds(m, seed=0):
    shape = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    return {"x": np.random.default_rng(seed).standard_normal(shape).astype(F)}


BLOCKS = [
    {},  # mobilevit_xxs's 2x2 patches
    {"h": 8, "w": 9, "ph": 2, "pw": 3},  # no two factors alike: a swapped axis cannot pass
    {"b": 2, "h": 4, "w": 6},
]


@pytest.mark.parametrize("shape", BLOCKS, ids=["2x2", "2x3", "batch2"])
def test_block_fp32_matches_with_one_transpose_per_chain(shape):
    m = mobilevit_block(**shape)
    conv = check(m, feeds(m), **TOL)
    assert onnx_transposes(m) == 7
    # unfold 1 + attention 3 (QKV move, K's transpose, heads merge) + fold 1: ONNX takes 2 per chain
    assert conv.transposes <= 5, conv.ops


def test_unfold_alone_costs_one_transpose_and_leaves_tokens_in_onnx_order():
    # tokens read by a MatMul: stored [B*P, N, C] as ONNX has them, so the MatMul moves nothing
    rng = np.random.default_rng(3)
    nodes, consts, out = unfold("mapped", 1, 8, 12, 2, 2)
    nodes = [node("Conv", ["x", "w_in"], "mapped"), *nodes, node("MatMul", [out, "wt"], "y")]
    consts.update(w_in=rng.standard_normal((DIM, IN_CH, 1, 1)).astype(F), wt=rng.standard_normal((DIM, 5)).astype(F))
    m = make_model(nodes, {"x": [1, IN_CH, 8, 12]}, ["y"], consts, opset=18)
    assert check(m, feeds(m), **TOL).transposes == 1


def test_fold_alone_costs_one_transpose_and_feeds_the_conv_channels_last():
    rng = np.random.default_rng(4)
    nodes, consts, out = fold("t", 1, 8, 12, 2, 2)
    nodes = [*nodes, node("Conv", [out, "w"], "y")]
    consts["w"] = rng.standard_normal((OUT, DIM, 1, 1)).astype(F)
    m = make_model(nodes, {"t": [4, 24, DIM]}, ["y"], consts, opset=18)
    conv = check(m, {"t": rng.standard_normal((4, 24, DIM)).astype(F)}, nhwc_outputs=["y"], **TOL)
    assert conv.transposes == 1, conv.ops


def test_chain_without_common_factors_is_converted_node_by_node():
    # 6x4 -> 4x6 splits no axis evenly: no atoms, each node as before, still exact
    nodes = [
        node("Reshape", ["x", "s1"], "r"),
        node("Transpose", ["r"], "t", perm=[0, 1, 3, 2]),
        node("Reshape", ["t", "s2"], "y"),
    ]
    m = make_model(nodes, {"x": [1, 2, 6, 4]}, ["y"], {"s1": i64(1, 2, 4, 6), "s2": i64(1, 2, 24)}, opset=18)
    check(m, feeds(m), **TOL)


def test_chain_read_twice_midway_is_not_fused_and_still_matches():
    nodes, consts, out = unfold("x", 1, 8, 12, 2, 2)
    nodes.append(node("Identity", ["u_r2"], "side"))
    m = make_model(nodes, {"x": [1, DIM, 8, 12]}, [out, "side"], consts, opset=18)
    check(m, feeds(m), **TOL)


def test_int8_block_transposes_at_most_onnx():
    """cpu-int8's switches (BATCH_MATMUL unrolled into FULLY_CONNECTED...): same chain costs, close output."""
    from test_fusions import cosine, int8_build, int8_run

    from buildsys.devices.catalogue import Catalogue
    from buildsys.tflow.inspect import op_histogram

    m = mobilevit_block()
    calib = {"x": np.random.default_rng(100).standard_normal((8, IN_CH, 8, 12)).astype(F)}
    data, sig = int8_build(m, calib, *Catalogue().get("cpu-int8").op_forms)
    ops = op_histogram(data)
    assert ops.get("TRANSPOSE", 0) <= 5 < onnx_transposes(m), ops
    x = feeds(m, 7)
    want = run_ort(m, x)["y"].reshape(-1)
    assert cosine(want, int8_run(data, sig, x)["y"].reshape(-1)) > 0.98


def test_channel_shuffle_then_split_keeps_channels_last():
    """ShuffleNetV2's shuffle (Reshape [N, g, C/g, H, W] -> Transpose -> Reshape) read by a Split
    into two convs: one transpose inside the channel axis, none before the convs (node by node: 3)."""
    rng = np.random.default_rng(5)
    c, h, w = 12, 5, 6
    nodes = [
        node("Conv", ["x", "w_in"], "mapped"),
        node("Reshape", ["mapped", "s5"], "g5"),
        node("Transpose", ["g5"], "g5t", perm=[0, 2, 1, 3, 4]),
        node("Reshape", ["g5t", "s4"], "shuffled"),
        node("Split", ["shuffled"], ["a", "b"], axis=1, num_outputs=2),
        node("Conv", ["a", "wa"], "ya"),
        node("Conv", ["b", "wb"], "yb"),
        node("Concat", ["ya", "yb"], "y", axis=1),
    ]
    consts = {
        "w_in": rng.standard_normal((c, IN_CH, 1, 1)).astype(F),
        "s5": i64(1, 2, c // 2, h, w),
        "s4": i64(1, c, h, w),
        "wa": rng.standard_normal((4, c // 2, 1, 1)).astype(F),
        "wb": rng.standard_normal((4, c // 2, 1, 1)).astype(F),
    }
    m = make_model(nodes, {"x": [1, IN_CH, h, w]}, ["y"], consts, opset=18)
    assert check(m, feeds(m), nhwc_outputs=["y"], **TOL).transposes == 1


def test_chain_wider_than_six_atoms_is_converted_node_by_node():
    # eight 2-sized atoms no two of which stay neighbours: one 8-D TRANSPOSE is more than TFLite
    # takes, so each node goes as before (none wider than the ONNX tensors), still exact
    nodes = [
        node("Reshape", ["x", "s1"], "r1"),
        node("Transpose", ["r1"], "t1", perm=[0, 2, 1, 4, 3]),
        node("Reshape", ["t1", "s2"], "r2"),
        node("Transpose", ["r2"], "y", perm=[4, 1, 2, 0, 3]),
    ]
    m = make_model(nodes, {"x": [1, 4, 8, 8]}, ["y"], {"s1": i64(8, 2, 4, 2, 2), "s2": i64(2, 4, 2, 4, 4)}, opset=18)
    check(m, feeds(m), **TOL)


def test_divisor_moved_by_a_chain_is_still_known_nonnegative():
    # x / Exp(x) moved by Reshape -> Transpose -> Reshape: the chain keeps the sign, so the
    # int8-safe division takes the y^(-1/4) form, with no ABS of a maybe-negative divisor
    nodes = [
        node("Exp", ["x"], "e"),
        node("Reshape", ["e", "s1"], "r"),
        node("Transpose", ["r"], "t", perm=[0, 2, 1, 3]),
        node("Reshape", ["t", "s2"], "den"),
        node("Div", ["x", "den"], "y"),
    ]
    m = make_model(nodes, {"x": [2, 6, 4]}, ["y"], {"s1": i64(2, 3, 2, 4), "s2": i64(2, 6, 4)}, opset=18)
    conv = check(m, feeds(m), **TOL)
    assert "ABS" not in conv.ops and "DIV" not in conv.ops, conv.ops
