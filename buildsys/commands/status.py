"""`buildsys status`: every stage up-to-date or stale, with the reason, judged against the lockfile."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from buildsys import lockfile
from buildsys.commands.common import plan as make_plan
from buildsys.hashing import FileHasher
from buildsys.plan import Plan, edges
from buildsys.stages import Stage
from buildsys.stages.base import UNREADABLE
from buildsys.stages.keys import input_digests, static_doc, volatile_files
from buildsys.ui import Ui
from buildsys.workspace import relpath


def run(args: Any, ui: Ui) -> int:
    plan = make_plan(args)
    rows = statuses(plan)
    if args.json:
        ui.data(rows)
        return 0
    for row in rows:
        name = "/".join(p for p in (row["recipe"], row["target"], row["stage"]) if p)
        ui.outcome_line(row["state"], name, extra="; ".join(row["reasons"]))
    for row in rows:  # a build shows these only when the stage runs
        for note in row["notes"]:
            ui.warning("/".join(p for p in (row["recipe"], row["target"], row["stage"]) if p) + f": {note}")
    stale = sum(r["state"] == "stale" for r in rows)
    ui.line(f"{len(rows)} stages: {stale} stale, {len(rows) - stale} up to date", style="bold")
    return 0


def statuses(plan: Plan) -> list[dict[str, Any]]:
    hasher = FileHasher(plan.env.ws.hash_db)
    ups: dict[str, list[Stage]] = {}
    for up, down in edges(plan):
        ups.setdefault(down.task_name, []).append(up)
    rows, stale = [], set()
    volatile = volatile_files(plan.stages())
    for rp in plan.recipes:
        lock, damaged = _lock(rp.recipe)
        for stage in rp.stages:
            entry = lock.get("stages", {}).get(stage.local_id)
            reasons = [damaged] if damaged else reasons_for(stage, entry, hasher, plan, volatile)
            if entry is not None:  # "never built" says it all
                reasons += [f"after {u.local_id}" for u in ups.get(stage.task_name, []) if u.task_name in stale]
            if reasons:
                stale.add(stage.task_name)
            rows.append(
                {
                    "recipe": stage.recipe.name,
                    "target": stage.target_name,
                    "stage": stage.kind,
                    "state": "stale" if reasons else "up-to-date",
                    "reasons": reasons,
                    "notes": _notes(stage),
                }
            )
    hasher.save()
    return rows


def _lock(recipe: Any) -> tuple[dict, str | None]:
    """The recipe's lock, or {} and why it cannot be read: status reports, it does not refuse."""
    try:
        return lockfile.read(lockfile.lock_path(recipe)) or {}, None
    except lockfile.DamagedLock as exc:
        return {}, f"{exc.message.splitlines()[0]}; `buildsys build` rewrites it"


def _notes(stage: Stage) -> list[str]:
    outputs = stage.outputs()
    if not all(p.is_file() for p in outputs.values()):
        return []
    try:
        return stage.notes(outputs)
    except UNREADABLE:
        return []


def reasons_for(
    stage: Stage, entry: dict | None, hasher: FileHasher, plan: Plan, volatile: frozenset[str] = frozenset()
) -> list[str]:
    if entry is None:
        return ["not in the lockfile (never built)"]
    base = stage.recipe.base
    missing = [relpath(p, base) for p in stage.outputs().values() if not p.is_file()]
    if missing:
        return [f"output missing: {m}" for m in missing]
    absent = [relpath(f, base) for f in stage.input_files() if not Path(f).is_file()]
    if absent:
        return [f"input missing: {a}" for a in absent]
    doc = static_doc(stage, plan.env.tools)
    out = []
    if doc["version"] != entry.get("version"):
        out.append(f"stage version {entry.get('version')} -> {doc['version']}")
    out += [f"param {line}" for line in lockfile.diff(entry.get("params"), doc["params"])]
    out += [f"tool {line}" for line in lockfile.diff(entry.get("tools"), doc["tools"])]
    now = input_digests(stage, hasher, volatile)
    out += [f"input {line}" for line in lockfile.diff(entry.get("inputs"), now)]
    for path in stage.outputs().values():
        rel = relpath(path, base)
        pinned = entry.get("outputs", {}).get(rel, {})
        if "sha256" in pinned and pinned["sha256"] != hasher.digest(path):
            out.append(f"output modified: {rel}")
    return out
