"""The commands that need no model run: graph, devices, check, usage errors."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from conftest import run_cli


def test_graph_formats_show_every_stage_and_edge(workspace: Path) -> None:
    text = run_cli(workspace, "graph").stdout
    assert "shapes/cpu-int8/quantize  <- shapes/convert, shapes/ranges" in text
    assert "shapes/ranges  <- shapes/calibration, shapes/convert" in text
    assert "shapes/fp32/quantize  <- shapes/convert" in text  # fp32 needs no calibration
    dot = run_cli(workspace, "graph", "--format", "dot").stdout
    assert dot.startswith("digraph buildsys {") and "n_shapes_fetch -> n_shapes_convert;" in dot
    mermaid = run_cli(workspace, "graph", "--format", "mermaid").stdout
    assert mermaid.startswith("flowchart LR") and "n_shapes_convert --> n_shapes_fp32_quantize" in mermaid
    assert len([line for line in text.splitlines() if line.strip()]) == 12


def test_devices_lists_and_shows(workspace: Path) -> None:
    listing = run_cli(workspace, "devices").stdout
    for name in ("cpu-fp32", "cpu-fp16", "cpu-int8"):
        assert name in listing
    shown = run_cli(workspace, "devices", "cpu-int8").stdout
    assert "quantization: int8 per-channel; inputs int8, outputs int8" in shown
    proc = run_cli(workspace, "devices", "cpu-int7", check=2)
    assert "did you mean 'cpu-int8'" in proc.stderr


def test_check_validates_without_building(workspace: Path) -> None:
    out = run_cli(workspace, "check").stdout
    assert "1 recipes valid" in out
    assert not (workspace / "build").exists()


def test_check_names_the_line_of_every_target_problem(workspace: Path) -> None:
    recipe = workspace / "recipes" / "shapes.yaml"
    targets = "  - device: axis-cv25\n  - device: cpu-int9\n  - {device: cpu-fp32, name: f, per_channel: true}\n"
    recipe.write_text(recipe.read_text().replace("  - device: cpu-int8\n", targets))
    err = run_cli(workspace, "check", check=2).stderr
    assert "recipes/shapes.yaml:22:13  targets[0].device  axis-cv25 takes the prepared ONNX model" in err
    assert "recipes/shapes.yaml:23:13  targets[1].device  unknown device 'cpu-int9'" in err
    assert "recipes/shapes.yaml:24:46  targets[2].per_channel  cpu-fp32 does not quantize" in err


def test_check_keeps_every_recipe_problem_when_recipes_fail_differently(workspace: Path) -> None:
    recipe = workspace / "recipes" / "shapes.yaml"
    text = recipe.read_text()
    (workspace / "recipes" / "b.yaml").write_text(
        text.replace("name: shapes", "name: b").replace("cpu-int8", "cpu-int9")
    )
    recipe.write_text(text.replace("model/model.keras", "model/gone.keras"))
    err = run_cli(workspace, "check", check=2).stderr
    assert "recipes/b.yaml:22:13  targets[0].device  unknown device 'cpu-int9'" in err
    assert "source model not found" in err and "gone.keras" in err


def test_usage_errors_exit_2(workspace: Path) -> None:
    assert run_cli(workspace, "frobnicate", check=2).returncode == 2
    assert "at least 1" in run_cli(workspace, "build", "-j", "0", check=2).stderr
    proc = run_cli(workspace, "build", "recipes/nope.yaml", check=2)
    assert "nope.yaml" in proc.stderr and "Traceback" not in proc.stderr


def test_status_before_any_build_says_never_built(workspace: Path) -> None:
    rows = json.loads(run_cli(workspace, "status", "--json").stdout)
    assert len(rows) == 12
    assert all(r["state"] == "stale" and "never built" in r["reasons"][0] for r in rows)


def test_a_second_build_in_the_same_workspace_is_refused(workspace: Path) -> None:
    from buildsys.workspace import Workspace
    from buildsys.wslock import exclusive

    with exclusive(Workspace.at(workspace)):  # held by this test process, as a running build holds it
        proc = run_cli(workspace, "build", check=2)
    assert f"pid {os.getpid()} (`buildsys build`) is using the workspace" in proc.stderr
    assert f"kill {os.getpid()}" in proc.stderr and "Traceback" not in proc.stderr


def test_build_summary_appends_a_markdown_table(workspace: Path) -> None:
    summary = workspace / "summary.md"
    summary.write_text("earlier step\n")
    run_cli(workspace, "build", "--summary", str(summary))
    run_cli(workspace, "build", "--summary", "summary.md")  # relative to where buildsys runs
    text = summary.read_text()
    assert text.startswith("earlier step\n") and text.count("### buildsys build") == 2
    rows = [line for line in text.splitlines() if line.startswith("| shapes |")]
    assert len(rows) == 4  # two targets, twice
    int8 = rows[0].split(" | ")
    assert int8[1:3] == ["cpu-int8", "cpu-int8"] and int8[3].endswith("KiB") and float(int8[4]) > 0.95
    assert rows[0].endswith("| ok |") and int8[6] == "-" and "/" in int8[7]


def _index_rows(ws: Path) -> dict[str, str]:
    text = (ws / "build" / "index.html").read_text()
    return {m.group(1): m.group(0) for m in re.finditer(r"<tr><td>([\w-]+</td><td>[\w-]+)</td>.*?</tr>", text, re.S)}


def test_index_keeps_other_recipes_and_follows_clean(workspace: Path) -> None:
    recipes = workspace / "recipes"
    text = (recipes / "shapes.yaml").read_text()
    other = text.replace("name: shapes", "name: other").split("targets:")[0] + "targets:\n  - device: cpu-fp32\n"
    (recipes / "other.yaml").write_text(other)
    run_cli(workspace, "build")
    both = {"shapes</td><td>cpu-int8", "shapes</td><td>fp32", "other</td><td>cpu-fp32"}
    assert set(_index_rows(workspace)) == both

    # building one recipe does not drop the other's rows
    run_cli(workspace, "build", "recipes/other.yaml")
    assert set(_index_rows(workspace)) == both

    # a build that fails before the report says the report is an old one
    model = recipes / "model" / "model.keras"
    good = model.read_bytes()
    model.write_bytes(b"not a model")
    run_cli(workspace, "build", "recipes/shapes.yaml", check=2)
    row = _index_rows(workspace)["shapes</td><td>cpu-int8"]
    assert 'class="badge failed"' in row and "(from an earlier build)" in row
    model.write_bytes(good)
    run_cli(workspace, "build", "recipes/shapes.yaml")
    assert "earlier build" not in _index_rows(workspace)["shapes</td><td>cpu-int8"]

    run_cli(workspace, "clean", "recipes/other.yaml")
    assert set(_index_rows(workspace)) == both - {"other</td><td>cpu-fp32"}
    out = run_cli(workspace, "clean").stdout
    assert "removed build/index.html" in out and not (workspace / "build" / "index.html").exists()
