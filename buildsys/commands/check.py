"""`buildsys check`: validate recipes (schema, devices, data sources) without building."""

from __future__ import annotations

from typing import Any

from buildsys.commands.common import plan
from buildsys.ui import Ui


def run(args: Any, ui: Ui) -> int:
    from buildsys.remote.config import SETTINGS_FILE, remote_config

    p = plan(args)
    remote = remote_config(p.env.ws.root)  # the workspace file and BUILDSYS_REMOTE*: exit 2 when malformed
    if (p.env.ws.root / SETTINGS_FILE).is_file():
        ui.line(f"  ok  {SETTINGS_FILE}  (remote: {f'{remote.shown()}, {remote.mode}' if remote else 'none'})")
    for rp in p.recipes:
        ui.line(f"  ok  {p.env.ws.show(rp.recipe.path)}  ({len(rp.stages)} stages)")
    ui.line(f"{len(p.recipes)} recipes valid", style="bold")
    return 0
