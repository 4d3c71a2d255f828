"""`buildsys report`: where each target's report.html is, its status, and the workspace index.

Read-only: statuses come from the files the last build left (see
commands/index.py); `--open` shows build/index.html in the default browser.
"""

from __future__ import annotations

import webbrowser
from typing import Any

from buildsys.commands.common import plan as make_plan
from buildsys.commands.index import index_path, rows
from buildsys.errors import UsageError
from buildsys.ui import Ui

MAX_DETAILS = 5


def run(args: Any, ui: Ui) -> int:
    plan = make_plan(args)
    ws = plan.env.ws
    for row in rows(plan, None):
        where = ws.show(row.report) if row.report.is_file() else "no report yet"
        ui.outcome_line(row.status, row.name, extra=where)
        for detail in row.details[:MAX_DETAILS]:  # what failed, for CI logs that cannot open the page
            ui.line(f"{'':13}{detail}", style="red")
    index = index_path(plan)
    if not index.is_file():
        ui.line(f"index: {ws.show(index)} (not written yet: run `buildsys build`)", style="bold")
    else:
        ui.line(f"index: {ws.show(index)}", style="bold")
    if args.open:
        _open(index, ws.show(index))
    return 0


def _open(index: Any, shown: str) -> None:
    if not index.is_file():
        raise UsageError(f"{shown} does not exist yet", hint="run `buildsys build` first; it writes the index")
    if not webbrowser.open(index.as_uri()):
        raise UsageError(
            f"no web browser found to open {shown}",
            hint="open the file yourself, or set the BROWSER environment variable to a browser command",
        )
