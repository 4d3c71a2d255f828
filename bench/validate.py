"""Validation and report speed: a 224x224 classifier, int8, 64 validation samples.

    python bench/validate.py [--arch mobilenet_v2] [--samples 64]

A fresh workspace gets the model (tests/archs.py), 32 calibration samples and
`--samples` validation samples (.npy, NCHW) with random labels (so accuracy
is computed too), and one cpu-int8 target; one cold
`buildsys build` runs. Prints the validate stage's time (source model on
onnxruntime, the int8 artifact on the TFLite interpreter, metrics, and the
per-layer error analysis) and the report stage's time.
Targets: validate < 10 s, report < 2 s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from convert import architectures, build  # noqa: E402

RECIPE = """\
version: 1
name: {name}
source:
  onnx: model.onnx
calibration:
  samples: 32
  inputs:
    {input}: {{npy: calib.npy}}
validate:
  samples: {samples}
  task: classification
  labels: labels.npy
  inputs:
    {input}: {{npy: val.npy}}
targets:
  - device: cpu-int8
"""


def classes(model) -> int:
    """The width of the model's (only) output: the class count the labels index."""
    return model.graph.output[0].type.tensor_type.shape.dim[-1].dim_value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="mobilenet_v2")
    parser.add_argument("--samples", type=int, default=64)
    args = parser.parse_args()
    model = architectures()[args.arch]()
    (inp,) = [v for v in model.graph.input if v.name not in {t.name for t in model.graph.initializer}]
    dims = [d.dim_value for d in inp.type.tensor_type.shape.dim]
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ws" / "recipes"
        root.mkdir(parents=True)
        (root / "model.onnx").write_bytes(model.SerializeToString())
        np.save(root / "calib.npy", rng.random((32, *dims[1:]), dtype=np.float32))
        np.save(root / "val.npy", rng.random((args.samples, *dims[1:]), dtype=np.float32))
        np.save(root / "labels.npy", rng.integers(0, classes(model), args.samples))
        (root / "net.yaml").write_text(RECIPE.format(name=args.arch, input=inp.name, samples=args.samples))
        wall, rows = build(root.parent)
    stage = {(r["target"] or "", r["stage"]): r["seconds"] or 0.0 for r in rows}
    print(f"{args.arch} {dims}: cold build {wall:.1f} s")
    print(
        f"  validate ({args.samples} samples, int8, with per-layer error and accuracy): {stage[('cpu-int8', 'validate')]:.2f} s  (target < 10 s)"
    )
    print(f"  report: {stage[('cpu-int8', 'report')]:.2f} s  (target < 2 s)")


if __name__ == "__main__":
    main()
