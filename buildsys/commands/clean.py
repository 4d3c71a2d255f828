"""`buildsys clean`: remove build outputs; with --cache, all build state too."""

from __future__ import annotations

import shutil
from typing import Any

from buildsys.commands.common import load_recipes, workspace
from buildsys.ui import Ui


def run(args: Any, ui: Ui) -> int:
    ws = workspace(args)
    for recipe in load_recipes(args, ws):
        for path in (recipe.output, ws.records_dir / recipe.name):
            if path.exists():
                shutil.rmtree(path)
                ui.line(f"  removed {ws.show(path)}")
    if args.cache and ws.state.exists():
        shutil.rmtree(ws.state)
        ui.line(f"  removed {ws.show(ws.state)}")
    return 0
