"""The check stage end to end: an op outside a device's allowlist and one breaking a
per-op rule are both named, with the rule, in compat.json and report.md; with
`on_unsupported: fail` the build exits 1, also when the result comes from the cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import run_cli
from onnx import TensorProto, helper, numpy_helper

RECIPE = """\
version: 1
name: net
source:
  onnx: model.onnx
calibration:
  samples: 16
  inputs:
    x: {{npy: calib.npy}}
targets:
  - device: axis-artpec9
{extra}"""


def model() -> onnx.ModelProto:
    """A 4x4 conv (ARTPEC-9 takes kernels 1/2/3/5/7/9), then a 3x3 conv it takes, then Softmax (not on its list)."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.3, (8, 3, 4, 4)).astype(np.float32), "w4"),
        numpy_helper.from_array(rng.normal(0, 0.3, (8, 8, 3, 3)).astype(np.float32), "w3"),
        numpy_helper.from_array(rng.normal(0, 0.3, (8, 4)).astype(np.float32), "fc"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w4"], ["c4"], name="conv4x4", kernel_shape=[4, 4], strides=[2, 2]),
        helper.make_node("Relu", ["c4"], ["r4"], name="relu4"),
        helper.make_node("Conv", ["r4", "w3"], ["c3"], name="conv3x3", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c3"], ["r3"], name="relu3"),
        helper.make_node("GlobalAveragePool", ["r3"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flat"),
        helper.make_node("MatMul", ["flat", "fc"], ["logits"], name="fc"),
        helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 4])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("check")
    (root / "recipes").mkdir()
    onnx.save(model(), str(root / "recipes" / "model.onnx"))
    np.save(root / "recipes" / "calib.npy", np.random.default_rng(1).random((16, 3, 32, 32), dtype=np.float32))
    return root


def write_recipe(ws: Path, extra: str = "") -> None:
    (ws / "recipes" / "net.yaml").write_text(RECIPE.format(extra=extra))


def test_compat_and_report_name_both_ops_and_the_rules(ws):
    write_recipe(ws)
    proc = run_cli(ws, "build")
    assert "warning: net/axis-artpec9/check: 2 of" in proc.stderr
    compat = json.loads((ws / "build/net/axis-artpec9/compat.json").read_text())
    bad = {op["op"]: op for op in compat["ops"] if not op["supported"]}
    assert set(bad) == {"CONV_2D", "SOFTMAX"}
    assert "kernel 4x4" in bad["CONV_2D"]["reasons"][0] and "ops.CONV_2D.kernel" in bad["CONV_2D"]["reasons"][0]
    assert "operator list" in bad["SOFTMAX"]["reasons"][0]
    good = [op for op in compat["ops"] if op["op"] == "CONV_2D" and op["supported"]]
    assert len(good) == 1  # the 3x3 conv passes
    assert compat["summary"]["unsupported"] == 2 and compat["summary"]["first_unsupported"]["op"] == "CONV_2D"
    report = (ws / "build/net/axis-artpec9/report.md").read_text()
    assert "ops.CONV_2D.kernel" in report and "| SOFTMAX |" in report and "2 unsupported" in report


def test_on_unsupported_fail_exits_1_and_stays_failed_from_cache(ws):
    lock = (ws / "recipes/net.lock").read_text()  # written by the passing build above
    write_recipe(ws, "    on_unsupported: fail\n")
    for _ in range(2):  # the second run finds check up to date and must still fail
        proc = run_cli(ws, "build", check=1)
        assert "2 operators cannot run on axis-artpec9" in proc.stderr
        assert "#1 CONV_2D" in proc.stderr and "SOFTMAX" in proc.stderr and "Traceback" not in proc.stderr
        # problems name the ONNX nodes, which is what a replacement selects
        assert "CONV_2D ONNX 'relu4', 'conv4x4': kernel 4x4" in proc.stderr, proc.stderr
        assert "SOFTMAX ONNX 'softmax':" in proc.stderr  # it makes the output: found by the output's name
    assert (ws / "build/net/axis-artpec9/compat.json").is_file()
    assert (ws / "recipes/net.lock").read_text() == lock  # a failed build writes no lock
    # the report is still made, and says the target failed and why
    md = (ws / "build/net/axis-artpec9/report.md").read_text()
    assert (
        "- status: **FAILED**" in md
        and "device check: 2 operators axis-artpec9 cannot run (on_unsupported: fail)" in md
    )
    assert 'class="badge failed"' in (ws / "build/net/axis-artpec9/report.html").read_text()


def test_tflite_source_is_checked_too(ws):
    """A per-channel int8 .tflite passed through to ARTPEC-8 (per-tensor) has its weights
    flagged, and needs no calibration data."""
    write_recipe(ws)
    run_cli(ws, "build")
    (ws / "recipes" / "net.yaml").unlink()
    shipped = ws / "build/net/axis-artpec9/model.tflite"  # per-channel int8, uint8 IO: the IO ARTPEC-8 takes
    (ws / "recipes" / "given.tflite").write_bytes(shipped.read_bytes())
    (ws / "recipes" / "pass.yaml").write_text(
        "version: 1\nsource: {tflite: given.tflite}\ntargets:\n  - device: axis-artpec8\n"
    )
    proc = run_cli(ws, "build")
    assert "warning: pass/axis-artpec8/check" in proc.stderr
    compat = json.loads((ws / "build/pass/axis-artpec8/compat.json").read_text())
    flagged = [op for op in compat["ops"] if not op["supported"]]
    assert {op["op"] for op in flagged} == {"CONV_2D", "FULLY_CONNECTED"}
    assert all("per_channel: false" in op["reasons"][0] for op in flagged)
    assert (ws / "build/pass/axis-artpec8/model.tflite").read_bytes() == shipped.read_bytes()
