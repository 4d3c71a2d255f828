"""The ranges stage: the float model calibrated once per recipe, each int8 target quantized from
it (stages/ranges.py, tflow/calibrated.py).

The model is a small transformer: cpu-int8 unfolds attention's BATCH_MATMUL (another converted
model, so a table of its own), the NPU profiles keep it. Every artifact must be the bytes a
one-shot conversion (calibrating inside the quantize call, as before the stage existed) gives.
"""

from __future__ import annotations

import json
from pathlib import Path

import archs
import numpy as np
import pytest
import yaml
from conftest import build_json

RECIPE = """\
version: 1
name: tiny
source:
  onnx: model.onnx
calibration:
  samples: 16
  inputs:
    tokens: {{npy: tokens.npy}}
validate:
  samples: 4
targets:
{targets}"""


def targets(*devices: str) -> str:
    return "".join(f"  - device: {d}\n" for d in devices)


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws" / "recipes"
    root.mkdir(parents=True)
    model = archs.transformer(seq=8, dim=32, heads=2, depth=1)
    (root / "model.onnx").write_bytes(model.SerializeToString())
    np.save(root / "tokens.npy", np.random.default_rng(0).standard_normal((16, 8, 32)).astype(np.float32))
    (root / "tiny.yaml").write_text(RECIPE.format(targets=targets("cpu-int8", "axis-artpec8")))
    return root.parent


def quantize_stages(ws: Path) -> list:
    from buildsys.plan import make_plan
    from buildsys.recipe import RecipeLoader, discover
    from buildsys.workspace import Workspace

    space = Workspace.at(ws)
    plan = make_plan(RecipeLoader().load_all(discover([space.root / "recipes"], space.root), space.root), space)
    return [s for s in plan.stages() if s.kind == "quantize"]


def one_shot(ws: Path, stage) -> bytes:
    """The target's int8 conversion calibrating on every sample inside the call (no table)."""
    from buildsys.signature import Signature
    from buildsys.stages.datasets import read_npz
    from buildsys.tflow.quantize import to_tflite
    from buildsys.tflow.samples import to_stored

    common = ws / "build" / "tiny" / "_common"
    signature = Signature.read(common / "signature.json")
    d = stage.device
    return to_tflite(
        common / "float.pb",
        signature,
        d.mode,
        calib=to_stored(read_npz(common / "calib.npz"), signature.inputs),
        per_channel=d.per_channel,
        input_type=d.input_type,
        output_type=d.output_type,
        forms=d.op_forms,
    )


def test_int8_targets_quantize_from_one_measurement_as_a_one_shot_conversion_would(ws: Path) -> None:
    outcomes = build_json(ws)
    assert outcomes["ranges"] == "ran" and outcomes["cpu-int8/quantize"] == outcomes["axis-artpec8/quantize"] == "ran"
    ranges = json.loads((ws / "build" / "tiny" / "_common" / "ranges.json").read_text())
    assert len(ranges["models"]) == 2, "cpu-int8's unfolded BATCH_MATMUL is another converted model"
    assert all(len(m["table"]) > 20 for m in ranges["models"].values())
    lock = yaml.safe_load((ws / "recipes" / "tiny.lock").read_text())
    for stage in quantize_stages(ws):
        # the calibrated model is all it reads: neither the float model nor the samples
        inputs = sorted(Path(p).name for p in lock["stages"][f"{stage.target.name}/quantize"]["inputs"])
        assert inputs == ["calibrated.npz", "ranges.json", "signature.json"], inputs
        artifact = (ws / "build" / "tiny" / stage.target.name / "model.tflite").read_bytes()
        assert one_shot(ws, stage) == artifact, stage.target.name


def test_a_target_with_known_op_forms_reuses_the_measurement(ws: Path) -> None:
    build_json(ws)
    recipe = ws / "recipes" / "tiny.yaml"
    recipe.write_text(recipe.read_text() + targets("ethos-u55-128"))
    outcomes = build_json(ws)
    assert outcomes["ranges"] == "up-to-date", outcomes
    assert outcomes["ethos-u55-128/quantize"] == "ran"
    assert {k: v for k, v in outcomes.items() if v == "ran"} == {
        k: "ran" for k in outcomes if k.startswith("ethos-u55-128/")
    }
