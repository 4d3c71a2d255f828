"""Whether an inspected ONNX model is pre-quantized (QDQ), and how: a line for `buildsys inspect`."""

from __future__ import annotations

from dataclasses import dataclass

import onnx

from buildsys.tflow import qdq


@dataclass(frozen=True)
class Prequantized:
    activations: int  # Q -> DQ pairs on computed tensors
    activation_types: tuple[str, ...]
    weights: int  # quantized Conv/ConvTranspose/Gemm/MatMul weights
    weight_types: tuple[str, ...]
    per_channel: bool  # some weight has one scale per channel

    def describe(self) -> str:
        acts = f"{self.activations} activation Q->DQ pair{'s' if self.activations != 1 else ''}"
        acts += f" ({'/'.join(self.activation_types)})" if self.activation_types else ""
        ws = f"{self.weights} quantized weight{'s' if self.weights != 1 else ''}"
        if self.weights:
            ws += f" ({'/'.join(self.weight_types)}, {'per-channel' if self.per_channel else 'per-tensor'})"
        return f"{acts}, {ws}"


def prequantized(model: onnx.ModelProto) -> Prequantized | None:
    if not qdq.is_qdq(model):
        return None
    acts, weights = qdq.activation_pairs(model), qdq.weights(model)
    return Prequantized(
        activations=len(acts),
        activation_types=tuple(sorted({a["dtype"] for a in acts})),
        weights=len(weights),
        weight_types=tuple(sorted({w["dtype"] for w in weights})),
        per_channel=any(len(w["scale"]) > 1 for w in weights),
    )
