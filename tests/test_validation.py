"""Validation end to end on the ONNX example: a tampered artifact, a missed threshold, accuracy against labels."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from conftest import EXAMPLE, run_cli

RECIPE = """\
version: 1
name: net
source:
  onnx: model.onnx
shapes: {{image: [1, 3, 64, 64]}}
calibration:
  samples: 16
  inputs:
    image: {{images: calib/*.png, scale: 0.00392156862745098}}
validate:
  samples: 12   # of 32 files: which ones were drawn decides the labels picked
  thresholds: {thresholds}
  inputs:
    image: {{images: val/*.png, scale: 0.00392156862745098}}
{labels}targets:
  - device: cpu-int8
"""


def workspace(root: Path, thresholds: str = "{min_cosine: 0.98}", labels: str | None = None) -> Path:
    recipes = root / "recipes"
    recipes.mkdir(parents=True)
    shutil.copy(EXAMPLE / "model.onnx", recipes / "model.onnx")
    for part, count in (("calib", 16), ("val", 32)):
        (recipes / part).mkdir()
        for png in sorted((EXAMPLE / part).glob("*.png"))[:count]:
            shutil.copy(png, recipes / part / png.name)
    line = f"  labels: {labels}\n" if labels else ""
    (recipes / "net.yaml").write_text(RECIPE.format(thresholds=thresholds, labels=line))
    return root


def negate_first_conv_weights(model: Path) -> None:
    """Flip the sign of the first CONV_2D's int8 weights in place: a broken artifact
    that still loads and runs."""
    from buildsys.tflow.tflschema import enum_names, schema

    data = bytearray(model.read_bytes())
    fb = schema()
    root = fb.Model.GetRootAs(data, 0)
    names = enum_names(fb.BuiltinOperator)
    sg = root.Subgraphs(0)

    def op_name(op) -> str:
        code = root.OperatorCodes(op.OpcodeIndex())
        return names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]

    conv = next(op for op in map(sg.Operators, range(sg.OperatorsLength())) if op_name(op) == "CONV_2D")
    weights = root.Buffers(sg.Tensors(conv.Inputs(1)).Buffer()).DataAsNumpy().tobytes()
    assert len(weights) >= 64 and data.count(weights) == 1
    at = data.find(weights)
    flipped = (-np.frombuffer(weights, dtype=np.int8).astype(np.int16)).clip(-127, 127).astype(np.int8)
    data[at : at + len(weights)] = flipped.tobytes()
    model.write_bytes(bytes(data))


def test_tampered_artifact_is_restored_and_a_missed_threshold_fails_with_a_report(tmp_path: Path) -> None:
    ws = workspace(tmp_path / "ws")
    run_cli(ws, "build")
    tdir = ws / "build/net/cpu-int8"
    lock = (ws / "recipes/net.lock").read_text()
    good = (tdir / "model.tflite").read_bytes()
    assert json.loads((tdir / "metrics.json").read_text())["passed"]

    # a broken artifact that still loads and runs is never validated or pinned: the
    # committed bytes come back from the cache (issue 12.5)
    negate_first_conv_weights(tdir / "model.tflite")
    rows = {r["stage"]: r["outcome"] for r in json.loads(run_cli(ws, "build", "--json").stdout) if r["target"]}
    assert rows["quantize"] == "restored" and rows["validate"] == "up-to-date"
    assert (tdir / "model.tflite").read_bytes() == good and (ws / "recipes/net.lock").read_text() == lock

    # the int8 artifact cannot reach this cosine: validation fails it, and the report says why
    recipe = ws / "recipes/net.yaml"
    recipe.write_text(recipe.read_text().replace("{min_cosine: 0.98}", "{min_cosine: 0.9999999}"))
    proc = run_cli(ws, "build", check=1)
    assert "Traceback" not in proc.stderr
    assert re.search(
        r"net/cpu-int8/validate: validation thresholds missed\n\s+scores: cosine [0-9.]+ < min_cosine 0.9999999",
        proc.stderr,
    ), proc.stderr
    metrics = json.loads((tdir / "metrics.json").read_text())
    assert not metrics["passed"] and metrics["outputs"]["scores"]["cosine"] < 0.9999999
    md = (tdir / "report.md").read_text()
    assert (
        "- status: **FAILED**" in md
        and "validation, output scores: cosine" in md
        and "min_cosine 0.9999999 (short by" in md
    )
    html = (tdir / "report.html").read_text()
    assert 'class="badge failed"' in html and "scores: cosine" in html
    assert (ws / "recipes/net.lock").read_text() == lock  # a failed build writes no lock


def test_labels_give_accuracy_of_source_and_artifact_on_the_drawn_samples(tmp_path: Path) -> None:
    ws = workspace(tmp_path / "ws", labels="val/labels.npy")
    truth = np.load(EXAMPLE / "val/labels.npy")
    np.save(ws / "recipes/val/labels.npy", truth)
    run_cli(ws, "build")
    index = json.loads((ws / "build/net/_common/val.index.json").read_text())
    assert index["available"] == 32 and len(index["indices"]) == 12
    assert index["files"]["image"] == [f"{i:03d}.png" for i in index["indices"]]

    # the source's accuracy, recomputed here with onnxruntime on the drawn samples
    with np.load(ws / "build/net/_common/val.npz") as npz:
        images = npz["image"]
    session = ort.InferenceSession(str(ws / "build/net/_common/prepared.onnx"))
    scores = np.concatenate([session.run(None, {"image": images[i : i + 1]})[0] for i in range(len(images))])
    expected = float(np.mean(scores.argmax(1) == truth[index["indices"]]))
    m = json.loads((ws / "build/net/cpu-int8/metrics.json").read_text())["outputs"]["scores"]
    assert m["source_accuracy"] == pytest.approx(expected, abs=1e-8)
    assert m["accuracy_drop"] == pytest.approx(m["source_accuracy"] - m["accuracy"], abs=1e-8)
    assert m["source_accuracy"] >= 0.9  # the example model is right on almost every image
    report = (ws / "build/net/cpu-int8/report.md").read_text()
    assert "| source accuracy | accuracy | accuracy drop |" in report

    # labels are a keyed input: other labels rerun validate and nothing upstream
    np.save(ws / "recipes/val/labels.npy", np.zeros(32, dtype=np.int64))  # "everything is a circle"
    text = (ws / "recipes/net.yaml").read_text().replace("{min_cosine: 0.98}", "{min_cosine: 0.98, min_accuracy: 0.9}")
    (ws / "recipes/net.yaml").write_text(text)
    proc = run_cli(ws, "build", "--json", check=1)
    ran = {(r["target"], r["stage"]): r["outcome"] for r in json.loads(proc.stdout)}
    assert ran[("cpu-int8", "quantize")] == "up-to-date" and ran[("cpu-int8", "validate")] == "failed"
    m = json.loads((ws / "build/net/cpu-int8/metrics.json").read_text())["outputs"]["scores"]
    circles = float(np.mean(truth[index["indices"]] == 0))
    assert m["source_accuracy"] <= circles + 1e-8
    assert re.search(r"scores: accuracy [0-9.]+ < min_accuracy 0.9 \(short by", proc.stderr), proc.stderr


BAD_LABELS = [
    (np.zeros(31, dtype=np.int64), "31 labels for a validation source of 32 samples"),
    (np.full(32, 0.5), "labels must be integer class ids, got float64"),
    (np.zeros((32, 3), dtype=np.int64), "labels must be an (N,) array of class ids, got shape (32, 3)"),
    (np.full(32, -1), "label 0 is -1; class ids start at 0"),
    (np.arange(32), "class ids up to 31 fit no output of the model (scores [3])"),
]


def test_bad_labels_are_named(tmp_path: Path) -> None:
    ws = workspace(tmp_path / "ws", labels="val/labels.npy")
    for labels, message in BAD_LABELS:  # one workspace: only validate reruns
        np.save(ws / "recipes/val/labels.npy", labels)
        proc = run_cli(ws, "build", check=2)
        assert "Traceback" not in proc.stderr
        assert "labels.npy" in proc.stderr and message in proc.stderr, proc.stderr
        assert not (ws / "build/net/cpu-int8/metrics.json").exists()
    (ws / "recipes/val/labels.npy").write_bytes(b"not numpy")
    proc = run_cli(ws, "build", check=2)
    assert "cannot read the labels" in proc.stderr and "Traceback" not in proc.stderr


def test_labels_need_data_and_accuracy_thresholds_need_labels(tmp_path: Path) -> None:
    ws = workspace(tmp_path / "ws", labels="missing.npy")
    proc = run_cli(ws, "build", check=2)
    assert "validate.labels" in proc.stderr and "missing.npy not found" in proc.stderr

    recipe = ws / "recipes/net.yaml"
    lines = [
        "version: 1",
        "name: net",
        "source: {onnx: model.onnx}",
        "validate:",
        "  labels: val/labels.npy",
        "  thresholds: {max_accuracy_drop: 0.01}",
        "targets:",
        "  - device: cpu-fp32",
    ]
    recipe.write_text("\n".join(lines) + "\n")
    proc = run_cli(ws, "check", check=2)
    assert "recipes/net.yaml:5" in proc.stderr and "labels without validation data" in proc.stderr, proc.stderr
    recipe.write_text("\n".join(lines[:4] + lines[5:]) + "\n")
    proc = run_cli(ws, "check", check=2)
    assert "recipes/net.yaml:5" in proc.stderr and "max_accuracy_drop needs validate.labels" in proc.stderr, proc.stderr


LAYER_RECIPE = """\
version: 1
name: {name}
source:
  onnx: {name}.onnx
calibration:
  samples: 32
  inputs:
    image: {{npy: calib.npy}}
validate:
  samples: 16
  inputs:
    image: {{npy: val.npy}}
targets:
  - device: cpu-int8
"""


def _worst_layers(report: Path) -> list[tuple[str, list[str]]]:
    """(op, ONNX nodes) of report.md's per-layer table, worst first."""
    text = report.read_text()
    table = text[text.index("## Per-layer quantization error") :].split("\n\n")[2]
    rows = [row.split(" | ") for row in table.splitlines()[2:]]
    return [(r[1], [] if r[2] == "-" else r[2].strip("`").split(", ")) for r in rows]


def test_the_report_ranks_silu_layers_worst_and_relu_shows_no_such_pattern(tmp_path: Path) -> None:
    """Issue 6's acceptance case through `buildsys build`: the CNN of test_layers, SiLU vs
    ReLU, same weights; what the report's per-layer table shows."""
    import archs
    from test_layers import SILU_OPS, _cnn

    recipes = tmp_path / "ws" / "recipes"
    recipes.mkdir(parents=True)
    for activation in ("silu", "relu"):
        model = _cnn(activation)
        (recipes / f"{activation}.onnx").write_bytes(model.SerializeToString())
        (recipes / f"{activation}.yaml").write_text(LAYER_RECIPE.format(name=activation))
    np.save(recipes / "calib.npy", archs.sample_inputs(model, 32, seed=100)["image"])
    np.save(recipes / "val.npy", archs.sample_inputs(model, 16, seed=200)["image"])
    run_cli(tmp_path / "ws", "build")
    silu_rows = _worst_layers(tmp_path / "ws/build/silu/cpu-int8/report.md")
    silu, relu = [
        [op for op, _ in _worst_layers(tmp_path / f"ws/build/{a}/cpu-int8/report.md")] for a in ("silu", "relu")
    ]
    assert len(silu) == 10 and len(relu) == 9  # the ten worst; ReLU, fused, leaves 9 tensors in all
    assert set(silu[:2]) <= SILU_OPS and sum(op in SILU_OPS for op in silu[:5]) >= 3, silu
    assert not set(relu) & (SILU_OPS | {"LOGISTIC", "RELU", "RELU6"}), relu
    # each row names the ONNX node(s) behind it, as a replacement would select them
    op_types = {n.name: n.op_type for n in _cnn("silu").graph.node}
    expected = {"LOGISTIC": {"Sigmoid"}, "MUL": {"Mul"}, "CONV_2D": {"Conv", "BatchNormalization"}}
    for op, nodes in silu_rows[:3]:
        assert nodes and {op_types[n] for n in nodes} <= expected[op], (op, nodes)


def test_tflite_tensor_names_lead_back_to_onnx_nodes() -> None:
    from buildsys.stages.origins import onnx_nodes

    scopes = {
        "features_conv1_Conv": "/features/conv1/Conv",
        "features_relu1_Relu": "/features/relu1/Relu",
        "pad": "#3 (Pad)",
        "pad/inner": "/inner",
    }
    fused = "features_relu1_Relu/Relu_5;features_conv1_Conv/BiasAdd_4;features_conv1_Conv/Conv2D_2;Const_31"
    assert onnx_nodes(fused, scopes) == ["/features/relu1/Relu", "/features/conv1/Conv"]
    # a handler's own sub-scope still belongs to its node; the longest recorded scope wins
    assert onnx_nodes("pad/sub/PadV2_7:0", scopes) == ["#3 (Pad)"]
    assert onnx_nodes("pad/inner/Mul_8", scopes) == ["/inner"]
    assert onnx_nodes("serving_default_image:0", scopes) == [] and onnx_nodes("x/Relu_1", {}) == []


def test_labels_follow_the_held_out_calibration_files(tmp_path: Path) -> None:
    """Without validate.inputs, validation holds out the calibration files calibration did
    not draw; the labels are one per calibration file and are picked by those positions."""
    # 10 calibration images give a cosine of ~0.95 on the other 6: the limit is not the point here
    ws = workspace(tmp_path / "ws", thresholds="{min_cosine: 0.9}", labels="calib_labels.npy")
    recipe = ws / "recipes/net.yaml"
    text = recipe.read_text().replace("  inputs:\n    image: {images: val/*.png, scale: 0.00392156862745098}\n", "")
    recipe.write_text(text.replace("calibration:\n  samples: 16", "calibration:\n  samples: 10"))
    labels = np.arange(16) % 3
    np.save(ws / "recipes/calib_labels.npy", labels)
    run_cli(ws, "build")
    index = json.loads((ws / "build/net/_common/val.index.json").read_text())
    assert index["available"] == 16 and len(index["indices"]) == 6  # the 6 files calibration left
    with np.load(ws / "build/net/_common/calib.npz") as npz, np.load(ws / "build/net/_common/val.npz") as val:
        calib, images = npz["image"], val["image"]
    assert not any(np.array_equal(v, c) for v in images for c in calib)
    session = ort.InferenceSession(str(ws / "build/net/_common/prepared.onnx"))
    scores = np.concatenate([session.run(None, {"image": images[i : i + 1]})[0] for i in range(len(images))])
    m = json.loads((ws / "build/net/cpu-int8/metrics.json").read_text())
    assert m["data"] == "held-out calibration files"
    expected = float(np.mean(scores.argmax(1) == labels[index["indices"]]))
    assert m["outputs"]["scores"]["source_accuracy"] == pytest.approx(expected, abs=1e-8)
