"""End-to-end: the acceptance behaviour of `buildsys build` on a real Keras model."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jsonschema
import numpy as np
import yaml
from conftest import ROOT, build_json, noop_build_imports, run_cli

INT8 = {"calibration", "ranges", "cpu-int8/quantize", "cpu-int8/validate", "cpu-int8/check", "cpu-int8/report"}
ALL = {"fetch", "calibration", "convert"} | INT8 | {"fp32/quantize", "fp32/validate", "fp32/check", "fp32/report"}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_incremental_build_cycle(workspace: Path) -> None:
    recipe = workspace / "recipes" / "shapes.yaml"
    lock = workspace / "recipes" / "shapes.lock"

    first = build_json(workspace)
    assert set(first) == ALL and set(first.values()) == {"ran"}
    for target in ("cpu-int8", "fp32"):
        out = workspace / "build" / "shapes" / target
        assert (out / "model.tflite").stat().st_size > 1000
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["passed"] and metrics["outputs"]["scores"]["cosine"] >= 0.95
        assert "## Operators" in (out / "report.md").read_text()
    lock_data = yaml.safe_load(lock.read_text())
    jsonschema.validate(lock_data, json.loads((ROOT / "schemas" / "lock.schema.json").read_text()))
    assert lock_data["tools"]["tensorflow"]
    assert lock_data["stages"]["cpu-int8/quantize"]["outputs"]["../build/shapes/cpu-int8/model.tflite"][
        "sha256"
    ] == sha(workspace / "build" / "shapes" / "cpu-int8" / "model.tflite")
    original_lock = lock.read_bytes()

    # nothing changed: nothing runs
    assert set(build_json(workspace).values()) == {"up-to-date"}

    # comments and key order are cosmetic
    text = recipe.read_text()
    reordered = "# a new comment\n" + text.replace(
        "version: 1\nname: shapes\n", "name: shapes   # trailing\nversion: 1\n"
    )
    recipe.write_text(reordered)
    assert set(build_json(workspace).values()) == {"up-to-date"}
    assert lock.read_bytes() == original_lock

    # the calibration seed touches only the int8 target (fp32 is cut off early)
    recipe.write_text(text.replace("seed: 0", "seed: 7"))
    status = json.loads(run_cli(workspace, "status", "--json").stdout)
    calib = next(r for r in status if r["stage"] == "calibration")
    assert calib["state"] == "stale" and any("seed" in r for r in calib["reasons"]), calib
    changed = build_json(workspace)
    assert {k for k, v in changed.items() if v == "ran"} == INT8, changed
    assert {k for k, v in changed.items() if v == "up-to-date"} == ALL - INT8, changed
    assert lock.read_bytes() != original_lock

    # reverting restores from the cache, and the lock is byte-identical again
    recipe.write_text(text)
    reverted = build_json(workspace)
    assert {k for k, v in reverted.items() if v == "restored"} == INT8, reverted
    assert lock.read_bytes() == original_lock
    assert all(r["state"] == "up-to-date" for r in json.loads(run_cli(workspace, "status", "--json").stdout))


def test_noop_build_imports_no_ml_framework(workspace: Path) -> None:
    build_json(workspace)
    proc = noop_build_imports(workspace, {"tensorflow", "keras", "onnx", "onnxruntime"})
    assert proc.stdout.strip() == "0 []", proc.stdout + proc.stderr


def test_clean_rebuilds_are_byte_identical_and_locked_passes(workspace: Path) -> None:
    build_json(workspace)
    model = workspace / "build" / "shapes" / "cpu-int8" / "model.tflite"
    first = sha(model)
    run_cli(workspace, "clean", "--cache")
    assert not model.exists() and not (workspace / ".buildsys").exists()
    assert set(build_json(workspace, "-j", "2").values()) == {"ran"}
    assert sha(model) == first
    assert set(build_json(workspace, "--locked").values()) == {"up-to-date"}


def test_locked_names_each_difference(workspace: Path) -> None:
    build_json(workspace)
    recipe = workspace / "recipes" / "shapes.yaml"
    recipe.write_text(recipe.read_text().replace("seed: 0", "seed: 3"))
    proc = run_cli(workspace, "build", "--locked", check=1)
    assert "shapes.lock" in proc.stderr and "recipe shapes.yaml changed" in proc.stderr
    (workspace / "recipes" / "shapes.lock").unlink()
    proc = run_cli(workspace, "build", "--locked", check=1)
    assert "no lockfile" in proc.stderr


def test_default_validation_holds_out_the_calibration_samples(workspace: Path) -> None:
    recipe = workspace / "recipes" / "shapes.yaml"
    text = recipe.read_text()
    start = text.index("  inputs:\n    image:\n      images: data/val")
    recipe.write_text(text[:start] + text[text.index("targets:") :])  # no validate.inputs
    build_json(workspace)
    common = workspace / "build" / "shapes" / "_common"
    calib, val = (np.load(common / f"{role}.npz")["image"] for role in ("calib", "val"))
    assert len(calib) == 8 and len(val) == 8  # 16 files: 8 calibrate, the other 8 validate
    flat = {row.tobytes() for row in calib}
    assert not any(row.tobytes() in flat for row in val)
    metrics = json.loads((workspace / "build" / "shapes" / "cpu-int8" / "metrics.json").read_text())
    assert metrics["data"] == "held-out calibration files"
