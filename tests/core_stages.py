"""Test-only stages in plain Python, and a workspace with a recipe to hang them on: enough to
drive the real engine, cache and doit runner in milliseconds, with no model and no TensorFlow.

`Upper` upper-cases recipes/words.txt; `Count` counts the words of Upper's output, so an
edit that changes only letter case re-runs Upper, which writes the same bytes (early cutoff).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from buildsys.plan import Plan, RecipePlan
from buildsys.recipe import RecipeLoader
from buildsys.recipe.model import Recipe
from buildsys.runner import run_plan
from buildsys.stages import Input, RunContext, Stage, StageEnv
from buildsys.tools import LOCKED_TOOLS
from buildsys.workspace import Workspace

RECIPE = """\
version: 1
name: words
source:
  onnx: model.onnx
targets:
  - device: cpu-fp32
"""
# fixed, so a lock written by one test run is the next one's
TOOLS = {name: "0-test" for name in LOCKED_TOOLS}


class Upper(Stage):
    kind = "upper"

    def inputs(self) -> list[Input]:
        return [Input("words", (self.recipe.base / "words.txt",))]

    def params(self) -> dict[str, Any]:
        return {"case": "upper"}

    def outputs(self) -> dict[str, Path]:
        return {"upper": self.paths.common / "upper.txt"}

    def run(self, ctx: RunContext) -> None:
        ctx.out["upper"].write_text(ctx.input("words").read_text("utf-8").upper(), "utf-8")


class Count(Stage):
    kind = "count"
    VOLATILE = ("timing",)  # like validate's metrics: named by the lock, never pinned

    def inputs(self) -> list[Input]:
        return [Input("upper", (self.paths.common / "upper.txt",))]

    def outputs(self) -> dict[str, Path]:
        return {"count": self.paths.common / "count.json", "timing": self.paths.common / "timing.txt"}

    def run(self, ctx: RunContext) -> None:
        words = len(ctx.input("upper").read_text("utf-8").split())
        ctx.out["count"].write_text(json.dumps({"words": words}), "utf-8")
        ctx.out["timing"].write_text(f"{id(ctx)}\n", "utf-8")  # differs each run, as a timing would


def words_workspace(root: Path, words: str = "some quiet words\n") -> Workspace:
    recipes = root / "recipes"
    recipes.mkdir(parents=True)
    (recipes / "model.onnx").write_bytes(b"never read: the test stages take words.txt")
    (recipes / "words.txt").write_text(words, "utf-8")
    (recipes / "words.yaml").write_text(RECIPE, "utf-8")
    return Workspace.at(root)


def words_recipe(ws: Workspace) -> Recipe:
    return RecipeLoader().load_all([ws.root / "recipes" / "words.yaml"], ws.root)[0]


def words_plan(ws: Workspace) -> Plan:
    recipe = words_recipe(ws)
    return Plan(env=StageEnv(ws=ws, tools=dict(TOOLS)), recipes=[RecipePlan(recipe, [Upper(recipe), Count(recipe)])])


def build(ws: Workspace) -> dict[str, str]:
    """One build of the words plan through the doit runner: {stage kind: outcome}."""
    return {o.stage: o.outcome for o in run_plan(words_plan(ws))}
