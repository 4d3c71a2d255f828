"""Quantization modes, checked from the produced .tflite file and by running it.

One tiny model (conv with bias, depthwise, transpose conv, dense) is exported
once and converted in every mode / IO combination that matters; each result is
read with the flatbuffer inspectors and run in the TFLite interpreter against
the float (Keras) model. Tolerances are explicit at each assertion.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from buildsys.errors import InputError, StageError  # noqa: E402
from buildsys.recipe.model import Source  # noqa: E402
from buildsys.tflow.inspect import (  # noqa: E402
    activation_dtypes,
    io_dtypes,
    op_histogram,
    tensor_dtypes,
    weight_dtypes,
    weight_scales,
)
from buildsys.tflow.models import export_float, run_source  # noqa: E402
from buildsys.tflow.quantize import IO_TYPES_BY_MODE, MODES, needs_calibration, to_tflite  # noqa: E402
from buildsys.tflow.runtime import run_tflite  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

# (mode, input type, output type, per channel): the combinations that matter.
COMBOS = {
    "none": ("none", "float32", "float32", True),
    "fp16": ("fp16", "float32", "float32", True),
    "dynamic": ("dynamic-range", "float32", "float32", True),
    "int8": ("int8", "int8", "int8", True),
    "int8-per-tensor": ("int8", "int8", "int8", False),
    "int8-uint8-in": ("int8", "uint8", "int8", True),
    "int8-float-io": ("int8", "float32", "float32", True),
    "int16x8": ("int16x8", "int16", "int16", True),
    "int16x8-float-io": ("int16x8", "float32", "float32", True),
}
# Minimum cosine to the float model, plain and centered on the float mean (the
# centered one is about what changes between samples, not a shared offset).
MIN_COSINE = {"none": 0.999, "fp16": 0.99, "dynamic-range": 0.99, "int8": 0.95, "int16x8": 0.99}
# Weights by the TF op they come from (tensor names are canonical: <op>_<n>).
CONV, DEPTHWISE, TRANSPOSE, DENSE = "Conv2D", "DepthwiseConv2dNative", "Conv2DBackpropInput", "MatMul"
# Output channels of each weight tensor: its per-channel scale count.
CHANNELS = {CONV: 8, DEPTHWISE: 8, TRANSPOSE: 4, DENSE: 4}


def _model():
    inp = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same")(inp)
    x = keras.layers.ReLU()(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2DTranspose(4, 3, strides=2, padding="same")(x)
    # Flatten keeps spatial detail, so outputs differ between samples.
    x = keras.layers.Flatten()(x)
    return keras.Model(inp, keras.layers.Dense(4, name="scores")(x))


def _lstm():
    inp = keras.Input((5, 4), name="seq")
    return keras.Model(inp, keras.layers.Dense(2, name="out")(keras.layers.LSTM(6)(inp)))


def _save(model, path: Path) -> Path:
    # Keras 3 saving trips a numpy 2 DeprecationWarning that is not ours to fix.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        model.save(path)
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("quant_modes")
    keras.utils.set_random_seed(0)
    source = _save(_model(), d / "model.keras")
    sig = export_float(model_source("keras", source), None, 1, d / "float.pb")
    calib = {"image": np.random.default_rng(0).random((8, 16, 16, 3), dtype=np.float32)}
    evaluation = {"image": np.random.default_rng(1).random((8, 16, 16, 3), dtype=np.float32)}
    ref = run_source(model_source("keras", source), evaluation)["scores"]
    return {"path": d / "float.pb", "sig": sig, "calib": calib, "eval": evaluation, "ref": ref}


def _convert(exported: dict, mode: str, input_type=None, output_type=None, per_channel=True) -> bytes:
    calib = exported["calib"] if needs_calibration(mode) else None
    return to_tflite(exported["path"], exported["sig"], mode, calib, per_channel, input_type, output_type)


@pytest.fixture(scope="module")
def converted(exported) -> dict[str, bytes]:
    return {key: _convert(exported, m, i, o, pc) for key, (m, i, o, pc) in COMBOS.items()}


def _by_op(found: dict) -> dict:
    return {name.rsplit("_", 1)[0]: value for name, value in found.items()}


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# ---------------------------------------------------------------- tables


def test_mode_tables():
    assert MODES == ("none", "fp16", "dynamic-range", "int8", "int16x8")
    assert tuple(IO_TYPES_BY_MODE) == MODES
    assert {m: IO_TYPES_BY_MODE[m][0] for m in MODES} == {
        "none": "float32",
        "fp16": "float32",
        "dynamic-range": "float32",
        "int8": "int8",
        "int16x8": "int16",
    }
    assert [m for m in MODES if needs_calibration(m)] == ["int8", "int16x8"]
    with pytest.raises(TypeError):
        IO_TYPES_BY_MODE["int4"] = ("int8",)  # type: ignore[index]
    with pytest.raises(ValueError, match="int4"):
        needs_calibration("int4")


def test_tables_and_inspectors_work_without_tensorflow(converted, tmp_path):
    # The plan reads the tables and the check stage reads files; neither may pay for a TF import.
    (tmp_path / "m.tflite").write_bytes(converted["int8"])
    code = (
        "import sys; from buildsys.tflow import quantize as q, inspect as i; "
        "assert q.needs_calibration('int8'); "
        "print(i.weight_scales(sys.argv[1]), sorted(m for m in sys.modules if m.startswith('tensorflow')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "m.tflite")], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"{weight_scales(converted['int8'])} []"


@pytest.mark.parametrize(
    "mode,input_type,output_type",
    [
        ("none", "int8", None),
        ("fp16", None, "uint8"),
        ("dynamic-range", "int8", None),
        ("int8", "int16", None),
        ("int8", None, "float16"),
        ("int16x8", "int8", None),
        ("int16x8", None, "uint8"),
        ("int4", None, None),
    ],
)
def test_invalid_mode_or_io_type_is_a_value_error(tmp_path, mode, input_type, output_type):
    # Checked before the file is even read: the path does not exist.
    with pytest.raises(ValueError, match=repr(input_type or output_type or mode)):
        to_tflite(tmp_path / "missing.pb", {}, mode, None, True, input_type, output_type)


# ---------------------------------------------------------------- from the file


@pytest.mark.parametrize("key", COMBOS)
def test_io_types_are_the_requested_ones(converted, key):
    _, input_type, output_type, _ = COMBOS[key]
    assert io_dtypes(converted[key]) == {"inputs": {"image": input_type}, "outputs": {"scores": output_type}}
    # the report's reader names the same types TFLite's way
    dtypes = tensor_dtypes(converted[key])
    assert (dtypes["inputs"]["image"], dtypes["outputs"]["scores"]) == (input_type.upper(), output_type.upper())


def test_none_is_float32_throughout(converted):
    model = converted["none"]
    assert set(_by_op(weight_dtypes(model)).values()) == {"float32"}
    assert _by_op(weight_scales(model)) == dict.fromkeys(CHANNELS, 0)
    assert set(activation_dtypes(model)) == {"float32"}
    assert set(tensor_dtypes(model)["tensors"]) == {"FLOAT32", "INT32"}  # int32: shape operands only
    assert "DEQUANTIZE" not in op_histogram(model)


def test_fp16_stores_float16_weights_behind_dequantize(converted):
    model = converted["fp16"]
    assert _by_op(weight_dtypes(model)) == dict.fromkeys(CHANNELS, "float16")
    assert op_histogram(model)["DEQUANTIZE"] >= len(CHANNELS)
    assert activation_dtypes(model) == {"float32": activation_dtypes(model)["float32"]}


def test_dynamic_range_quantizes_weights_only(converted):
    model = converted["dynamic"]
    # TF leaves weights under 1024 elements in float32 (hybrid kernels would
    # not pay off); only the dense weights (4096 x 4 values) qualify.
    assert _by_op(weight_dtypes(model)) == {CONV: "float32", DEPTHWISE: "float32", TRANSPOSE: "float32", DENSE: "int8"}
    assert _by_op(weight_scales(model))[DENSE] == CHANNELS[DENSE]
    assert set(activation_dtypes(model)) == {"float32"}
    assert not {"QUANTIZE", "DEQUANTIZE"} & set(op_histogram(model))


def test_dynamic_range_per_tensor(exported):
    model = _convert(exported, "dynamic-range", per_channel=False)
    assert _by_op(weight_scales(model))[DENSE] == 1


@pytest.mark.parametrize("key", ["int8", "int8-uint8-in", "int8-float-io", "int16x8", "int16x8-float-io"])
def test_per_channel_weights_have_one_scale_per_output_channel(converted, key):
    model = converted[key]
    assert _by_op(weight_dtypes(model)) == dict.fromkeys(CHANNELS, "int8")
    assert _by_op(weight_scales(model)) == CHANNELS


def test_int8_per_tensor_has_one_scale_per_weight(converted):
    model = converted["int8-per-tensor"]
    assert _by_op(weight_dtypes(model)) == dict.fromkeys(CHANNELS, "int8")
    assert _by_op(weight_scales(model)) == dict.fromkeys(CHANNELS, 1)


def test_int8_activations(converted):
    assert set(activation_dtypes(converted["int8"])) == {"int8"}
    # uint8 in: one QUANTIZE from the uint8 input to the int8 graph.
    inner = activation_dtypes(converted["int8"])["int8"]
    assert activation_dtypes(converted["int8-uint8-in"]) == {"int8": inner, "uint8": 1}
    assert op_histogram(converted["int8-uint8-in"])["QUANTIZE"] == 1


def test_float_io_wraps_an_integer_graph(converted):
    for key, inner in (("int8-float-io", "int8"), ("int16x8-float-io", "int16")):
        counts = activation_dtypes(converted[key])
        assert counts["float32"] == 2 and set(counts) == {"float32", inner}, key  # only the model's input and output
        hist = op_histogram(converted[key])
        assert hist["QUANTIZE"] == 1 and hist["DEQUANTIZE"] == 1, key


def test_int16x8_activations_are_int16(converted):
    model = converted["int16x8"]
    assert set(activation_dtypes(model)) == {"int16"}
    assert "INT64" in tensor_dtypes(model)["tensors"]  # 16x8 biases are int64


def test_int16x8_per_tensor_failure_names_the_fix(exported):
    # TF 2.21's 16x8 quantizer cannot make per-tensor depthwise weights; the
    # error must say what to change. Should TF fix it, per-tensor must hold.
    try:
        model = _convert(exported, "int16x8", per_channel=False)
    except StageError as err:
        assert "int16x8 conversion" in err.message and "per_channel: true" in err.hint
    else:
        assert _by_op(weight_scales(model)) == dict.fromkeys(CHANNELS, 1)


# ---------------------------------------------------------------- running


@pytest.mark.parametrize("key", COMBOS)
def test_accuracy_against_the_float_model(exported, converted, key):
    mode = COMBOS[key][0]
    got = run_tflite(converted[key], exported["eval"])["scores"]
    ref = exported["ref"]
    assert got.dtype == np.float32 and got.shape == ref.shape
    assert _cosine(got, ref) > MIN_COSINE[mode]
    assert _cosine(got - ref.mean(0), ref - ref.mean(0)) > MIN_COSINE[mode]


@pytest.mark.parametrize("key", ["dynamic", "int16x8"])
def test_same_inputs_same_bytes(exported, converted, key):
    mode, input_type, output_type, per_channel = COMBOS[key]
    assert _convert(exported, mode, input_type, output_type, per_channel) == converted[key]


def test_integer_inputs_keep_their_type(tmp_path):
    # input_type applies to float inputs; token ids stay int32 in an int8 model.
    x, ids = keras.Input((8,), name="x"), keras.Input((4,), dtype="int32", name="ids")
    tokens = keras.layers.Flatten()(keras.layers.Embedding(10, 8)(ids))
    joined = keras.layers.Concatenate()([keras.layers.Dense(8)(x), tokens])
    source = _save(keras.Model([x, ids], keras.layers.Dense(3, name="y")(joined)), tmp_path / "ids.keras")
    sig = export_float(model_source("keras", source), None, 1, tmp_path / "ids.pb")
    rng = np.random.default_rng(0)
    calib = {"x": rng.random((8, 8), dtype=np.float32), "ids": rng.integers(0, 10, (8, 4)).astype(np.int32)}
    model = to_tflite(tmp_path / "ids.pb", sig, "int8", calib)
    assert io_dtypes(model) == {"inputs": {"x": "int8", "ids": "int32"}, "outputs": {"y": "int8"}}
    ref = run_source(model_source("keras", source), calib)["y"]
    assert _cosine(run_tflite(model, calib)["y"], ref) > MIN_COSINE["int8"]


def test_inspectors_refuse_a_damaged_file(converted):
    with pytest.raises(InputError, match="not a TFLite model"):
        weight_scales(b"not a model at all")
    with pytest.raises(InputError, match="damaged"):
        activation_dtypes(converted["int8"][:200])


def test_int16x8_calibration_of_a_while_loop_is_contained(tmp_path):
    """While loops are calibrated in a child process (tensorflow#75140) in int16x8 too."""
    keras.utils.set_random_seed(0)
    source = _save(_lstm(), tmp_path / "lstm.keras")
    sig = export_float(model_source("keras", source), None, 1, tmp_path / "lstm.pb")
    x = np.random.default_rng(0).random((8, 5, 4), dtype=np.float32)
    try:
        model = to_tflite(tmp_path / "lstm.pb", sig, "int16x8", {"seq": x})
    except StageError as err:
        assert "int16x8 calibration" in err.message and "crashed inside TensorFlow" in err.message
        assert "unroll=True" in err.hint
    else:
        ref = run_source(model_source("keras", source), {"seq": x})["out"]
        assert _cosine(run_tflite(model, {"seq": x})["out"], ref) > 0.9


def test_keras_silu_exports_the_same_bytes_twice_and_quantizes_in_process(tmp_path):
    """Keras swish/silu carries a per-process `_gradient_op_type` id: dropped, so float.pb
    bytes do not depend on the run, and a second export in one process still converts."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="silu")(inp)
    source = _save(
        keras.Model(inp, keras.layers.Dense(2, name="scores")(keras.layers.Flatten()(x))), tmp_path / "s.keras"
    )
    first = export_float(model_source("keras", source), None, 1, tmp_path / "a.pb")
    export_float(model_source("keras", source), None, 1, tmp_path / "b.pb")
    assert (tmp_path / "a.pb").read_bytes() == (tmp_path / "b.pb").read_bytes()
    calib = {"image": np.random.default_rng(0).random((8, 8, 8, 3), dtype=np.float32)}
    model = to_tflite(tmp_path / "b.pb", first, "int8", calib)
    assert "LOGISTIC" in op_histogram(model)


def model_source(fmt: str, path) -> Source:
    return Source(fmt, Path(path), str(path))
