"""TF1 recipes end to end: a frozen graph and a checkpoint (frozen by buildsys), each built to
cpu-fp32 and cpu-int8 and validated against the graph run by TensorFlow; inspect lists their tensors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import build_json, run_cli, source_recipe

tf = pytest.importorskip("tensorflow")
v1 = tf.compat.v1

SOURCE = """\
  tf1:
    {form}: {path}
    inputs: [image]
    outputs: ["prob:0"]"""
SHAPES = "shapes: {image: [1, 32, 32, 3]}\n"


def recipe(name: str, form: str, path: str) -> str:
    return source_recipe(name, SOURCE.format(form=form, path=path), "image", SHAPES)


def save_graph(folder: Path) -> None:
    """A small CNN trained for nothing: a Saver checkpoint and the frozen .pb of it."""
    from test_tf1 import _cnn

    graph = tf.Graph()
    with graph.as_default():
        image = v1.placeholder(tf.float32, [None, 32, 32, 3], name="image")
        labels = v1.placeholder(tf.int64, [None], name="labels")
        _cnn(image, labels)
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            v1.train.Saver().save(session, str(folder / "model.ckpt"))
            frozen = v1.graph_util.convert_variables_to_constants(session, graph.as_graph_def(), ["prob"])
    (folder / "frozen.pb").write_bytes(frozen.SerializeToString())


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    ws = tmp_path_factory.mktemp("tf1") / "ws"
    root = ws / "recipes"
    root.mkdir(parents=True)
    save_graph(root)
    np.save(root / "calib.npy", np.random.default_rng(0).standard_normal((16, 32, 32, 3), dtype=np.float32))
    (root / "graph.yaml").write_text(recipe("graph", "graph", "frozen.pb"))
    (root / "ckpt.yaml").write_text(recipe("ckpt", "checkpoint", "model.ckpt"))
    return ws


def test_graph_and_checkpoint_build_fp32_and_int8(workspace: Path) -> None:
    outcomes = build_json(workspace)
    assert outcomes, outcomes
    for name in ("graph", "ckpt"):
        for target in ("fp32", "cpu-int8"):
            metrics = json.loads((workspace / f"build/{name}/{target}/metrics.json").read_text())
            assert metrics["passed"], metrics
            m = metrics["outputs"]["prob"]
            print(f"tf1 {name} {target} max_abs_error={m['max_abs_error']:.2e} cosine={m['cosine']:.5f}")
            if target == "fp32":
                assert m["max_abs_error"] <= 1e-4
    lock = (workspace / "recipes/ckpt.lock").read_text()
    assert "model.ckpt.index" in lock and "model.ckpt.data-00000-of-00001" in lock and "model.ckpt.meta" in lock


def test_inspect_lists_placeholders_and_likely_outputs(workspace: Path) -> None:
    proc = run_cli(workspace, "inspect", "recipes/frozen.pb")
    assert "image" in proc.stdout and "prob" in proc.stdout and "tf1:" in proc.stdout, proc.stdout
    data = json.loads(run_cli(workspace, "inspect", "--json", "recipes/model.ckpt").stdout)
    assert [t["name"] for t in data["placeholders"]] == ["image", "labels"]
    assert "prob" in [t["name"] for t in data["likely_outputs"]] and data["variables"] > 0


@pytest.mark.parametrize("damage", ["truncated pb", "truncated data", "missing index"])
def test_damaged_files_exit_2_and_cache_nothing(workspace: Path, tmp_path: Path, damage: str) -> None:
    import shutil

    ws = tmp_path / "ws"
    shutil.copytree(workspace / "recipes", ws / "recipes", ignore=shutil.ignore_patterns("*.lock"))
    target = {
        "truncated pb": "frozen.pb",
        "truncated data": "model.ckpt.data-00000-of-00001",
        "missing index": "model.ckpt.index",
    }[damage]
    path = ws / "recipes" / target
    if damage == "missing index":
        path.unlink()
    else:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    name = "graph" if target.endswith(".pb") else "ckpt"
    proc = run_cli(ws, "build", f"recipes/{name}.yaml", check=2)
    assert target in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not (ws / f"build/{name}/_common/source.json").exists()
