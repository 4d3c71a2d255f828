"""validate: run the source model and the artifact on the same samples; metrics.json.

A missed threshold fails the target after metrics.json is written, so the
numbers are there to read; `verify` re-checks on every restore, so a cached
failing result never turns into a pass.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from buildsys.errors import StageError
from buildsys.stages.base import Input, RunContext, Stage
from buildsys.stages.metrics import compare, judge
from buildsys.stages.sources import source_files

RANDOM_SEED = 0


class Validate(Stage):
    kind = "validate"
    VERSION = 1
    TOOLS = ("tensorflow", "numpy")

    @property
    def has_data(self) -> bool:
        return bool(self.recipe.validate.inputs or self.recipe.calibration)

    def inputs(self) -> list[Input]:
        src = self.recipe.source
        common = self.paths.common
        out = [
            Input("model", (self.paths.target_dir(self.target) / "model.tflite",)),
            Input("signature", (common / "signature.json",)),
            Input("source", source_files(src), src.path if src.path.is_dir() else None),
        ]
        if self.has_data:
            out.append(Input("val", (common / "val.npz",)))
        return out

    def params(self) -> dict[str, Any]:
        v = self.recipe.validate
        return {
            "format": self.recipe.source.format,
            "thresholds": dict(sorted(v.thresholds.items())),
            "samples": None if self.has_data else v.samples,
        }

    def outputs(self) -> dict[str, Path]:
        return {"metrics": self.paths.target_dir(self.target) / "metrics.json"}

    def run(self, ctx: RunContext) -> None:
        from buildsys.tflow.models import run_source
        from buildsys.tflow.runtime import run_tflite

        signature = json.loads(ctx.input("signature").read_text("utf-8"))
        samples, origin = self._samples(ctx, signature)
        src = self.recipe.source
        ref = run_source(src.format, src.path, samples)
        got = run_tflite(ctx.input("model"), samples)
        outputs = {name: compare(ref[name], got[name]) for name in sorted(ref)}
        report = {
            "samples": len(next(iter(samples.values()))),
            "data": origin,
            "outputs": outputs,
            "thresholds": dict(sorted(self.recipe.validate.thresholds.items())),
        }
        report["failures"] = {
            name: judge(m, self.recipe.validate.thresholds) for name, m in outputs.items()
        }
        report["passed"] = not any(report["failures"].values())
        ctx.out["metrics"].write_text(json.dumps(report, sort_keys=True, indent=2) + "\n", "utf-8")

    def _samples(self, ctx: RunContext, signature: dict) -> tuple[dict[str, Any], str]:
        import numpy as np

        if self.has_data:
            from buildsys.stages.datasets import read_npz

            return read_npz(ctx.input("val")), "recipe"
        # no data in the recipe: uniform [0, 1) noise still catches broken conversions
        rng = np.random.default_rng(RANDOM_SEED)
        n = self.recipe.validate.samples
        return {
            t["name"]: rng.random((n, *t["shape"][1:]), dtype=np.float32) for t in signature["inputs"]
        }, "random-uniform"

    def verify(self, outputs: dict[str, Path]) -> None:
        report = json.loads(outputs["metrics"].read_text("utf-8"))
        lines = [f"{name}: {m}" for name, missed in report["failures"].items() for m in missed]
        if lines:
            raise StageError(
                f"{self.task_name}: validation thresholds missed\n  " + "\n  ".join(lines),
                hint=f"see {outputs['metrics']}; loosen validate.thresholds only if the error is acceptable",
            )
