"""Recurrent architectures end to end: a CRNN text recognizer and a streaming VAD (archs.py).

fp32  - converted through the same harness as test_architectures.py and compared with
        onnxruntime on realistic inputs: max|err| <= 1e-4 * max(1, max|ref|);
build - `buildsys build` of a recipe written here, for cpu-fp32, cpu-int8 and cpu-int16x8,
        calibrated from .npy files (and `zeros: true` for the VAD's state inputs h, c); the
        validate stage runs every artifact, and the cosines in metrics.json are printed and
        held to floors measured on these models (see COSINE_FLOORS).
Where TFLite has no kernel of the target's width for an op, the build says so in words: an op
left in float32 inside an integer artifact is named by the device check and the report; the
fused LSTM, which TF's int16x8 quantizer refuses, is quantized as its unrolled cells; any
other op it refuses fails the target (exit 1) saying what to build instead.
"""

from __future__ import annotations

import json
from pathlib import Path

import archs
import numpy as np
import onnx
import pytest
from conftest import run_cli
from onnx_harness import make_model
from test_architectures import Conversions, run_converted

from buildsys.compat import check_artifact
from buildsys.compat.check import render_kernel_notes
from buildsys.errors import StageError

FP32_SAMPLES = 4
CALIB_SAMPLES, VAL_SAMPLES = 32, 16
TARGETS = ("cpu-fp32", "cpu-int8", "cpu-int16x8")
# Lowest cosine (artifact vs onnxruntime, per output) each quantized target must reach.
COSINE_FLOORS = {
    "cpu-fp32": 0.99999,
    "cpu-int16x8": 0.99,  # measured: VAD 0.9997 (c_out)
    "cpu-int8": 0.95,  # measured: CRNN 0.973, VAD 0.996 (c_out)
}
FUSED_LSTM = ("UNIDIRECTIONAL_SEQUENCE_LSTM", "BIDIRECTIONAL_SEQUENCE_LSTM")


class RecurrentConversions(Conversions):
    def _model(self, name: str) -> onnx.ModelProto:
        model = archs.RECURRENT_ARCHITECTURES[name]()
        from buildsys.onnxprep.prepare import prepare_model

        return prepare_model(model)


@pytest.fixture(scope="module")
def conversions(tmp_path_factory) -> RecurrentConversions:
    return RecurrentConversions(tmp_path_factory.mktemp("recurrent"))


NAMES = list(archs.RECURRENT_ARCHITECTURES)


@pytest.mark.parametrize("name", NAMES)
def test_fp32_matches_onnxruntime(conversions, name):
    model = conversions.get(name, "model")
    arrays = archs.recurrent_inputs(name, FP32_SAMPLES, seed=0)
    ref = archs.run_ort(model, arrays)
    got = run_converted(conversions.get(name, "fp32"), arrays)
    archs.assert_fp32_matches(name, got, ref)


def test_crnn_lstms_are_fused_kernels(conversions):
    """Two bidirectional LSTMs: TFLite's sequence LSTM kernels, not an unrolled loop of cells."""
    ops = conversions.get("crnn", "fp32").ops
    assert sum(ops.get(op, 0) for op in FUSED_LSTM) >= 2, ops
    assert "WHILE" not in ops, ops


# --- buildsys build ---------------------------------------------------------------------

CRNN_RECIPE = """\
version: 1
name: crnn
source:
  onnx: crnn.onnx
calibration:
  samples: {calib}
  inputs:
    image: {{npy: calib/image.npy}}
validate:
  samples: {val}
  inputs:
    image: {{npy: val/image.npy}}
targets:
{targets}"""

VAD_RECIPE = """\
version: 1
name: vad
source:
  onnx: vad.onnx
calibration:
  samples: {calib}
  inputs:
    audio: {{npy: calib/audio.npy}}
    h: {{zeros: true}}   # a stream starts from zero state
    c: {{zeros: true}}
validate:
  samples: {val}
  inputs:
    audio: {{npy: val/audio.npy}}
    h: {{zeros: true}}
    c: {{zeros: true}}
targets:
{targets}"""

RECIPES = {"crnn": CRNN_RECIPE, "vad": VAD_RECIPE}


def recurrent_workspace(root: Path, name: str) -> Path:
    """recipes/ with the model, calibration and validation samples (.npy, ONNX layout)."""
    recipes = root / "recipes"
    model = archs.RECURRENT_ARCHITECTURES[name]()
    recipes.mkdir(parents=True)
    (recipes / f"{name}.onnx").write_bytes(model.SerializeToString())
    for part, count, seed in (("calib", CALIB_SAMPLES, 10), ("val", VAL_SAMPLES, 20)):
        (recipes / part).mkdir()
        for input_name, array in archs.recurrent_inputs(name, count, seed).items():
            if name != "vad" or input_name == "audio":  # the VAD's state comes from `zeros: true`
                np.save(recipes / part / f"{input_name}.npy", array)
    targets = "".join(f"  - device: {t}\n" for t in TARGETS)
    (recipes / f"{name}.yaml").write_text(RECIPES[name].format(calib=CALIB_SAMPLES, val=VAL_SAMPLES, targets=targets))
    return root


@pytest.mark.parametrize("name", NAMES)
def test_builds_for_fp32_int8_and_int16x8(tmp_path, name):
    ws = recurrent_workspace(tmp_path / "ws", name)
    proc = run_cli(ws, "build", "--json")
    outcomes = {"/".join(p for p in (r["target"], r["stage"]) if p): r["outcome"] for r in json.loads(proc.stdout)}
    for target in TARGETS:
        assert outcomes[f"{target}/validate"] == "ran", outcomes
        metrics = json.loads((ws / f"build/{name}/{target}/metrics.json").read_text())
        assert metrics["passed"] and metrics["samples"] == VAL_SAMPLES
        for out, m in sorted(metrics["outputs"].items()):
            print(f"{name}/{target}/{out}: cosine {m['cosine']:.5f}, max abs error {m['max_abs_error']:.3g}")
            assert m["cosine"] >= COSINE_FLOORS[target], f"{name}/{target}/{out}: cosine {m['cosine']:.5f}"
        notes = _kernel_notes_are_reported(ws / f"build/{name}/{target}", proc.stderr)
        # the CRNN's 2 bidirectional LSTMs: fused kernels, except in int16x8 (no such kernel there)
        unrolled = [n for n in notes if n.startswith("LSTM has no int16x8 kernel here: 4 LSTM direction(s)")]
        assert len(unrolled) == (name == "crnn" and target == "cpu-int16x8"), notes


def _kernel_notes_are_reported(target_dir: Path, stderr: str) -> list[str]:
    """Every op an integer artifact runs in float32, and every LSTM it runs unrolled, is named
    in the report (and was shown by the build)."""
    compat = json.loads((target_dir / "compat.json").read_text())
    lines = render_kernel_notes(compat)
    float_types = {op["op"] for op in compat.get("float_ops", {}).get("ops", [])}
    assert len(lines) == len(float_types) + ("unrolled" in compat)
    report = (target_dir / "report.md").read_text()
    for line in lines:
        print(f"{target_dir.name}: {line}")
        assert line in report and line in stderr
    return lines


def test_an_op_without_an_int8_kernel_is_named_as_running_in_float(tmp_path):
    """TFLite keeps NEG in float32 inside an int8 model (what the fused LSTM's fresh state
    uses): the device check lists it and says where it runs, in words."""
    from buildsys.devices.catalogue import Catalogue
    from buildsys.tflow.onnxsource import export_onnx
    from buildsys.tflow.quantize import to_tflite

    model = make_model(
        [
            onnx.helper.make_node("Relu", ["x"], ["r"], name="relu"),
            onnx.helper.make_node("Neg", ["r"], ["y"], name="negate"),
        ],
        {"x": [1, 16]},
        ["y"],
    )
    signature = export_onnx(model, tmp_path / "float.pb")
    calib = {"x": np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32)}
    path = tmp_path / "model.tflite"
    path.write_bytes(to_tflite(tmp_path / "float.pb", signature, "int8", calib=calib))
    profile = Catalogue().get("cpu-int8").data
    compat = check_artifact(path, "tflite", profile)
    assert [op["op"] for op in compat["float_ops"]["ops"]] == ["NEG"], compat.get("float_ops")
    [line] = render_kernel_notes(compat)
    assert line.startswith("NEG has no int8 kernel here: it runs in float32 on the CPU (1 op: ")
    # an fp32 artifact is float by design: nothing to say
    assert "float_ops" not in check_artifact(path, "tflite", Catalogue().get("cpu-fp32").data)
    # TF's int16x8 quantizer has no NEG kernel at all: the target fails saying what to build instead
    with pytest.raises(StageError) as info:
        to_tflite(tmp_path / "float.pb", signature, "int16x8", calib=calib)
    assert "TensorFlow's int16x8 quantizer has no int16 kernel for NEG" in info.value.message
    assert "build this model for cpu-int8" in info.value.hint


def test_unfused_lstm_keeps_the_cells_and_drops_the_fresh_state_zero(conversions):
    """What int16x8 quantizes when it refuses the fused LSTM: plain functions, state args
    without the `+ min(|x|, 0)` the fused kernel needs (its empty range aborts int16 ADD)."""
    from buildsys.tflow.frozen import read_float
    from buildsys.tflow.unfuse import COMPOSITE, unfused

    graph_def, _ = read_float(conversions.get("crnn", "float")[0])
    plain = unfused(graph_def)
    assert not any(COMPOSITE in f.attr for f in plain.library.function)
    assert sum(COMPOSITE in f.attr for f in graph_def.library.function) == 4  # the input is left as it was
    nodes = {n.name: n for n in plain.node}
    calls = [n for n in plain.node if n.op.endswith("PartitionedCall")]
    assert len(calls) == 4
    for call in calls:
        assert [nodes[i.split(":")[0]].op for i in call.input[1:3]] == ["Const", "Const"], call
    # a graph without composite functions has nothing to unfuse
    assert unfused(read_float(conversions.get("vad", "float")[0])[0]) is None
