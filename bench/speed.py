"""Build speed per stage: a cold build of 4 models to cpu-fp32 + cpu-int8 + axis-artpec8 + ethos-u55-128.

    python bench/speed.py [--only mobilenet_v2,yolo640] [--samples 64] [--onnx2tf /path/to/python]

Each model (tests/archs.py, onnx.helper) gets a fresh workspace, `samples` calibration
samples (.npy, NCHW), 16 validation samples with the per-layer analysis, and one
`buildsys build --json` in a new process (cold imports, stages one at a time). Prints per-stage seconds
(common stages once, target stages per target), each int8 target's whole cost (quantize ..
report), the int8 calibrate+quantize cost of the first int8 target (the shared `ranges` stage
plus its quantize) and of each later one (its quantize: the marginal cost), wall time and
the child's peak RSS. With `--onnx2tf PY` (a Python >= 3.12 venv holding onnx2tf 2.x, not
CI's), it also times `onnx2tf` float and `-oiqt` conversion of the same ONNX file and
prints the wall-time ratio.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

TARGETS = ("cpu-fp32", "cpu-int8", "axis-artpec8", "ethos-u55-128")
COMMON = ("fetch", "prepare", "calibration", "convert", "ranges")
INT8 = ("cpu-int8", "axis-artpec8", "ethos-u55-128")
PER_TARGET = ("quantize", "validate", "check", "compile", "report")
VALIDATION_SAMPLES = 16


def models() -> dict:
    import archs

    return {
        "mobilenet_v2": lambda: archs.mobilenet_v2(size=224, width=1.0),
        "yolo640": lambda: archs.yolo(size=640),
        "unet": lambda: archs.segmenter(size=256),
        "transformer": lambda: archs.transformer(),
    }


def one(name: str, samples: int) -> dict:
    import resource

    from convert import build, workspace

    model = models()[name]()
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / name
        targets = "".join(f"  - device: {t}\n" for t in TARGETS)
        workspace(ws, name, model, samples, targets)
        recipe = ws / "recipes" / f"{name}.yaml"
        text = recipe.read_text().replace("validate:\n  samples: 8", f"validate:\n  samples: {VALIDATION_SAMPLES}")
        recipe.write_text(text)
        wall, rows = build(ws)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        onnx_file = ws / "recipes" / "model.onnx"
        kept = Path(tempfile.gettempdir()) / f"buildsys-speed-{name}.onnx"
        kept.write_bytes(onnx_file.read_bytes())
    stages = {f"{r['target'] + '/' if r['target'] else ''}{r['stage']}": r["seconds"] or 0.0 for r in rows}
    return {"model": name, "wall": wall, "peak_mib": peak, "stages": stages, "onnx": str(kept)}


def onnx2tf_times(python: str, onnx_file: str) -> dict[str, float]:
    """Wall seconds of onnx2tf's float conversion and of its int8 (-oiqt) one, each in a fresh folder."""
    out = {}
    for label, extra in (("float", []), ("int8", ["-oiqt"])):
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            proc = subprocess.run(
                [python, "-m", "onnx2tf", "-i", onnx_file, "-o", tmp, *extra], capture_output=True, text=True
            )
            out[label] = time.perf_counter() - started if proc.returncode == 0 else float("nan")
    return out


def show(r: dict, onnx2tf: dict[str, float] | None) -> None:
    s = r["stages"]
    print(f"\n{r['model']}: cold build {r['wall']:.1f} s wall, peak {r['peak_mib']:.0f} MiB")
    print("  " + "  ".join(f"{k} {s.get(k, 0.0):.2f}" for k in COMMON if k in s))
    for target in TARGETS:
        parts = {k: s.get(f"{target}/{k}") for k in PER_TARGET if f"{target}/{k}" in s}
        total = sum(parts.values())
        print(f"  {target:<14} {total:6.2f} s  (" + ", ".join(f"{k} {v:.2f}" for k, v in parts.items()) + ")")
    print("  " + int8_costs(s))
    if onnx2tf:
        ours = s.get("prepare", 0.0) + s.get("convert", 0.0)
        print(
            f"  onnx2tf float {onnx2tf['float']:.1f} s (ours prepare+convert {ours:.1f} s, ratio {ours / onnx2tf['float']:.2f}); "
            f"onnx2tf -oiqt {onnx2tf['int8']:.1f} s"
        )


def int8_costs(s: dict[str, float]) -> str:
    """Each int8 target's calibrate+quantize seconds: the first pays the shared ranges stage, the
    others only their quantize; issue 16 wants each later one at most 15% of the first."""
    first = s.get("ranges", 0.0) + s.get(f"{INT8[0]}/quantize", 0.0)
    later = [(t, s.get(f"{t}/quantize", 0.0)) for t in INT8[1:]]
    shares = ", ".join(f"{t} {v:.2f} s = {100 * v / first:.0f}%" for t, v in later) if first else "n/a"
    return f"int8 calibrate+quantize: {INT8[0]} {first:.2f} s (ranges {s.get('ranges', 0.0):.2f}); {shares} of it"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated model names: " + ", ".join(models()))
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--onnx2tf", metavar="PY", help="a Python with onnx2tf installed")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.samples)))
        return
    for name in args.only.split(",") if args.only else list(models()):
        from convert import in_fresh_process

        r = in_fresh_process(__file__, name, args.samples)
        show(r, onnx2tf_times(args.onnx2tf, r["onnx"]) if args.onnx2tf else None)


if __name__ == "__main__":
    main()
