"""convert: the source model as a static-shape float model plus its IO signature.

For an ONNX source that a target builds with its own quantization (`quantization:
{from_model: true}`), also the fake-quant float model `float_qat.pb` (see tflow/qat.py);
the float model itself is the same either way. The signature of a pre-quantized (QDQ)
model describes its quantization under `quantized` (tflow/qdq.py summary)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from buildsys.signature import Signature
from buildsys.stages.base import Input, RunContext, Stage
from buildsys.stages.sources import source_files, source_input


class Convert(Stage):
    kind = "convert"
    VERSION = 16  # 16: private Reshape/Transpose chains (MobileViT unfold/fold) as one transpose of their atoms; 15: float_qat moves per-channel -128 weights to -127 (torch QAT exports); 14: pointwise Conv keeps its input's spatial order (YOLO DFL), Split-made Q/K/V moved once heads-first (YOLO11 C2PSA), a right MatMul operand that must move anyway moves to [n, k] (adj_y); 13: QKV split by Split+Squeeze moved once, scalar Muls on Q/K taken along; 12: Softsign without DIV; 5: `quantized` in the signature of QDQ models; 6: GELU/HardSwish/Mish subgraphs fused, QKV split moved once; 7: no DIV by computed tensors (int8-safe forms); 8: depthwise over 25 taps split, softplus without NEG; 9: attention V moved once to [n, k]; 10: depthwise split in row bands; 11: its bias on the first piece
    TOOLS = ("tensorflow", "numpy", "onnx")

    @property
    def passthrough(self) -> bool:
        return self.recipe.source.format == "tflite"

    @property
    def from_onnx(self) -> bool:
        return self.recipe.source.onnx_graph

    @property
    def keeps_quantization(self) -> bool:
        """Some target builds an ONNX source with the model's own QDQ scales."""
        return self.recipe.source.format == "onnx" and any(from_model(t.overrides) for t in self.recipe.targets)

    @property
    def batch(self) -> int | None:
        if self.recipe.batch is None and not self.recipe.shapes:
            return self.recipe.source.default_batch
        return self.recipe.batch

    @property
    def layouts(self) -> dict[str, list[str]]:
        """Graph inputs kept in the ONNX layout and outputs given channels-last, from the recipe."""
        picked: dict[str, list[str]] = {"keep_layout": [], "nhwc_outputs": []}
        for r in self.recipe.replacements:
            if r.action == "keep_layout":
                picked["keep_layout"].append(r.data["input"])
            elif r.action == "output_layout":
                picked["nhwc_outputs"].append(r.data["output"])
        return {k: sorted(set(v)) for k, v in picked.items()}

    def inputs(self) -> list[Input]:
        src = self.recipe.source
        if self.from_onnx:
            prepared = Input("prepared", (self.paths.prepared,))
            # prepare folds weight DequantizeLinear nodes: their scales are read from the source
            return [prepared, Input("source", source_files(src))] if self.keeps_quantization else [prepared]
        return [Input("fetch", (self.paths.source_record,)), source_input(src)]

    def params(self) -> dict[str, Any]:
        if self.from_onnx:  # shapes and graph edits were applied by prepare
            return {"format": "onnx", **self.layouts, **({"from_model": True} if self.keeps_quantization else {})}
        shapes = {name: list(dims) for name, dims in sorted(self.recipe.shapes.items())}
        return {"format": self.recipe.source.format, "shapes": shapes, "batch": self.batch}

    def outputs(self) -> dict[str, Path]:
        out = {"signature": self.paths.signature}
        if not self.passthrough:
            out["float"] = self.paths.float_model
        if self.keeps_quantization:
            out["float_qat"] = self.paths.float_qat
        return out

    def run(self, ctx: RunContext) -> None:
        src = self.recipe.source
        if self.passthrough:
            from buildsys.tflow.runtime import tflite_signature

            signature = tflite_signature(src.path)
        elif self.from_onnx:
            from buildsys.tflow.onnxsource import export_onnx

            label = ctx.env.ws.show(src.path)
            signature = export_onnx(ctx.input("prepared"), ctx.out["float"], label=label, **self.layouts)
            signature = self._quantized(ctx, signature, label)
        else:
            from buildsys.tflow.models import export_float

            shapes = {k: list(v) for k, v in self.recipe.shapes.items()}
            signature = export_float(src, shapes, self.batch, ctx.out["float"])
        text = json.dumps(signature.to_dict(), sort_keys=True, indent=2) + "\n"
        ctx.out["signature"].write_text(text, "utf-8")

    def _quantized(self, ctx: RunContext, signature: Signature, label: str) -> Signature:
        from buildsys.onnxprep.prepare import load_onnx
        from buildsys.tflow import qdq
        from buildsys.tflow.onnxsource import export_onnx

        prepared = load_onnx(ctx.input("prepared"))
        source = load_onnx(ctx.input("source")) if self.keeps_quantization else None
        found = qdq.summary(prepared, source)
        if self.keeps_quantization:
            export_onnx(qdq.fake_quant_model(prepared), ctx.out["float_qat"], label=label, **self.layouts)
        return signature if found is None else replace(signature, quantized=found)


def from_model(overrides: dict) -> bool:
    """The target's `quantization: {from_model: true}`."""
    return bool((overrides.get("quantization") or {}).get("from_model"))
