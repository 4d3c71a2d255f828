"""Every supported source format builds end to end: .h5, SavedModel, TFLite pass-through."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import EXAMPLE, build_json, run_cli

RECIPE = """\
version: 1
source:
  {fmt}: {path}
batch: 1
validate:
  samples: 4
  thresholds: {{max_abs_error: {tol}}}
targets:
  - device: {device}
"""


def write(ws: Path, name: str, fmt: str, path: str, device: str, tol: float = 1e-4) -> None:
    (ws / "recipes" / f"{name}.yaml").write_text(RECIPE.format(fmt=fmt, path=path, device=device, tol=tol))


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SavedModel and an fp32 .tflite of the example, made with TensorFlow directly."""
    out = tmp_path_factory.mktemp("exported")
    script = (
        "import sys, keras, tensorflow as tf\n"
        "m = keras.models.load_model(sys.argv[1])\n"
        "m.export(sys.argv[2] + '/saved', verbose=False)\n"
        "fn = tf.function(lambda x: {'scores': m(x)}).get_concrete_function(tf.TensorSpec([1, 64, 64, 3], tf.float32, name='image'))\n"
        "open(sys.argv[2] + '/model.tflite', 'wb').write(tf.lite.TFLiteConverter.from_concrete_functions([fn], m).convert())\n"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    subprocess.run([sys.executable, "-c", script, str(EXAMPLE / "model.keras"), str(out)], check=True, env=env)
    return out


def test_h5_saved_model_and_tflite_sources_build(tmp_path: Path, exported: Path) -> None:
    ws = tmp_path
    (ws / "recipes").mkdir()
    write(ws, "h5", "keras", str(EXAMPLE / "model.h5"), "cpu-fp16", tol=1e-2)
    write(ws, "saved", "saved_model", str(exported / "saved"), "cpu-fp32")
    write(ws, "lite", "tflite", str(exported / "model.tflite"), "cpu-fp32")
    outcomes = build_json(ws)
    assert set(outcomes.values()) == {"ran"}, outcomes
    for name, target in (("h5", "cpu-fp16"), ("saved", "cpu-fp32")):
        metrics = json.loads((ws / "build" / name / target / "metrics.json").read_text())
        assert metrics["passed"] and metrics["data"] == "random-uniform", metrics
    lite = ws / "build" / "lite" / "cpu-fp32" / "model.tflite"
    assert lite.read_bytes() == (exported / "model.tflite").read_bytes()  # passed through untouched
    assert "Not validated" in (ws / "build" / "lite" / "cpu-fp32" / "report.md").read_text()
    assert (ws / "build" / "h5" / "cpu-fp16" / "model.tflite").stat().st_size < (
        ws / "build" / "saved" / "cpu-fp32" / "model.tflite"
    ).stat().st_size


def test_float_tflite_is_not_passed_to_an_int8_device(tmp_path: Path, exported: Path) -> None:
    (tmp_path / "recipes").mkdir()
    write(tmp_path, "lite", "tflite", str(exported / "model.tflite"), "cpu-fp32")
    text = (tmp_path / "recipes" / "lite.yaml").read_text().replace("cpu-fp32", "cpu-int8")
    text = text.replace(
        "batch: 1\n", "batch: 1\ncalibration:\n  inputs:\n    image: {npy: %s}\n" % (EXAMPLE / "calib.npy")
    )
    (tmp_path / "recipes" / "lite.yaml").write_text(text)
    proc = run_cli(tmp_path, "build", check=2)
    assert "passed through unchanged" in proc.stderr and "float32" in proc.stderr
    assert not list((tmp_path / "build").rglob("*.tflite"))


def test_killed_build_resumes_cleanly(workspace: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "buildsys", "build"], cwd=workspace, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    tmp = workspace / ".buildsys" / "tmp"
    deadline = time.time() + 120
    while time.time() < deadline and not (tmp.exists() and any(tmp.iterdir())):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for path in (workspace / "build").rglob("*") if (workspace / "build").exists() else []:
        assert not path.name.endswith(".tmp"), path
    resumed = build_json(workspace)
    assert "failed" not in resumed.values()
    assert (workspace / "recipes" / "shapes.lock").exists()
    assert set(build_json(workspace).values()) == {"up-to-date"}
    shutil.rmtree(workspace)
