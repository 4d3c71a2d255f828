"""signature.json: the float model's inputs and outputs as convert wrote them, typed.

The tflow/ exporters build a `Signature`, convert writes its `to_dict()` (keys sorted)
and every reader, stages and tflow/ alike, takes it as a `Signature`. `to_dict` gives
back the document that was read, in its order, so the JSON written (signature.json, the
float model's embedded copy) is what it was when the code passed the plain document.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_ENTRY_KEYS = ("name", "shape", "dtype", "perm")
_KEYS = ("inputs", "outputs", "nodes", "output_nodes", "quantized")


@dataclass(frozen=True)
class TensorEntry:
    """One input or output of the float model, in its stored layout."""

    name: str
    shape: list[int | None] | None  # None: a TF output of unknown rank
    dtype: str
    perm: list[int] | None = None  # ONNX sources: the permutation from ONNX order (tflow/samples.py)
    extra: dict[str, Any] = field(default_factory=dict)  # what else the entry says (a TFLite source's quantization)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> TensorEntry:
        extra = {k: v for k, v in doc.items() if k not in _ENTRY_KEYS}
        return cls(doc["name"], doc["shape"], doc["dtype"], doc.get("perm"), extra)

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"name": self.name, "shape": self.shape, "dtype": self.dtype}
        if self.perm is not None:
            doc["perm"] = self.perm
        return dict(sorted({**doc, **self.extra}.items()))  # as json.loads gives signature.json


@dataclass(frozen=True)
class Signature:
    inputs: list[TensorEntry]
    outputs: list[TensorEntry]
    nodes: dict[str, str] | None = None  # ONNX sources: TF name scope -> the ONNX node run under it
    output_nodes: dict[str, str] | None = None  # ONNX sources: output name -> the node making it
    quantized: dict[str, Any] | None = None  # a pre-quantized (QDQ) source's scales (tflow/qdq.py)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> Signature:
        return cls.from_dict(json.loads(path.read_text("utf-8")))

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Signature:
        return cls(
            inputs=[TensorEntry.from_dict(e) for e in doc["inputs"]],
            outputs=[TensorEntry.from_dict(e) for e in doc["outputs"]],
            nodes=doc.get("nodes"),
            output_nodes=doc.get("output_nodes"),
            quantized=doc.get("quantized"),
            extra={k: v for k, v in doc.items() if k not in _KEYS},
        )

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "inputs": [e.to_dict() for e in self.inputs],
            "outputs": [e.to_dict() for e in self.outputs],
        }
        optional = {"nodes": self.nodes, "output_nodes": self.output_nodes, "quantized": self.quantized}
        doc.update({k: v for k, v in optional.items() if v is not None}, **self.extra)
        return dict(sorted(doc.items()))  # convert writes signature.json with sorted keys
