"""buildsys.tflow: export, quantization, runtime, inspection and image loading.

Models are tiny and built once per module; everything runs on CPU in well under
a minute. Tolerances are explicit at each assertion.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from buildsys.errors import InputError, StageError  # noqa: E402
from buildsys.recipe.model import Source  # noqa: E402
from buildsys.signature import Signature  # noqa: E402
from buildsys.tflow.images import load_images  # noqa: E402
from buildsys.tflow.inspect import op_histogram, tensor_dtypes  # noqa: E402
from buildsys.tflow.models import export_float, run_source  # noqa: E402
from buildsys.tflow.quantize import to_tflite  # noqa: E402
from buildsys.tflow.runtime import run_tflite, tflite_inputs_outputs  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- fixtures


def _conv_gap(shape=(16, 16, 3), outputs=3):
    inp = keras.Input(shape, name="image")
    x = keras.layers.Conv2D(8, 3, padding="same")(inp)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(outputs, name="scores")(x))


def _conv_flat():
    # Flatten keeps spatial detail, so outputs vary a lot between samples and
    # an int8-vs-float comparison is not dominated by a constant offset.
    inp = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(4, 3)(inp)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inp, keras.layers.Dense(3, name="scores")(x))


def _lstm():
    # Exercises library functions (while body/cond) in the frozen graph.
    inp = keras.Input((5, 4), name="seq")
    x = keras.layers.LSTM(6)(inp)
    return keras.Model(inp, keras.layers.Dense(2, name="out")(x))


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    # Keras 3.15 saving calls np.array(tf.Variable), which numpy 2 flags as a
    # DeprecationWarning; that is Keras' business, not what these tests check.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="__array__ implementation", category=DeprecationWarning)
        return _build_models(tmp_path_factory.mktemp("models"))


def _build_models(d: Path) -> dict[str, Path]:
    keras.utils.set_random_seed(0)
    conv = _conv_gap()
    paths = {"keras": d / "conv.keras", "h5": d / "conv.h5", "saved_model": d / "conv_sm"}
    conv.save(paths["keras"])
    conv.save(paths["h5"])
    conv.export(str(paths["saved_model"]), verbose=False)
    paths["flat"] = d / "flat.keras"
    _conv_flat().save(paths["flat"])
    paths["dynamic"] = d / "dynamic.keras"
    _conv_gap(shape=(None, None, 3), outputs=2).save(paths["dynamic"])
    paths["lstm"] = d / "lstm.keras"
    _lstm().save(paths["lstm"])
    return paths


@pytest.fixture(scope="module")
def samples() -> np.ndarray:
    return np.random.default_rng(1).random((8, 16, 16, 3), dtype=np.float32)


@pytest.fixture(scope="module")
def conv_float(models, tmp_path_factory) -> tuple[Path, Signature]:
    out = tmp_path_factory.mktemp("float") / "conv.pb"
    return out, export_float(model_source("keras", models["keras"]), None, 1, out)


@pytest.fixture(scope="module")
def flat_int8(models, tmp_path_factory) -> dict:
    """The Flatten model exported, with seeded calibration and evaluation data."""
    out = tmp_path_factory.mktemp("flat") / "flat.pb"
    sig = export_float(model_source("keras", models["flat"]), None, 1, out)
    calib = np.random.default_rng(0).random((32, 8, 8, 3), dtype=np.float32)
    evaluation = np.random.default_rng(7).random((16, 8, 8, 3), dtype=np.float32)
    ref = run_source(model_source("keras", models["flat"]), {"image": evaluation})["scores"]
    return {"path": out, "sig": sig, "calib": {"image": calib}, "eval": {"image": evaluation}, "ref": ref}


# ---------------------------------------------------------------- export


@pytest.mark.parametrize(
    "fmt,key,out_name",
    [("keras", "keras", "scores"), ("keras", "h5", "scores"), ("saved_model", "saved_model", "output_0")],
)
def test_export_signature_for_each_format(models, tmp_path, fmt, key, out_name):
    sig = export_float(model_source(fmt, models[key]), None, 1, tmp_path / "f.pb")
    assert sig.to_dict() == {
        "inputs": [{"name": "image", "shape": [1, 16, 16, 3], "dtype": "float32"}],
        "outputs": [{"name": out_name, "shape": [1, 3], "dtype": "float32"}],
    }
    json.dumps(sig.to_dict())  # JSON-able
    assert (tmp_path / "f.pb").stat().st_size > 0


def test_keras_and_h5_give_identical_float_model(models, tmp_path):
    export_float(model_source("keras", models["keras"]), None, 1, tmp_path / "a.pb")
    export_float(model_source("keras", models["h5"]), None, 1, tmp_path / "b.pb")
    assert (tmp_path / "a.pb").read_bytes() == (tmp_path / "b.pb").read_bytes()


def test_batch_and_shapes_overrides(models, tmp_path):
    sig = export_float(model_source("keras", models["keras"]), None, 4, tmp_path / "a.pb")
    assert sig.inputs[0].shape == [4, 16, 16, 3]
    assert sig.outputs[0].shape == [4, 3]
    sig = export_float(model_source("keras", models["dynamic"]), {"image": [1, 12, 10, 3]}, None, tmp_path / "b.pb")
    assert sig.inputs[0].shape == [1, 12, 10, 3]
    # batch fills the leading dim the shapes entry leaves open (-1)
    sig = export_float(model_source("keras", models["dynamic"]), {"image": [-1, 12, 10, 3]}, 2, tmp_path / "c.pb")
    assert sig.inputs[0].shape == [2, 12, 10, 3]


def test_dynamic_dim_left_is_an_input_error(models, tmp_path):
    with pytest.raises(InputError) as err:
        export_float(model_source("keras", models["keras"]), None, None, tmp_path / "a.pb")
    assert "'image'" in err.value.message and "shapes:" in err.value.hint and "batch:" in err.value.hint
    with pytest.raises(InputError, match="dynamic shape"):
        export_float(model_source("keras", models["dynamic"]), None, 1, tmp_path / "b.pb")  # H, W still open


def test_wrong_rank_or_conflicting_dim_names_both_shapes(models, tmp_path):
    with pytest.raises(InputError) as err:
        export_float(model_source("keras", models["keras"]), {"image": [1, 16, 16]}, None, tmp_path / "a.pb")
    message = err.value.message
    assert "'image'" in message and "[1, 16, 16]" in message and "[None, 16, 16, 3]" in message
    with pytest.raises(InputError, match=r"\[1, 8, 8, 3\].*\[None, 16, 16, 3\]"):
        export_float(model_source("keras", models["keras"]), {"image": [1, 8, 8, 3]}, None, tmp_path / "b.pb")


def test_unknown_input_name_lists_model_inputs(models, tmp_path):
    with pytest.raises(InputError) as err:
        export_float(model_source("keras", models["keras"]), {"images": [1, 16, 16, 3]}, None, tmp_path / "a.pb")
    assert "'images'" in err.value.message and "'image'" in err.value.hint


@pytest.mark.parametrize(
    "name,content", [("garbage.keras", b"not a model at all"), ("garbage.h5", b"\x89HDF\r\n\x1a\n" + b"\0" * 50)]
)
def test_corrupt_keras_file_is_an_input_error(tmp_path, name, content):
    bad = tmp_path / name
    bad.write_bytes(content)
    with pytest.raises(InputError) as err:
        export_float(model_source("keras", bad), None, 1, tmp_path / "a.pb")
    assert f"cannot load {bad} as a Keras model" in err.value.message
    assert "re-export it or check the sha256" in err.value.message
    assert "\n" not in err.value.message and len(err.value.message) < 500


def test_truncated_keras_and_saved_model_are_input_errors(models, tmp_path):
    cut = tmp_path / "cut.keras"
    data = models["keras"].read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="as a Keras model"):
        export_float(model_source("keras", cut), None, 1, tmp_path / "a.pb")
    sm = tmp_path / "sm"
    sm.mkdir()
    (sm / "saved_model.pb").write_bytes(b"\x08\x01garbage")
    with pytest.raises(InputError, match="as a SavedModel"):
        export_float(model_source("saved_model", sm), None, 1, tmp_path / "b.pb")
    with pytest.raises(InputError, match="does not exist"):
        export_float(model_source("keras", tmp_path / "missing.keras"), None, 1, tmp_path / "c.pb")


def test_run_source_agrees_across_formats(models, samples):
    ref = run_source(model_source("keras", models["keras"]), {"image": samples})
    assert ref["scores"].shape == (8, 3)
    h5 = run_source(model_source("keras", models["h5"]), {"image": samples})["scores"]
    sm = run_source(model_source("saved_model", models["saved_model"]), {"image": samples})["output_0"]
    assert np.max(np.abs(h5 - ref["scores"])) < 1e-6
    assert np.max(np.abs(sm - ref["scores"])) < 1e-5
    with pytest.raises(InputError, match="missing 'image'"):
        run_source(model_source("keras", models["keras"]), {"img": samples})
    with pytest.raises(InputError, match=r"\[N, 8, 8, 3\].*\[batch, 16, 16, 3\]"):
        run_source(model_source("keras", models["keras"]), {"image": samples[:, :8, :8]})


# ---------------------------------------------------------------- determinism

_SUBPROCESS = textwrap.dedent(
    """
    import hashlib, json, sys
    from pathlib import Path
    import numpy as np
    from buildsys.recipe.model import Source
    from buildsys.tflow.models import export_float
    from buildsys.tflow.quantize import to_tflite
    out = {}
    for key, src in json.loads(sys.argv[1]).items():
        dst = Path(sys.argv[2]) / (key + ".pb")
        sig = export_float(Source("keras", Path(src), src), None, 1, dst)
        out[key] = hashlib.sha256(dst.read_bytes()).hexdigest()
    calib = {"image": np.random.default_rng(0).random((32, 8, 8, 3), dtype=np.float32)}
    flat = Path(sys.argv[2]) / "flat.pb"
    out["int8"] = hashlib.sha256(to_tflite(flat, sig, "int8", calib)).hexdigest()
    print("RESULT " + json.dumps(out))
    """
)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _export_twice_in_process(models, tmp_path) -> dict[str, str]:
    hashes = {}
    for key in ("keras", "lstm", "flat"):
        first, second = tmp_path / f"{key}1.pb", tmp_path / f"{key}2.pb"
        export_float(model_source("keras", models[key]), None, 1, first)
        # Bump Keras' and TF's global name counters between the two exports.
        _conv_gap()
        _lstm()
        sig = export_float(model_source("keras", models[key]), None, 1, second)
        assert first.read_bytes() == second.read_bytes(), key
        hashes[key] = _sha(first.read_bytes())
    calib = {"image": np.random.default_rng(0).random((32, 8, 8, 3), dtype=np.float32)}
    one = to_tflite(tmp_path / "flat1.pb", sig, "int8", calib)
    assert one == to_tflite(tmp_path / "flat2.pb", sig, "int8", calib)
    hashes["int8"] = _sha(one)
    return hashes


def test_float_and_tflite_bytes_are_deterministic(models, tmp_path):
    sources = json.dumps({k: str(models[k]) for k in ("keras", "lstm", "flat")})
    procs = []
    for seed in ("1", "2"):  # different hash seeds change set/dict iteration order
        out = tmp_path / f"proc{seed}"
        out.mkdir()
        env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", _SUBPROCESS, sources, str(out)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    in_process = _export_twice_in_process(models, tmp_path)
    results = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=180)
        assert proc.returncode == 0, stderr[-2000:]
        line = next(ln for ln in stdout.splitlines() if ln.startswith("RESULT "))
        results.append(json.loads(line[len("RESULT ") :]))
    assert results[0] == results[1] == in_process


# ---------------------------------------------------------------- quantization


def test_fp32_matches_source(models, conv_float, samples):
    path, sig = conv_float
    model = to_tflite(path, sig, "none")
    ref = run_source(model_source("keras", models["keras"]), {"image": samples})["scores"]
    got = run_tflite(model, {"image": samples})["scores"]
    assert got.dtype == np.float32 and got.shape == (8, 3)
    assert np.max(np.abs(got - ref)) < 1e-5
    assert model == to_tflite(path, sig, "none")  # deterministic bytes
    io = tflite_inputs_outputs(model)
    assert [t["name"] for t in io["inputs"]] == ["image"] and [t["name"] for t in io["outputs"]] == ["scores"]
    assert io["inputs"][0]["shape"] == [1, 16, 16, 3] and io["inputs"][0]["quantization"] is None


def test_saved_model_fp32_keeps_signature_names(models, tmp_path, samples):
    sig = export_float(model_source("saved_model", models["saved_model"]), None, 1, tmp_path / "sm.pb")
    model = to_tflite(tmp_path / "sm.pb", sig, "none")
    got = run_tflite(model, {"image": samples})["output_0"]
    ref = run_source(model_source("saved_model", models["saved_model"]), {"image": samples})["output_0"]
    assert np.max(np.abs(got - ref)) < 1e-5


def test_fp16_close_to_source(models, conv_float, samples):
    path, sig = conv_float
    model = to_tflite(path, sig, "fp16")
    ref = run_source(model_source("keras", models["keras"]), {"image": samples})["scores"]
    got = run_tflite(model, {"image": samples})["scores"]
    assert np.max(np.abs(got - ref)) < 1e-2
    assert model == to_tflite(path, sig, "fp16")  # deterministic bytes
    assert tensor_dtypes(model)["tensors"].get("FLOAT16", 0) >= 2  # conv + dense weights
    assert op_histogram(model).get("DEQUANTIZE", 0) >= 2


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _filter_scale_counts(model: bytes) -> list[int]:
    """Number of quantization scales on each CONV_2D filter (1 = per-tensor)."""
    from tensorflow.lite.python import schema_py_generated as schema

    root = schema.Model.GetRootAs(model, 0)
    sg = root.Subgraphs(0)
    counts = []
    for k in range(sg.OperatorsLength()):
        op = sg.Operators(k)
        code = root.OperatorCodes(op.OpcodeIndex())
        if max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) == schema.BuiltinOperator.CONV_2D:
            counts.append(sg.Tensors(op.Inputs(1)).Quantization().ScaleLength())
    return counts


@pytest.mark.parametrize("per_channel,scales", [(True, 4), (False, 1)])
def test_int8_close_to_float(flat_int8, per_channel, scales):
    model = to_tflite(flat_int8["path"], flat_int8["sig"], "int8", flat_int8["calib"], per_channel=per_channel)
    assert _filter_scale_counts(model) == [scales]
    assert tensor_dtypes(model)["inputs"] == {"image": "INT8"}
    assert tensor_dtypes(model)["outputs"] == {"scores": "INT8"}
    got = run_tflite(model, flat_int8["eval"])["scores"]
    ref = flat_int8["ref"]
    assert got.dtype == np.float32
    assert _cosine(got, ref) > 0.98
    # Centered, so agreement is about what changes between samples.
    assert _cosine(got - ref.mean(0), ref - ref.mean(0)) > 0.95
    assert np.mean(np.abs(got - ref)) < 0.05 * np.ptp(ref)


@pytest.mark.parametrize("io_dtype,expected", [("uint8", "UINT8"), ("float32", "FLOAT32")])
def test_int8_io_dtype(flat_int8, io_dtype, expected):
    model = to_tflite(
        flat_int8["path"], flat_int8["sig"], "int8", flat_int8["calib"], input_type=io_dtype, output_type=io_dtype
    )
    assert tensor_dtypes(model)["inputs"] == {"image": expected}
    desc = tflite_inputs_outputs(model)["inputs"][0]
    assert (desc["quantization"] is None) == (io_dtype == "float32")
    got = run_tflite(model, flat_int8["eval"])["scores"]
    assert _cosine(got, flat_int8["ref"]) > 0.98


def test_int8_without_calibration_is_a_stage_error(conv_float):
    path, sig = conv_float
    with pytest.raises(StageError, match="calibration"):
        to_tflite(path, sig, "int8")


def test_bad_calibration_data_is_an_input_error(conv_float):
    path, sig = conv_float
    with pytest.raises(InputError, match="'image'.*8, 8, 3"):
        to_tflite(path, sig, "int8", {"image": np.zeros((4, 8, 8, 3), np.float32)})
    # -inf would crash TF's calibrator (tensorflow#120295); we refuse it first.
    bad = np.zeros((4, 16, 16, 3), np.float32)
    bad[2, 0, 0, 0] = -np.inf
    with pytest.raises(InputError, match="NaN or infinity"):
        to_tflite(path, sig, "int8", {"image": bad})


def test_int8_calibrator_crash_is_contained(models, tmp_path):
    """TF 2.21's calibrator segfaults on Keras LSTM while loops (tensorflow#75140).

    Such graphs are calibrated in a child process: the build gets a StageError
    (or, once TF is fixed, a working model), never a dead interpreter.
    """
    sig = export_float(model_source("keras", models["lstm"]), None, 1, tmp_path / "lstm.pb")
    x = np.random.default_rng(0).random((8, 5, 4), dtype=np.float32)
    try:
        model = to_tflite(tmp_path / "lstm.pb", sig, "int8", {"seq": x})
    except StageError as err:
        assert "crashed inside TensorFlow" in err.message and "unroll=True" in err.hint
    else:
        ref = run_source(model_source("keras", models["lstm"]), {"seq": x})["out"]
        assert _cosine(run_tflite(model, {"seq": x})["out"], ref) > 0.9


def test_conversion_failure_is_a_short_stage_error(tmp_path):
    class Det(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 3, 3], tf.float32, name="m")])
        def serve(self, m):
            return {"det": tf.linalg.det(m)}

    module = Det()
    tf.saved_model.save(module, str(tmp_path / "det"), signatures={"serving_default": module.serve})
    sig = export_float(model_source("saved_model", tmp_path / "det"), None, 1, tmp_path / "det.pb")
    with pytest.raises(StageError) as err:
        to_tflite(tmp_path / "det.pb", sig, "none")
    message = err.value.message
    assert "MatrixDeterminant" in message and "\n" not in message and len(message) < 400


def test_bad_float_file_or_signature(conv_float, tmp_path):
    path, sig = conv_float
    (tmp_path / "bad.pb").write_bytes(b"\xff\xff\xff garbage")
    with pytest.raises(InputError, match="bad.pb"):
        to_tflite(tmp_path / "bad.pb", sig, "none")
    other = replace(sig, inputs=[replace(sig.inputs[0], name="renamed"), *sig.inputs[1:]])
    with pytest.raises(StageError, match="differs"):
        to_tflite(path, other, "none")


# ---------------------------------------------------------------- runtime & inspect


def test_op_histogram_and_corrupt_tflite(conv_float, tmp_path):
    path, sig = conv_float
    model = to_tflite(path, sig, "none")
    hist = op_histogram(model)
    assert hist == dict(sorted(hist.items()))
    assert hist["CONV_2D"] == 1 and hist["FULLY_CONNECTED"] == 1 and hist["MEAN"] == 1
    file = tmp_path / "m.tflite"
    file.write_bytes(model)
    assert op_histogram(file) == hist
    x1 = np.ones((1, 16, 16, 3), np.float32)
    as_source = run_source(model_source("tflite", file), {"image": x1})["scores"]
    assert np.array_equal(as_source, run_tflite(model, {"image": x1})["scores"])
    assert tensor_dtypes(file)["inputs"] == {"image": "FLOAT32"}
    x = np.zeros((2, 16, 16, 3), np.float32)
    assert run_tflite(file, {"image": x})["scores"].shape == (2, 3)
    with pytest.raises(InputError, match="'image'"):
        run_tflite(file, {"image": np.zeros((2, 8, 8, 3), np.float32)})
    for bad in (model[: len(model) // 2], b"garbage bytes, not a flatbuffer"):
        with pytest.raises(InputError):
            run_tflite(bad, {"image": x})
        with pytest.raises(InputError):
            op_histogram(bad)


def test_run_tflite_resizes_batch_of_fixed_model(models, tmp_path, samples):
    sig = export_float(model_source("keras", models["keras"]), None, 4, tmp_path / "b4.pb")
    model = to_tflite(tmp_path / "b4.pb", sig, "none")
    got = run_tflite(model, {"image": samples})["scores"]  # fed one sample at a time
    ref = run_source(model_source("keras", models["keras"]), {"image": samples})["scores"]
    assert np.max(np.abs(got - ref)) < 1e-5


# ---------------------------------------------------------------- images


def _png(path: Path, pixels: np.ndarray) -> Path:
    path.write_bytes(tf.io.encode_png(tf.constant(pixels, tf.uint8)).numpy())
    return path


@pytest.fixture()
def pngs(tmp_path) -> list[Path]:
    rng = np.random.default_rng(3)
    return [_png(tmp_path / f"im{i}.png", rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)) for i in range(3)]


def _pixels(path: Path) -> np.ndarray:
    return tf.io.decode_png(path.read_bytes(), channels=3).numpy().astype(np.float32)


def test_load_images_rgb_bgr_mean_std(pngs):
    raw = np.stack([_pixels(p) for p in pngs])
    rgb = load_images(pngs, None, "rgb", 1 / 255, (0.0,), (1.0,))
    assert rgb.dtype == np.float32 and rgb.shape == (3, 4, 6, 3)
    assert np.max(np.abs(rgb - raw / 255)) < 1e-6
    bgr = load_images(pngs, None, "bgr", 1 / 255, (0.0,), (1.0,))
    assert np.array_equal(bgr, rgb[..., ::-1])
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)
    norm = load_images(pngs, None, "rgb", 1 / 255, mean, std)
    expected = (raw / 255 - np.array(mean)) / np.array(std)
    assert np.max(np.abs(norm - expected)) < 1e-5
    assert np.array_equal(norm, load_images(pngs, None, "rgb", 1 / 255, mean, std))  # deterministic


def test_load_images_resize_and_gray(tmp_path, pngs):
    resized = load_images(pngs, (2, 3), "rgb", 1.0, (0.0,), (1.0,))
    assert resized.shape == (3, 2, 3, 3)
    flat = _png(tmp_path / "flat.png", np.full((5, 7, 3), 200, np.uint8))
    assert np.allclose(load_images([flat], (3, 3), "rgb", 1.0, (0.0,), (1.0,)), 200.0, atol=1e-3)
    gray = load_images([flat, *pngs], (4, 6), "gray", 1.0, (100.0,), (2.0,))
    assert gray.shape == (4, 4, 6, 1)
    assert np.allclose(gray[0], (200.0 - 100.0) / 2.0, atol=1e-3)


def test_load_images_errors(tmp_path, pngs):
    other = _png(tmp_path / "big.png", np.zeros((5, 6, 3), np.uint8))
    with pytest.raises(InputError) as err:
        load_images([*pngs, other], None, "rgb", 1.0, (0.0,), (1.0,))
    assert "big.png" in err.value.message and "6x5" in err.value.message and "6x4" in err.value.message
    broken = tmp_path / "broken.png"
    broken.write_bytes(pngs[0].read_bytes()[:30])
    with pytest.raises(InputError, match="broken.png"):
        load_images([pngs[0], broken], None, "rgb", 1.0, (0.0,), (1.0,))


def model_source(fmt: str, path) -> Source:
    return Source(fmt, Path(path), str(path))
