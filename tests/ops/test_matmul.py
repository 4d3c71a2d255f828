"""MatMul, Gemm and Einsum against onnxruntime, with the TFLite ops they should become.

Products sum at most K = 64 terms of N(0, 1) values here, so the default 1e-5 holds."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from onnx_harness import check, make_model

RNG = np.random.default_rng(0)


def rand(*shape) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


# -- Gemm --------------------------------------------------------------------------
GEMM_CASES = [
    # transA, transB, alpha, beta, C shape (None: no C)
    (0, 0, 1.0, 1.0, [5]),
    (0, 1, 1.0, 1.0, [1, 5]),
    (1, 0, 0.5, 2.0, [3, 5]),
    (1, 1, 2.0, 0.5, []),
    (0, 1, 0.25, 1.0, [3, 1]),
    (0, 0, 1.0, 1.0, None),
    (1, 1, 1.5, 0.0, [5]),
]


def gemm_model(trans_a, trans_b, alpha, beta, c_shape, b_const, c_const, opset=13):
    m, k, n = 3, 8, 5
    a_shape = [k, m] if trans_a else [m, k]
    b_shape = [n, k] if trans_b else [k, n]
    inputs, inits = {"a": a_shape}, {}
    if b_const:
        inits["b"] = rand(*b_shape)
    else:
        inputs["b"] = b_shape
    names = ["a", "b"]
    if c_shape is not None:
        if c_const:
            inits["c"] = rand(*c_shape)
        else:
            inputs["c"] = c_shape
        names.append("c")
    node = helper.make_node("Gemm", names, ["y"], alpha=alpha, beta=beta, transA=trans_a, transB=trans_b)
    return make_model([node], inputs, ["y"], inits, opset=opset)


@pytest.mark.parametrize("case", GEMM_CASES, ids=lambda c: f"tA{c[0]}-tB{c[1]}-a{c[2]}-b{c[3]}-C{c[4]}")
def test_gemm_constant_weights_become_fully_connected(case):
    conv = check(gemm_model(*case, b_const=True, c_const=True))
    assert conv.ops.get("FULLY_CONNECTED", 0) == 1, conv.ops
    assert "BATCH_MATMUL" not in conv.ops


@pytest.mark.parametrize("case", [GEMM_CASES[2], GEMM_CASES[3], GEMM_CASES[4]], ids=["tA", "tAtB", "colC"])
def test_gemm_computed_operands(case):
    check(gemm_model(*case, b_const=False, c_const=False))


@pytest.mark.parametrize("opset", [7, 11])
def test_gemm_old_opsets(opset):
    check(gemm_model(0, 1, 1.0, 1.0, [5], b_const=True, c_const=True, opset=opset))


def test_gemm_transposed_row_vector_is_a_reshape():
    """transA on a [K, 1] input (M = 1) only relabels a unit axis: no TRANSPOSE."""
    nodes = [helper.make_node("Gemm", ["a", "b", "c"], ["y"], transA=1, transB=1)]
    model = make_model(nodes, {"a": [8, 1]}, ["y"], {"b": rand(5, 8), "c": rand(5)})
    check(model, transposes=0)


@pytest.mark.parametrize("shape", [[1, 4, 4, 4], [2, 3, 5, 4], [1, 6, 1, 1]], ids=["HWC-trap", "batch2", "pooled"])
def test_flatten_gemm_after_channels_last_image(shape):
    """Flatten must order features C, H, W as ONNX does, although the image is stored NHWC."""
    features = int(np.prod(shape[1:]))
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "w", "bias"], ["y"], transB=1),
    ]
    model = make_model(nodes, {"x": shape}, ["y"], {"w": rand(7, features), "bias": rand(7)})
    # one transpose to ONNX order before flattening, none when H = W = 1
    conv = check(model, transposes=0 if shape[2] * shape[3] == 1 else 1)
    assert conv.ops.get("FULLY_CONNECTED", 0) == 1


# -- MatMul ------------------------------------------------------------------------
MATMUL_SHAPES = [
    ([3, 8], [8, 5]),
    ([2, 3, 8], [2, 8, 5]),
    ([2, 3, 4, 8], [2, 3, 8, 5]),
    ([2, 1, 4, 8], [3, 8, 5]),  # batch broadcasting across ranks
    ([2, 3, 8], [8, 5]),
    ([8], [8, 5]),
    ([2, 3, 8], [8]),
    ([8], [8]),
    ([8], [2, 8, 5]),
]


def test_matmul_computed_operands():
    """Every shape pair in one model (conversions are the slow part); outputs y<i> follow MATMUL_SHAPES."""
    nodes, inputs = [], {}
    for i, (a_shape, b_shape) in enumerate(MATMUL_SHAPES):
        inputs[f"a{i}"], inputs[f"b{i}"] = a_shape, b_shape
        nodes.append(helper.make_node("MatMul", [f"a{i}", f"b{i}"], [f"y{i}"]))
    model = make_model(nodes, inputs, [f"y{i}" for i in range(len(MATMUL_SHAPES))], opset=13)
    # rank-4 inputs would arrive channels-last; keep them in ONNX order to test the plain case
    conv = check(model, transposes=0, keep_layout=list(inputs))
    # one BATCH_MATMUL per product; rank-1 operands and broadcasting cost only reshapes;
    # the right operand is centred at run time (MEAN, SUB, SUM, MUL, ADD: see centred_matmul)
    assert conv.ops.get("BATCH_MATMUL", 0) == len(MATMUL_SHAPES), conv.ops
    assert set(conv.ops) <= {"BATCH_MATMUL", "RESHAPE", "MEAN", "SUB", "SUM", "MUL", "ADD"}, conv.ops


def test_matmul_channels_last_batched_operands():
    """Rank-4 float inputs arrive channels-last: each needs its batch axes moved in front."""
    nodes = [helper.make_node("MatMul", ["a", "b"], ["y"])]
    conv = check(make_model(nodes, {"a": [2, 3, 4, 8], "b": [2, 3, 8, 4]}, ["y"], opset=13), transposes=2)
    assert conv.ops.get("BATCH_MATMUL", 0) == 1


FC_SHAPES = [([3, 8], [8, 5]), ([2, 3, 8], [8, 5]), ([2, 2, 3, 8], [8, 5]), ([8], [8, 5]), ([2, 3, 8], [8])]


def test_matmul_constant_weights_become_fully_connected():
    nodes, inputs, inits = [], {}, {}
    for i, (a_shape, b_shape) in enumerate(FC_SHAPES):
        inputs[f"a{i}"], inits[f"w{i}"] = a_shape, rand(*b_shape)
        nodes.append(helper.make_node("MatMul", [f"a{i}", f"w{i}"], [f"y{i}"]))
    model = make_model(nodes, inputs, [f"y{i}" for i in range(len(FC_SHAPES))], inits, opset=13)
    conv = check(model, transposes=0, keep_layout=list(inputs))
    assert conv.ops.get("FULLY_CONNECTED", 0) == len(FC_SHAPES), conv.ops
    assert "BATCH_MATMUL" not in conv.ops


def test_matmul_constant_batched_weights_and_constant_left_operand():
    nodes = [
        helper.make_node("MatMul", ["a", "wb"], ["y"]),
        helper.make_node("MatMul", ["wl", "a"], ["z"]),
    ]
    model = make_model(nodes, {"a": [2, 4, 4]}, ["y", "z"], {"wb": rand(2, 4, 3), "wl": rand(5, 4)}, opset=13)
    check(model, transposes=0)


def test_matmul_both_constant_is_folded():
    nodes = [
        helper.make_node("MatMul", ["p", "q"], ["pq"]),
        helper.make_node("Add", ["x", "pq"], ["y"]),
    ]
    model = make_model(nodes, {"x": [3, 5]}, ["y"], {"p": rand(3, 4), "q": rand(4, 5)}, opset=13)
    conv = check(model)
    assert "FULLY_CONNECTED" not in conv.ops and "BATCH_MATMUL" not in conv.ops


def test_matmul_on_channels_last_image():
    """[1, C, H, W] @ [W, N]: contracts over W although the image is stored NHWC."""
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("Relu", ["y"], ["z"])]
    model = make_model(nodes, {"x": [1, 4, 4, 4]}, ["z"], {"w": rand(4, 6)}, opset=13)
    check(model)


def test_matmul_transposed_operand_uses_adjoint():
    """A Transpose feeding MatMul only relabels axes; BATCH_MATMUL's adjoint flag absorbs it."""
    nodes = [
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["s"]),
        helper.make_node("Transpose", ["q"], ["qt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["qt", "v"], ["t"]),
    ]
    model = make_model(nodes, {"q": [2, 5, 8], "k": [2, 6, 8], "v": [2, 5, 3]}, ["s", "t"], opset=13)
    check(model, transposes=0)


@pytest.mark.parametrize("opset", [11, 13])
def test_matmul_opsets(opset):
    nodes = [helper.make_node("MatMul", ["a", "b"], ["y"])]
    check(make_model(nodes, {"a": [2, 3, 8], "b": [2, 8, 5]}, ["y"], opset=opset), transposes=0)


# -- Einsum ------------------------------------------------------------------------
EINSUM_CASES = [
    ("bij,bjk->bik", [2, 3, 8], [2, 8, 5]),
    ("ij,jk->ik", [3, 8], [8, 5]),
    ("bhid,bhjd->bhij", [2, 3, 5, 8], [2, 3, 6, 8]),
    ("bhij,bhjd->bhid", [2, 3, 5, 6], [2, 3, 6, 8]),
    ("bid,dj->bij", [2, 5, 8], [8, 4]),
    ("i,i->", [8], [8]),
    ("bij,bkj->bik", [2, 3, 8], [2, 5, 8]),
    ("ij,kj->ki", [3, 8], [5, 8]),
    ("...ij,...jk->...ik", [2, 3, 8], [2, 8, 5]),
    ("bi,bj->bij", [3, 4], [3, 5]),
    ("bij,bij->bi", [2, 3, 8], [2, 3, 8]),
    ("ij,jk", [3, 8], [8, 5]),
]


def test_einsum_computed():
    """Every equation in one model; output y<i> is EINSUM_CASES[i]."""
    nodes, inputs = [], {}
    for i, (equation, a_shape, b_shape) in enumerate(EINSUM_CASES):
        inputs[f"a{i}"], inputs[f"b{i}"] = a_shape, b_shape
        nodes.append(helper.make_node("Einsum", [f"a{i}", f"b{i}"], [f"y{i}"], equation=equation))
    model = make_model(nodes, inputs, [f"y{i}" for i in range(len(EINSUM_CASES))], opset=13)
    conv = check(model, keep_layout=list(inputs))
    assert "EINSUM" not in conv.ops


def test_einsum_constant_weights_become_fully_connected():
    nodes = [helper.make_node("Einsum", ["a", "w"], ["y"], equation="bid,dj->bij")]
    conv = check(make_model(nodes, {"a": [2, 5, 8]}, ["y"], {"w": rand(8, 4)}, opset=13), transposes=0)
    assert conv.ops.get("FULLY_CONNECTED", 0) == 1, conv.ops


def test_einsum_attention_forms_need_no_transpose():
    nodes = [
        helper.make_node("Einsum", ["q", "k"], ["s"], equation="bhid,bhjd->bhij"),
        helper.make_node("Softmax", ["s"], ["p"], axis=-1),
        helper.make_node("Einsum", ["p", "v"], ["y"], equation="bhij,bhjd->bhid"),
    ]
    shapes = {"q": [1, 2, 5, 8], "k": [1, 2, 6, 8], "v": [1, 2, 6, 8]}
    conv = check(make_model(nodes, shapes, ["y"], opset=13), transposes=0, keep_layout=list(shapes))
    assert conv.ops.get("BATCH_MATMUL", 0) == 2


def test_einsum_single_operand_and_three_operands():
    nodes = [
        helper.make_node("Einsum", ["a"], ["t"], equation="ij->ji"),
        helper.make_node("Einsum", ["a"], ["s"], equation="ij->i"),
        helper.make_node("Einsum", ["a", "b", "c"], ["y"], equation="ij,jk,kl->il"),
    ]
    shapes = {"a": [3, 4], "b": [4, 5], "c": [5, 6]}
    check(make_model(nodes, shapes, ["t", "s", "y"], opset=13))


def test_einsum_diagonals():
    """Repeated indices within one operand take diagonals (MUL by an identity mask + SUM)."""
    nodes = [
        helper.make_node("Einsum", ["a"], ["d"], equation="ii->i"),
        helper.make_node("Einsum", ["a"], ["t"], equation="ii"),  # implicit output: the trace
        helper.make_node("Einsum", ["b"], ["bd"], equation="...ii ->...i"),
        helper.make_node("Einsum", ["a", "c"], ["ac"], equation="ii,ij->ij"),
    ]
    shapes = {"a": [4, 4], "b": [2, 3, 3], "c": [4, 5]}
    conv = check(make_model(nodes, shapes, ["d", "t", "bd", "ac"], opset=13), transposes=0)
    assert "GATHER" not in conv.ops and "EINSUM" not in conv.ops


def test_int8_matmul_of_two_activations_with_an_offset_right_operand(tmp_path):
    """softmax(s) @ (v + 2): TFLite's int8 BATCH_MATMUL alone gives cosine ~0.7 here."""
    from onnx_harness import Converted, run_ort

    from buildsys.tflow.onnxsource import export_onnx
    from buildsys.tflow.quantize import to_tflite
    from buildsys.tflow.samples import to_stored

    model = make_model(
        [
            helper.make_node("Softmax", ["s"], ["p"], axis=-1),
            helper.make_node("Add", ["v", "two"], ["w"]),
            helper.make_node("MatMul", ["p", "w"], ["y"]),
        ],
        {"s": [1, 16, 16], "v": [1, 16, 64]},
        ["y"],
        {"two": np.array(2.0, np.float32)},
    )
    rng = np.random.default_rng(0)
    calib = {
        "s": rng.standard_normal((32, 16, 16)).astype(np.float32),
        "v": rng.standard_normal((32, 16, 64)).astype(np.float32),
    }
    signature = export_onnx(model, tmp_path / "f.pb")
    data = to_tflite(
        tmp_path / "f.pb",
        signature,
        "int8",
        calib=to_stored(calib, signature.inputs),
        input_type="float32",
        output_type="float32",
    )
    conv = Converted(data, signature, {})
    for _ in range(4):
        feeds = {
            "s": rng.standard_normal((1, 16, 16)).astype(np.float32),
            "v": rng.standard_normal((1, 16, 64)).astype(np.float32),
        }
        want = run_ort(model, feeds)["y"].ravel()
        got = conv.run(feeds)["y"].ravel()
        # centred: the shared +2 offset would otherwise dominate the cosine
        want, got = want - want.mean(), got - want.mean()
        cos = float(want @ got / (np.linalg.norm(want) * np.linalg.norm(got)))
        assert cos >= 0.98, cos
