"""compile: the device's external compiler (Vela, edgetpu_compiler) on the checked artifact.

Whether the compiler is installed is decided at plan time and its version is
part of the key: installing it later makes the stage stale and it runs. A
missing compiler is not a failure: the target ends with the uncompiled
artifact and a note saying how to install the tool.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from buildsys.devices import Device
from buildsys.recipe.model import Recipe, Target
from buildsys.stages.base import Input, RunContext, TargetStage


class Compile(TargetStage):
    kind = "compile"
    VERSION = 1

    def __init__(self, recipe: Recipe, target: Target, device: Device):
        super().__init__(recipe, target, device)
        from buildsys.compilers import COMPILERS

        # planned only for a device whose profile has a compile step
        self.spec: dict[str, Any] = device.compile or {}
        self.tool: str = self.spec["tool"]
        self.version = COMPILERS[self.tool].version()

    @property
    def args(self) -> list[str]:
        return list(self.spec.get("args", []))

    def inputs(self) -> list[Input]:
        return [Input("model", (self.target_paths.tflite,))]

    def params(self) -> dict[str, Any]:
        return {"tool": self.tool, "version": self.version, "args": self.args}

    def outputs(self) -> dict[str, Path]:
        paths = self.target_paths
        out = {"summary": paths.compile_summary}
        if self.version is not None:
            suffix = "vela" if self.tool == "vela" else "edgetpu"
            out.update(model=paths.compiled(suffix), log=paths.compile_log)
        return out

    def run(self, ctx: RunContext) -> None:
        from buildsys.compilers import COMPILERS

        compiler = COMPILERS[self.tool]
        if self.version is None:
            summary = {"tool": self.tool, "status": "not-installed", "install": compiler.install_hint()}
            ctx.out["summary"].write_text(json.dumps(summary, indent=2) + "\n", "utf-8")
            return
        work = ctx.out["summary"].parent / "work"
        work.mkdir()
        model = work / self.target_paths.tflite.name
        shutil.copyfile(ctx.input("model"), model)
        result = compiler.compile(model, work, self.args)
        shutil.copyfile(result.artifact, ctx.out["model"])
        ctx.out["log"].write_text(result.log, "utf-8")
        summary = {"status": "compiled", **result.summary}
        ctx.out["summary"].write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", "utf-8")

    def notes(self, outputs: dict[str, Path]) -> list[str]:
        summary = json.loads(outputs["summary"].read_text("utf-8"))
        if summary.get("status") != "not-installed":
            return []
        artifact = self.target_paths.tflite
        return [
            f"{self.tool} is not installed, so {artifact} is ready but not compiled for "
            f"{self.device.name}; to compile it: {summary['install']}"
        ]
