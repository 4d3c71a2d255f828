"""check: the artifact against the device profile, operator by operator; compat.json.

Like validate, an unsupported operator under `on_unsupported: fail` fails the
target through `verdict`, read from compat.json after every build, so the
report still shows it and a cached result never turns a failure into a pass.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from buildsys.errors import StageError
from buildsys.signature import Signature
from buildsys.stages.base import Input, RunContext, TargetStage

RULE_KEYS = ("format", "quantization", "ops", "tensors", "partition")


class Check(TargetStage):
    kind = "check"
    VERSION = 6  # 5: ops an integer artifact runs in float32 (no kernel of that width) are listed; 6: unrolled LSTMs
    TOOLS = ("tensorflow", "onnx")  # TensorFlow's TFLite schema reads the artifact

    def inputs(self) -> list[Input]:
        out = [Input("model", (self.target_paths.model,))]
        if self.device.format == "tflite":  # maps TFLite op names back to ONNX nodes
            out.append(Input("signature", (self.paths.signature,)))
        if self._unrolls_lstm:  # the fused LSTMs the float model asked for
            out.append(Input("float", (self.paths.float_model,)))
        return out

    @property
    def _unrolls_lstm(self) -> bool:
        """int16x8 quantizes a fused LSTM as its cells (TF has no 16x8 kernel for it)."""
        return self.device.format == "tflite" and self.device.mode == "int16x8" and self.recipe.source.onnx_graph

    def params(self) -> dict[str, Any]:
        rules = {k: self.device.data.get(k) for k in RULE_KEYS}
        # on_unsupported only changes the verdict, but doit must see it change
        return {"device": self.device.name, "rules": rules, "on_unsupported": self.device.on_unsupported}

    def outputs(self) -> dict[str, Path]:
        return {"compat": self.target_paths.compat}

    def run(self, ctx: RunContext) -> None:
        from buildsys.compat import check_artifact

        compat = check_artifact(ctx.input("model"), self.device.format, self.device.data)
        compat = {"device": self.device.name, **compat}
        if self.device.format == "tflite":
            _name_nodes(compat, Signature.read(ctx.input("signature")), ctx.input("model"))
        if self._unrolls_lstm and (unrolled := _unrolled(ctx.input("float"), compat)):
            compat["unrolled"] = {"mode": self.device.mode, **unrolled}
        ctx.out["compat"].write_text(json.dumps(compat, indent=2) + "\n", "utf-8")

    def verdict(self, outputs: dict[str, Path]) -> StageError | None:
        if self.device.on_unsupported != "fail":
            return None
        compat = _read(outputs["compat"])
        unsupported = compat["summary"]["unsupported"]
        if type(unsupported) is not int:  # "0" or null must not pass: Stage.judged fails it
            raise ValueError(f"summary.unsupported is {unsupported!r}, not a count")
        if unsupported:
            return StageError(
                f"{_count(compat)} cannot run on {self.device.name}\n  " + "\n  ".join(_lines(compat)),
                hint=f"see {self.target_paths.report_html} (or {outputs['compat'].name}); replace those ops in the recipe, or set "
                "`on_unsupported: warn` on the target to ship with CPU fallback",
            )
        return None

    def notes(self, outputs: dict[str, Path]) -> list[str]:
        from buildsys.compat.check import render_kernel_notes

        compat = _read(outputs["compat"])
        summary = compat["summary"]
        kernels = render_kernel_notes(compat)
        if not summary["unsupported"] and not summary["cpu"]:
            return kernels
        first = summary.get("first_unsupported") or {}
        where = f"; first: #{first['index']} {first['op']}" if first else ""
        return [
            f"{summary['cpu']} of {summary['ops']} ops run on the CPU, not {self.device.name}{where} (see {outputs['compat']})",
            *kernels,
        ]


def _name_nodes(compat: dict[str, Any], signature: Signature, model: Path) -> None:
    """The ONNX nodes behind each op, so a problem names what a replacement selects."""
    from buildsys.stages.origins import node_namer

    name = node_namer(signature, model)
    if name is None:
        return
    for op in compat["ops"]:
        op["nodes"] = name(op["name"], op["index"] if op.get("subgraph", 0) == 0 else -1)
    first = compat["summary"].get("first_unsupported")
    if first:
        first["nodes"] = next((op["nodes"] for op in compat["ops"] if op["index"] == first["index"]), [])


def _unrolled(float_path: Path, compat: dict[str, Any]) -> dict[str, Any] | None:
    """LSTM directions the float model gives as fused-kernel functions but the artifact runs as
    cells, with the ONNX nodes they came from (the scope of each function call)."""
    from buildsys.tflow.frozen import read_float
    from buildsys.tflow.unfuse import lstm_calls

    calls = lstm_calls(read_float(float_path)[0])
    fused = sum(op["op"] == "UNIDIRECTIONAL_SEQUENCE_LSTM" for op in compat["ops"])
    if len(calls) <= fused:
        return None
    return {"directions": len(calls) - fused, "nodes": sorted({c.rsplit("/", 1)[0] for c in calls})}


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text("utf-8"))


def _count(compat: dict[str, Any]) -> str:
    n = compat["summary"]["unsupported"]
    return f"{n} operator{'s' if n != 1 else ''}"


def _lines(compat: dict[str, Any]) -> list[str]:
    from buildsys.compat import render_unsupported

    return render_unsupported(compat)
