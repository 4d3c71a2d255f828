"""Recipes -> stage instances, with the plan-time checks that need no model loading."""

from __future__ import annotations

from dataclasses import dataclass, field

from buildsys.devices import Catalogue
from buildsys.errors import BuildsysError, UsageError
from buildsys.recipe.model import Recipe
from buildsys.stages import Stage, StageEnv
from buildsys.stages.calibration import Calibration
from buildsys.stages.convert import Convert
from buildsys.stages.fetch import Fetch
from buildsys.stages.prepare import Prepare
from buildsys.stages.quantize import Quantize
from buildsys.stages.report import Report
from buildsys.stages.validate import Validate
from buildsys.tools import tool_versions
from buildsys.workspace import Workspace


@dataclass
class RecipePlan:
    recipe: Recipe
    stages: list[Stage] = field(default_factory=list)


@dataclass
class Plan:
    env: StageEnv
    recipes: list[RecipePlan]

    def stages(self) -> list[Stage]:
        return [s for rp in self.recipes for s in rp.stages]


class PlanError(UsageError):
    """Several recipes failed plan-time checks; every message is kept."""

    def __init__(self, errors: list[BuildsysError]):
        self.errors = errors
        super().__init__("\n".join(e.message for e in errors), hint=errors[0].hint)


def make_plan(recipes: list[Recipe], ws: Workspace, catalogue: Catalogue | None = None) -> Plan:
    catalogue = catalogue or Catalogue()
    env = StageEnv(ws=ws, tools=tool_versions())
    plans, errors = [], []
    for recipe in recipes:
        try:
            plans.append(plan_recipe(recipe, catalogue, env))
        except BuildsysError as exc:
            errors.append(exc)
    if errors:
        raise errors[0] if len(errors) == 1 else PlanError(errors)
    return Plan(env=env, recipes=plans)


def plan_recipe(recipe: Recipe, catalogue: Catalogue, env: StageEnv) -> RecipePlan:
    devices = {t.name: _device(recipe, catalogue, i, t.device) for i, t in enumerate(recipe.targets)}
    stages: list[Stage] = [Fetch(recipe)]
    if recipe.source.format == "onnx":
        stages.append(Prepare(recipe))
    calib = Calibration(recipe)
    if calib.sets:
        stages.append(calib)
    stages.append(Convert(recipe))
    for target in recipe.targets:
        device = devices[target.name]
        if device.needs_calibration and recipe.calibration is None:
            raise UsageError(
                f"{recipe.path}: target '{target.name}' ({device.name}) quantizes to int8 and "
                "needs calibration data",
                hint="add a `calibration:` section with one data source per model input",
            )
        per_target: list[Stage] = [Quantize(recipe, target, device)]
        if recipe.source.format != "tflite":
            per_target.append(Validate(recipe, target, device))
        upstream = tuple(stages) + tuple(per_target)
        per_target.append(Report(recipe, target, device, upstream=upstream))
        stages += per_target
    for stage in stages:
        stage.check()
    return RecipePlan(recipe, stages)


def _device(recipe: Recipe, catalogue: Catalogue, index: int, name: str):
    try:
        return catalogue.get(name)
    except UsageError as exc:
        raise UsageError(f"{recipe.path}: targets[{index}].device: {exc.message}", hint=exc.hint) from None


def edges(plan: Plan) -> list[tuple[Stage, Stage]]:
    """(upstream, downstream) pairs: downstream reads a file upstream writes."""
    producers = {str(path): s for s in plan.stages() for path in s.outputs().values()}
    pairs = []
    for stage in plan.stages():
        ups = {producers[str(f)].task_name: producers[str(f)] for f in stage.input_files() if str(f) in producers}
        pairs += [(up, stage) for _, up in sorted(ups.items())]
    return pairs
