"""ranges: the float model calibrated for int8 on the calibration set, once for all int8 targets.

Converting and calibrating are the slow part of int8 conversion (the float model runs once per
sample). Here they run once per (float model, calibration set); each int8 target's quantize
stage then only runs TF's quantizer on the calibrated model (tflow/calibrated.py), in a fraction
of a second. Targets whose op forms change the converted model (cpu-int8 unfolding attention's
BATCH_MATMUL) get a calibrated model of their own, made in this same stage. `ranges.json` lists,
per converted model, every activation range (tflow/rangetable.py) and the quantizer's settings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from buildsys.devices import Device
from buildsys.recipe.model import Recipe
from buildsys.signature import Signature
from buildsys.stages.base import Input, RunContext, Stage


def measures(recipe: Recipe, device: Device, from_model: bool) -> bool:
    """Whether a target's quantize stage quantizes int8 from this stage's calibrated model (int16x8
    calibrates inside TF's one-call quantizer; from_model keeps the model's own scales)."""
    passthrough = recipe.source.format == "tflite"
    return device.format == "tflite" and device.mode == "int8" and not (passthrough or from_model)


class Ranges(Stage):
    kind = "ranges"
    VERSION = 1
    TOOLS = ("tensorflow", "numpy")

    def __init__(self, recipe: Recipe, variants: list[tuple[str, ...]]):
        super().__init__(recipe)
        # the op-form sets of the int8 targets: each may convert to another model
        self.variants = sorted({tuple(sorted(v)) for v in variants})

    def inputs(self) -> list[Input]:
        paths = self.paths
        return [
            Input("float", (paths.float_model,)),
            Input("signature", (paths.signature,)),
            Input("calib", (paths.calib,)),
        ]

    def params(self) -> dict[str, Any]:
        return {"variants": [list(v) for v in self.variants]}

    def outputs(self) -> dict[str, Path]:
        return {"ranges": self.paths.ranges, "calibrated": self.paths.calibrated}

    def run(self, ctx: RunContext) -> None:
        import numpy as np

        from buildsys.stages.calibration import check_fit
        from buildsys.stages.datasets import read_npz, write_npz
        from buildsys.tflow.quantize import activation_ranges
        from buildsys.tflow.samples import to_stored

        signature = Signature.read(ctx.input("signature"))
        # samples are kept in the source model's layout; the float model may store them permuted
        calib = read_npz(ctx.input("calib"))
        check_fit(self.recipe, "calib", calib, signature.inputs)
        doc, models = activation_ranges(
            ctx.input("float"), signature, to_stored(calib, signature.inputs), self.variants
        )
        ctx.out["ranges"].write_text(json.dumps(doc, sort_keys=True, separators=(",", ":")), "utf-8")
        write_npz(ctx.out["calibrated"], {k: np.frombuffer(v, np.uint8) for k, v in models.items()})
