"""validate: run the source model and the artifact on the same samples; metrics.json.

A missed threshold fails the target through `verdict`, read from metrics.json
after every build: the stage itself succeeds, so the report still gets made and
shows what was missed, and a cached failing result never turns into a pass.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from buildsys.errors import InputError, StageError
from buildsys.limits import MAX_DATA_BYTES, file_problem
from buildsys.signature import Signature, TensorEntry
from buildsys.stages.base import Input, RunContext, TargetStage
from buildsys.stages.metrics import compare, judge
from buildsys.stages.sources import source_input

RANDOM_SEED = 0
LAYER_SAMPLES = 16  # validation samples the per-layer int8 error is measured on


class Validate(TargetStage):
    kind = "validate"
    VERSION = 14  # 12: missed limits read as written (0.9999999, not 1); 13: NaN references not measured, TFLite sources run; 14: per-layer sums from float32 partial dot products (last-digit changes)
    TOOLS = ("tensorflow", "numpy", "onnxruntime", "litert")  # litert runs the artifact
    # measured errors carry the float rounding of this machine's kernels (oneDNN picks them
    # by CPU): the lockfile pins the verdict, through "no lock when a target fails", not the bytes
    VOLATILE = ("metrics",)

    @property
    def has_data(self) -> bool:
        return bool(self.recipe.validate.inputs or self.recipe.calibration)

    @property
    def thresholds(self) -> dict[str, float]:
        """The device's defaults, each overridden by the recipe's own."""
        return dict(sorted({**self.device.thresholds, **self.recipe.validate.thresholds}.items()))

    @property
    def passthrough(self) -> bool:
        """A TFLite source shipped as it is: it is run (it must run), compared with nothing."""
        return self.recipe.source.format == "tflite"

    @property
    def measures_layers(self) -> bool:
        return self.device.needs_calibration and not self.passthrough

    def inputs(self) -> list[Input]:
        paths = self.paths
        out = [
            # planned for TFLite devices only, whose artifact is model.tflite
            Input("model", (self.target_paths.model,)),
            Input("signature", (paths.signature,)),
            self._reference(),
        ]
        if self.has_data:
            out.append(Input("val", (paths.val,)))
        if self.recipe.validate.labels and self.has_data:
            out.append(Input("labels", (self.recipe.validate.labels,)))
            out.append(Input("val_index", (paths.val_index,)))
        if self.measures_layers:  # per-layer error needs the float graph
            out.append(Input("float", (paths.float_model,)))
        return out

    def tools_used(self) -> tuple[str, ...]:
        return self.TOOLS + ("torch",) if self.against_torch else self.TOOLS

    @property
    def against_torch(self) -> bool:
        """A PyTorch source is its own reference, so an export bug shows in the error too;
        not where `outputs:` cut the graph (those tensors are not the model's outputs)."""
        return self.recipe.source.exported and not self.recipe.outputs

    @property
    def reference(self) -> str:
        """What runs as the reference: the PyTorch model, the prepared ONNX model (static shapes,
        what was converted), or the source in its own format."""
        src = self.recipe.source
        return "pytorch" if self.against_torch else "onnx" if src.onnx_graph else src.format

    def _reference(self) -> Input:
        if self.reference == "onnx":
            return Input("source", (self.paths.prepared,))
        return source_input(self.recipe.source)

    def params(self) -> dict[str, Any]:
        v = self.recipe.validate
        return {
            "format": self.reference,
            "thresholds": self.thresholds,
            "samples": None if self.has_data else v.samples,
            "task": v.task,
        }

    def outputs(self) -> dict[str, Path]:
        return {"metrics": self.target_paths.metrics}

    def run(self, ctx: RunContext) -> None:
        from buildsys.tflow.samples import to_onnx_layout, to_stored

        signature = Signature.read(ctx.input("signature"))
        samples, origin = self._samples(ctx, signature)
        if self.has_data:
            from buildsys.stages.calibration import check_fit

            check_fit(self.recipe, "val", samples, signature.inputs)
        stored = to_stored(samples, signature.inputs)
        ref = None if self.passthrough else self._run_reference(ctx, samples)
        got = to_onnx_layout(self._run_artifact(ctx, signature, stored), signature.outputs)
        ref = got if ref is None else ref
        classification = self.recipe.validate.task == "classification"
        outputs = {name: compare(ref[name], got[name], classification) for name in sorted(ref)}
        if self.recipe.validate.labels:
            self._add_accuracy(ctx, outputs, ref, got)
        report: dict[str, Any] = {
            "samples": len(next(iter(samples.values()))),
            "data": origin,
            "outputs": outputs,
            "thresholds": self.thresholds,
        }
        report["failures"] = {name: judge(m, self.thresholds) for name, m in outputs.items()}
        report["passed"] = not any(report["failures"].values())
        if self.measures_layers:
            from buildsys.tflow.layers import layer_errors

            # per-layer statistics settle within a few samples; all of them would double validate's time
            batch = (signature.inputs[0].shape or [])[0] or 1
            keep = max(batch, LAYER_SAMPLES // batch * batch)  # whole batches
            subset = {name: a[:keep] for name, a in stored.items()}
            report["layers"] = layer_errors(ctx.input("float"), signature, ctx.input("model"), subset)
            _name_nodes(report["layers"], signature, ctx.input("model"))
        ctx.out["metrics"].write_text(json.dumps(report, sort_keys=True, indent=2) + "\n", "utf-8")

    def check(self) -> None:
        labels = self.recipe.validate.labels
        if labels and (problem := file_problem(labels, MAX_DATA_BYTES, "a labels file")):
            raise InputError(
                f"{self.recipe.path}: validate.labels: {labels} {problem}", hint="save the ids with numpy.save"
            )
        if labels and not labels.is_file():
            raise InputError(
                f"{self.recipe.path}: validate.labels: {labels} not found",
                hint="the path is relative to the recipe file",
            )

    def _add_accuracy(self, ctx: RunContext, outputs: dict, ref: dict, got: dict) -> None:
        from buildsys.stages.labels import picked_labels
        from buildsys.stages.metrics import accuracy

        ids, highest = picked_labels(ctx.input("labels"), ctx.input("val_index"))
        found = {name: accuracy(ref[name], got[name], ids, highest) for name in outputs}
        if not any(found.values()):
            shapes = ", ".join(f"{n} {list(ref[n].shape[1:])}" for n in sorted(ref))
            raise InputError(
                f"{ctx.input('labels')}: class ids up to {highest} fit no output of the model ({shapes})",
                hint="labels are indices into an output of class scores; check the file belongs to this model",
            )
        for name, acc in found.items():
            outputs[name].update(acc or {})

    def _run_reference(self, ctx: RunContext, samples: dict[str, Any]) -> dict[str, Any]:
        src = self.recipe.source
        if self.reference == "pytorch":
            from buildsys.torchsrc.run import run_torch

            return run_torch(src, samples, ctx.env.ws.show(src.path))
        if self.reference == "onnx":
            from buildsys.tflow.onnxsource import run_onnx

            return run_onnx(ctx.input("source"), samples)
        from buildsys.tflow.models import run_source

        return run_source(src, samples)

    def _run_artifact(self, ctx: RunContext, signature: Signature, stored: dict[str, Any]) -> dict[str, Any]:
        """The artifact's outputs; a kernel refusing the data at run time is our defect, said so."""
        from buildsys.tflow.runtime import KernelFailure, run_tflite

        try:
            return run_tflite(ctx.input("model"), stored)
        except KernelFailure as exc:
            if self.passthrough:
                raise _source_failed(self.recipe.source.path, exc) from None
            nodes = _failed_nodes(exc, signature, ctx.input("model"))
            raise StageError(_defect_message(exc, nodes), hint=self._workaround(nodes)) from None

    def _workaround(self, nodes: list[str]) -> str:
        edit = f"a `replacements:` edit of {nodes[0]!r} (`buildsys inspect` lists rewrites)" if nodes else None
        other = "int16 activations or cpu-fp32" if self.device.needs_calibration else "cpu-fp16"
        ways = [w for w in (edit, f"another device mode for this target (e.g. {other})") if w]
        return "until it is fixed, work around it with " + " or ".join(ways)

    def _samples(self, ctx: RunContext, signature: Signature) -> tuple[dict[str, Any], str]:
        import numpy as np

        if self.has_data:
            from buildsys.stages.datasets import read_npz

            where = "validate.inputs" if self.recipe.validate.inputs else "held-out calibration files"
            return read_npz(ctx.input("val")), where
        # no data in the recipe: uniform [0, 1) noise still catches broken conversions
        rng = np.random.default_rng(RANDOM_SEED)
        n = self.recipe.validate.samples
        return {t.name: rng.random((n, *_sample_dims(t)), dtype=np.float32) for t in signature.inputs}, (
            "random-uniform"
        )

    def verdict(self, outputs: dict[str, Path]) -> StageError | None:
        report = json.loads(outputs["metrics"].read_text("utf-8"))
        lines = [f"{name}: {m}" for name, missed in report["failures"].items() for m in missed]
        if report["passed"] is not (not lines):  # a partial or edited file: Stage.judged fails it
            raise ValueError(f"passed is {report['passed']!r} but {len(lines)} missed thresholds are listed")
        if lines:
            return StageError(
                "validation thresholds missed\n  " + "\n  ".join(lines),
                hint=f"see {self.target_paths.report_html} (per-layer error, histograms); loosen validate.thresholds in the recipe only if the error is acceptable (device defaults: `buildsys devices {self.device.name}`)",
            )
        return None


def _sample_dims(entry: TensorEntry) -> list[int]:
    """A signature input's dims after the batch, in the source model's layout."""
    from buildsys.tflow.samples import source_shape

    dims = source_shape(entry)[1:]
    static = [d for d in dims if d is not None]
    if len(static) < len(dims):  # never: convert made every input shape static
        raise StageError(f"input {entry.name!r} has dynamic shape {dims} in signature.json")
    return static


def _source_failed(path: Path, exc) -> InputError:
    return InputError(
        f"{path}: the source model fails at run time on the validation data: TFLite op #{exc.op_index} "
        f"({exc.op_type}): {exc.reason}",
        hint="buildsys ships a TFLite source unchanged, so the model itself must change: rebuild it "
        "(e.g. from its ONNX or Keras source, through buildsys) or fix the op named above",
        path=str(path),
    )


def _failed_nodes(exc, signature: Signature, model: Path) -> list[str]:
    """The ONNX nodes behind the op that failed (none for other sources)."""
    from buildsys.stages.origins import node_namer

    name = node_namer(signature, model)
    found = [n for tensor in exc.tensors for n in (name(tensor, exc.op_index) if name else [])]
    return list(dict.fromkeys(found))


def _defect_message(exc, nodes: list[str]) -> str:
    behind = f"ONNX node {', '.join(nodes)}" if nodes else "no ONNX node recorded for it"
    return (
        f"the artifact buildsys built aborts at run time: TFLite op #{exc.op_index} ({exc.op_type}), from {behind}, "
        f"failed on inputs of shape {exc.shapes}\n  kernel: {exc.reason}\n"
        "This is a buildsys defect, not a problem with your model or data: the converter emitted an op whose "
        "kernel rejects values the model produces. Please report it with the model, the recipe and this message."
    )


def _name_nodes(layers: dict, signature: Signature, model: Path) -> None:
    """The ONNX nodes behind each of the worst tensors, for the report."""
    from buildsys.stages.origins import node_namer

    name = node_namer(signature, model)
    if name is None:
        return
    for entry in layers.get("worst", []):
        entry["nodes"] = name(entry["tensor"], entry["position"])
