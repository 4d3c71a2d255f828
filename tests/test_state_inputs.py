"""Every model input is fed: `zeros: true` sources for state inputs, and a clear error naming
the inputs a recipe leaves without data (with the lines to add).

The model is a small streaming cell, (x, h) -> (y, h_out), the shape of a recurrent
model's state passing without the recurrent op itself.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import build_json, run_cli
from onnx import TensorProto, helper, numpy_helper

from buildsys.errors import InputError, RecipeError
from buildsys.recipe import RecipeLoader
from buildsys.signature import TensorEntry
from buildsys.stages.calibration import check_fit

FEATURES, HIDDEN = 8, 4
X_ENTRY = TensorEntry("x", [1, FEATURES], "float32", [0, 1])
H_ENTRY = TensorEntry("h", [1, 1, HIDDEN], "float32", [0, 1, 2])

HEAD = """\
version: 1
name: cell
source:
  onnx: cell.onnx
"""


def cell_model() -> onnx.ModelProto:
    """y = tanh(x W + h U), h_out = y as (1, 1, hidden): state in, state out."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array((rng.standard_normal((FEATURES, HIDDEN)) / FEATURES**0.5).astype(np.float32), "W"),
        numpy_helper.from_array((rng.standard_normal((HIDDEN, HIDDEN)) / HIDDEN**0.5).astype(np.float32), "U"),
        numpy_helper.from_array(np.array([1, HIDDEN], np.int64), "flat"),
        numpy_helper.from_array(np.array([1, 1, HIDDEN], np.int64), "state"),
    ]
    nodes = [
        helper.make_node("Reshape", ["h", "flat"], ["h2"], name="h_flat"),
        helper.make_node("MatMul", ["x", "W"], ["xw"], name="xw"),
        helper.make_node("MatMul", ["h2", "U"], ["hu"], name="hu"),
        helper.make_node("Add", ["xw", "hu"], ["pre"], name="pre"),
        helper.make_node("Tanh", ["pre"], ["y"], name="act"),
        helper.make_node("Reshape", ["y", "state"], ["h_out"], name="h_state"),
    ]
    graph = helper.make_graph(
        nodes,
        "cell",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, FEATURES]),
            helper.make_tensor_value_info("h", TensorProto.FLOAT, [1, 1, HIDDEN]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, HIDDEN]),
            helper.make_tensor_value_info("h_out", TensorProto.FLOAT, [1, 1, HIDDEN]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model, full_check=True)
    return model


def cell_workspace(root: Path, body: str) -> Path:
    recipes = root / "recipes"
    recipes.mkdir(parents=True)
    (recipes / "cell.onnx").write_bytes(cell_model().SerializeToString())
    rng = np.random.default_rng(1)
    np.save(recipes / "x.npy", rng.standard_normal((24, FEATURES)).astype(np.float32))
    np.save(recipes / "x_val.npy", rng.standard_normal((8, FEATURES)).astype(np.float32))
    (recipes / "cell.yaml").write_text(HEAD + body)
    return root


def load(tmp_path: Path, body: str):
    path = tmp_path / "r.yaml"
    path.write_text(HEAD + body)
    return RecipeLoader().load(path, tmp_path)


# --- the recipe -------------------------------------------------------------------------


def test_zeros_is_a_source_that_reads_no_files(tmp_path):
    recipe = load(
        tmp_path, "calibration:\n  inputs:\n    x: {npy: x.npy}\n    h: {zeros: true}\ntargets: [{device: cpu-int8}]\n"
    )
    h = recipe.calibration.inputs["h"]
    assert (h.kind, h.reads_files, h.params()) == ("zeros", False, {"kind": "zeros"})
    assert recipe.calibration.inputs["x"].reads_files


@pytest.mark.parametrize(
    "source, message",
    [
        ("{zeros: false}", "must be true, got false"),
        ("{zeros: true, npy: h.npy}", "needs exactly one of images, npy, npz, zeros; found: zeros, npy"),
        ("{zeros: true, key: h}", "npz"),
    ],
)
def test_zeros_is_only_true_and_alone(tmp_path, source, message):
    body = f"calibration:\n  inputs:\n    h: {source}\ntargets: [{{device: cpu-int8}}]\n"
    with pytest.raises(RecipeError) as info:
        load(tmp_path, body)
    assert any(message in p.message and p.line == 7 for p in info.value.problems), info.value.problems


# --- filling the zeros ------------------------------------------------------------------


def test_zeros_take_the_input_shape_dtype_and_the_sample_count(tmp_path):
    recipe = load(
        tmp_path, "calibration:\n  inputs:\n    x: {npy: x.npy}\n    h: {zeros: true}\ntargets: [{device: cpu-int8}]\n"
    )
    samples = {"x": np.ones((5, FEATURES), np.float32)}
    check_fit(recipe, "calib", samples, [X_ENTRY, H_ENTRY])
    assert samples["h"].shape == (5, 1, HIDDEN) and samples["h"].dtype == np.float32
    assert not samples["h"].any()
    # an integer state (a step counter) gets integer zeros
    samples = {"x": np.ones((3, FEATURES), np.float32)}
    check_fit(recipe, "calib", samples, [X_ENTRY, replace(H_ENTRY, dtype="int32")])
    assert samples["h"].dtype == np.int32 and samples["h"].shape == (3, 1, HIDDEN)


def test_zeros_in_the_source_layout_of_a_permuted_input(tmp_path):
    """A stored-NHWC image input gets zeros in the ONNX layout (NCHW) the samples are kept in."""
    recipe = load(tmp_path, "calibration:\n  inputs:\n    img: {zeros: true}\ntargets: [{device: cpu-int8}]\n")
    entry = TensorEntry("img", [1, 16, 12, 3], "float32", [0, 2, 3, 1])
    samples: dict = {}
    check_fit(recipe, "calib", samples, [entry])
    # no input with files: as many samples as calibration.samples (default 64)
    assert samples["img"].shape == (64, 3, 16, 12)


def test_zeros_of_a_dynamic_input_name_the_fix(tmp_path):
    recipe = load(tmp_path, "calibration:\n  inputs:\n    h: {zeros: true}\ntargets: [{device: cpu-int8}]\n")
    with pytest.raises(InputError) as info:
        check_fit(recipe, "calib", {}, [replace(H_ENTRY, shape=[1, None, HIDDEN])])
    assert "r.yaml:7: calibration.inputs.h.zeros" in info.value.message
    assert "static shape" in info.value.message and "shapes:" in info.value.hint


def test_a_missing_input_lists_the_lines_to_add(tmp_path):
    recipe = load(tmp_path, "calibration:\n  inputs:\n    x: {npy: x.npy}\ntargets: [{device: cpu-int8}]\n")
    entries = [X_ENTRY, H_ENTRY, replace(H_ENTRY, name="cell/c:0")]
    with pytest.raises(InputError) as info:
        check_fit(recipe, "calib", {"x": np.ones((2, FEATURES), np.float32)}, entries)
    message = info.value.message
    assert "r.yaml:7: calibration.inputs: no data for the model's inputs 'h', 'cell/c:0' (it takes 'x', " in message
    assert "    h: {zeros: true}   # or {npy: h.npy} holding an array (N, 1, 4)" in message
    # a name YAML would misread is quoted; the file name is one a folder can hold
    assert '    "cell/c:0": {zeros: true}   # or {npy: cell_c_0.npy}' in message


# --- end to end -------------------------------------------------------------------------

ZEROS_RECIPE = """\
calibration:
  samples: 16
  inputs:
    x: {npy: x.npy}
    h: {zeros: true}
validate:
  samples: 8
  inputs:
    x: {npy: x_val.npy}
    h: {zeros: true}
targets:
  - device: cpu-int8
  - device: cpu-fp32
    name: fp32
"""


def test_state_inputs_fed_zeros_build_int8_and_fp32(tmp_path):
    ws = cell_workspace(tmp_path / "ws", ZEROS_RECIPE)
    outcomes = build_json(ws)
    assert outcomes["cpu-int8/validate"] == "ran" and outcomes["fp32/validate"] == "ran"
    for target in ("cpu-int8", "fp32"):
        metrics = json.loads((ws / f"build/cell/{target}/metrics.json").read_text())
        assert metrics["passed"] and metrics["samples"] == 8 and metrics["data"] == "validate.inputs"
        assert sorted(metrics["outputs"]) == ["h_out", "y"]
    fp32 = json.loads((ws / "build/cell/fp32/metrics.json").read_text())
    assert fp32["outputs"]["y"]["max_abs_error"] <= 1e-5
    int8 = json.loads((ws / "build/cell/cpu-int8/metrics.json").read_text())
    assert int8["outputs"]["y"]["cosine"] >= 0.99
    assert set(build_json(ws).values()) == {"up-to-date"}


@pytest.mark.parametrize(
    "body, where",
    [
        # int8 calibrates: the calibration set must feed h
        (
            "calibration:\n  inputs:\n    x: {npy: x.npy}\ntargets: [{device: cpu-int8}]\n",
            "cell.yaml:7: calibration.inputs",
        ),
        # fp32 only validates: so must the validation set
        (
            "validate:\n  inputs:\n    x: {npy: x_val.npy}\ntargets: [{device: cpu-fp32}]\n",
            "cell.yaml:7: validate.inputs",
        ),
    ],
)
def test_an_input_without_data_is_a_usage_error_naming_it(tmp_path, body, where):
    ws = cell_workspace(tmp_path / "ws", body)
    err = run_cli(ws, "build", check=2).stderr
    assert where in err and "no data for the model's input 'h'" in err, err
    assert "h: {zeros: true}" in err and "(N, 1, 4)" in err
    assert "Traceback" not in err


def test_without_any_data_validation_feeds_noise_to_every_input(tmp_path):
    """The README's promise: no data source at all, and validation still runs on seeded noise."""
    ws = cell_workspace(tmp_path / "ws", "targets: [{device: cpu-fp32}]\n")
    build_json(ws)
    metrics = json.loads((ws / "build/cell/cpu-fp32/metrics.json").read_text())
    assert metrics["data"] == "random-uniform" and metrics["passed"]


def test_zeros_with_validation_held_out_from_calibration(tmp_path):
    """Without validate.inputs, validation takes the calibration rows calibration did not draw,
    and the zeros input follows their count."""
    body = "calibration:\n  samples: 16\n  inputs:\n    x: {npy: x.npy}\n    h: {zeros: true}\ntargets: [{device: cpu-int8}]\n"
    ws = cell_workspace(tmp_path / "ws", body)
    build_json(ws)
    metrics = json.loads((ws / "build/cell/cpu-int8/metrics.json").read_text())
    # x.npy holds 24 rows: 16 calibrate, the other 8 validate
    assert metrics["data"] == "held-out calibration files" and metrics["samples"] == 8
    index = json.loads((ws / "build/cell/_common/val.index.json").read_text())
    assert index["available"] == 24 and len(index["indices"]) == 8
