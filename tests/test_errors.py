"""Bad input: one-screen errors naming the file, exit 2, nothing half-written left behind."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_cli

from buildsys.outputs import MARKER

FIVE_MISTAKES = """\
version: 1
name: broken
source:
  keras: model/model.keras
  onnx: model/model.onnx
calibraton:
  samples: 4
targets:
  - device: cpu-int8
    nmae: x
  - name: fp32
validate:
  samples: -3
"""


MODEL_ROLES = {"source", "float", "signature", "model", "metrics", "report"}  # not calib, val, val_index


def leftovers(ws: Path) -> list[str]:
    """Anything made from the bad model: artifacts, or cache entries of model stages.

    Independent stages (calibration data) may finish and be cached: they are
    correct whatever the model, like `make -k`.
    """
    build = ws / "build"
    calibration = (".npz", ".index.json")  # val.npz and which samples it holds
    # the ownership marker is written before any stage runs: it lists files, it holds no model data
    made = [p for p in build.rglob("*") if p.is_file() and p.name != MARKER] if build.exists() else []
    found = [str(p) for p in made if not p.name.endswith(calibration)]
    keys = ws / ".buildsys" / "cache" / "keys"
    for manifest in keys.glob("*.json") if keys.exists() else []:
        if MODEL_ROLES & set(json.loads(manifest.read_text())):
            found.append(str(manifest))
    return found


def assert_one_screen(proc) -> None:
    assert "Traceback" not in proc.stderr + proc.stdout
    assert len(proc.stderr.splitlines()) <= 20, proc.stderr


def broken_build(ws: Path, old: str, new: str, code: int = 2, command: str = "build"):
    """Edit the recipe, run, expect a one-screen error with exit `code`."""
    recipe = ws / "recipes" / "shapes.yaml"
    text = recipe.read_text()
    assert old in text
    recipe.write_text(text.replace(old, new))
    proc = run_cli(ws, command, check=code)
    assert_one_screen(proc)
    return proc


def test_five_mistakes_all_reported_with_lines(workspace: Path) -> None:
    (workspace / "recipes" / "shapes.yaml").write_text(FIVE_MISTAKES)
    proc = run_cli(workspace, "build", check=2)
    assert_one_screen(proc)
    err = proc.stderr
    for line, word in ((5, "source"), (6, "calibraton"), (10, "nmae"), (11, "device"), (13, "samples")):
        assert f"shapes.yaml:{line}:" in err and word in err, (line, word, err)
    assert "did you mean 'calibration'" in err
    assert "5 problems" in err
    assert leftovers(workspace) == []


def test_missing_calibration_glob(workspace: Path) -> None:
    proc = broken_build(workspace, "data/calib/*.png", "data/calibration/*.png")
    assert "shapes.yaml" in proc.stderr and "data/calibration/*.png" in proc.stderr
    assert "matches no files" in proc.stderr
    assert leftovers(workspace) == []


def test_sha256_mismatch_shows_both_digests(workspace: Path) -> None:
    pinned = "ab" * 32
    source = "  keras: model/model.keras\n"
    proc = broken_build(workspace, source, f"{source}  sha256: {pinned}\n")
    import hashlib

    actual = hashlib.sha256((workspace / "recipes" / "model" / "model.keras").read_bytes()).hexdigest()
    assert pinned in proc.stderr and actual in proc.stderr and "model.keras" in proc.stderr
    assert leftovers(workspace) == []


def test_corrupt_model_file(workspace: Path) -> None:
    model = workspace / "recipes" / "model" / "model.keras"
    model.write_bytes(model.read_bytes()[:5000])  # truncated download
    proc = run_cli(workspace, "build", check=2)
    assert_one_screen(proc)
    assert "model.keras" in proc.stderr
    assert leftovers(workspace) == []
    assert not (workspace / "build" / "shapes" / "_common" / "float.pb").exists()


def test_garbage_model_file(workspace: Path) -> None:
    (workspace / "recipes" / "model" / "model.keras").write_bytes(b"not a model at all")
    proc = run_cli(workspace, "build", check=2)
    assert_one_screen(proc)
    assert "corrupt or wrong model file" in proc.stderr and "model.keras" in proc.stderr
    assert leftovers(workspace) == []


def test_missing_onnx_source_is_named(workspace: Path) -> None:
    proc = broken_build(workspace, "keras: model/model.keras", "onnx: model/model.onnx")
    assert "source model not found" in proc.stderr and "model/model.onnx" in proc.stderr
    assert leftovers(workspace) == []


def test_unknown_device_suggests(workspace: Path) -> None:
    proc = broken_build(workspace, "device: cpu-int8", "device: cpu-int9", command="check")
    assert "unknown device 'cpu-int9'" in proc.stderr and "cpu-int8" in proc.stderr


def test_missed_threshold_fails_target_and_reports_it(workspace: Path) -> None:
    proc = broken_build(workspace, "min_cosine: 0.95", "max_abs_error: 0.0000001", code=1)
    assert "thresholds missed" in proc.stderr
    tdir = workspace / "build" / "shapes" / "cpu-int8"
    metrics = json.loads((tdir / "metrics.json").read_text())
    assert not metrics["passed"]
    (output,) = metrics["failures"]
    # the failed target still gets its report, saying which output missed which metric
    md = (tdir / "report.md").read_text()
    assert "- status: **FAILED**" in md
    assert f"validation, output {output}: max_abs_error" in md
    assert "max_abs_error 1e-07 (over by" in (tdir / "report.html").read_text()
    assert not (workspace / "recipes" / "shapes.lock").exists()
    index = (workspace / "build" / "index.html").read_text()
    assert "failed</span>" in index and "from an earlier build" not in index
    # an up-to-date failing result must fail again, not pass
    again = run_cli(workspace, "build", check=1)
    assert "thresholds missed" in again.stderr
    assert not (workspace / "recipes" / "shapes.lock").exists()
