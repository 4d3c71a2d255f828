"""`buildsys check`: validate recipes (schema, devices, data sources) without building."""

from __future__ import annotations

from typing import Any

from buildsys.commands.common import plan
from buildsys.ui import Ui


def run(args: Any, ui: Ui) -> int:
    p = plan(args)
    for rp in p.recipes:
        ui.line(f"  ok  {p.env.ws.show(rp.recipe.path)}  ({len(rp.stages)} stages)")
    ui.line(f"{len(p.recipes)} recipes valid", style="bold")
    return 0
