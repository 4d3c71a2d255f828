"""Issue 12, defect 8: inputs that used to hang a build or blow up its memory.

Each case runs the real command with a timeout, so a hang fails the test instead
of blocking the run: endless or special files named as sources and data, a FIFO
as a recipe, device profile or labels file, globs that walk the file system, and
batches or sample sets bigger than the machine's memory. Every one must end with
exit 2, a message naming the file (and its limit), and no traceback.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
from conftest import EXAMPLE, RECIPE, make_workspace
from onnx import TensorProto, helper, numpy_helper

TIMEOUT = 120


def run(ws: Path, *args: str) -> subprocess.CompletedProcess:
    """The real command; a hang raises TimeoutExpired (and kills it) instead of blocking."""
    return subprocess.run(
        [sys.executable, "-m", "buildsys", *args], cwd=ws, capture_output=True, text=True, timeout=TIMEOUT
    )


def refused(proc: subprocess.CompletedProcess, *needles: str) -> str:
    said = proc.stdout + proc.stderr
    assert proc.returncode == 2, f"exit {proc.returncode}\n{said}"
    assert "Traceback" not in said, said
    for needle in needles:
        assert needle in said, f"{needle!r} not in:\n{said}"
    return said


def write_recipe(ws: Path, name: str, text: str) -> Path:
    path = ws / "recipes" / name
    path.write_text(text)
    return path


def test_endless_and_oversized_sources_are_refused(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    recipe = RECIPE.replace("keras: model/model.keras", "onnx: /dev/zero")
    write_recipe(ws, "shapes.yaml", recipe)
    said = refused(run(ws, "build"), "recipes/shapes.yaml:5", "source.onnx", "/dev/zero", "character device")
    assert "regular file" in said
    refused(run(ws, "inspect", "recipes/shapes.yaml"), "/dev/zero", "character device")

    # sparse: 5 GiB on paper, nothing on disk
    big = ws / "recipes" / "model" / "huge.onnx"
    with open(big, "wb") as fh:
        fh.truncate(5 << 30)
    write_recipe(ws, "shapes.yaml", RECIPE.replace("keras: model/model.keras", "onnx: model/huge.onnx"))
    refused(run(ws, "check"), "huge.onnx", "5 GiB", "4 GiB limit")

    # calibration data: a FIFO named like an array file is refused, not opened
    os.mkfifo(ws / "recipes" / "data" / "calib.npy")
    npy = RECIPE.replace("images: data/calib/*.png\n      scale: 0.00392156862745098", "npy: data/calib.npy", 1)
    write_recipe(ws, "shapes.yaml", npy)
    refused(run(ws, "check"), "calib.npy", "FIFO")


def test_fifo_recipes_profiles_and_labels_are_refused(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    os.mkfifo(ws / "recipes" / "pipe.yaml")
    refused(run(ws, "check", "recipes/pipe.yaml"), "pipe.yaml", "FIFO")
    refused(run(ws, "check"), "pipe.yaml", "FIFO")  # found in recipes/, never opened
    (ws / "recipes" / "pipe.yaml").unlink()

    (ws / "recipes" / "devices").mkdir()
    os.mkfifo(ws / "recipes" / "devices" / "npu.yaml")
    write_recipe(ws, "shapes.yaml", RECIPE.replace("device: cpu-fp32", "device: devices/npu.yaml"))
    refused(run(ws, "check"), "npu.yaml", "FIFO")

    os.mkfifo(ws / "recipes" / "labels.npy")
    write_recipe(
        ws,
        "shapes.yaml",
        RECIPE.replace("  samples: 8\n  thresholds", "  samples: 8\n  labels: labels.npy\n  thresholds"),
    )
    refused(run(ws, "check"), "labels.npy", "FIFO")


def test_globs_stay_in_the_workspace_and_stop_at_their_limit(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    outside = tmp_path / "outside" / "sub"
    outside.mkdir(parents=True)
    for png in sorted((EXAMPLE / "calib").glob("*.png"))[:3]:
        shutil.copy(png, outside / png.name)

    # the whole file system: refused from the recipe text, before any walk
    write_recipe(ws, "shapes.yaml", RECIPE.replace("images: data/calib/*.png", "images: /**/*.png"))
    refused(run(ws, "check"), "recipes/shapes.yaml:12", "'/**/*.png'", "outside the workspace", "allow_outside")

    pattern = f"{tmp_path / 'outside'}/**/*.png"
    write_recipe(ws, "shapes.yaml", RECIPE.replace("images: data/calib/*.png", f"images: {pattern}"))
    refused(run(ws, "check"), "recipes/shapes.yaml:12", "outside the workspace", "allow_outside")

    # opted in, or no **: allowed (and bounded)
    opted = RECIPE.replace("images: data/calib/*.png", f"images: {pattern}\n      allow_outside: true")
    write_recipe(ws, "shapes.yaml", opted)
    proc = run(ws, "check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    flat = RECIPE.replace("images: data/calib/*.png", f"images: {outside}/*.png")
    write_recipe(ws, "shapes.yaml", flat)
    proc = run(ws, "check")
    assert proc.returncode == 0, proc.stdout + proc.stderr

    # more files than any data set: stops at the limit, naming it
    many = ws / "recipes" / "data" / "many"
    many.mkdir()
    for i in range(100_001):
        (many / f"{i:06d}.png").touch()
    write_recipe(ws, "shapes.yaml", RECIPE.replace("images: data/calib/*.png", "images: data/many/*.png"))
    refused(run(ws, "check"), "recipes/shapes.yaml:12", "data/many/*.png", "more than 100,000 files")

    same_as_glob_glob(tmp_path / "tree")


def same_as_glob_glob(root: Path) -> None:
    """Image lists (and so cache keys and drawn samples) must not change with the walk."""
    import glob

    from buildsys.globwalk import bounded_glob

    root.mkdir()
    for folder in ("", "a", "a/b", "a/.hidden", ".dot", "c/d/e"):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name in ("1.png", "2.jpg", ".3.png", "x.PNG"):
            (root / folder / name).touch()
    (root / "c" / "link").symlink_to(root / "a")
    for pattern in (
        "*.png",
        "**/*.png",
        "**",
        "a/**/*.png",
        "*/*.png",
        "**/b/*",
        ".dot/*",
        "a/.hidden/*.png",
        "[ac]/*.png",
        "a/b/?.png",
        "**/**/*.jpg",
        "c/**/*.png",
        "1.png",
        "none/*.png",
    ):
        full = str(root / pattern)
        # a set: glob.glob lists a file once per way `**/**` reaches it
        want = sorted({m.rstrip("/") for m in glob.glob(full, recursive=True) if os.path.isfile(m)})
        assert sorted(m for m in bounded_glob(full, 1000, 10_000) if os.path.isfile(m)) == want, pattern


def onnx_model(path: Path) -> None:
    """Conv + Relu with a dynamic batch dim, as PyTorch exports it."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((16, 3, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["image", "w"], ["conv"], name="/conv/Conv", pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["conv"], ["scores"], name="/relu/Relu"),
        ],
        "net",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 64, 64])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 16, 64, 64])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def test_batches_and_sample_sets_bigger_than_memory_are_refused(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    onnx_model(ws / "recipes" / "model" / "net.onnx")
    recipe = "version: 1\nname: net\nsource:\n  onnx: model/net.onnx\nbatch: 1000000\ntargets:\n  - device: cpu-fp32\n"
    write_recipe(ws, "shapes.yaml", recipe)
    said = refused(
        run(ws, "build"), "recipes/shapes.yaml:5", "image [1000000, 3, 64, 64]", "of memory", "this machine has"
    )
    assert "GiB" in said

    # Keras: refused before TensorFlow traces the model (Grappler used to crash on it)
    write_recipe(ws, "shapes.yaml", RECIPE.replace("batch: 1", "batch: 1000000"))
    refused(run(ws, "build"), "model.keras", "image [1000000, 64, 64, 3]", "of memory")

    # calibration: samples x the resized image size, as float32, must fit too
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    count = math.ceil(memory / (4096 * 4096 * 3 * 4)) + 1
    calib = ws / "recipes" / "data" / "calib"
    first = sorted(calib.glob("*.png"))[0]
    for i in range(count):
        shutil.copy(first, calib / f"copy{i:05d}.png")
    big = RECIPE.replace("samples: 8   # of 16 files, so the seed matters", f"samples: {count + 16}").replace(
        "      scale: 0.00392156862745098\nvalidate",
        "      resize: [4096, 4096]\n      scale: 0.00392156862745098\nvalidate",
    )
    write_recipe(ws, "shapes.yaml", big)
    refused(run(ws, "build"), "recipes/shapes.yaml:8", "calibration.samples", f"{count + 16} samples", "of memory")
