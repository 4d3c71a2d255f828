"""calibration: deterministic sample sets, calib.npz for quantization and val.npz for validation.

Validation samples are drawn with their own seed. Which samples were drawn is
written next to val.npz (val.index.json): positions in the validation source,
which `validate.labels` are indexed by, and the image files themselves. With `validate.inputs` they
do not depend on the calibration seed, so changing it leaves val.npz
byte-identical and targets that do not calibrate stay up to date by early
cutoff. Without them, validation holds out the calibration files that were not
drawn for calibration (a model is not judged on the data it was calibrated
with), and reuses them only when calibration took every file.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

from buildsys.errors import InputError
from buildsys.recipe.model import InputSource
from buildsys.stages import datasets
from buildsys.stages.base import Input, RunContext, Stage


class Calibration(Stage):
    kind = "calibration"
    VERSION = 4
    TOOLS = ("tensorflow", "numpy")

    @cached_property
    def sets(self) -> dict[str, tuple[dict[str, InputSource], int, int]]:
        """{output role: (sources by input name, samples, seed)}."""
        r = self.recipe
        out = {}
        if r.calibration:
            out["calib"] = (r.calibration.inputs, r.calibration.samples, r.calibration.seed)
        val_sources = r.validate.inputs or (r.calibration.inputs if r.calibration else None)
        if val_sources:
            out["val"] = (val_sources, r.validate.samples, r.validate.seed)
        return out

    def check(self) -> None:
        for role, (sources, _, _) in self.sets.items():
            where = "calibration.inputs" if role == "calib" else "validate.inputs"
            if role == "val" and self.recipe.validate.inputs is None:
                where = "calibration.inputs"
            for name, src in sources.items():
                datasets.check_source(src, f"{where}.{name}", self.recipe.path)

    @cached_property
    def _inputs(self) -> list[Input]:
        seen: dict[str, Input] = {}
        for role, (sources, _, _) in self.sets.items():
            for name, src in sorted(sources.items()):
                seen[f"{role}.{name}"] = Input(
                    f"{role}.{name}", datasets.source_files(src), datasets.glob_base(src)
                )
        return list(seen.values())

    def inputs(self) -> list[Input]:
        return self._inputs

    def params(self) -> dict[str, Any]:
        return {
            role: {
                "samples": samples,
                "seed": seed,
                "inputs": {name: self._source_params(src) for name, src in sorted(sources.items())},
            }
            for role, (sources, samples, seed) in sorted(self.sets.items())
        }

    def image_layout(self, src: InputSource) -> str:
        # ONNX models come from PyTorch and take channels first; TF models channels last
        return src.layout or ("nchw" if self.recipe.source.format == "onnx" else "nhwc")

    def _source_params(self, src: InputSource) -> dict[str, Any]:
        params = src.params()
        if src.kind == "images":
            params["layout"] = self.image_layout(src)
        return params

    def outputs(self) -> dict[str, Path]:
        out = {role: self.paths.common / f"{role}.npz" for role in self.sets}
        if "val" in self.sets:
            out["val_index"] = self.paths.common / "val.index.json"
        return out

    @property
    def held_out(self) -> bool:
        """Validation draws from the calibration files, minus those calibration used."""
        return "calib" in self.sets and "val" in self.sets and self.recipe.validate.inputs is None

    def run(self, ctx: RunContext) -> None:
        taken = None
        for role, (sources, samples, seed) in sorted(self.sets.items()):  # calib before val
            layouts = {name: self.image_layout(src) for name, src in sources.items()}
            exclude = taken if role == "val" and self.held_out else None
            available = _available(sources)
            indices = _indices(available, samples, seed, exclude)
            taken = indices if role == "calib" else taken
            arrays = {name: datasets.materialise(src, name, indices, layouts[name]) for name, src in sources.items()}
            datasets.write_npz(ctx.out[role], arrays)
            if role == "val":
                index = datasets.index_doc(sources, indices, available)
                ctx.out["val_index"].write_text(json.dumps(index, indent=1, sort_keys=True) + "\n", "utf-8")


def _indices(available: int, samples: int, seed: int, exclude) -> Any:
    """Seeded sample positions; drawn from those not in `exclude` when any are left."""
    import numpy as np

    if exclude is None or len(exclude) >= available:
        return datasets.choose(available, samples, seed)
    rest = np.setdiff1d(np.arange(available), exclude)
    return rest[datasets.choose(len(rest), samples, seed)]


def _available(sources: dict[str, InputSource]) -> int:
    counts = {name: datasets.count(src, name) for name, src in sources.items()}
    available = min(counts.values())
    if len(set(counts.values())) > 1:
        listing = ", ".join(f"{n}: {c}" for n, c in sorted(counts.items()))
        raise InputError(
            f"inputs have different numbers of samples ({listing})",
            hint="samples are paired across inputs by position; give every input the same count",
        )
    return available
