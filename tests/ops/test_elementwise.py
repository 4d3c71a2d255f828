"""Elementwise math: onnxruntime vs converted fp32 TFLite; broadcasting against
channels-last tensors must not move data."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx_harness import check, make_model

from buildsys.converter.convert import Converter, convert_arrays
from buildsys.converter.errors import UnsupportedModel

IMAGE = [1, 4, 4, 4]  # H == W == C: a wrong axis choice still has the right shape
NCHW = [1, 3, 5, 7]
NHWC_OUT = {"nhwc_outputs": ["y"]}


def rng(seed=0):
    return np.random.default_rng(seed)


def normal(shape, seed=0, scale=1.0):
    return (rng(seed).standard_normal(shape) * scale).astype(np.float32)


def away_from_zero(shape, seed=1):
    """Magnitudes in [0.5, 2] with random signs: safe divisors and exponent bases."""
    r = rng(seed)
    return (r.uniform(0.5, 2.0, shape) * r.choice([-1.0, 1.0], shape)).astype(np.float32)


def positive(shape, seed=0):
    return rng(seed).uniform(0.2, 3.0, shape).astype(np.float32)


# -- binary ops against constants of every broadcast shape ---------------------------
def other_shapes(shape):
    _, c, h, w = shape
    return {
        "C11": [c, 1, 1],
        "1": [1],
        "scalar": [],
        "W": [w],
        "HW": [h, w],
        "1C11": [1, c, 1, 1],
        "full": shape,
    }


BINARY = [
    # (op, x shape, constant operand's broadcast shape)
    ("Add", IMAGE, "C11"),
    ("Add", NCHW, "W"),
    ("Add", NCHW, "HW"),
    ("Sub", IMAGE, "W"),
    ("Sub", NCHW, "scalar"),
    ("Mul", IMAGE, "C11"),
    ("Mul", NCHW, "1C11"),
    ("Mul", NCHW, "HW"),
    ("Div", IMAGE, "HW"),
    ("Div", NCHW, "C11"),
    ("Pow", IMAGE, "C11"),
    ("Pow", NCHW, "1"),
    ("Min", IMAGE, "W"),
    ("Min", NCHW, "full"),
    ("Max", IMAGE, "1"),
    ("Max", NCHW, "C11"),
    ("Sum", IMAGE, "HW"),
    ("Sum", NCHW, "1C11"),
    ("Mean", IMAGE, "C11"),
    ("Mean", NCHW, "W"),
]


# the constant as first operand too, where order matters
BINARY_CASES = [(*b, False) for b in BINARY] + [(*b, True) for b in BINARY if b[0] in ("Sub", "Div", "Pow")]


@pytest.mark.parametrize("op,shape,kind,const_first", BINARY_CASES, ids=str)
def test_binary_broadcast_constant(op, shape, kind, const_first):
    const_shape = other_shapes(shape)[kind]
    if op == "Pow":
        # positive bases for any exponent; exponents small enough to stay well-conditioned
        const, x = rng(3).uniform(-2, 3, const_shape).astype(np.float32), positive(shape)
        if const_first:
            const, x = positive(const_shape, seed=3), normal(shape, scale=1.5)
    elif op == "Div":
        const, x = away_from_zero(const_shape), normal(shape)
        if const_first:
            x = away_from_zero(shape, seed=4)
    else:
        const, x = normal(const_shape, seed=5), normal(shape)
    names = ["c", "x"] if const_first else ["x", "c"]
    model = make_model([helper.make_node(op, names, ["y"])], {"x": shape}, ["y"], {"c": const})
    check(model, {"x": x}, transposes=0, **NHWC_OUT)


@pytest.mark.parametrize("exponent,expected", [(2.0, "MUL"), (3.0, "POW"), (0.5, "POW")])
def test_pow_scalar_exponent(exponent, expected):
    model = make_model(
        [helper.make_node("Pow", ["x", "e"], ["y"])], {"x": IMAGE}, ["y"], {"e": np.array(exponent, np.float32)}
    )
    conv = check(model, {"x": positive(IMAGE)}, transposes=0, **NHWC_OUT)
    assert expected in conv.ops and (expected == "POW" or "POW" not in conv.ops), conv.ops


# -- two computed inputs ---------------------------------------------------------------
@pytest.mark.parametrize("op", ["Add", "Mul", "Max"])
@pytest.mark.parametrize("other", [[4, 1, 1], [4, 4], [4], [1, 4, 1, 1]], ids=str)
def test_binary_lower_rank_computed_input(op, other):
    # a lower-rank input gets leading unit axes in ONNX order, then only a reshape
    model = make_model([helper.make_node(op, ["x", "z"], ["y"])], {"x": IMAGE, "z": other}, ["y"])
    check(model, {"x": normal(IMAGE), "z": normal(other, seed=2)}, transposes=0, **NHWC_OUT)


def test_add_rank2_inputs():
    model = make_model([helper.make_node("Sub", ["a", "b"], ["y"])], {"a": [3, 6], "b": [6]}, ["y"])
    check(model, transposes=0)


def transpose_add_model():
    nodes = [
        helper.make_node("Transpose", ["w"], ["wt"], perm=[0, 3, 1, 2]),  # NHWC tensor -> NCHW
        helper.make_node("Add", ["x", "wt"], ["y"]),
    ]
    return make_model(nodes, {"x": IMAGE, "w": [1, 4, 4, 4]}, ["y"])


def test_add_of_differently_laid_out_inputs():
    # both 4-D inputs arrive channels-last, so Transpose(w) is stored (0, 3, 1, 2):
    # one of the two has to move, once
    feeds = {"x": normal(IMAGE), "w": normal(IMAGE, seed=9)}
    check(transpose_add_model(), feeds, transposes=1, **NHWC_OUT)


def test_add_of_transposed_nhwc_input_needs_no_transpose():
    # w kept as given (NHWC in ONNX terms): its Transpose to NCHW is exactly channels-last storage
    feeds = {"x": normal(IMAGE), "w": normal(IMAGE, seed=9)}
    check(transpose_add_model(), feeds, transposes=0, keep_layout=["w"], **NHWC_OUT)


@pytest.mark.parametrize("op", ["Sum", "Mean", "Max", "Min"])
def test_variadic_three_inputs(op):
    c = normal([4, 1, 1], seed=6)
    nodes = [helper.make_node(op, ["x", "c", "z"], ["y"])]
    model = make_model(nodes, {"x": IMAGE, "z": [4, 4]}, ["y"], {"c": c})
    check(model, {"x": normal(IMAGE), "z": normal([4, 4], seed=7)}, transposes=0, **NHWC_OUT)


# -- integer division and modulo -------------------------------------------------------
INT_A = np.array([[-7, -6, -5, -1, 0, 1], [5, 6, 7, 9, -9, 100]])
INT_B = np.array([[2, -2, 3, 2, -3, -2], [-2, 4, -3, 2, 2, 7]])


@pytest.mark.parametrize("dtype", [np.int32, np.int64], ids=["int32", "int64"])
@pytest.mark.parametrize("op,attrs", [("Div", {}), ("Mod", {}), ("Mod", {"fmod": 1})], ids=str)
def test_integer_div_and_mod_round_toward_zero(dtype, op, attrs):
    node = helper.make_node(op, ["a", "b"], ["y"], **attrs)
    model = make_model([node], {"a": ([2, 6], dtype), "b": ([2, 6], dtype)}, ["y"])
    check(model, {"a": INT_A.astype(dtype), "b": INT_B.astype(dtype)})


def test_float_fmod_takes_dividend_sign():
    node = helper.make_node("Mod", ["x", "m"], ["y"], fmod=1)
    divisors = np.array([1.5, -1.5, 0.75, -2.0], np.float32).reshape(4, 1, 1)
    model = make_model([node], {"x": IMAGE}, ["y"], {"m": divisors})
    check(model, {"x": normal(IMAGE, scale=4.0)}, transposes=0, **NHWC_OUT)


# -- unary ---------------------------------------------------------------------------------
HALVES = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, -3.5], np.float32)

UNARY = [
    # (op, input generator) over an NCHW image
    ("Exp", lambda s: normal(s)),
    ("Log", positive),
    ("Sqrt", positive),
    ("Reciprocal", away_from_zero),
    ("Neg", normal),
    ("Abs", normal),
    ("Floor", lambda s: normal(s, scale=3.0)),
    ("Ceil", lambda s: normal(s, scale=3.0)),
    ("Round", lambda s: np.resize(HALVES, s) + normal(s, scale=1e-3) * (np.arange(np.prod(s)).reshape(s) % 2)),
    ("Erf", lambda s: normal(s, scale=2.0)),
    ("Sign", normal),
    ("Sin", normal),
    ("Cos", normal),
]


@pytest.mark.parametrize("op,make", UNARY, ids=[u[0] for u in UNARY])
@pytest.mark.parametrize("opset", [11, 17])
def test_unary_keeps_layout(op, make, opset):
    shape = IMAGE if opset == 11 else NCHW
    model = make_model([helper.make_node(op, ["x"], ["y"])], {"x": shape}, ["y"], opset=opset)
    check(model, {"x": make(shape).astype(np.float32)}, transposes=0, **NHWC_OUT)


def test_round_is_half_to_even():
    model = make_model([helper.make_node("Round", ["x"], ["y"])], {"x": [8]}, ["y"])
    check(model, {"x": HALVES})


def test_erf_has_no_flex_op_and_is_accurate_far_out():
    x = np.linspace(-6, 6, 97, dtype=np.float32).reshape(1, 97)
    conv = check(make_model([helper.make_node("Erf", ["x"], ["y"])], {"x": [1, 97]}, ["y"]), {"x": x})
    assert all(not op.startswith("FlexErf") for op in conv.ops), conv.ops


@pytest.mark.parametrize(
    "to,src_dtype,values",
    [
        (TensorProto.INT32, np.float32, lambda s: normal(s, scale=3.0)),  # truncates toward zero
        (TensorProto.INT64, np.float32, lambda s: normal(s, scale=3.0)),
        (TensorProto.BOOL, np.float32, lambda s: normal(s) * (rng(2).random(s) > 0.5)),
        (TensorProto.FLOAT, np.int64, lambda s: rng(3).integers(-50, 50, s)),
        (TensorProto.FLOAT, np.int32, lambda s: rng(3).integers(-50, 50, s)),
        (TensorProto.INT32, np.int64, lambda s: rng(3).integers(-50, 50, s)),
    ],
    ids=str,
)
def test_cast(to, src_dtype, values):
    shape = IMAGE
    model = make_model([helper.make_node("Cast", ["x"], ["y"], to=to)], {"x": (shape, src_dtype)}, ["y"])
    options = NHWC_OUT if src_dtype == np.float32 else {}
    check(model, {"x": values(shape).astype(src_dtype)}, transposes=0, **options)


def test_cast_of_constant_folds():
    nodes = [
        helper.make_node("Cast", ["c"], ["ci"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["x", "ci"], ["y"]),
    ]
    model = make_model(nodes, {"x": IMAGE}, ["y"], {"c": np.arange(4, dtype=np.int64).reshape(4, 1, 1)})
    conv = check(model, {"x": normal(IMAGE)}, transposes=0, **NHWC_OUT)
    assert "CAST" not in conv.ops, conv.ops


# -- Identity / Dropout ----------------------------------------------------------------------
def test_identity_keeps_layout_and_constants():
    nodes = [
        helper.make_node("Identity", ["x"], ["i"]),
        helper.make_node("Identity", ["shape"], ["s"]),
        helper.make_node("Reshape", ["i", "s"], ["y"]),
    ]
    model = make_model(nodes, {"x": IMAGE}, ["y"], {"shape": np.array([1, 4, 16], np.int64)})
    check(model, {"x": normal(IMAGE)})


@pytest.mark.parametrize("opset", [11, 13])
def test_dropout_is_identity(opset):
    if opset < 12:
        node = helper.make_node("Dropout", ["x"], ["d", "mask"], ratio=0.3)
    else:
        node = helper.make_node("Dropout", ["x", "ratio", "training"], ["d", "mask"])
    inits = {} if opset < 12 else {"ratio": np.array(0.3, np.float32), "training": np.array(False)}
    nodes = [node, helper.make_node("Relu", ["d"], ["y"])]
    model = make_model(nodes, {"x": IMAGE}, ["y", "mask"], inits, opset=opset)
    check(model, {"x": normal(IMAGE)}, transposes=0, nhwc_outputs=["y", "mask"])


def test_training_dropout_is_unsupported():
    node = helper.make_node("Dropout", ["x", "ratio", "training"], ["y"])
    inits = {"ratio": np.array(0.3, np.float32), "training": np.array(True)}
    model = make_model([node], {"x": IMAGE}, ["y"], inits, opset=13)
    with pytest.raises(UnsupportedModel, match="training_mode"):
        convert_arrays(Converter(model), {"x": normal(IMAGE)})
