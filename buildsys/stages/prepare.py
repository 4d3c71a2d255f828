"""prepare: the ONNX source with the recipe's replacements and shapes applied, constants folded, shapes static."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from buildsys.stages.base import Input, RunContext, Stage
from buildsys.stages.sources import source_files


class Prepare(Stage):
    kind = "prepare"
    # 3: refuses tensors bigger than the machine's memory (a cached result would reach convert's crash)
    # 4: dim_value -1/0 are dynamic dims (a model with them needs `shapes:`/`batch:` now); `outputs:` cuts
    VERSION = 4
    TOOLS = ("onnx", "numpy")

    def inputs(self) -> list[Input]:
        if self.recipe.source.exported:  # what the export stage wrote, in its place
            return [Input("source", (self.paths.exported,))]
        return [
            Input("fetch", (self.paths.source_record,)),
            Input("source", source_files(self.recipe.source)),
        ]

    def params(self) -> dict[str, Any]:
        shapes = {name: list(dims) for name, dims in sorted(self.recipe.shapes.items())}
        edits = [r.data for r in self.recipe.replacements if r.edits_graph]
        params: dict[str, Any] = {"shapes": shapes, "batch": self.recipe.batch, "replacements": edits}
        if self.recipe.outputs:  # only when set: keys of recipes without a cut stay as they were
            params["outputs"] = list(self.recipe.outputs)
        return params

    def outputs(self) -> dict[str, Path]:
        return {"prepared": self.paths.prepared}

    def run(self, ctx: RunContext) -> None:
        from buildsys.onnxprep.prepare import load_onnx, prepare_model

        src = self.recipe.source.path
        label = ctx.env.ws.show(src)
        model = load_onnx(ctx.input("source"))
        shapes = {k: list(v) for k, v in self.recipe.shapes.items()}
        prepared = prepare_model(
            model,
            shapes,
            self.recipe.batch,
            label=label,
            replacements=self.recipe.replacements,
            recipe_file=ctx.env.ws.show(self.recipe.path),
            outputs=self.recipe.outputs,
            outputs_at=self._output_at,
        )
        self._check_memory(prepared, label)
        # deterministic serialization: the same model and options give the same bytes
        ctx.out["prepared"].write_bytes(prepared.SerializeToString(deterministic=True))

    def _output_at(self, index: int) -> str:
        from buildsys.stages.sources import recipe_at

        return recipe_at(self.recipe.path, ("outputs", index))

    def _check_memory(self, prepared: Any, label: str) -> None:
        """Shapes are static now: a batch too big for the machine is refused here, not by a
        SIGSEGV in the converter or TFLite minutes later."""
        from buildsys.errors import InputError
        from buildsys.limits import ACTIVATION_FACTOR, memory_problem
        from buildsys.onnxprep.prepare import input_shapes, tensor_sizes
        from buildsys.stages.sources import recipe_at

        if problem := memory_problem(tensor_sizes(prepared), ACTIVATION_FACTOR):
            key = ("batch",) if self.recipe.batch is not None and not self.recipe.shapes else ("shapes",)
            raise InputError(
                f"{recipe_at(self.recipe.path, key)}: {label} at input shapes {input_shapes(prepared)} {problem}",
                hint="lower `batch:` / the `shapes:` dims (calibration and validation feed whole batches)",
            )
