"""Issue 12.1: buildsys deletes only what it wrote; build folders must be folders it can own."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import RECIPE, run_cli


def _with_output(ws: Path, output: str) -> Path:
    recipe = ws / "recipes" / "mine.yaml"
    recipe.write_text(RECIPE.replace("name: shapes", "name: mine") + f"output: {output}\n")
    return recipe


def _tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if ".buildsys" not in p.parts}


@pytest.mark.parametrize(
    "output, why",
    [
        (".", "contains its recipe"),
        ("..", "is the workspace itself"),
        ("model", "contains the source model"),
        ("data/calib", "contains the data"),
        ("../build", "the shared build folder"),
        ("../.buildsys/out", "buildsys's own state"),
    ],
)
def test_check_refuses_build_folders_buildsys_cannot_own(workspace: Path, output: str, why: str) -> None:
    _with_output(workspace, output)
    proc = run_cli(workspace, "check", "recipes/mine.yaml", check=2)
    assert "recipes/mine.yaml:" in proc.stderr and "output" in proc.stderr and why in proc.stderr
    assert "Traceback" not in proc.stderr


def test_output_outside_the_workspace_is_refused(workspace: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep me")
    _with_output(workspace, str(outside))
    proc = run_cli(workspace, "check", "recipes/mine.yaml", check=2)
    assert "is outside the workspace" in proc.stderr
    run_cli(workspace, "clean", "recipes/mine.yaml", check=2)
    assert (outside / "precious.txt").read_text() == "keep me"


def test_output_dot_neither_builds_nor_cleans_the_recipes_folder(workspace: Path) -> None:
    """The reported loss: `output: .` then build && clean removed every recipe."""
    _with_output(workspace, ".")
    before = _tree(workspace)
    run_cli(workspace, "build", "recipes/mine.yaml", check=2)
    run_cli(workspace, "clean", "recipes/mine.yaml", check=2)
    assert _tree(workspace) == before


def test_output_holding_a_git_repository_is_refused(workspace: Path) -> None:
    (workspace / "vendor" / ".git").mkdir(parents=True)
    _with_output(workspace, "../vendor")
    assert "holds a git repository" in run_cli(workspace, "check", "recipes/mine.yaml", check=2).stderr


def test_build_refuses_a_folder_holding_files_it_did_not_write(workspace: Path) -> None:
    folder = workspace / "build" / "shapes"
    folder.mkdir(parents=True)
    (folder / "results.csv").write_text("mine")
    proc = run_cli(workspace, "build", check=2)
    assert "already holds files buildsys did not write: results.csv" in proc.stderr
    assert (folder / "results.csv").read_text() == "mine" and not (folder / "fp32").exists()


def test_clean_removes_only_what_the_build_wrote(workspace: Path) -> None:
    run_cli(workspace, "build")
    out = workspace / "build" / "shapes"
    notes = out / "fp32" / "notes.txt"
    notes.write_text("my notes")
    proc = run_cli(workspace, "clean")
    assert notes.read_text() == "my notes"
    assert "kept 1 files buildsys did not write: build/shapes/fp32/notes.txt" in proc.stderr
    left = {p.relative_to(out).as_posix() for p in out.rglob("*")}
    assert left == {"fp32", "fp32/notes.txt", ".buildsys-output.json"}
    assert (workspace / "recipes" / "shapes.yaml").is_file()
    # still buildsys's folder: the next build uses it again and leaves the notes alone
    run_cli(workspace, "build")
    assert notes.read_text() == "my notes" and (out / "fp32" / "model.tflite").is_file()


def test_clean_leaves_a_folder_buildsys_never_claimed(workspace: Path) -> None:
    folder = workspace / "build" / "shapes" / "fp32"
    folder.mkdir(parents=True)
    (folder / "model.tflite").write_bytes(b"someone else's model")
    proc = run_cli(workspace, "clean")
    assert "has no buildsys marker, so nothing in it was removed" in proc.stderr
    assert (folder / "model.tflite").read_bytes() == b"someone else's model"
