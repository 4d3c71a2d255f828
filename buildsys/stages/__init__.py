"""The stage kinds, registered in one place."""

from __future__ import annotations

from types import MappingProxyType

from buildsys.stages.base import Input, RecipePaths, RunContext, Stage, StageEnv
from buildsys.stages.calibration import Calibration
from buildsys.stages.check import Check
from buildsys.stages.compile import Compile
from buildsys.stages.convert import Convert
from buildsys.stages.export import Export
from buildsys.stages.fetch import Fetch
from buildsys.stages.prepare import Prepare
from buildsys.stages.quantize import Quantize
from buildsys.stages.ranges import Ranges
from buildsys.stages.report import Report
from buildsys.stages.validate import Validate

KINDS = MappingProxyType(
    {
        cls.kind: cls
        for cls in (Fetch, Export, Prepare, Calibration, Convert, Ranges, Quantize, Validate, Check, Compile, Report)
    }
)

__all__ = ["KINDS", "Input", "RecipePaths", "RunContext", "Stage", "StageEnv"]
