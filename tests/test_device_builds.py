"""Every built-in device profile builds the ONNX shapes example, and the artifact's
properties are read back from the file itself."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import pytest
from conftest import EXAMPLE, run_cli

from buildsys.devices import Catalogue
from buildsys.tflow.inspect import activation_dtypes, io_dtypes, weight_dtypes, weight_scales

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
  samples: 8
targets:
{targets}"""
DEVICES = Catalogue().names()
OVERRIDDEN = """\
  - {device: axis-artpec8, name: a8-float-io, input_type: float32, output_type: float32}
  - {device: cpu-int8, name: wide, activations: int16}
  - {device: cpu-int8, name: uint8-in, input_type: uint8, per_channel: false}
"""
CONV_OUT_CHANNELS = {8, 16, 32}  # the shapes CNN's conv widths


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    ws = tmp_path_factory.mktemp("devices")
    root = ws / "recipes"
    (root / "calib").mkdir(parents=True)
    shutil.copy(EXAMPLE / "model.onnx", root / "model.onnx")
    for png in sorted((EXAMPLE / "calib").glob("*.png"))[:16]:
        shutil.copy(png, root / "calib" / png.name)
    targets = "".join(f"  - device: {name}\n" for name in DEVICES) + OVERRIDDEN
    (root / "net.yaml").write_text(RECIPE.format(targets=targets))
    proc = run_cli(ws, "build", "--json", check=None)
    ws.joinpath("build.json").write_text(proc.stdout)
    ws.joinpath("build.err").write_text(proc.stderr)
    assert proc.returncode == 0, proc.stderr
    return ws / "build" / "net"


def artifact(built: Path, device: str) -> Path:
    return built / device / Catalogue().get(device).artifact_name


def io(built: Path, device: str) -> tuple[set[str], set[str]]:
    d = io_dtypes(artifact(built, device))
    return set(d["inputs"].values()), set(d["outputs"].values())


def test_catalogue_is_complete():
    assert set(DEVICES) >= {
        "cpu-fp32", "cpu-fp16", "cpu-dynamic-range", "cpu-int8", "cpu-int16x8", "tflm-int8",
        "axis-artpec7", "axis-artpec8", "axis-artpec9", "axis-cv25", "coral-edgetpu",
        "ethos-u55-128", "ethos-u65-256", "ethos-u85-256",
    }  # fmt: skip


@pytest.mark.parametrize("device", [d for d in DEVICES if Catalogue().get(d).format == "tflite"])
def test_io_types_match_the_profile(built, device):
    d = Catalogue().get(device)
    assert io(built, device) == ({d.input_type}, {d.output_type})
    compat = json.loads((built / device / "compat.json").read_text())
    assert compat["summary"]["ops"] > 0
    report = (built / device / "report.md").read_text()
    assert "## Device check" in report


def test_cpu_fp32_is_float_everywhere(built):
    assert "float32" in activation_dtypes(artifact(built, "cpu-fp32"))
    assert not {"int8", "int16", "float16"} & set(activation_dtypes(artifact(built, "cpu-fp32")))
    assert set(weight_dtypes(artifact(built, "cpu-fp32")).values()) == {"float32"}


def test_cpu_fp16_weights_are_float16(built):
    assert set(weight_dtypes(artifact(built, "cpu-fp16")).values()) == {"float16"}
    assert io(built, "cpu-fp16") == ({"float32"}, {"float32"})


def test_cpu_dynamic_range_int8_weights_float_activations(built):
    path = artifact(built, "cpu-dynamic-range")
    # TF leaves weight tensors under 1024 elements in float32 (the first conv has 216)
    assert "int8" in set(weight_dtypes(path).values())
    assert "float32" in activation_dtypes(path) and io(built, "cpu-dynamic-range") == ({"float32"}, {"float32"})


@pytest.mark.parametrize("device", ["cpu-int8", "tflm-int8", "axis-artpec9", "ethos-u55-128"])
def test_per_channel_devices_have_one_scale_per_output_channel(built, device):
    scales = weight_scales(artifact(built, device))
    assert scales and max(scales.values()) in CONV_OUT_CHANNELS
    assert set(weight_dtypes(artifact(built, device)).values()) == {"int8"}


def test_artpec8_has_one_scale_per_weight_tensor(built):
    scales = weight_scales(artifact(built, "axis-artpec8"))
    assert len(scales) >= 3 and set(scales.values()) == {1}
    assert io(built, "axis-artpec8")[0] == {"uint8"}


def test_cpu_int16x8_has_int16_activations(built):
    path = artifact(built, "cpu-int16x8")
    assert "int16" in activation_dtypes(path) and "int8" not in activation_dtypes(path)
    assert set(weight_dtypes(path).values()) == {"int8"}


def test_cv25_ships_the_prepared_static_onnx(built):
    path = artifact(built, "axis-cv25")
    assert path.read_bytes() == (built / "_common" / "prepared.onnx").read_bytes()
    model = onnx.load(str(path))
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 64, 64]
    report = (built / "axis-cv25" / "report.md").read_text()
    assert "## Next steps" in report and "model.onnx" in report


@pytest.mark.parametrize("device", ["ethos-u55-128", "ethos-u65-256", "ethos-u85-256"])
def test_ethos_targets_are_compiled_by_vela(built, device):
    pytest.importorskip("ethosu.vela")
    summary = json.loads((built / device / "compile.json").read_text())
    assert summary["status"] == "compiled" and summary["tool"] == "vela"
    assert summary["npu_ops"] > 0 and summary["cycles"] > 0
    assert (built / device / "model_vela.tflite").stat().st_size > 0
    report = (built / device / "report.md").read_text()
    assert "## Compiler" in report and "npu_ops" in report and "cycles" in report


@pytest.mark.parametrize("device", ["coral-edgetpu", "axis-artpec7"])
def test_edgetpu_targets_end_with_install_note_without_the_compiler(built, device):
    if shutil.which("edgetpu_compiler"):
        pytest.skip("edgetpu_compiler is installed here")
    summary = json.loads((built / device / "compile.json").read_text())
    assert summary["status"] == "not-installed" and "apt" in summary["install"]
    assert (built / device / "model.tflite").is_file()
    err = (built.parent.parent / "build.err").read_text()
    assert f"net/{device}/compile: edgetpu_compiler is not installed" in err


def test_target_overrides_reach_the_file(built):
    a8 = built / "a8-float-io" / "model.tflite"
    assert io_dtypes(a8) == {"inputs": {"image": "float32"}, "outputs": {"scores": "float32"}}
    assert set(weight_scales(a8).values()) == {1}  # still per-tensor: only the IO changed
    wide = built / "wide" / "model.tflite"
    assert "int16" in activation_dtypes(wide) and io_dtypes(wide)["inputs"] == {"image": "int16"}
    mixed = built / "uint8-in" / "model.tflite"
    assert io_dtypes(mixed) == {"inputs": {"image": "uint8"}, "outputs": {"scores": "int8"}}
    assert set(weight_scales(mixed).values()) == {1}


def test_quantized_targets_rank_their_layers(built):
    int8 = json.loads((built / "cpu-int8" / "metrics.json").read_text())["layers"]
    assert int8["quantized"] and int8["unmatched"] == 0 and int8["tensors_compared"] >= 5
    worst = int8["worst"][0]
    assert worst["relative_rmse"] >= int8["worst"][-1]["relative_rmse"] and worst["op"] != "INPUT"
    assert "## Per-layer quantization error" in (built / "cpu-int8" / "report.md").read_text()
    wide = json.loads((built / "cpu-int16x8" / "metrics.json").read_text())["layers"]
    # int16 activations: the same tensors lose far less than in int8
    assert wide["worst"][0]["relative_rmse"] < worst["relative_rmse"]
    assert "layers" not in json.loads((built / "cpu-fp32" / "metrics.json").read_text())
