"""Issue 12, defect 7: a user's mistake is a one-screen usage error (exit 2) naming the
file (and the line of a YAML file) and what to do, never a traceback or "a bug in buildsys".

Each case runs the real command; `buildsys check` where the mistake shows without
building (fast, no TensorFlow), `build` where only the model can tell.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import EXAMPLE, RECIPE, run_cli

NOT_OURS = ("Traceback", "bug in buildsys", "internal error")


def refused(ws: Path, *args: str) -> str:
    """The command's output, after checking it failed as a user's mistake should."""
    proc = run_cli(ws, *args, check=None)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, f"exit {proc.returncode}\n{out}"
    for text in NOT_OURS:
        assert text not in out, out
    assert len(out.splitlines()) < 25, out  # one screen
    return out


def line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


# -- a: a device profile whose quantization is not a mapping ---------------------------------


@pytest.mark.parametrize(
    "quantization",
    ["quantization: int8", "quantization: [int8]", "quantization: 8", "quantization: {mode: [int8]}"],
)
def test_device_profile_quantization_of_the_wrong_type(workspace: Path, quantization: str) -> None:
    recipes = workspace / "recipes"
    (recipes / "devices").mkdir()
    profile = recipes / "devices" / "npu.yaml"
    profile.write_text(f"extends: cpu-int8\ndescription: our NPU\n{quantization}\n")
    (recipes / "shapes.yaml").write_text(RECIPE.replace("- device: cpu-int8", "- device: devices/npu.yaml"))
    out = refused(workspace, "check")
    assert f"recipes/devices/npu.yaml:{line_of(profile, 'quantization')}:" in out, out
    assert "quantization" in out and "schemas/device.schema.json" in out, out


@pytest.mark.parametrize(
    "text",
    ["extends: " + "y" * 300, "extends: cpu-int8\nquantization: {input_type: " + "x" * 50000 + "}"],
    ids=["extends-past-NAME_MAX", "a-50kB-value"],
)
def test_device_profile_with_huge_names_or_values_is_one_short_problem(workspace: Path, text: str) -> None:
    """Found by the fuzzer: ENAMETOOLONG escaped as a traceback; a 50 kB value made a 50 kB message."""
    recipes = workspace / "recipes"
    (recipes / "devices").mkdir()
    (recipes / "devices" / "npu.yaml").write_text(text + "\n")
    (recipes / "shapes.yaml").write_text(RECIPE.replace("- device: cpu-int8", "- device: devices/npu.yaml"))
    out = refused(workspace, "check")
    assert "recipes/devices/npu.yaml:" in out and len(out) < 2000, out


def test_devices_command_with_a_name_past_name_max(workspace: Path) -> None:
    assert "unknown device" in refused(workspace, "devices", "z" * 300)


# -- b: .npy data of the wrong dtype, rank or layout -------------------------------------------


@pytest.mark.parametrize(
    "array, says",
    [
        (np.array(["circle", "square"]), "text"),
        (np.zeros(4, dtype=[("image", "f4"), ("label", "i4")]), "structured dtype"),
    ],
    ids=["strings", "structured"],
)
def test_npy_that_holds_no_numbers_is_refused_by_check(workspace: Path, array: np.ndarray, says: str) -> None:
    recipe = workspace / "recipes" / "shapes.yaml"
    np.save(workspace / "recipes" / "data" / "val.npy", array)
    recipe.write_text(
        RECIPE.replace("      images: data/val/*.png\n      scale: 0.00392156862745098\n", "      npy: data/val.npy\n")
    )
    out = refused(workspace, "check")
    assert f"recipes/shapes.yaml:{line_of(recipe, 'npy: data/val.npy')}: validate.inputs.image.npy" in out, out
    assert "data/val.npy" in out and says in out and "numpy.save" in out, out


ONNX_RECIPE = """\
version: 1
name: net
source:
  onnx: model.onnx
shapes: {{image: [1, 3, 64, 64]}}
{data}targets:
  - device: {device}
"""


def test_npy_of_the_wrong_rank_names_the_file_and_the_onnx_layout(tmp_path: Path) -> None:
    """The samples' shapes are shown as the user wrote them: NCHW for an ONNX model, not
    the NHWC buildsys runs inside."""
    ws = tmp_path / "ws"
    recipes = ws / "recipes"
    recipes.mkdir(parents=True)
    shutil.copy(EXAMPLE / "model.onnx", recipes / "model.onnx")
    np.save(recipes / "calib.npy", np.random.default_rng(0).random((8, 3, 64), dtype=np.float32))
    np.save(recipes / "flat.npy", np.zeros(16, np.float32))
    recipe = recipes / "net.yaml"

    calibrated = "calibration:\n  samples: 4\n  inputs:\n    image: {npy: calib.npy}\n"
    recipe.write_text(ONNX_RECIPE.format(data=calibrated, device="cpu-int8"))
    out = refused(ws, "build")
    assert f"recipes/net.yaml:{line_of(recipe, 'calib.npy')}: calibration.inputs.image.npy" in out, out
    assert "(8, 3, 64)" in out and "(3, 64, 64)" in out and "(N, 3, 64, 64)" in out, out
    assert "64, 64, 3" not in out, out  # the internal NHWC layout

    validated = "validate:\n  samples: 4\n  inputs:\n    image: {npy: flat.npy}\n"
    recipe.write_text(ONNX_RECIPE.format(data=validated, device="cpu-fp32"))
    out = refused(ws, "build")
    assert f"recipes/net.yaml:{line_of(recipe, 'flat.npy')}: validate.inputs.image.npy" in out, out
    assert "(16,)" in out and "one number per sample" in out and "(N, 3, 64, 64)" in out, out


# -- c: an image resize no machine can hold ------------------------------------------------------


def test_image_resize_out_of_bounds_is_refused_at_load(workspace: Path) -> None:
    recipe = workspace / "recipes" / "shapes.yaml"
    recipe.write_text(
        RECIPE.replace(
            "      images: data/calib/*.png\n", "      images: data/calib/*.png\n      resize: [1.0e+20, 64]\n"
        )
    )
    out = refused(workspace, "check")
    assert f"recipes/shapes.yaml:{line_of(recipe, 'resize')}:" in out, out
    assert "calibration.inputs.image.resize[0]" in out and "16384" in out, out


# -- d: an integer longer than Python converts -----------------------------------------------------


@pytest.mark.parametrize("number", ["9" * 5000, "0x" + "f" * 5000], ids=["decimal", "hex"])
def test_integer_of_thousands_of_digits_is_a_problem_with_its_line(workspace: Path, number: str) -> None:
    recipe = workspace / "recipes" / "shapes.yaml"
    recipe.write_text(RECIPE.replace("  seed: 0\n", f"  seed: {number}\n"))
    out = refused(workspace, "check")
    assert f"recipes/shapes.yaml:{line_of(recipe, 'seed:')}:" in out and "calibration.seed" in out, out
    assert "too large" in out, out


# -- e: --summary where no file can be appended to -----------------------------------------------


@pytest.mark.parametrize("where", ["folder", "missing/summary.md"])
def test_build_summary_path_is_checked_before_building(workspace: Path, where: str) -> None:
    (workspace / "folder").mkdir()
    out = refused(workspace, "build", "--summary", where)
    assert f"--summary {where}" in out and ("is a directory" in out or "does not exist" in out), out
    assert not (workspace / "build").exists()  # refused before anything was built


# -- f: a damaged lockfile ---------------------------------------------------------------------------

CONFLICT = "<<<<<<< HEAD\nrecipe: shapes\n=======\nrecipe: shapes-old\n>>>>>>> main\n"
CUT_SHORT = (
    "# Generated by buildsys; do not edit.\ndevices:\n  cpu-int8: 0123\nrecipe: shapes\nstages:\n  fetch:\n    key: "
)


@pytest.mark.parametrize(
    "text, says",
    [
        (CONFLICT, "merge-conflict markers (line 1"),
        (CUT_SHORT, "is damaged"),
        ("stages: {fetch: [", "not valid YAML"),
    ],
    ids=["conflict", "cut-short", "not-yaml"],
)
def test_locked_build_says_the_lockfile_is_damaged(workspace: Path, text: str, says: str) -> None:
    lock = workspace / "recipes" / "shapes.lock"
    lock.write_text(text)
    out = refused(workspace, "build", "--locked")
    assert "recipes/shapes.lock" in out and says in out and "no lockfile" not in out, out
    assert "resolve the merge or delete it" in out if text is CONFLICT else "buildsys build" in out, out
    status = run_cli(workspace, "status")  # status reports the damage; it does not refuse
    assert "recipes/shapes.lock" in status.stdout and "`buildsys build` rewrites it" in status.stdout
    if text is CONFLICT:  # buildsys wrote the file: a plain build writes it again
        run_cli(workspace, "build")
        assert lock.read_text().startswith("# Generated by buildsys")
        run_cli(workspace, "build", "--locked")


def test_lockfile_path_that_is_a_directory_is_never_replaced(workspace: Path) -> None:
    lock = workspace / "recipes" / "shapes.lock"
    (lock / "notes").mkdir(parents=True)
    for args in (("build",), ("build", "--locked")):
        out = refused(workspace, *args)
        assert "recipes/shapes.lock is a directory" in out and "move or delete" in out, out
    assert (lock / "notes").is_dir() and not (workspace / "build").exists()


def test_a_recipe_remembered_valid_by_older_checks_is_checked_again(workspace: Path) -> None:
    """`.buildsys/valid-recipes.json` skips re-checking known-good recipes; its seals must
    cover the checking code, not only the schema, or an upgrade's new checks never run."""
    import json

    from buildsys.documents.yamlmarks import parse_yaml
    from buildsys.hashing import digest_bytes, digest_data
    from buildsys.schemafiles import schema_path

    recipe = workspace / "recipes" / "shapes.yaml"
    recipe.write_text(RECIPE.replace("keras: model/model.keras", 'keras: "model/mo\\0del.keras"'))
    data = parse_yaml(recipe.read_text(), "shapes.yaml").data
    schema = digest_bytes(schema_path("recipe.schema.json").read_bytes())
    state = workspace / ".buildsys"
    state.mkdir()
    (state / "valid-recipes.json").write_text(json.dumps([digest_data([schema, "shapes", data])]))
    assert "source.keras  contains a NUL character" in refused(workspace, "check")
