"""No-op build time: N recipes, all built once, then `buildsys build` with nothing to do.

    python bench/noop.py [--recipes 100] [--repeat 5]

Prints the initial build time and the no-op wall times (target: < 1.5 s for 100
recipes; < 0.5 s for the bundled examples). Runs in a temporary workspace.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = """\
version: 1
name: shapes-{i:03d}
source:
  keras: {model}
batch: 1
validate:
  samples: 4
  seed: {i}
targets:
  - device: cpu-fp32
"""


def build(ws: Path, *extra: str) -> float:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "buildsys", "-q", "build", *extra], cwd=ws, capture_output=True, text=True
    )
    if proc.returncode:
        sys.exit(f"build failed ({proc.returncode}):\n{proc.stderr}")
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipes", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp)
        (ws / "recipes").mkdir()
        model = ROOT / "examples" / "shapes" / "model.keras"
        for i in range(args.recipes):
            (ws / "recipes" / f"r{i:03d}.yaml").write_text(RECIPE.format(i=i, model=model))
        first = build(ws, "-j", "2")
        print(f"initial build of {args.recipes} recipes: {first:.1f} s")
        times = [build(ws) for _ in range(args.repeat)]
        print(
            f"no-op build of {args.recipes} recipes: median {statistics.median(times):.3f} s, "
            f"min {min(times):.3f} s, max {max(times):.3f} s over {args.repeat} runs (target < 1.5 s)"
        )


if __name__ == "__main__":
    main()
