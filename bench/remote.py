"""The shared remote cache at scale, against moto's S3 server on loopback.

    python bench/remote.py [--recipes 100] [--repeat 5] [--jobs 2]

N generated recipes (each its own small ONNX CNN, cpu-fp32 + cpu-int8) are built
once into the remote; then a fresh workspace ("a fresh clone") restores them all.
Prints: cold build vs restore wall time, bytes moved, the no-op time with and
without the remote configured (target: within 20%), and, where `distributed` is
installed, a 2-worker LocalCluster build vs `-j 2` of the same recipes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

RECIPE = """\
version: 1
name: net-{i:03d}
source:
  onnx: models/net-{i:03d}.onnx
calibration:
  samples: 8
  seed: 0
  inputs:
    image:
      images: data/calib/*.png
      resize: [32, 32]
      scale: 0.00392156862745098
validate:
  samples: 4
  inputs:
    image:
      images: data/val/*.png
      resize: [32, 32]
      scale: 0.00392156862745098
targets:
  - device: cpu-int8
  - device: cpu-fp32
    name: fp32
"""


def make_model(path: Path, seed: int) -> None:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w1 = numpy_helper.from_array((rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(rng.standard_normal(8).astype(np.float32) * 0.1, "b1")
    w2 = numpy_helper.from_array((rng.standard_normal((16, 8, 3, 3)) * 0.2).astype(np.float32), "w2")
    fc = numpy_helper.from_array((rng.standard_normal((16, 4)) * 0.3).astype(np.float32), "fc")
    nodes = [
        helper.make_node("Conv", ["image", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("MatMul", ["f", "fc"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        f"net{seed}",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4])],
        [w1, b1, w2, fc],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


def make_workspace(ws: Path, count: int) -> None:
    (ws / "recipes" / "models").mkdir(parents=True)
    for part in ("calib", "val"):  # inside the workspace: Dask workers are given only what is in it
        shutil.copytree(ROOT / "examples" / "shapes" / part, ws / "recipes" / "data" / part)
    for i in range(count):
        make_model(ws / "recipes" / "models" / f"net-{i:03d}.onnx", 1000 + i)
        (ws / "recipes" / f"net-{i:03d}.yaml").write_text(RECIPE.format(i=i))


def build(ws: Path, env: dict[str, str], *extra: str) -> tuple[float, list[dict]]:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "buildsys", "build", "--json", *extra], cwd=ws, env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    if proc.returncode:
        sys.exit(f"build failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return seconds, json.loads(proc.stdout)


def tally(outcomes: list[dict]) -> str:
    words = [o["outcome"] for o in outcomes]
    return ", ".join(f"{words.count(w)} {w}" for w in sorted(set(words)))


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def noop(ws: Path, env: dict[str, str], repeat: int) -> float:
    return statistics.median(build(ws, env)[0] for _ in range(repeat))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipes", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    from motoserver import s3_server

    with s3_server() as server, tempfile.TemporaryDirectory() as tmp:
        url = server.bucket("bench")
        env = {**os.environ, **server.env(url)}
        cold_ws, fresh_ws = Path(tmp) / "cold", Path(tmp) / "fresh"
        make_workspace(cold_ws, args.recipes)
        shutil.copytree(cold_ws / "recipes", fresh_ws / "recipes")
        jobs = ("-j", str(args.jobs))
        cold, outcomes = build(cold_ws, env, *jobs)
        print(
            f"cold build of {args.recipes} recipes ({len(outcomes)} stages, -j {args.jobs}) into the remote: "
            f"{cold:.1f} s ({tally(outcomes)})"
        )
        warm, outcomes = build(fresh_ws, env, *jobs)
        moved = tree_bytes(fresh_ws / ".buildsys" / "cache" / "objects")
        print(
            f"fresh workspace restores from the remote: {warm:.1f} s ({tally(outcomes)}); "
            f"{warm / cold:.1%} of the cold build; {moved / 1e6:.1f} MB downloaded"
        )
        assert not any(o["outcome"] == "ran" for o in outcomes), "a stage ran on restore"
        with_remote = noop(fresh_ws, env, args.repeat)
        without = noop(fresh_ws, {**env, "BUILDSYS_REMOTE": ""}, args.repeat)
        print(
            f"no-op build, median of {args.repeat}: {with_remote:.3f} s with the remote, {without:.3f} s without "
            f"({with_remote / without - 1:+.1%}; target within +20%)"
        )
        cluster(args, env, Path(tmp))


def cluster(args: argparse.Namespace, env: dict[str, str], tmp: Path) -> None:
    """A 2-worker LocalCluster build vs -j 2 of the same recipes, each into its own empty remote."""
    try:
        from distributed import LocalCluster
    except ImportError:
        print("distributed is not installed: no cluster figure")
        return
    help_text = subprocess.run(
        [sys.executable, "-m", "buildsys", "build", "--help"], capture_output=True, text=True
    ).stdout
    if "--scheduler" not in help_text:
        print("this buildsys has no --scheduler: no cluster figure")
        return
    local_ws, dask_ws = tmp / "local", tmp / "dask"
    make_workspace(local_ws, args.recipes)
    shutil.copytree(local_ws / "recipes", dask_ws / "recipes")
    plain = {k: v for k, v in env.items() if k != "BUILDSYS_REMOTE"}
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # the workers import TensorFlow: keep its banner out
    local, _ = build(local_ws, plain, "-j", "2", "--remote", str(tmp / "shared-local"))
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as lc:
        dask, outcomes = build(
            dask_ws, plain, "--scheduler", lc.scheduler_address, "--remote", str(tmp / "shared-dask")
        )
    print(
        f"{args.recipes} recipes: -j 2 {local:.1f} s; 2-worker LocalCluster {dask:.1f} s ({dask / local:.2f}x; {tally(outcomes)})"
    )


if __name__ == "__main__":
    main()
