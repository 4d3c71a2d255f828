"""`buildsys clean`: remove what builds wrote; with --cache, all build state too.

Only files recorded as written by buildsys are deleted (see buildsys/outputs.py),
and only while holding the workspace lock, so a running build is never cut off.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from buildsys.commands.common import load_recipes, workspace
from buildsys.errors import BuildsysError
from buildsys.outputs import release, remove_tree_we_own
from buildsys.recipe.model import Recipe
from buildsys.ui import Ui
from buildsys.workspace import Workspace
from buildsys.wslock import exclusive, lock_file


def run(args: Any, ui: Ui) -> int:
    ws = workspace(args)
    recipes = load_recipes(args, ws)
    with exclusive(ws, "clean"):
        planned = _planned(recipes, ws)
        for recipe in recipes:
            _clean_output(ws, recipe, planned.get(recipe.name, []), ui)
            if remove_tree_we_own(ws.records_dir / recipe.name):
                ui.line(f"  removed {ws.show(ws.records_dir / recipe.name)}")
        _update_index(ws, {r.name for r in recipes}, ui)
        if args.cache and ws.state.is_dir():
            _clear_state(ws)
            ui.line(f"  removed {ws.show(ws.state)}")
    return 0


def _planned(recipes: list[Recipe], ws: Workspace) -> dict[str, list[Path]]:
    """Each recipe's output files as the plan names them; {} when a recipe cannot be planned
    (a missing device file): the marker alone then says what was written."""
    from buildsys.plan import make_plan

    try:
        plan = make_plan(recipes, ws)
    except BuildsysError:
        return {}
    return {rp.recipe.name: [p for s in rp.stages for p in s.outputs().values()] for rp in plan.recipes}


def _clean_output(ws: Workspace, recipe: Recipe, planned: list[Path], ui: Ui) -> None:
    output = recipe.output
    if not output.exists():
        return
    done = release(output, recipe.name, planned)
    if done is None:
        ui.warning(
            f"{ws.show(output)} has no buildsys marker, so nothing in it was removed "
            "(a build claims its folder; remove this one yourself if it holds only build output)"
        )
        return
    if done.removed or not output.exists():
        ui.line(
            f"  removed {ws.show(output)}"
            if not output.exists()
            else f"  removed {len(done.removed)} files in {ws.show(output)}"
        )
    if done.kept:
        names = ", ".join(ws.show(p) for p in done.kept[:5]) + (
            f" and {len(done.kept) - 5} more" if len(done.kept) > 5 else ""
        )
        ui.warning(f"kept {len(done.kept)} files buildsys did not write: {names}")


def _clear_state(ws: Workspace) -> None:
    # the lock file goes last, while still held, so no build can start on half-removed state
    keep = lock_file(ws)
    for child in ws.state.iterdir():
        if child == keep:
            continue
        if child.is_dir() and not child.is_symlink():
            remove_tree_we_own(child)
        else:
            child.unlink(missing_ok=True)
    keep.unlink(missing_ok=True)
    try:
        ws.state.rmdir()
    except OSError:
        pass  # a build created something meanwhile: it holds the new lock


def _update_index(ws: Any, cleaned: set[str], ui: Ui) -> None:
    """The index links reports: cleaned recipes leave it, and it goes with the last one."""
    from buildsys.commands.index import forget, html_path

    page = html_path(ws)
    existed = page.is_file()
    if forget(ws, cleaned) is None and existed:
        ui.line(f"  removed {ws.show(page)}")
