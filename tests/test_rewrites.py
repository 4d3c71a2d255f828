"""Registered ONNX rewrites: valid models, the original op gone, onnxruntime outputs kept.

Models are built here with onnx.helper (no TensorFlow needed); each rewritten model must pass
onnx.checker and strict shape inference, and match the original in onnxruntime: exact rewrites
at atol 1e-5 (div-to-mul rtol 1e-6), approximate ones within their declared bound, MaxPool
cascades and ArgMax bit for bit.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from buildsys.rewrites.registry import REWRITES, RewriteContext, RewriteError, apply_rewrite, rewrite_model

X_SHAPE = [1, 8, 16, 16]
ELEM = {
    np.dtype(np.float32): TensorProto.FLOAT,
    np.dtype(np.int32): TensorProto.INT32,
    np.dtype(np.int64): TensorProto.INT64,
}


def make_model(nodes, inputs, outputs, inits=None, opset=17) -> onnx.ModelProto:
    """inputs: {name: shape} float32 or {name: (shape, dtype)}; outputs: names."""

    def vi(name, spec):
        shape, dtype = spec if isinstance(spec, tuple) else (spec, np.float32)
        return helper.make_tensor_value_info(name, ELEM[np.dtype(dtype)], shape)

    inits = [numpy_helper.from_array(np.asarray(v), n) for n, v in (inits or {}).items()]
    outs = [helper.make_empty_tensor_value_info(n) for n in outputs]
    graph = helper.make_graph(nodes, "test", [vi(n, s) for n, s in inputs.items()], outs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = helper.find_min_ir_version_for(list(model.opset_import))
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    known = {v.name: v for v in model.graph.value_info}
    for out in model.graph.output:
        out.CopyFrom(known[out.name])
    onnx.checker.check_model(model, full_check=True)
    return model


def one_node(op_type, opset=17, inputs=None, inits=None, shape=X_SHAPE, **attrs) -> onnx.ModelProto:
    ins = inputs or ["x"]
    node = helper.make_node(op_type, ins, ["y"], name="target", **attrs)
    return make_model([node], {"x": shape}, ["y"], inits, opset)


def run_ort(model, feeds) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def rewritten(model, rewrite, names=("target",)) -> onnx.ModelProto:
    """Rewrite, then assert the result is valid and the rewritten nodes (and op types) are gone."""
    # a MaxPool cascade is made of MaxPools: only the original nodes must go
    gone = {n.op_type for n in model.graph.node if n.name in names} - {"MaxPool"}
    out = rewrite_model(model, list(names), rewrite)
    onnx.checker.check_model(out, full_check=True)
    onnx.shape_inference.infer_shapes(out, strict_mode=True)
    assert not gone & {n.op_type for n in out.graph.node}, [n.op_type for n in out.graph.node]
    assert not set(names) & {n.name for n in out.graph.node}
    assert [o.name for o in out.graph.output] == [o.name for o in model.graph.output]
    names_used = [n.name for n in out.graph.node if n.name]
    assert len(names_used) == len(set(names_used))
    return out


def compare(model, out, feeds, atol=1e-5, rtol=0.0) -> float:
    """Max abs difference, after asserting it is within the tolerances."""
    want, have = run_ort(model, feeds), run_ort(out, feeds)
    worst = 0.0
    for name, w in want.items():
        assert have[name].dtype == w.dtype and have[name].shape == w.shape
        np.testing.assert_allclose(have[name], w, atol=atol, rtol=rtol, err_msg=name)
        worst = max(worst, float(np.max(np.abs(have[name].astype(np.float64) - w))))
    return worst


def spread(scale=8.0, shape=X_SHAPE, seed=0) -> np.ndarray:
    """Negative and positive values up to +-scale, with exact 0 and the ends present."""
    x = np.random.default_rng(seed).uniform(-scale, scale, shape).astype(np.float32)
    x.flat[:3] = (0.0, -scale, scale)
    return x


def op_types(model) -> list[str]:
    return [n.op_type for n in model.graph.node]


# -- registry -------------------------------------------------------------------------------------


def test_registry_names_and_fields():
    assert list(REWRITES) == [
        "hardswish",
        "hardsigmoid",
        "mish",
        "softplus",
        "prelu",
        "leaky-relu",
        "gelu",
        "gelu-tanh",
        "erf-poly",
        "div-to-mul",
        "maxpool-cascade",
        "argmax",
    ]
    for name, r in REWRITES.items():
        assert r.name == name and r.summary and "\n" not in r.summary
        assert (r.bound == 0.0) == r.exact, name
    assert not REWRITES["gelu-tanh"].exact and not REWRITES["erf-poly"].exact
    with pytest.raises(TypeError):
        REWRITES["x"] = REWRITES["gelu"]


# -- activations ----------------------------------------------------------------------------------


@pytest.mark.parametrize("opset", [14, 18, 21])
def test_hardswish(opset):
    model = one_node("HardSwish", opset)
    out = rewritten(model, "hardswish")
    assert {"Add", "Clip", "Mul"} == set(op_types(out))
    compare(model, out, {"x": spread(8.0)})


@pytest.mark.parametrize("opset", [13, 21])
@pytest.mark.parametrize("attrs", [{}, {"alpha": 0.3, "beta": 0.4}, {"alpha": -0.5, "beta": 0.1}])
def test_hardsigmoid_honours_alpha_beta(opset, attrs):
    model = one_node("HardSigmoid", opset, **attrs)
    out = rewritten(model, "hardsigmoid")
    assert set(op_types(out)) == {"Mul", "Add", "Clip"}
    compare(model, out, {"x": spread(8.0)})


@pytest.mark.parametrize("opset", [13, 18])
def test_softplus_is_stable_for_large_magnitudes(opset):
    model = one_node("Softplus", opset)
    out = rewritten(model, "softplus")
    x = spread(120.0)  # exp(120) overflows float32: the naive formula would give inf
    got = run_ort(out, {"x": x})["y"]
    assert np.all(np.isfinite(got))
    compare(model, out, {"x": x})
    compare(model, out, {"x": spread(4.0, seed=1)})


@pytest.mark.parametrize("opset", [18, 21])
def test_mish(opset):
    model = one_node("Mish", opset)
    out = rewritten(model, "mish")
    assert "Tanh" in op_types(out) and "Softplus" not in op_types(out)
    for x in (spread(120.0), spread(5.0, seed=1)):
        compare(model, out, {"x": x})


@pytest.mark.parametrize("opset", [13, 18])
@pytest.mark.parametrize("slope_shape", [[8, 1, 1], [1], [16], [1, 8, 16, 16]])
def test_prelu_broadcasts_slope(opset, slope_shape):
    slope = np.random.default_rng(3).uniform(-0.5, 1.5, slope_shape).astype(np.float32)
    model = one_node("PRelu", opset, inputs=["x", "slope"], inits={"slope": slope})
    out = rewritten(model, "prelu")
    compare(model, out, {"x": spread(8.0)})


@pytest.mark.parametrize("alpha, form", [(0.1, "Max"), (0.0, "Max"), (1.0, "Max"), (1.5, "Sub"), (-0.2, "Sub")])
def test_leaky_relu(alpha, form):
    model = one_node("LeakyRelu", 13, alpha=alpha)
    out = rewritten(model, "leaky-relu")
    assert form in op_types(out)
    compare(model, out, {"x": spread(8.0)})


def test_leaky_relu_default_alpha():
    model = one_node("LeakyRelu", 18)
    out = rewritten(model, "leaky-relu")
    compare(model, out, {"x": spread(8.0)})


# -- GELU / Erf ----------------------------------------------------------------------------------


@pytest.mark.parametrize("approximate, core", [("none", "Erf"), ("tanh", "Tanh")])
@pytest.mark.parametrize("opset", [20, 21])
def test_gelu_exact(approximate, core, opset):
    model = one_node("Gelu", opset, approximate=approximate)
    out = rewritten(model, "gelu")
    assert core in op_types(out)
    compare(model, out, {"x": spread(10.0)})


def line(lo, hi, n) -> np.ndarray:
    return np.linspace(lo, hi, n, dtype=np.float32)


def test_gelu_tanh_from_gelu_within_bound():
    bound = REWRITES["gelu-tanh"].bound
    grid = line(-12.0, 12.0, 400_001)
    model = one_node("Gelu", 20, shape=[grid.size], approximate="none")
    out = rewritten(model, "gelu-tanh")
    assert "Erf" not in op_types(out)
    worst = compare(model, out, {"x": grid}, atol=bound)
    assert worst > bound / 2  # the bound documents the real error, it is not just loose


def test_gelu_tanh_from_erf_within_bound():
    bound = REWRITES["gelu-tanh"].bound
    grid = line(-8.0, 8.0, 400_001)
    model = one_node("Erf", 13, shape=[grid.size])
    out = rewritten(model, "gelu-tanh")
    assert "Tanh" in op_types(out)
    worst = compare(model, out, {"x": grid}, atol=bound)
    assert worst > bound / 2


def test_erf_poly_within_bound():
    bound = REWRITES["erf-poly"].bound
    # dense overall, and every float32 around the worst case (small |z|, where 1 - poly*exp cancels)
    around_worst = np.arange(
        np.float32(0.03).view(np.uint32), np.float32(0.05).view(np.uint32), 3, dtype=np.uint32
    ).view(np.float32)
    grid = np.concatenate([line(-8.0, 8.0, 400_001), around_worst, -around_worst])
    model = one_node("Erf", 18, shape=[grid.size])
    out = rewritten(model, "erf-poly")
    assert {"Exp", "Sign", "Reciprocal"} <= set(op_types(out))
    worst = compare(model, out, {"x": grid}, atol=bound)
    assert 1.5e-7 < worst and worst > bound / 2


def test_erf_poly_in_a_gelu_built_from_erf():
    x = helper.make_node("Mul", ["x", "rsqrt2"], ["s"], name="scale")
    erf = helper.make_node("Erf", ["s"], ["e"], name="target")
    rest = [
        helper.make_node("Add", ["e", "one"], ["p"]),
        helper.make_node("Mul", ["x", "p"], ["q"]),
        helper.make_node("Mul", ["q", "half"], ["y"]),
    ]
    consts = {"rsqrt2": np.float32(2**-0.5), "one": np.float32(1), "half": np.float32(0.5)}
    model = make_model([x, erf, *rest], {"x": X_SHAPE}, ["y"], consts, 13)
    out = rewritten(model, "erf-poly")
    compare(model, out, {"x": spread(10.0)}, atol=10 * REWRITES["erf-poly"].bound)


# -- Div -----------------------------------------------------------------------------------------


def test_div_to_mul_initializer_divisor():
    rng = np.random.default_rng(4)
    divisor = (rng.uniform(0.1, 10.0, [8, 1, 1]) * rng.choice([-1, 1], [8, 1, 1])).astype(np.float32)
    model = one_node("Div", 13, inputs=["x", "d"], inits={"d": divisor})
    out = rewritten(model, "div-to-mul")
    assert op_types(out) == ["Mul"]
    assert "d" not in {t.name for t in out.graph.initializer}  # only the Div used it
    compare(model, out, {"x": spread(100.0)}, atol=0.0, rtol=1e-6)


def test_div_to_mul_constant_node_divisor():
    const = helper.make_node("Constant", [], ["d"], value=numpy_helper.from_array(np.float32(3.0)))
    div = helper.make_node("Div", ["x", "d"], ["y"], name="target")
    model = make_model([const, div], {"x": X_SHAPE}, ["y"], opset=18)
    out = rewritten(model, "div-to-mul")
    assert op_types(out) == ["Mul"]  # the Constant fed only the Div
    compare(model, out, {"x": spread(100.0)}, atol=0.0, rtol=1e-6)


def test_div_to_mul_keeps_a_shared_divisor():
    d = np.float32(7.0)
    nodes = [helper.make_node("Div", ["x", "d"], ["y"], name="target"), helper.make_node("Add", ["x", "d"], ["z"])]
    model = make_model(nodes, {"x": X_SHAPE}, ["y", "z"], {"d": d})
    out = rewritten(model, "div-to-mul")
    assert "d" in {t.name for t in out.graph.initializer}
    compare(model, out, {"x": spread(100.0)}, atol=0.0, rtol=1e-6)


@pytest.mark.parametrize("case", ["input", "zero", "integer"])
def test_div_to_mul_rejects(case):
    if case == "input":
        node = helper.make_node("Div", ["x", "d"], ["y"], name="target")
        model = make_model([node], {"x": X_SHAPE, "d": [1]}, ["y"])
    elif case == "zero":
        model = one_node("Div", inputs=["x", "d"], inits={"d": np.array([2.0, 0.0], np.float32)}, shape=[4, 2])
    else:
        node = helper.make_node("Div", ["x", "d"], ["y"], name="target")
        model = make_model([node], {"x": ([4], np.int32)}, ["y"], {"d": np.int32(3)})
    with pytest.raises(RewriteError, match="target"):
        rewrite_model(model, ["target"], "div-to-mul")


# -- MaxPool cascade / SPP -> SPPF ---------------------------------------------------------------------


def pool(name, x, y, k, **attrs):
    attrs.setdefault("pads", [(k - 1) // 2] * 4) if "auto_pad" not in attrs else None
    return helper.make_node("MaxPool", [x], [y], name=name, kernel_shape=[k, k], strides=[1, 1], **attrs)


def negative_input(shape=X_SHAPE) -> np.ndarray:
    # all below zero: a cascade padding with zeros instead of -inf would show at the borders
    return -np.abs(np.random.default_rng(5).standard_normal(shape)).astype(np.float32) - 1.0


def pool_sizes(model) -> list[int]:
    return [
        list(n.attribute[i].ints)[0]
        for n in model.graph.node
        if n.op_type == "MaxPool"
        for i, a in enumerate(n.attribute)
        if a.name == "kernel_shape"
    ]


def assert_bit_exact(model, out, x):
    want, have = run_ort(model, {"x": x}), run_ort(out, {"x": x})
    for name in want:
        assert np.array_equal(want[name], have[name]), name


@pytest.mark.parametrize("k, sizes", [(3, [3]), (5, [5]), (7, [5, 3]), (9, [5, 5]), (11, [5, 5, 3]), (13, [5, 5, 5])])
@pytest.mark.parametrize("opset", [13, 18])
def test_maxpool_cascade_single(k, sizes, opset):
    model = make_model([pool("target", "x", "y", k)], {"x": X_SHAPE}, ["y"], opset=opset)
    out = rewrite_model(model, ["target"], "maxpool-cascade")
    onnx.checker.check_model(out, full_check=True)
    onnx.shape_inference.infer_shapes(out, strict_mode=True)
    assert sorted(pool_sizes(out), reverse=True) == sizes
    assert_bit_exact(model, out, negative_input())
    assert_bit_exact(model, out, np.random.default_rng(6).standard_normal(X_SHAPE).astype(np.float32))


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER"])
def test_maxpool_cascade_auto_pad(auto_pad):
    model = make_model([pool("target", "x", "y", 9, auto_pad=auto_pad)], {"x": X_SHAPE}, ["y"])
    out = rewritten(model, "maxpool-cascade")
    assert pool_sizes(out) == [5, 5]
    assert_bit_exact(model, out, negative_input())


def spp(ks=(5, 9, 13), auto_pad=None, opset=17) -> onnx.ModelProto:
    extra = {"auto_pad": auto_pad} if auto_pad else {}
    conv_w = np.random.default_rng(7).standard_normal([8, 8, 1, 1]).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv")]
    nodes += [pool(f"pool{i}", "c", f"p{i}", k, **extra) for i, k in enumerate(ks)]
    nodes.append(helper.make_node("Concat", ["c", *[f"p{i}" for i in range(len(ks))]], ["y"], name="cat", axis=1))
    return make_model(nodes, {"x": X_SHAPE}, ["y"], {"w": conv_w}, opset)


@pytest.mark.parametrize("opset", [13, 21])
@pytest.mark.parametrize("auto_pad", [None, "SAME_UPPER"])
def test_spp_becomes_sppf(opset, auto_pad):
    model = spp(auto_pad=auto_pad, opset=opset)
    out = rewritten(model, "maxpool-cascade", names=["pool0", "pool1", "pool2"])
    assert pool_sizes(out) == [5, 5, 5]
    chain = [n for n in out.graph.node if n.op_type == "MaxPool"]
    assert [n.input[0] for n in chain] == ["c", "p0", "p1"] and [n.output[0] for n in chain] == ["p0", "p1", "p2"]
    assert_bit_exact(model, out, negative_input())


def test_spp_listed_out_of_order_with_a_repeated_size():
    model = spp(ks=(13, 9, 5, 9))
    out = rewritten(model, "maxpool-cascade", names=["pool3", "pool0", "pool2", "pool1"])
    assert pool_sizes(out) == [5, 5, 5, 5]  # the second 9 repeats the last link from the 5
    assert_bit_exact(model, out, negative_input())


def test_spp_partial_selection_leaves_the_rest():
    model = spp()
    out = rewritten(model, "maxpool-cascade", names=["pool1", "pool2"])
    assert sorted(pool_sizes(out)) == [5, 5, 5, 5]  # pool0 untouched, 9 and 13 from their own chain
    assert_bit_exact(model, out, negative_input())


@pytest.mark.parametrize(
    "attrs, reason",
    [
        ({"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, "strides"),
        ({"kernel_shape": [4, 4], "pads": [2, 1, 2, 1]}, "odd"),
        ({"kernel_shape": [5, 5]}, "padding"),
        ({"kernel_shape": [5, 5], "auto_pad": "VALID"}, "padding"),
        ({"kernel_shape": [5, 3], "pads": [2, 1, 2, 1]}, "square"),
        ({"kernel_shape": [3, 3], "pads": [2, 2, 2, 2], "dilations": [2, 2]}, "dilations"),
    ],
)
def test_maxpool_cascade_rejects(attrs, reason):
    model = make_model([helper.make_node("MaxPool", ["x"], ["y"], name="target", **attrs)], {"x": X_SHAPE}, ["y"])
    with pytest.raises(RewriteError, match=reason) as info:
        rewrite_model(model, ["target"], "maxpool-cascade")
    assert info.value.node == "target" and info.value.rewrite == "maxpool-cascade"


def test_maxpool_cascade_rejects_used_indices():
    node = helper.make_node("MaxPool", ["x"], ["y", "i"], name="target", kernel_shape=[5, 5], pads=[2] * 4)
    model = make_model([node], {"x": X_SHAPE}, ["y", "i"])
    with pytest.raises(RewriteError, match="Indices"):
        rewrite_model(model, ["target"], "maxpool-cascade")


# -- ArgMax ------------------------------------------------------------------------------------------


def ties(shape=X_SHAPE, dtype=np.float32) -> np.ndarray:
    # few distinct values: most rows hold their maximum several times
    return np.random.default_rng(8).integers(-3, 3, shape).astype(dtype)


@pytest.mark.parametrize("opset", [13, 18, 21])
@pytest.mark.parametrize("axis, keepdims", [(1, 1), (1, 0), (-1, 1), (0, 0), (3, 0)])
def test_argmax_first_index_with_ties(opset, axis, keepdims):
    model = one_node("ArgMax", opset, axis=axis, keepdims=keepdims)
    out = rewritten(model, "argmax")
    reduce = [n for n in out.graph.node if n.op_type == "ReduceMax"]
    assert len(reduce) == 2 and all(len(n.input) == (2 if opset >= 18 else 1) for n in reduce)
    for x in (ties(), spread(8.0)):
        want, have = run_ort(model, {"x": x})["y"], run_ort(out, {"x": x})["y"]
        assert have.dtype == np.int64 and np.array_equal(want, have)


def test_argmax_default_attributes_and_int_input():
    node = helper.make_node("ArgMax", ["x"], ["y"], name="target")
    model = make_model([node], {"x": ([6, 5], np.int32)}, ["y"], opset=13)
    out = rewritten(model, "argmax")
    x = ties([6, 5], np.int32)
    assert np.array_equal(run_ort(model, {"x": x})["y"], run_ort(out, {"x": x})["y"])


def test_argmax_rejects_select_last_index():
    model = one_node("ArgMax", 13, axis=1, select_last_index=1)
    with pytest.raises(RewriteError, match="select_last_index"):
        rewrite_model(model, ["target"], "argmax")


# -- rejection, naming, atomicity ----------------------------------------------------------------------


@pytest.mark.parametrize("name", list(REWRITES))
def test_every_rewrite_rejects_a_wrong_op_type(name):
    model = one_node("Relu")
    with pytest.raises(RewriteError, match="is a Relu") as info:
        rewrite_model(model, ["target"], name)
    assert info.value.node == "target" and info.value.rewrite == name


@pytest.mark.parametrize("name", ["gelu", "gelu-tanh"])
def test_gelu_rejects_an_unknown_approximation(name):
    model = one_node("Gelu", 20, approximate="tanh")
    model.graph.node[0].attribute[0].s = b"fast"  # the checker does not validate the string
    with pytest.raises(RewriteError, match="fast"):
        rewrite_model(model, ["target"], name)


def test_unknown_names():
    model = one_node("HardSwish", 14)
    with pytest.raises(RewriteError, match="unknown rewrite 'hard-swish'"):
        rewrite_model(model, ["target"], "hard-swish")
    with pytest.raises(RewriteError, match="no node named 'nope'"):
        rewrite_model(model, ["nope"], "hardswish")


def test_unnamed_nodes_get_unique_names_and_keep_order():
    nodes = [
        helper.make_node("HardSwish", ["x"], ["a"]),
        helper.make_node("HardSwish", ["a"], ["b"]),
        helper.make_node("Add", ["b", "x"], ["y"]),
    ]
    model = make_model(nodes, {"x": X_SHAPE}, ["y"], opset=14)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    apply_rewrite(RewriteContext(out), "hardswish", [1, 0])
    onnx.checker.check_model(out, full_check=True)
    onnx.shape_inference.infer_shapes(out, strict_mode=True)
    assert "HardSwish" not in op_types(out) and op_types(out)[-1] == "Add"
    names = [n.name for n in out.graph.node if n.name]
    assert len(names) == 8 and len(set(names)) == 8 and all(n.startswith(("a/", "b/")) for n in names)
    compare(model, out, {"x": spread(8.0)})


def test_rewrite_model_by_position_and_by_shared_name():
    nodes = [
        helper.make_node("Softplus", ["x"], ["a"]),
        helper.make_node("Softplus", ["a"], ["b"], name="sp"),
        helper.make_node("Softplus", ["b"], ["y"], name="sp"),
    ]
    model = make_model(nodes, {"x": X_SHAPE}, ["y"], opset=13)
    out = rewrite_model(model, [0, "sp"], "softplus")
    onnx.checker.check_model(out, full_check=True)
    onnx.shape_inference.infer_shapes(out, strict_mode=True)
    assert "Softplus" not in op_types(out)  # onnxruntime refuses the duplicate name: no run here
    out = rewrite_model(model, [0], "softplus")
    assert op_types(out).count("Softplus") == 2 and "Relu" in op_types(out)
    with pytest.raises(RewriteError, match="no node at position 3"):
        rewrite_model(model, [3], "softplus")


def test_a_failed_rewrite_leaves_the_model_unchanged():
    nodes = [helper.make_node("HardSwish", ["x"], ["a"], name="ok"), helper.make_node("Relu", ["a"], ["y"], name="bad")]
    model = make_model(nodes, {"x": X_SHAPE}, ["y"], opset=14)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    with pytest.raises(RewriteError, match="bad"):
        apply_rewrite(RewriteContext(out), "hardswish", [0, 1])
    assert out == model


def test_context_helpers():
    const = helper.make_node("Constant", [], ["k"], value_float=2.0)
    nodes = [
        const,
        helper.make_node("Mul", ["x", "k"], ["m"], name="mul"),
        helper.make_node("Add", ["m", "w"], ["y"], name="add"),
    ]
    model = make_model(nodes, {"x": X_SHAPE}, ["y"], {"w": np.float32(1.0)}, opset=13)
    ctx = RewriteContext(model)
    assert ctx.opset == 13 and ctx.constant("k") == np.float32(2.0) and ctx.constant("w") == np.float32(1.0)
    assert ctx.constant("m") is None and not ctx.is_constant("x")
    assert ctx.producer("m").name == "mul" and [n.name for n in ctx.consumers("m")] == ["add"]
    assert ctx.shape("m") == tuple(X_SHAPE) and ctx.dtype("m") == np.float32
    assert ctx.unique("m") == "m_1" and ctx.unique("m") == "m_2"
