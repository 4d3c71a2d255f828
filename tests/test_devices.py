"""Device profiles: the catalogue, `extends`, profile files with mistakes, target overrides."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli

from buildsys.devices import Catalogue, ProfileError, with_overrides
from buildsys.errors import UsageError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_extends_merges_mappings_replaces_lists_and_null_removes(tmp_path):
    base = write(
        tmp_path / "base.yaml",
        "format: tflite\nquantization: {mode: int8, per_channel: true, input_type: int8}\n"
        "ops:\n  CONV_2D: {kernel: [1, 3], stride: [1, 2]}\n  ADD: {}\n  MEAN: {}\n"
        "docs: {notes: [a, b]}\n",
    )
    child = write(
        tmp_path / "child.yaml",
        "extends: ./base.yaml\nquantization: {per_channel: false, input_type: uint8}\n"
        "ops:\n  CONV_2D: {kernel: [1, 3, 5]}\n  MEAN: null\ndocs: {notes: [c]}\n",
    )
    del base
    device = Catalogue(workspace=tmp_path).resolve("child.yaml", tmp_path)
    assert device.name == "child" and device.origin == "child.yaml"
    assert device.mode == "int8" and device.per_channel is False and device.input_type == "uint8"
    assert device.output_type == "int8"  # not set anywhere: the mode's default
    assert device.data["ops"] == {"CONV_2D": {"kernel": [1, 3, 5], "stride": [1, 2]}, "ADD": {}}
    assert device.data["docs"] == {"notes": ["c"]}
    assert "extends" not in device.data
    assert child.exists()


def test_extends_a_builtin_profile(tmp_path):
    write(tmp_path / "my-npu.yaml", "extends: cpu-int8\ndescription: mine\nquantization: {per_channel: false}\n")
    device = Catalogue(workspace=tmp_path).resolve("my-npu.yaml", tmp_path)
    builtin = Catalogue().get("cpu-int8")
    assert device.name == "my-npu" and device.description == "mine"
    assert device.per_channel is False and device.mode == builtin.mode == "int8"
    assert device.digest != builtin.digest


def test_profile_file_mistakes_all_reported_with_lines(tmp_path):
    write(
        tmp_path / "bad.yaml",
        "extends: cpu-int9\n"  # line 1: unknown parent
        "on_unsupported: crash\n"  # line 2: bad enum
        "quantization:\n"
        "  mode: int8\n"
        "  per_chanel: true\n"  # line 5: unknown key
        "ops:\n"
        "  CONV2D: {kernel: [3]}\n"  # line 7: not a TFLite op
        "  DEPTHWISE_CONV_2D: {kernal: [3]}\n"  # line 8: unknown rule
        "  MAX_POOL_2D: {stride: [0]}\n",  # line 9: below minimum
    )
    with pytest.raises(ProfileError) as err:
        Catalogue(workspace=tmp_path).resolve("bad.yaml", tmp_path)
    problems = err.value.problems
    assert err.value.exit_code == 2
    lines = sorted(p.line for p in problems)
    assert lines == [1, 2, 5, 7, 8, 9], [(p.line, p.key, p.message) for p in problems]
    text = " | ".join(f"{p.key}: {p.message} {p.hint or ''}" for p in problems)
    assert "cpu-int8" in text  # did you mean
    assert "CONV_2D" in text and "per_channel" in text and "kernel" in text and "warn" in text


def test_io_type_that_the_mode_cannot_give_is_a_problem(tmp_path):
    write(tmp_path / "p.yaml", "extends: cpu-fp16\nquantization: {input_type: uint8}\n")
    with pytest.raises(ProfileError) as err:
        Catalogue(workspace=tmp_path).resolve("p.yaml", tmp_path)
    (problem,) = err.value.problems
    assert problem.line == 2 and "fp16" in problem.message


def test_extends_cycle_and_missing_file(tmp_path):
    write(tmp_path / "a.yaml", "extends: ./b.yaml\n")
    write(tmp_path / "b.yaml", "extends: ./a.yaml\n")
    write(tmp_path / "c.yaml", "extends: ./nowhere.yaml\n")
    catalogue = Catalogue(workspace=tmp_path)
    with pytest.raises(ProfileError, match="problem") as err:
        catalogue.resolve("a.yaml", tmp_path)
    assert any("cycle" in p.message for p in err.value.problems)
    with pytest.raises(ProfileError) as err:
        catalogue.resolve("c.yaml", tmp_path)
    assert "nowhere.yaml" in err.value.problems[0].message
    with pytest.raises(UsageError, match="no such device profile file"):
        catalogue.resolve("gone.yaml", tmp_path)


def test_unknown_builtin_suggests_the_closest():
    with pytest.raises(UsageError) as err:
        Catalogue().get("axis-artpec-8")
    assert "axis-artpec8" in err.value.hint


def test_overrides_switch_activations_and_io():
    device = Catalogue().get("cpu-int8")
    wide, problems = with_overrides(device, {"activations": "int16"})
    assert problems == [] and wide.mode == "int16x8" and wide.input_type == "int16"
    mixed, problems = with_overrides(device, {"input_type": "uint8", "output_type": "float32", "per_channel": False})
    assert problems == [] and (mixed.input_type, mixed.output_type, mixed.per_channel) == ("uint8", "float32", False)
    assert device.per_channel is True  # the catalogue's device is untouched
    _, problems = with_overrides(Catalogue().get("cpu-fp16"), {"input_type": "int8", "activations": "int8"})
    assert sorted(k for k, _ in problems) == ["activations", "input_type"]
    _, problems = with_overrides(device, {"input_type": "int16"})
    assert problems and "int8, uint8, float32" in problems[0][1]


def test_recipe_overrides_are_checked_at_plan_time(workspace):
    recipe = workspace / "recipes" / "shapes.yaml"
    text = recipe.read_text().replace(
        "  - device: cpu-int8\n",
        "  - device: cpu-int8\n    input_type: int16\n  - device: cpu-fp16\n    per_channel: false\n",
    )
    recipe.write_text(text)
    proc = run_cli(workspace, "build", check=2)
    assert "targets[0].input_type" in proc.stderr and "targets[1].per_channel" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_recipe_names_a_profile_file_with_mistakes(workspace):
    write(workspace / "recipes" / "devices" / "npu.yaml", "extends: cpu-int8\nquantization: {mode: int4}\n")
    recipe = workspace / "recipes" / "shapes.yaml"
    recipe.write_text(recipe.read_text().replace("  - device: cpu-int8\n", "  - device: devices/npu.yaml\n"))
    proc = run_cli(workspace, "build", check=2)
    assert "recipes/devices/npu.yaml:2" in proc.stderr and "quantization.mode" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_devices_lists_every_profile_with_format_quantization_and_io(tmp_path):
    proc = run_cli(tmp_path, "devices", "--json")
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert set(Catalogue().names()) == set(rows)
    assert rows["axis-artpec8"]["quantization"] == "int8 per-tensor"
    assert rows["axis-artpec8"]["input_type"] == "uint8"
    assert rows["axis-cv25"]["format"] == "onnx"
    text = run_cli(tmp_path, "devices").stdout
    for name in rows:
        assert name in text


def test_devices_name_shows_rules_and_sources(tmp_path):
    text = run_cli(tmp_path, "devices", "axis-artpec8").stdout
    assert "per-tensor" in text and "uint8" in text and "sources:" in text and "developer.axis.com" in text
    text = run_cli(tmp_path, "devices", "axis-artpec9").stdout
    assert "kernel 1, 2, 3, 5, 7, 9; stride 1, 2; equal_strides true" in text
    proc = run_cli(tmp_path, "devices", "axis-artpec-8", check=2)
    assert "axis-artpec8" in proc.stderr


def test_readme_profile_example_loads(tmp_path):
    text = (Path(__file__).parents[1] / "README.md").read_text()
    start = text.index("# recipes/devices/my-npu.yaml")
    write(tmp_path / "my-npu.yaml", text[start : text.index("```", start)])
    device = Catalogue(workspace=tmp_path).resolve("my-npu.yaml", tmp_path)
    assert device.per_channel is False and device.data["ops"]["CONV_2D"]["kernel"] == [1, 3]


def test_onnx_device_needs_an_onnx_source(workspace):
    recipe = workspace / "recipes" / "shapes.yaml"
    recipe.write_text(recipe.read_text().replace("  - device: cpu-int8\n", "  - device: axis-cv25\n"))
    proc = run_cli(workspace, "build", check=2)
    assert "axis-cv25" in proc.stderr and "takes the prepared ONNX model" in proc.stderr and "keras" in proc.stderr
