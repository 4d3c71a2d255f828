"""export: a PyTorch source -> the ONNX model the pipeline starts from, and which exporter made it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from buildsys.stages.base import Input, RunContext, Stage
from buildsys.stages.sources import source_input


class Export(Stage):
    kind = "export"
    VERSION = 1
    TOOLS = ("torch", "onnxscript", "onnx")  # onnxscript writes the dynamo exporter's ONNX

    def inputs(self) -> list[Input]:
        return [Input("fetch", (self.paths.source_record,)), source_input(self.recipe.source)]

    def params(self) -> dict[str, Any]:
        src = self.recipe.source
        shapes = {name: list(dims) for name, dims in sorted(self.recipe.shapes.items())}
        return {"exporter": src.option("exporter"), "shapes": shapes, "batch": self.recipe.batch}

    def outputs(self) -> dict[str, Path]:
        return {"exported": self.paths.exported, "export": self.paths.export_record}

    def run(self, ctx: RunContext) -> None:
        from buildsys.torchsrc import export
        from buildsys.torchsrc.load import load_model

        src = self.recipe.source
        label = ctx.env.ws.show(src.path)
        model = load_model(src)
        shapes = export.static_shapes(
            model, {k: list(v) for k, v in self.recipe.shapes.items()}, self.recipe.batch, label
        )
        proto, facts = export.export(model, shapes, src.option("exporter"), label)
        export.write(proto, ctx.out["exported"])
        facts = {**facts, "kind": model.kind, "shapes": shapes, "opset": _opset(proto)}
        ctx.out["export"].write_text(json.dumps(facts, sort_keys=True, indent=2) + "\n", "utf-8")

    def lock_facts(self, outputs: dict[str, Path]) -> dict[str, Any]:
        """The exporter that made the ONNX model: the lock says which, as a build log would."""
        facts = json.loads(outputs["export"].read_text("utf-8"))
        return {"exporter": facts["exporter"], "opset": facts["opset"]}


def _opset(proto: Any) -> int:
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
