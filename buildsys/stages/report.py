"""report: report.md and report.html per target — sizes, op histogram, metrics,
per-layer error, device check, compiler summary, stage timings, the recipe.

Both files render one facts dict gathered here. Timings come from the stage
records of this build, so both reports are volatile: the lockfile pins their
paths, not their bytes. The recipe text is read the same way, outside the key:
as a keyed input, a new comment would rerun every report and change the lock,
and a calibration seed would rerun the reports of targets it cannot change,
both of which the build promises not to do. So the page shows the recipe as
read when the report was made, with that recipe's digest. The lockfile is not
read at all: it is written after the build.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

from buildsys.devices import Device
from buildsys.errors import StageError
from buildsys.recipe.model import Recipe, Target
from buildsys.signature import Signature
from buildsys.stages.base import Input, RunContext, Stage, TargetStage
from buildsys.stages.facts import ReportFacts
from buildsys.stages.report_md import render


class Report(TargetStage):
    kind = "report"
    VERSION = 10  # 10: report.html wraps long tensor names, lists IO conversions
    TOOLS = ("tensorflow", "matplotlib")  # matplotlib draws the SVG plots
    VOLATILE = ("report", "html")

    def __init__(self, recipe: Recipe, target: Target, device: Device, upstream: tuple[Stage, ...] = ()):
        super().__init__(recipe, target, device)
        self.upstream = upstream

    @property
    def validated(self) -> bool:
        return self.recipe.source.format != "tflite" and self.device.format == "tflite"

    def inputs(self) -> list[Input]:
        paths, mine = self.paths, self.target_paths
        out = [
            Input("source", (paths.source_record,)),
            Input("model", (mine.model,)),
            Input("compat", (mine.compat,)),
        ]
        if self.device.format == "tflite":
            out.append(Input("signature", (paths.signature,)))
        if self.validated:
            out.append(Input("metrics", (mine.metrics,)))
        if self.device.compile:
            out.append(Input("compile", (mine.compile_summary,)))
        return out

    def params(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe.name,
            "target": self.target.name,
            "device": self.device.digest,
        }

    def outputs(self) -> dict[str, Path]:
        return {"report": self.target_paths.report_md, "html": self.target_paths.report_html}

    def run(self, ctx: RunContext) -> None:
        facts = gather(self, ctx)
        ctx.out["report"].write_text(render(self, facts), "utf-8")
        ctx.out["html"].write_text(_render_html(self, facts), "utf-8")


def gather(stage: Report, ctx: RunContext) -> ReportFacts:
    """Everything both reports show: the stage's inputs, the build records, the recipe's text."""
    from buildsys.recipe.model import lock_path
    from buildsys.stages.engine import read_record

    tdir = stage.target_paths.dir
    return ReportFacts(
        source=_json(ctx.input("source")),
        metrics=_json(ctx.input("metrics")) if stage.validated else None,
        compat=_json(ctx.input("compat")),
        compile=_json(ctx.input("compile")) if stage.device.compile else None,
        **artifact_facts(ctx.input("model"), stage.device.format),
        timings=[(s.local_id, read_record(ctx.env, s)) for s in stage.upstream],
        signature=Signature.read(ctx.input("signature")) if stage.device.format == "tflite" else None,
        recipe_text=stage.recipe.path.read_text("utf-8"),
        # relative, so reports of two checkouts are byte-identical and links survive a move
        recipe_href=Path(os.path.relpath(stage.recipe.path, tdir)).as_posix(),
        lock_name=lock_path(stage.recipe).name,
    )


def artifact_facts(path: Path, fmt: str) -> dict[str, Any]:
    """Op histogram, IO element types and size of the artifact, read from the file."""
    data = path.read_bytes()
    if fmt == "onnx":
        return {"ops": _onnx_ops(data), "dtypes": None, "size": len(data)}
    from buildsys.tflow.inspect import io_dtypes, op_histogram

    return {"ops": op_histogram(data), "dtypes": io_dtypes(data), "size": len(data)}


def _onnx_ops(data: bytes) -> dict[str, int]:
    import onnx

    model = onnx.load_from_string(data)
    counts: dict[str, int] = {}
    for node in model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))


def _render_html(stage: Report, facts: ReportFacts) -> str:
    if importlib.util.find_spec("matplotlib") is None:
        raise StageError(
            f"stage {stage.task_name} draws report.html with matplotlib, which is not installed",
            hint="pip install 'matplotlib>=3.7,<4' (a dependency of buildsys: reinstall with `pip install -e .`)",
        )
    from buildsys.stages.report_html import render_html

    return render_html(stage, facts)


def _json(path: Path) -> Any:
    return json.loads(path.read_text("utf-8"))
