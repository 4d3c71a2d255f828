"""PyTorch sources end to end: .pt2, TorchScript and factory + state_dict, exported to ONNX by the
export stage and validated against the PyTorch model itself (fp32 at 1e-4, int8 by cosine)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import build_json, run_cli
from torchnets import CODE

torch = pytest.importorskip("torch")

SHAPE = [1, 3, 64, 64]
FORMS = {
    "pt2": "pytorch: {name}.pt2",
    "ts": "pytorch: {{file: {name}.ts.pt}}",
    "sd": 'pytorch: {{factory: "nets:build", kwargs: {{name: {name}}}, weights: {name}.pth}}',
}
RECIPE = """\
version: 1
name: {recipe}
source:
  {source}
shapes: {{image: {shape}}}
calibration:
  samples: 16
  inputs: {{image: {{npy: calib.npy}}}}
validate:
  samples: 4
  thresholds: {{min_cosine: 0.99}}
targets:
  - device: cpu-int8
  - device: cpu-fp32
    name: fp32
"""


def load_nets(folder: Path):
    spec = importlib.util.spec_from_file_location("nets_under_test", folder / "nets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def save_forms(folder: Path, name: str) -> None:
    net = load_nets(folder).build(name)
    example = (torch.randn(*SHAPE),)
    torch.export.save(torch.export.export(net, example), folder / f"{name}.pt2")
    torch.jit.save(torch.jit.trace(net, example), folder / f"{name}.ts.pt")
    torch.save(net.state_dict(), folder / f"{name}.pth")


def torch_workspace(ws: Path, nets=("cnn", "detector"), forms=tuple(FORMS)) -> Path:
    root = ws / "recipes"
    root.mkdir(parents=True)
    (root / "nets.py").write_text(CODE)
    np.save(root / "calib.npy", np.random.default_rng(0).standard_normal((16, *SHAPE[1:]), dtype=np.float32))
    for name in nets:
        save_forms(root, name)
        for form in forms:
            source = FORMS[form].format(name=name)
            text = RECIPE.format(recipe=f"{name}-{form}", source=source, shape=SHAPE)
            (root / f"{name}-{form}.yaml").write_text(text)
    return ws


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    ws = torch_workspace(tmp_path_factory.mktemp("torch") / "ws")
    outcomes = build_json(ws, "-j", "2")
    assert outcomes, outcomes
    return ws


@pytest.mark.parametrize("name", ["cnn", "detector"])
@pytest.mark.parametrize("form", list(FORMS))
def test_each_form_builds_fp32_and_int8_against_pytorch(built: Path, name: str, form: str) -> None:
    out = built / "build" / f"{name}-{form}"
    fp32 = json.loads((out / "fp32/metrics.json").read_text())
    int8 = json.loads((out / "cpu-int8/metrics.json").read_text())
    assert fp32["passed"] and int8["passed"], (fp32, int8)
    for output, m in fp32["outputs"].items():
        print(f"pytorch {name}-{form} {output} fp32 max_abs_error={m['max_abs_error']:.2e} int8 cosine={int8['outputs'][output]['cosine']:.5f}")
        assert m["max_abs_error"] <= 1e-4, (output, m)
    export = json.loads((out / "_common/export.json").read_text())
    assert export["exporter"] in ("dynamo", "torchscript")
    lock = (built / "recipes" / f"{name}-{form}.lock").read_text()
    assert f"exporter: {export['exporter']}" in lock and "torch:" in lock


def test_validation_runs_the_pytorch_model_not_the_export(built: Path) -> None:
    """The reference is the PyTorch model: a validate key holds the torch version and the source files."""
    import yaml

    lock = yaml.safe_load((built / "recipes/cnn-sd.lock").read_text())
    validate = lock["stages"]["fp32/validate"]
    assert validate["tools"]["torch"] == torch.__version__
    assert {"cnn.pth", "nets.py"} <= set(validate["inputs"]), validate["inputs"]
    assert "prepared.onnx" not in str(validate["inputs"])
    assert lock["stages"]["export"]["facts"]["exporter"] in ("dynamo", "torchscript")
