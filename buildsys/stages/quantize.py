"""quantize: the float model as the target device's TFLite (fp32, fp16 or full-integer int8)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from buildsys.errors import InputError
from buildsys.stages.base import Input, RunContext, Stage
from buildsys.stages.sources import source_files


class Quantize(Stage):
    kind = "quantize"
    VERSION = 2
    TOOLS = ("tensorflow", "numpy")

    @property
    def passthrough(self) -> bool:
        return self.recipe.source.format == "tflite"

    def inputs(self) -> list[Input]:
        common = self.paths.common
        if self.passthrough:
            return [Input("source", source_files(self.recipe.source))]
        out = [Input("float", (common / "float.pb",)), Input("signature", (common / "signature.json",))]
        if self.device.needs_calibration:
            out.append(Input("calib", (common / "calib.npz",)))
        return out

    def params(self) -> dict[str, Any]:
        return {"device": self.device.data}

    def outputs(self) -> dict[str, Path]:
        return {"model": self.paths.target_dir(self.target) / "model.tflite"}

    def run(self, ctx: RunContext) -> None:
        if self.passthrough:
            self._passthrough(ctx)
            return
        from buildsys.stages.datasets import read_npz
        from buildsys.tflow.quantize import to_tflite
        from buildsys.tflow.samples import to_stored

        signature = json.loads(ctx.input("signature").read_text("utf-8"))
        calib = None
        if self.device.needs_calibration:
            # samples are kept in the source model's layout; the float model may store them permuted
            calib = to_stored(read_npz(ctx.input("calib")), signature["inputs"])
        model = to_tflite(
            ctx.input("float"),
            signature,
            self.device.mode,
            calib=calib,
            per_channel=self.device.per_channel,
            io_dtype=self.device.io_dtype,
        )
        ctx.out["model"].write_bytes(model)

    def _passthrough(self, ctx: RunContext) -> None:
        """A TFLite source is shipped as is, if it already is what the device takes."""
        from buildsys.tflow.runtime import tflite_inputs_outputs

        src = self.recipe.source.path
        io = tflite_inputs_outputs(src)
        dtypes = sorted({t["dtype"] for t in io["inputs"] + io["outputs"]})
        wanted = self.device.io_dtype
        if dtypes != [wanted]:
            raise InputError(
                f"{src}: a TFLite source is passed through unchanged, but its IO is "
                f"{'/'.join(dtypes)} and device {self.device.name} takes {wanted}",
                hint="build from the float model (Keras, SavedModel or ONNX) to re-quantize, "
                "or target a device that matches this model",
            )
        ctx.out["model"].write_bytes(src.read_bytes())
