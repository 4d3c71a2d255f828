"""Recipes -> stage instances, with the plan-time checks that need no model loading."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from buildsys.devices import Catalogue, Device, ProfileError, with_overrides
from buildsys.documents.files import parse_file, shown_path, sort_problems
from buildsys.documents.yamlmarks import KeyPath
from buildsys.errors import BuildsysError, RecipeError, UsageError
from buildsys.recipe.model import Recipe
from buildsys.stages import Stage, StageEnv
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
from buildsys.tools import LOCKED_TOOLS, STAGE_TOOLS, tool_versions
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
        super().__init__("\n".join(line for e in errors for line in _lines(e)), hint=errors[0].hint)


def _lines(error: BuildsysError) -> list[str]:
    # a recipe's located problems would otherwise shrink to their count ("2 problems in ...")
    if isinstance(error, RecipeError):
        return [f"{p.location()}  {p.key}  {p.message}" for p in error.problems]
    return [error.message]


def make_plan(recipes: list[Recipe], ws: Workspace, catalogue: Catalogue | None = None) -> Plan:
    catalogue = catalogue or Catalogue(workspace=ws.root)
    env = StageEnv(ws=ws, tools=tool_versions(LOCKED_TOOLS + STAGE_TOOLS))
    plans: list[RecipePlan] = []
    errors: list[BuildsysError] = []
    for recipe in recipes:
        try:
            plans.append(plan_recipe(recipe, catalogue, env))
        except BuildsysError as exc:
            errors.append(exc)
    recipe_errors = [e for e in errors if isinstance(e, RecipeError)]
    if len(errors) > 1 and len(recipe_errors) == len(errors):
        raise RecipeError(sort_problems([p for e in recipe_errors for p in e.problems]))
    if errors:
        raise errors[0] if len(errors) == 1 else PlanError(errors)
    return Plan(env=env, recipes=plans)


def plan_recipe(recipe: Recipe, catalogue: Catalogue, env: StageEnv) -> RecipePlan:
    devices, problems = target_devices(recipe, catalogue)
    for i, target in enumerate(recipe.targets):
        problems += _device_fit(recipe, i, devices[target.name]) if target.name in devices else []
    if problems:
        raise located(recipe, env.ws.root, problems)
    stages: list[Stage] = [Fetch(recipe)]
    if recipe.source.exported:
        stages.append(Export(recipe))
    if recipe.source.onnx_graph:
        stages.append(Prepare(recipe))
    calib = Calibration(recipe)
    if calib.sets:
        stages.append(calib)
    if any(d.format == "tflite" for d in devices.values()):
        stages.append(Convert(recipe))
    quantizers = [Quantize(recipe, t, devices[t.name]) for t in recipe.targets]
    if variants := [q.device.op_forms for q in quantizers if q.reads_ranges]:
        stages.append(Ranges(recipe, variants))
    common = tuple(stages)
    for quantize in quantizers:
        stages += target_stages(quantize, common)
    check_inputs(stages)
    return RecipePlan(recipe, stages)


def check_inputs(stages: list[Stage]) -> None:
    """Every stage's cheap input check, all reported at once (a missing model and an empty glob)."""
    failed: dict[str, BuildsysError] = {}  # by message: each target's validate checks the same labels
    for stage in stages:
        try:
            stage.check()
        except BuildsysError as exc:
            failed.setdefault(exc.message, exc)
    if failed:
        errors = list(failed.values())
        raise errors[0] if len(errors) == 1 else PlanError(errors)


def target_stages(quantize: Quantize, common: tuple[Stage, ...]) -> list[Stage]:
    recipe, target, device = quantize.recipe, quantize.target, quantize.device
    stages: list[Stage] = [quantize]
    if device.format == "tflite":  # a TFLite source too: what the build ships must run
        stages.append(Validate(recipe, target, device))
    stages.append(Check(recipe, target, device))
    if device.compile:
        stages.append(Compile(recipe, target, device))
    stages.append(Report(recipe, target, device, upstream=common + tuple(stages)))
    return stages


# (key path in the recipe, message, hint): located in the recipe file only when reported
Found = tuple[KeyPath, str, "str | None"]


def located(recipe: Recipe, workspace: Path, found: list[Found]) -> RecipeError:
    """Plan-time problems shown like load-time ones, with the line of their key.

    The recipe is parsed again for the positions: only on this error path, so a
    plan of valid recipes costs nothing more.
    """
    parsed = parse_file(recipe.path, shown_path(recipe.path, workspace))
    return RecipeError(sort_problems([parsed.at_value(key, message, hint) for key, message, hint in found]))


def _device_fit(recipe: Recipe, index: int, device: Device) -> list[Found]:
    key = ("targets", index, "device")
    # a TFLite source ships as it is: nothing to calibrate
    if device.needs_calibration and recipe.calibration is None and recipe.source.format != "tflite":
        hint = "add a `calibration:` section with one data source per model input"
        return [(key, f"{device.name} quantizes to {device.mode} and needs calibration data", hint)]
    if device.quantization.get("from_model") and recipe.source.format != "onnx":
        message = f"quantization.from_model reads QDQ scales from an ONNX model, and this recipe's source is {recipe.source.format}"
        return [(("targets", index, "quantization"), message, "remove from_model, or build from the QDQ ONNX export")]
    if device.format == "onnx" and not recipe.source.onnx_graph:
        message = f"{device.name} takes the prepared ONNX model, and this recipe's source is {recipe.source.format}"
        return [(key, message, "build from the model's ONNX export, or pick a device that takes TFLite")]
    return []


def target_devices(recipe: Recipe, catalogue: Catalogue) -> tuple[dict[str, Device], list[Found]]:
    """Each target's device with its overrides, and every problem of the recipe's targets."""
    devices: dict[str, Device] = {}
    problems: list[Found] = []
    for i, target in enumerate(recipe.targets):
        try:
            device = catalogue.resolve(target.device, recipe.base)
        except ProfileError:
            raise
        except UsageError as exc:
            problems.append((("targets", i, "device"), exc.message, exc.hint))
            continue
        devices[target.name], wrong = with_overrides(device, target.overrides)
        problems += [(("targets", i, key), message, None) for key, message in wrong]
    return devices, problems


def edges(plan: Plan) -> list[tuple[Stage, Stage]]:
    """(upstream, downstream) pairs: downstream reads a file upstream writes."""
    producers = {str(path): s for s in plan.stages() for path in s.outputs().values()}
    pairs = []
    for stage in plan.stages():
        ups = {producers[str(f)].task_name: producers[str(f)] for f in stage.input_files() if str(f) in producers}
        pairs += [(up, stage) for _, up in sorted(ups.items())]
    return pairs


def upstreams(plan: Plan) -> dict[str, list[str]]:
    """{stage: the stages it reads from}, by task name."""
    ups: dict[str, list[str]] = {s.task_name: [] for s in plan.stages()}
    for up, down in edges(plan):
        ups[down.task_name].append(up.task_name)
    return ups


def claim_outputs(plan: Plan) -> None:
    """Before any stage writes: each recipe's folder is ours, and lists what it may hold."""
    from buildsys.outputs import claim

    for rp in plan.recipes:
        planned = [p for stage in rp.stages for p in stage.outputs().values()]
        claim(rp.recipe.output, rp.recipe.name, planned)
