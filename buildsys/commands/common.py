"""Steps every command shares: workspace, recipes, plan."""

from __future__ import annotations

from typing import Any

from buildsys.recipe import RecipeLoader, discover
from buildsys.recipe.model import Recipe
from buildsys.workspace import Workspace


def workspace(args: Any) -> Workspace:
    return Workspace.at(args.directory)


def load_recipes(args: Any, ws: Workspace) -> list[Recipe]:
    paths = [ws.root / p for p in args.paths]  # like make -C: relative to the workspace
    loader = RecipeLoader(memo=ws.state / "valid-recipes.json" if ws.state.is_dir() else None)
    return loader.load_all(discover(paths, ws.root), ws.root)


def plan(args: Any):
    from buildsys.plan import make_plan

    ws = workspace(args)
    return make_plan(load_recipes(args, ws), ws)
