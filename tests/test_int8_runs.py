"""An int8 artifact the build ships always runs (issue 13.4).

TFLite's int8 DIV kernel aborts the whole invocation when a divisor's raw value
is its zero point (`data[i] != zero_point`), which int8 calibration makes of any
divisor under half a step of its range: a LayerNorm over a near-constant row, an
L2 normalisation of a near-zero vector. The converter emits no DIV for computed
divisors (buildsys/converter/int8safe.py); these models divide by such tensors
and are run on data holding tiny and all-zero rows. fp32 must match onnxruntime
at float rounding, int8 must run and keep the rows int8 can represent.

When a kernel does abort, validate names the TFLite op and the ONNX node behind
it and says whose defect it is (tests at the end, with artifacts that really abort).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import run_cli
from onnx import TensorProto, helper, numpy_helper

from buildsys.onnxprep.prepare import prepare_model
from buildsys.signature import Signature
from buildsys.tflow.inspect import op_histogram
from buildsys.tflow.onnxsource import export_onnx
from buildsys.tflow.quantize import to_tflite
from buildsys.tflow.runtime import run_tflite
from buildsys.tflow.samples import to_onnx_layout, to_stored

SEQ, DIM = 16, 32
TINY_ROW = 0  # the token row scaled down in every sample: its divisor quantizes to the zero point
FP32_RTOL = 1e-5
MIN_INT8_COSINE = 0.99  # over the rows int8 can represent (all but TINY_ROW)
N = helper.make_node


def _model(nodes, inits: dict, inputs=("x",), opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "divides",
        [helper.make_tensor_value_info(i, TensorProto.FLOAT, [1, SEQ, DIM]) for i in inputs],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model, full_check=True)
    return model


def _f32(v) -> np.ndarray:
    return np.asarray(v, np.float32)


def layernorm(eps_inside: bool) -> onnx.ModelProto:
    """A linear layer, then LayerNorm as torch exports it before opset 17 (eps inside the
    Sqrt), or as hand-written norms do (x - mu) / (std + eps)."""
    rng = np.random.default_rng(0)
    inits = {
        "w": _f32(rng.standard_normal((DIM, DIM)) / np.sqrt(DIM)),
        "two": _f32(2.0),
        "eps": _f32(1e-5),
        "g": _f32(1 + 0.1 * rng.standard_normal(DIM)),
        "b": _f32(0.1 * rng.standard_normal(DIM)),
    }
    nodes = [
        N("MatMul", ["x", "w"], ["h"]),
        N("ReduceMean", ["h"], ["mu"], axes=[-1]),
        N("Sub", ["h", "mu"], ["d"]),
        N("Pow", ["d", "two"], ["d2"]),
        N("ReduceMean", ["d2"], ["var"], axes=[-1]),
    ]
    if eps_inside:
        nodes += [N("Add", ["var", "eps"], ["ve"]), N("Sqrt", ["ve"], ["den"])]
    else:
        nodes += [N("Sqrt", ["var"], ["sd"]), N("Add", ["sd", "eps"], ["den"])]
    nodes += [N("Div", ["d", "den"], ["n"], name="/ln/Div"), N("Mul", ["n", "g"], ["ng"]), N("Add", ["ng", "b"], ["y"])]
    return _model(nodes, inits)


def l2_normalize(clip: bool) -> onnx.ModelProto:
    """x / (ReduceL2(x) + eps), or x / max(ReduceL2(x), eps) as torch's F.normalize exports it."""
    tail = N("Clip", ["n", "eps"], ["den"]) if clip else N("Add", ["n", "eps"], ["den"])
    nodes = [N("ReduceL2", ["x"], ["n"], axes=[-1], keepdims=1), tail, N("Div", ["x", "den"], ["y"])]
    return _model(nodes, {"eps": _f32(1e-6)})


def scalar_divisor() -> onnx.ModelProto:
    """x / max|x|: a divisor computed as one scalar."""
    nodes = [N("Abs", ["x"], ["a"]), N("ReduceMax", ["a"], ["m"], keepdims=0), N("Div", ["x", "m"], ["y"])]
    return _model(nodes, {})


def reciprocal() -> onnx.ModelProto:
    """x * Reciprocal(ReduceL2(x) + 0.5): TFLite writes tf.math.reciprocal as DIV(1, x). The model
    itself holds 1/y, so y must stay within int8's reach of its range: 0.5, not a tiny eps."""
    nodes = [
        N("ReduceL2", ["x"], ["n"], axes=[-1], keepdims=1),
        N("Add", ["n", "eps"], ["den"]),
        N("Reciprocal", ["den"], ["r"]),
        N("Mul", ["x", "r"], ["y"]),
    ]
    return _model(nodes, {"eps": _f32(0.5)})


def signed_divisor() -> onnx.ModelProto:
    """x / (mean of the row + 4): a divisor the graph cannot prove non-negative."""
    nodes = [N("ReduceMean", ["x"], ["m"], axes=[-1]), N("Add", ["m", "four"], ["den"]), N("Div", ["x", "den"], ["y"])]
    return _model(nodes, {"four": _f32(4.0)})


def one_pass_std() -> onnx.ModelProto:
    """x / sqrt(E[x^2] - E[x]^2 + eps): int8 rounding can make the Sqrt's input negative."""
    nodes = [
        N("Mul", ["x", "x"], ["x2"]),
        N("ReduceMean", ["x2"], ["m2"], axes=[-1]),
        N("ReduceMean", ["x"], ["m"], axes=[-1]),
        N("Mul", ["m", "m"], ["mm"]),
        N("Sub", ["m2", "mm"], ["var"]),
        N("Add", ["var", "eps"], ["ve"]),
        N("Sqrt", ["ve"], ["den"]),
        N("Div", ["x", "den"], ["y"]),
    ]
    return _model(nodes, {"eps": _f32(1e-5)})


def softsign() -> onnx.ModelProto:
    """x / (1 + |x|): a divisor >= 1, which int8 DIV still rounds to its zero point once the
    calibrated |x| passes about 509."""
    return _model([N("Softsign", ["x"], ["y"])], {})


MODELS = {
    "layernorm": lambda: layernorm(eps_inside=True),
    "layernorm_eps_outside": lambda: layernorm(eps_inside=False),
    "l2_normalize": lambda: l2_normalize(clip=False),
    "l2_normalize_clip": lambda: l2_normalize(clip=True),
    "scalar_divisor": scalar_divisor,
    "reciprocal": reciprocal,
    "signed_divisor": signed_divisor,
    "one_pass_std": one_pass_std,
    "softsign": softsign,
}


def samples(n: int, seed: int) -> np.ndarray:
    """Token rows of std 3, with TINY_ROW scaled by 1e-3 (its norm and spread fall far below half
    an int8 step of the divisors' ranges) and, from the third sample on, a row of exact zeros."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, SEQ, DIM)).astype(np.float32) * 3
    x[:, TINY_ROW] *= 1e-3
    x[2:, SEQ - 1] = 0.0
    return x


def run_ort(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {"x": x[i : i + 1]})[0] for i in range(len(x))])


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(-1).astype(np.float64), b.reshape(-1).astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def floats(tmp_path_factory):
    """name -> (prepared model, float model path, signature), converted once."""
    root = tmp_path_factory.mktemp("floats")
    out = {}
    for name, make in MODELS.items():
        model = prepare_model(make())
        path = root / f"{name}.pb"
        out[name] = (model, path, export_onnx(model, path))
    return out


def run_artifact(data: bytes, signature: Signature, x: np.ndarray) -> np.ndarray:
    got = run_tflite(data, to_stored({"x": x}, signature.inputs))
    return to_onnx_layout(got, signature.outputs)["y"]


@pytest.mark.parametrize("name", list(MODELS))
def test_fp32_has_no_div_and_matches_onnxruntime(floats, name):
    model, path, signature = floats[name]
    data = to_tflite(path, signature, "none")
    assert "DIV" not in op_histogram(data), op_histogram(data)
    x = samples(4, seed=1)
    want, got = run_ort(model, x), run_artifact(data, signature, x)
    err = float(np.max(np.abs(got - want)))
    assert err <= FP32_RTOL * max(1.0, float(np.max(np.abs(want)))), f"{name}: max abs error {err:.3g}"


INT8_MODES = {
    "per-channel, float IO": dict(per_channel=True, input_type="float32", output_type="float32"),
    "per-tensor, uint8 IO (axis-artpec8)": dict(per_channel=False, input_type="uint8", output_type="uint8"),
}


@pytest.mark.parametrize("mode", list(INT8_MODES))
@pytest.mark.parametrize("name", list(MODELS))
def test_int8_runs_on_tiny_and_zero_divisors(floats, name, mode):
    model, path, signature = floats[name]
    calib = to_stored({"x": samples(32, seed=2)}, signature.inputs)
    data = to_tflite(path, signature, "int8", calib=calib, **INT8_MODES[mode])
    assert "DIV" not in op_histogram(data), op_histogram(data)
    x = samples(8, seed=3)
    got = run_artifact(data, signature, x)  # aborted in DIV before: data[i] != zero_point
    assert np.all(np.isfinite(got))
    want = run_ort(model, x)
    rows = [r for r in range(SEQ) if r != TINY_ROW]
    cos = cosine(got[:, rows], want[:, rows])
    assert cos >= MIN_INT8_COSINE, f"{name} ({mode}): int8 cosine {cos:.4f} over representable rows"


def test_sqrt_of_a_maybe_negative_value_runs_in_int8(tmp_path):
    """Sqrt(x - 1) on values below 1: ONNX gives NaN there, the int8 SQRT kernel aborts
    ("Sqrt is only defined for non-negative values"); the converter feeds it Relu(x - 1)."""
    model = prepare_model(_model([N("Sub", ["x", "one"], ["d"]), N("Sqrt", ["d"], ["y"])], {"one": _f32(1.0)}))
    signature = export_onnx(model, tmp_path / "sqrt.pb")
    x = np.abs(samples(8, seed=10))
    calib = to_stored({"x": np.abs(samples(32, seed=11))}, signature.inputs)
    for data in (
        to_tflite(tmp_path / "sqrt.pb", signature, "none"),
        to_tflite(tmp_path / "sqrt.pb", signature, "int8", calib=calib, **INT8_MODES["per-channel, float IO"]),
    ):
        got = run_artifact(data, signature, x)
        assert np.all(np.isfinite(got)) and np.all(got[x < 1] == 0)
        assert cosine(got[x > 1], np.sqrt(x[x > 1] - 1)) >= MIN_INT8_COSINE


# divisor (nodes making "den" from input x), whether the graph proves it non-negative
DIVISORS = {
    "exp": ([N("Exp", ["x"], ["den"])], True),
    "x*x + eps": ([N("Mul", ["x", "x"], ["sq"]), N("Add", ["sq", "c"], ["den"])], True),
    "clip(min=0.5)": ([N("Clip", ["x", "c"], ["den"])], True),
    "clip(max=0.5) of relu": ([N("Relu", ["x"], ["a"]), N("Clip", ["a", "", "c"], ["den"])], True),
    "clip(max=0.5)": ([N("Clip", ["x", "", "c"], ["den"])], False),
    "max(x, 0.5)": ([N("Max", ["x", "c"], ["den"])], True),
    "min(x, 0.5)": ([N("Min", ["x", "c"], ["den"])], False),
    "x - 0.5": ([N("Sub", ["x", "c"], ["den"])], False),
    "reshaped sigmoid": (
        [N("Sigmoid", ["x"], ["s"]), N("Reshape", ["s", "shape"], ["r"]), N("Reshape", ["r", "back"], ["den"])],
        True,
    ),
}


@pytest.mark.parametrize("divisor", list(DIVISORS))
def test_only_a_divisor_of_unknown_sign_pays_for_its_sign(tmp_path, divisor):
    """x / y as x * q * q * q * q when the graph proves y >= 0 (q = rsqrt(sqrt(y)), no sign
    needed), else with sign(y) from |y|: the ABS op tells which form was taken."""
    nodes, proven = DIVISORS[divisor]
    inits = {"c": _f32(0.5), "shape": np.array([SEQ * DIM], np.int64), "back": np.array([1, SEQ, DIM], np.int64)}
    model = prepare_model(_model([*nodes, N("Div", ["x", "den"], ["y"])], inits))
    signature = export_onnx(model, tmp_path / "m.pb")
    data = to_tflite(tmp_path / "m.pb", signature, "none")
    ops = op_histogram(data)
    assert "DIV" not in ops and ("ABS" in ops) is not proven, ops
    x = np.random.default_rng(12).uniform(0.6, 2.0, (2, SEQ, DIM)).astype(np.float32)  # no divisor near 0
    want, got = run_ort(model, x), run_artifact(data, signature, x)
    assert np.max(np.abs(got - want)) <= FP32_RTOL * max(1.0, float(np.max(np.abs(want))))


# ------------------------------------------------------------------ validate names an abort


def _recipe(source: str, target: str, inputs: dict[str, str]) -> str:
    feeds = "".join(f"    {name}: {{npy: {file}}}\n" for name, file in inputs.items())
    return (
        f"version: 1\nname: aborts\nsource:\n  {source}\n"
        f"validate:\n  inputs:\n{feeds}  thresholds: {{min_cosine: 0.5}}\n"
        f"targets:\n  - device: {target}\n"
    )


def _tf_div_tflite(path: Path) -> None:
    """An int8 model (int8 IO, as cpu-int8 takes it) dividing by a computed norm with TFLite's own
    DIV, made by the TFLite converter: what the issue's classifier shipped."""
    import tensorflow as tf

    def normalize(x):  # + eps: TF turns a plain x / sqrt(s) into x * rsqrt(s) by itself
        return x / (tf.sqrt(tf.reduce_sum(x * x, axis=-1, keepdims=True)) + 1e-6)

    fn = tf.function(normalize, input_signature=[tf.TensorSpec([1, SEQ, DIM], tf.float32, name="x")])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    calib = np.random.default_rng(4).standard_normal((16, 1, SEQ, DIM)).astype(np.float32) * 3
    converter.representative_dataset = lambda: ([x] for x in calib)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    with warnings.catch_warnings():  # "Statistics for quantized inputs were expected": int8 IO, as asked
        warnings.simplefilter("ignore", UserWarning)
        data = converter.convert()
    assert "DIV" in op_histogram(data)
    path.write_bytes(data)


def test_an_aborting_tflite_source_names_the_op_and_the_source(tmp_path):
    ws = tmp_path / "ws"
    (ws / "recipes").mkdir(parents=True)
    _tf_div_tflite(ws / "recipes/div.tflite")
    np.save(ws / "recipes/val.npy", samples(4, seed=5))
    (ws / "recipes/aborts.yaml").write_text(_recipe("tflite: div.tflite", "cpu-int8", {"x": "val.npy"}))
    proc = run_cli(ws, "build", check=2)
    err = proc.stderr
    assert "Traceback" not in err
    assert "div.tflite" in err and "fails at run time" in err
    assert "(DIV)" in err and "data[i] != zero_point" in err
    assert "ships a TFLite source unchanged" in err


def _int_pow() -> onnx.ModelProto:
    """int32 x ** int32 b: TFLite's int32 POW refuses a negative exponent at Eval (left as it is:
    onnxruntime's own answer there is not meaningful either, -2147483648 for 0 ** -1)."""
    nodes = [
        N("Cast", ["x"], ["xi"], to=TensorProto.INT32),
        N("Cast", ["b"], ["bi"], to=TensorProto.INT32),
        N("Pow", ["xi", "bi"], ["p"], name="/head/the_pow"),
        N("Cast", ["p"], ["y"], to=TensorProto.FLOAT),
    ]
    return _model(nodes, {}, inputs=("x", "b"))


def test_an_artifact_that_aborts_is_reported_as_a_buildsys_defect(tmp_path):
    ws = tmp_path / "ws"
    (ws / "recipes").mkdir(parents=True)
    onnx.save(_int_pow(), str(ws / "recipes/model.onnx"))
    np.save(ws / "recipes/x.npy", samples(2, seed=6))
    np.save(ws / "recipes/b.npy", -np.abs(samples(2, seed=7)))
    text = _recipe("onnx: model.onnx", "cpu-fp32", {"x": "x.npy", "b": "b.npy"})
    (ws / "recipes/aborts.yaml").write_text(text)
    proc = run_cli(ws, "build", check=1)
    err = proc.stderr
    assert "Traceback" not in err and "internal error" not in err
    assert "aborts at run time" in err and "op #2 (POW)" in err and "negative value for int32" in err
    assert "ONNX node /head/the_pow" in err, err
    assert "buildsys defect" in err and "report it" in err
    assert "replacements:" in err and "another device mode" in err
    assert not (ws / "recipes/aborts.lock").exists()


# ------------------------------------------------------------------ whole builds


def test_normalising_models_build_for_int8_devices(tmp_path):
    """The models that aborted build through `buildsys build` for cpu-int8 and axis-artpec8
    (per-tensor, uint8 IO) and pass validation on data holding tiny and zero rows."""
    ws = tmp_path / "ws"
    recipes = ws / "recipes"
    recipes.mkdir(parents=True)
    np.save(recipes / "calib.npy", samples(32, seed=8))
    np.save(recipes / "val.npy", samples(8, seed=9))
    for name in ("layernorm_eps_outside", "l2_normalize"):
        onnx.save(MODELS[name](), str(recipes / f"{name}.onnx"))
        (recipes / f"{name}.yaml").write_text(
            f"version: 1\nname: {name}\nsource:\n  onnx: {name}.onnx\n"
            "calibration:\n  samples: 32\n  inputs:\n    x: {npy: calib.npy}\n"
            # one row of 16 is below int8's reach at the input: cosine sqrt(15/16) = 0.968 at worst
            "validate:\n  inputs:\n    x: {npy: val.npy}\n  thresholds: {min_cosine: 0.95}\n"
            "targets:\n  - device: cpu-int8\n  - device: axis-artpec8\n  - device: cpu-fp32\n"
        )
    run_cli(ws, "build")
    for name in ("layernorm_eps_outside", "l2_normalize"):
        for target, floor in (("cpu-int8", 0.95), ("axis-artpec8", 0.95), ("cpu-fp32", 0.999999)):
            metrics = json.loads((ws / f"build/{name}/{target}/metrics.json").read_text())
            assert metrics["passed"], (name, target, metrics["failures"])
            assert metrics["outputs"]["y"]["cosine"] >= floor, (name, target)
