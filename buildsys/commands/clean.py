"""`buildsys clean`: remove build outputs; with --cache, all build state too."""

from __future__ import annotations

import shutil
from typing import Any

from buildsys.commands.common import load_recipes, workspace
from buildsys.ui import Ui


def run(args: Any, ui: Ui) -> int:
    ws = workspace(args)
    recipes = load_recipes(args, ws)
    for recipe in recipes:
        for path in (recipe.output, ws.records_dir / recipe.name):
            if path.exists():
                shutil.rmtree(path)
                ui.line(f"  removed {ws.show(path)}")
    _update_index(ws, {r.name for r in recipes}, ui)
    if args.cache and ws.state.exists():
        shutil.rmtree(ws.state)
        ui.line(f"  removed {ws.show(ws.state)}")
    return 0


def _update_index(ws: Any, cleaned: set[str], ui: Ui) -> None:
    """The index links reports: cleaned recipes leave it, and it goes with the last one."""
    from buildsys.commands.index import forget, html_path

    page = html_path(ws)
    existed = page.is_file()
    if forget(ws, cleaned) is None and existed:
        ui.line(f"  removed {ws.show(page)}")
