"""ONNX conversion speed and memory per architecture, cold, through `buildsys build`.

    python bench/convert.py [--only mobilenet_v2,resnet18] [--samples 32]

For each architecture (built in tests/archs.py with onnx.helper) a fresh
workspace gets the model, 32 calibration samples (.npy, NCHW) and a recipe
with one cpu-int8 target (quantize, validate on 8 samples, report); `buildsys build` runs in a new process, so
times include Python and TensorFlow start-up. Prints wall time, the stage
times (prepare+convert = ONNX -> float model; quantize = -> .tflite), the
child's peak RSS, and TRANSPOSE ops in the int8 model.
Target: MobileNetV2 (width 1.0) at 224x224 to int8 in under 15 s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

RECIPE = """\
version: 1
name: {name}
source:
  onnx: model.onnx
calibration:
  samples: {samples}
  inputs:
{inputs}
validate:
  samples: 8
targets:
{targets}"""


def architectures() -> dict:
    import archs

    return {
        "mobilenet_v2": lambda: archs.mobilenet_v2(size=224, width=1.0),
        "mobilenet_v3_small": lambda: archs.mobilenet_v3_small(size=224),
        "resnet18": lambda: archs.resnet18(size=224),
        "yolo": lambda: archs.yolo(),
        "segmenter": lambda: archs.segmenter(),
        "transformer": lambda: archs.transformer(),
    }


def workspace(root: Path, name: str, model, samples: int, targets: str = "  - device: cpu-int8\n") -> None:
    root = root / "recipes"
    root.mkdir(parents=True)
    (root / "model.onnx").write_bytes(model.SerializeToString())
    rng = np.random.default_rng(0)
    inits = {t.name for t in model.graph.initializer}
    lines = []
    for v in model.graph.input:
        if v.name in inits:
            continue
        dims = [d.dim_value for d in v.type.tensor_type.shape.dim]
        np.save(root / f"{v.name}.npy", rng.random((samples, *dims[1:]), dtype=np.float32))
        lines.append(f"    {v.name}: {{npy: {v.name}.npy}}")
    (root / f"{name}.yaml").write_text(
        RECIPE.format(name=name, samples=samples, inputs="\n".join(lines), targets=targets)
    )


def build(ws: Path) -> tuple[float, list[dict]]:
    """Wall seconds and per-stage outcomes of a cold `buildsys build`."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "buildsys", "build", "--json"],
        cwd=ws,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = proc.communicate()
    wall = time.perf_counter() - started
    if proc.returncode:
        sys.exit(f"build in {ws} failed ({proc.returncode}):\n{err}")
    return wall, json.loads(out)


def one(name: str, samples: int) -> dict:
    import resource

    from buildsys.tflow.inspect import op_histogram

    model = architectures()[name]()
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / name
        workspace(ws, name, model, samples)
        wall, rows = build(ws)
        # RUSAGE_CHILDREN is the largest child so far: one bench process per architecture
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        ops = op_histogram(ws / "build" / name / "cpu-int8" / "model.tflite")
    stage = {(r["target"] or "", r["stage"]): r["seconds"] or 0.0 for r in rows}
    params = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    return {
        "arch": name,
        "params": params,
        "wall": wall,
        "float": stage[("", "prepare")] + stage[("", "convert")],
        "int8": stage[("cpu-int8", "quantize")],
        "peak_mib": peak,
        "transposes": ops.get("TRANSPOSE", 0),
    }


def in_fresh_process(script: str, name: str, samples: int) -> dict:
    """`script --one NAME` in a new interpreter (cold imports, a per-build peak RSS): its JSON result."""
    proc = subprocess.run(
        [sys.executable, script, "--one", name, "--samples", str(samples)],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    if proc.returncode:
        sys.exit(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated architecture names")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.samples)))
        return
    names = args.only.split(",") if args.only else list(architectures())
    print(f"{'arch':<20}{'params':>10}{'wall s':>9}{'float s':>9}{'int8 s':>9}{'peak MiB':>10}{'TRANSPOSE':>10}")
    for name in names:
        r = in_fresh_process(__file__, name, args.samples)
        print(
            f"{r['arch']:<20}{r['params']:>10,}{r['wall']:>9.1f}{r['float']:>9.1f}{r['int8']:>9.1f}"
            f"{r['peak_mib']:>10.0f}{r['transposes']:>10}"
        )


if __name__ == "__main__":
    main()
