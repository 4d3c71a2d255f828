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


def _ids(plan: Plan) -> dict[str, str]:
    """Task name -> node id, unique and valid in dot and Mermaid (ASCII letters, digits, '_').

    Readable ids fold '-', '.' and '/' into '_', so recipes `a-b`, `a_b` and `a.b` would
    share one; a name whose id is taken gets the next free numeric suffix."""
    ids: dict[str, str] = {}
    taken: set[str] = set()
    for stage in plan.stages():
        base = "n_" + "".join(c if c.isascii() and c.isalnum() else "_" for c in stage.task_name)
        node, n = base, 1
        while node in taken:
            n += 1
            node = f"{base}_{n}"
        ids[stage.task_name] = node
        taken.add(node)
    return ids


def dot(plan: Plan) -> str:
    ids = _ids(plan)
    lines = ["digraph buildsys {", "  rankdir=LR;", "  node [shape=box];"]
    for stage in plan.stages():
        label = stage.task_name.replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'  {ids[stage.task_name]} [label="{label}"];')
    lines += [f"  {ids[u.task_name]} -> {ids[d.task_name]};" for u, d in edges(plan)]
    return "\n".join(lines + ["}"])


def mermaid(plan: Plan) -> str:
    ids = _ids(plan)
    lines = ["flowchart LR"]
    for stage in plan.stages():
        label = stage.task_name.replace('"', "#quot;")
        lines.append(f'  {ids[stage.task_name]}["{label}"]')
    lines += [f"  {ids[u.task_name]} --> {ids[d.task_name]}" for u, d in edges(plan)]
    return "\n".join(lines)
