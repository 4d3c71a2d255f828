"""Darknet recipes end to end: cfg + weights -> cpu-fp32 and cpu-int8, validated against the TF build
of the cfg (which test_darknet.py holds to OpenCV), and damaged files refused by fetch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import build_json, run_cli, source_recipe
from darknet_files import write_model

SHAPES = {"yolov4-tiny": (128, 160, 3), "yolov3-tiny": (96, 128, 3)}


def darknet_workspace(ws: Path, name: str) -> Path:
    root = ws / "recipes"
    root.mkdir(parents=True)
    write_model(root, name)
    rng = np.random.default_rng(0)
    np.save(root / "calib.npy", rng.random((16, *SHAPES[name]), dtype=np.float32))  # NHWC in [0, 1], as Darknet feeds
    source = f"  darknet: {{cfg: {name}.cfg, weights: {name}.weights}}"
    (root / f"{name}.yaml").write_text(source_recipe(name, source, "input"))
    return ws


@pytest.mark.parametrize("name", ["yolov4-tiny"])
def test_darknet_recipe_builds_fp32_and_int8(tmp_path: Path, name: str) -> None:
    ws = darknet_workspace(tmp_path / "ws", name)
    outcomes = build_json(ws)
    assert outcomes["convert"] == "ran" and "prepare" not in outcomes
    for target in ("fp32", "cpu-int8"):
        metrics = json.loads((ws / f"build/{name}/{target}/metrics.json").read_text())
        assert metrics["passed"], metrics
        for output, m in metrics["outputs"].items():
            print(f"darknet {name} {target} {output} max_abs_error={m['max_abs_error']:.2e} cosine={m['cosine']:.5f}")
            if target == "fp32":
                assert m["max_abs_error"] <= 1e-4, (output, m)
    lock = (ws / f"recipes/{name}.lock").read_text()
    assert f"{name}.weights" in lock and f"{name}.cfg" in lock
    assert set(build_json(ws).values()) == {"up-to-date"}


@pytest.mark.parametrize("damage", ["truncated", "garbage", "longer"])
def test_damaged_weights_are_refused_by_fetch(tmp_path: Path, damage: str) -> None:
    name = "yolov3-tiny"
    ws = darknet_workspace(tmp_path / "ws", name)
    weights = ws / "recipes" / f"{name}.weights"
    data = weights.read_bytes()
    damaged = {"truncated": data[: len(data) // 2], "garbage": b"GIF89a" + data[6:], "longer": data + bytes(64)}[damage]
    weights.write_bytes(damaged)
    proc = run_cli(ws, "build", check=2)
    assert f"{name}.weights" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not (ws / f"build/{name}/_common/source.json").exists()


def test_unsupported_sections_are_one_table_at_fetch(tmp_path: Path) -> None:
    name = "yolov3-tiny"
    ws = darknet_workspace(tmp_path / "ws", name)
    cfg = ws / "recipes" / f"{name}.cfg"
    cfg.write_text(cfg.read_text() + "\n[reorg]\nstride=2\n\n[local]\nfilters=4\n")
    proc = run_cli(ws, "build", check=2)
    assert "[reorg]" in proc.stderr and "[local]" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_inspect_shows_the_layer_table_and_the_yolo_outputs(tmp_path: Path) -> None:
    name = "yolov3-tiny"
    ws = darknet_workspace(tmp_path / "ws", name)
    proc = run_cli(ws, "inspect", f"recipes/{name}.cfg")
    assert "convolutional" in proc.stdout and "maxpool" in proc.stdout and "yolo_16" in proc.stdout, proc.stdout
    assert f"darknet: {{cfg: {name}.cfg, weights: {name}.weights}}" in proc.stdout
    data = json.loads(run_cli(ws, "inspect", "--json", f"recipes/{name}.yaml").stdout)
    assert [o["name"] for o in data["outputs"]] == ["yolo_16", "yolo_23"]


def test_a_sha256_pin_covers_the_cfg_and_the_weights(tmp_path: Path) -> None:
    import re

    name = "yolov3-tiny"
    ws = darknet_workspace(tmp_path / "ws", name)
    recipe = ws / "recipes" / f"{name}.yaml"
    text = recipe.read_text().replace(".weights}\n", f".weights}}\n  sha256: {'f' * 64}\n")
    assert "sha256" in text
    recipe.write_text(text)
    err = run_cli(ws, "build", check=2).stderr
    digest = re.search(r"file has: +([0-9a-f]{64})", err).group(1)
    recipe.write_text(recipe.read_text().replace("f" * 64, digest))
    outcomes = build_json(ws)
    assert outcomes["fetch"] == "ran"
    weights = ws / "recipes" / f"{name}.weights"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # same size, one bit: only the pin notices
    weights.write_bytes(bytes(data))
    assert "sha256 mismatch" in run_cli(ws, "build", check=2).stderr


def test_missing_weights_name_the_key_and_line_that_give_them(tmp_path: Path) -> None:
    name = "yolov3-tiny"
    ws = darknet_workspace(tmp_path / "ws", name)
    (ws / "recipes" / f"{name}.weights").unlink()
    err = run_cli(ws, "build", check=2).stderr
    assert f"{name}.yaml:4: source.darknet.weights: source model not found" in err and "Traceback" not in err, err
