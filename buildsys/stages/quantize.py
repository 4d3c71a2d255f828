"""quantize: the float model as the target device's artifact: TFLite in the device's
quantization mode, or the prepared ONNX model for toolchains that start from ONNX.

A target with `quantization: {from_model: true}` builds int8 from the fake-quant float
model with the pre-quantized (QDQ) model's own scales, and needs no calibration."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from buildsys.errors import InputError
from buildsys.signature import Signature
from buildsys.stages.base import Input, RunContext, TargetStage
from buildsys.stages.convert import from_model
from buildsys.stages.ranges import measures
from buildsys.stages.sources import source_files

REQUANTIZE_NOTE = (
    "the model is pre-quantized (QDQ) and this target recalibrates it, replacing its own scales; "
    "`quantization: {from_model: true}` on the target keeps them ({requantize: true} silences this)"
)


class Quantize(TargetStage):
    kind = "quantize"
    VERSION = 4  # 4: int8 from the ranges stage's calibrated model (calibrated once per recipe); 3: int8 calibration ranges measured without shared buffers (tflow/calibranges.py)
    TOOLS = ("tensorflow", "numpy")

    @property
    def passthrough(self) -> bool:
        return self.recipe.source.format == "tflite"

    @property
    def from_model(self) -> bool:
        return from_model(self.target.overrides) and self.recipe.source.format == "onnx"

    def inputs(self) -> list[Input]:
        paths = self.paths
        if self.passthrough:
            return [Input("source", source_files(self.recipe.source))]
        if self.device.format == "onnx":
            return [Input("prepared", (paths.prepared,))]
        if self.from_model:
            return [Input("float_qat", (paths.float_qat,)), Input("signature", (paths.signature,))]
        if self.reads_ranges:  # the float model and the samples are in the calibrated model
            return [
                Input("ranges", (paths.ranges,)),
                Input("calibrated", (paths.calibrated,)),
                Input("signature", (paths.signature,)),
            ]
        out = [Input("float", (paths.float_model,)), Input("signature", (paths.signature,))]
        if self.device.needs_calibration:
            out.append(Input("calib", (paths.calib,)))
        return out

    @property
    def reads_ranges(self) -> bool:
        """int8 quantizes from the model the ranges stage calibrated once for the recipe."""
        return measures(self.recipe, self.device, self.from_model)

    def params(self) -> dict[str, Any]:
        d = self.device
        if d.format == "onnx":
            return {"format": d.format}
        return {
            "format": d.format,
            "mode": d.mode,
            "per_channel": d.per_channel,
            "input_type": d.input_type,
            "output_type": d.output_type,
            **({"from_model": True} if self.from_model else {}),
            **{form: True for form in self.device.op_forms},
        }

    @property
    def unfold_batchmatmul(self) -> bool:
        """The profile's `quantization: {unfold_batchmatmul: true}` (cpu-int8: XNNPACK has int8
        FULLY_CONNECTED but no int8 BATCH_MATMUL; NPUs such as Ethos-U take BATCH_MATMUL)."""
        return "unfold_batchmatmul" in self.device.op_forms

    def outputs(self) -> dict[str, Path]:
        return {"model": self.target_paths.model}

    def run(self, ctx: RunContext) -> None:
        if self.passthrough:
            self._passthrough(ctx)
            return
        if self.device.format == "onnx":
            # the vendor toolchain quantizes; what it needs is the static, folded model
            ctx.out["model"].write_bytes(ctx.input("prepared").read_bytes())
            return
        if self.from_model:
            self._from_model(ctx)
            return
        if self.reads_ranges:
            self._from_calibrated(ctx)
            return
        from buildsys.stages.calibration import check_fit
        from buildsys.stages.datasets import read_npz
        from buildsys.tflow.quantize import to_tflite
        from buildsys.tflow.samples import to_stored

        signature = Signature.read(ctx.input("signature"))
        calib = None
        if self.device.needs_calibration:
            # samples are kept in the source model's layout; the float model may store them permuted
            calib = read_npz(ctx.input("calib"))
            check_fit(self.recipe, "calib", calib, signature.inputs)
            calib = to_stored(calib, signature.inputs)
        model = to_tflite(
            ctx.input("float"),
            signature,
            self.device.mode,
            calib=calib,
            per_channel=self.device.per_channel,
            input_type=self.device.input_type,
            output_type=self.device.output_type,
            forms=self.device.op_forms,
        )
        ctx.out["model"].write_bytes(model)

    def _from_calibrated(self, ctx: RunContext) -> None:
        from buildsys.stages.datasets import read_npz
        from buildsys.tflow.quantize import from_calibrated

        doc = json.loads(ctx.input("ranges").read_text("utf-8"))
        forms = sorted(self.device.op_forms)
        found = next(v["model"] for v in doc["variants"] if v["forms"] == forms)
        d = self.device
        model = from_calibrated(
            read_npz(ctx.input("calibrated"))[found].tobytes(),
            doc["models"][found],
            Signature.read(ctx.input("signature")),
            d.per_channel,
            d.input_type,
            d.output_type,
            self.paths.float_model,
        )
        ctx.out["model"].write_bytes(model)

    def _from_model(self, ctx: RunContext) -> None:
        from buildsys.errors import StageError
        from buildsys.tflow import qdq
        from buildsys.tflow.qat import to_tflite_qat

        signature = Signature.read(ctx.input("signature"))
        found = signature.quantized
        if not found or not found.get("activations"):
            raise StageError(
                f"{self.recipe.source.path.name} is not pre-quantized (no QuantizeLinear -> DequantizeLinear "
                "pairs), so `quantization: {from_model: true}` has no scales to keep",
                hint="remove `from_model` and give a `calibration:` section, or build from the QDQ export",
            )
        problems = qdq.forbidden(found, self.device.per_channel)
        if problems:
            raise StageError(
                f"{self.device.name} cannot keep the quantization of {self.recipe.source.path.name}:\n  "
                + "\n  ".join(problems),
                hint="recalibrate instead: `quantization: {requantize: true}` on the target and a `calibration:` "
                "section" + ("" if self.device.per_channel else ", or `per_channel: true` if the device allows it"),
            )
        model = to_tflite_qat(
            ctx.input("float_qat"),
            signature,
            qdq.per_tensor_weights(found),
            self.device.input_type,
            self.device.output_type,
            label=self.recipe.source.path.name,
        )
        ctx.out["model"].write_bytes(model)

    def notes(self, outputs: dict[str, Path]) -> list[str]:
        if not self.device.needs_calibration or self.passthrough or self._requantize:
            return []
        try:
            signature = Signature.read(self.paths.signature)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):  # missing or damaged: no note to give
            return []
        return [REQUANTIZE_NOTE] if signature.quantized else []

    @property
    def _requantize(self) -> bool:
        return bool((self.target.overrides.get("quantization") or {}).get("requantize"))

    def _passthrough(self, ctx: RunContext) -> None:
        """A TFLite source is shipped as is, if it already is what the device takes."""
        from buildsys.tflow.runtime import tflite_inputs_outputs

        src = self.recipe.source.path
        io = tflite_inputs_outputs(src)
        have = (sorted({t["dtype"] for t in io["inputs"]}), sorted({t["dtype"] for t in io["outputs"]}))
        wanted = ([self.device.input_type], [self.device.output_type])
        if have != wanted:
            raise InputError(
                f"{src}: a TFLite source is passed through unchanged, but its IO is "
                f"{_io(*have)} and device {self.device.name} takes {_io(*wanted)}",
                hint="build from the float model (Keras, SavedModel or ONNX) to re-quantize, "
                "or target a device that matches this model",
            )
        ctx.out["model"].write_bytes(src.read_bytes())


def _io(inputs: list[str], outputs: list[str]) -> str:
    return f"{'/'.join(inputs)} in, {'/'.join(outputs)} out"
