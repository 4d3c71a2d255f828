"""`buildsys graph`: the stage graph as text, Graphviz dot or Mermaid."""

from __future__ import annotations

from typing import Any

from buildsys.commands.common import plan as make_plan
from buildsys.plan import Plan, edges
from buildsys.ui import Ui


def run(args: Any, ui: Ui) -> int:
    plan = make_plan(args)
    render = {"text": text, "dot": dot, "mermaid": mermaid}[args.format]
    ui.quiet = False
    ui.line(render(plan))
    return 0


def text(plan: Plan) -> str:
    ups: dict[str, list[str]] = {}
    for up, down in edges(plan):
        ups.setdefault(down.task_name, []).append(up.task_name)
    lines = []
    for stage in plan.stages():
        after = ups.get(stage.task_name)
        lines.append(stage.task_name + (f"  <- {', '.join(after)}" if after else ""))
    return "\n".join(lines)


def _id(name: str) -> str:
    return "n_" + "".join(c if c.isalnum() else "_" for c in name)


def dot(plan: Plan) -> str:
    lines = ["digraph buildsys {", "  rankdir=LR;", "  node [shape=box];"]
    for stage in plan.stages():
        lines.append(f'  {_id(stage.task_name)} [label="{stage.task_name}"];')
    lines += [f"  {_id(u.task_name)} -> {_id(d.task_name)};" for u, d in edges(plan)]
    return "\n".join(lines + ["}"])


def mermaid(plan: Plan) -> str:
    lines = ["flowchart LR"]
    for stage in plan.stages():
        lines.append(f'  {_id(stage.task_name)}["{stage.task_name}"]')
    lines += [f"  {_id(u.task_name)} --> {_id(d.task_name)}" for u, d in edges(plan)]
    return "\n".join(lines)
