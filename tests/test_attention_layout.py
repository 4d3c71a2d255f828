"""timm's attention layout (issue 13.5): QKV split by Transpose + Split + Squeeze, K's
Transpose and the sqrt(scale) Muls on Q and K, as vit_tiny_patch16_224 exports them. The fp32
TFLite must match onnxruntime at 1e-4 and carry no more TRANSPOSE ops than the ONNX graph."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from onnx_harness import check, make_model, run_ort

TOKENS, HEADS, HEAD_DIM = 10, 3, 8
DIM = HEADS * HEAD_DIM
TOL = {"atol": 1e-4, "rtol": 1e-4}
F = np.float32


def node(op, inputs, outputs, **attrs):
    outputs = [outputs] if isinstance(outputs, str) else outputs
    return helper.make_node(op, inputs, outputs, name=f"n_{outputs[0]}", **attrs)


def block(i: int, x: str, scale_shape: tuple, rng) -> tuple[list, dict, str]:
    """One timm attention block reading `x` [1, T, D]; returns nodes, initializers, output."""
    p = f"b{i}_"
    consts = {
        p + "wqkv": rng.standard_normal((DIM, 3 * DIM)) * 0.3,
        p + "bqkv": rng.standard_normal(3 * DIM) * 0.5 + 0.5,
        p + "wproj": rng.standard_normal((DIM, DIM)) * 0.3,
        p + "bproj": rng.standard_normal(DIM) * 0.1,
        p + "scale": np.full(scale_shape, HEAD_DIM**-0.5),
        p + "shape5": np.array([1, TOKENS, 3, HEADS, HEAD_DIM], np.int64),
        p + "shape3": np.array([1, TOKENS, DIM], np.int64),
        p + "axis0": np.array([0], np.int64),
    }
    nodes = [
        node("MatMul", [x, p + "wqkv"], p + "qkv_mm"),
        node("Add", [p + "qkv_mm", p + "bqkv"], p + "qkv"),
        node("Reshape", [p + "qkv", p + "shape5"], p + "qkv5"),
        node("Transpose", [p + "qkv5"], p + "qkvt", perm=[2, 0, 3, 1, 4]),
        node("Split", [p + "qkvt"], [p + "q5", p + "k5", p + "v5"], axis=0, num_outputs=3),
        node("Squeeze", [p + "q5", p + "axis0"], p + "q"),
        node("Squeeze", [p + "k5", p + "axis0"], p + "k"),
        node("Squeeze", [p + "v5", p + "axis0"], p + "v"),
        node("Sqrt", [p + "scale"], p + "root"),
        node("Transpose", [p + "k"], p + "kt", perm=[0, 1, 3, 2]),
        node("Mul", [p + "kt", p + "root"], p + "ks"),
        node("Mul", [p + "q", p + "root"], p + "qs"),
        node("MatMul", [p + "qs", p + "ks"], p + "logits"),
        node("Softmax", [p + "logits"], p + "attn", axis=-1),
        node("MatMul", [p + "attn", p + "v"], p + "ctx"),
        node("Transpose", [p + "ctx"], p + "ctxt", perm=[0, 2, 1, 3]),
        node("Reshape", [p + "ctxt", p + "shape3"], p + "merged"),
        node("MatMul", [p + "merged", p + "wproj"], p + "proj_mm"),
        node("Add", [p + "proj_mm", p + "bproj"], p + "proj"),
        node("Add", [x, p + "proj"], p + "out"),
    ]
    return nodes, consts, p + "out"


def timm_attention(depth: int = 2, scale_shape: tuple = (), seed: int = 0):
    rng = np.random.default_rng(seed)
    nodes, consts, x = [], {}, "x"
    for i in range(depth):
        more, more_consts, x = block(i, x, scale_shape, rng)
        nodes += more
        consts.update(more_consts)
    nodes.append(node("Identity", [x], "y"))
    inits = {k: v if v.dtype == np.int64 else v.astype(F) for k, v in consts.items()}
    return make_model(nodes, {"x": [1, TOKENS, DIM]}, ["y"], inits, opset=18)


def onnx_transposes(m) -> int:
    return sum(n.op_type == "Transpose" for n in m.graph.node)


def feeds(seed=0):
    return {"x": np.random.default_rng(seed).standard_normal((1, TOKENS, DIM)).astype(F)}


def test_timm_attention_fp32_matches_and_transposes_at_most_onnx():
    m = timm_attention()
    conv = check(m, feeds(), **TOL)
    assert conv.ops.get("BATCH_MATMUL") == 4, conv.ops
    # 3 per block in ONNX: the QKV move, K's transpose (adj_y), the heads merge
    assert conv.transposes <= onnx_transposes(m) == 6, conv.ops


@pytest.mark.parametrize("scale_shape", [(1,), (1, 1, 1, 1)])
def test_one_element_scale_of_any_rank_taken_along(scale_shape):
    conv = check(timm_attention(scale_shape=scale_shape), feeds(1), **TOL)
    assert conv.transposes <= 6, conv.ops


def test_per_head_scale_is_not_a_scalar_and_still_matches():
    # a [1, H, 1, 1] scale is no scalar: K keeps its own layout, the result must still be right
    check(timm_attention(scale_shape=(1, HEADS, 1, 1)), feeds(2), **TOL)


def test_int8_unfolded_attention_transposes_at_most_onnx():
    """cpu-int8 unrolls BATCH_MATMUL into FULLY_CONNECTED per head: K (adj_y) and V (moved once
    to [n, k]) arrive as its weights, so no TRANSPOSE per head, and the output stays close."""
    from test_fusions import cosine, int8_build, int8_run

    from buildsys.tflow.inspect import op_histogram

    m = timm_attention()
    calib = {"x": np.random.default_rng(100).standard_normal((8, TOKENS, DIM)).astype(F)}
    data, sig = int8_build(m, calib, "unfold_batchmatmul")
    ops = op_histogram(data)
    assert "BATCH_MATMUL" not in ops and ops.get("TRANSPOSE", 0) <= onnx_transposes(m), ops
    x = feeds(7)
    want = run_ort(m, x)["y"].reshape(-1)
    assert cosine(want, int8_run(data, sig, x)["y"].reshape(-1)) > 0.95
