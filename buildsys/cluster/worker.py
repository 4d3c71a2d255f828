"""The Dask task that builds one stage on a worker, and what it needs there.

A task plans the client's recipes in a scratch workspace (one per worker and
bundle), brings the stage's ancestors in (restored from the remote cache, or
already in the scratch workspace's local cache), then executes the stage: it
runs and pushes to the remote, or restores when someone already built it. A
worker lost mid-stage costs nothing half-written: `execute` runs in a temp dir
and pushes objects before the manifest, and Dask runs the task again.

The task returns a small dict; a stage's own failure is a result, not an
exception, so Dask does not retry what would fail the same way again.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from buildsys.cluster.bundle import Bundle, materialise
from buildsys.errors import BuildsysError, StageError
from buildsys.failures import Failure
from buildsys.outcomes import StageOutcome
from buildsys.plan import Plan, upstreams
from buildsys.stages.base import Stage
from buildsys.stages.compile import Compile
from buildsys.stages.keys import static_digest

SKIPPED = (StageOutcome.FAILED, StageOutcome.SKIPPED)
PLANS = "buildsys-plans"


class PlanCache(WorkerPlugin):
    """The plans a worker made this build, by (bundle, recipe, thread): planning a recipe
    (its YAML, schema, device catalogue, tool versions) costs more than most stages, and
    a recipe has a dozen of them. The client registers a fresh one per build."""

    def __init__(self) -> None:
        self.plans: dict[tuple[str, str, int], Plan] = {}


def run_stage(bundle: Bundle, name: str, build_id: str, *upstream: dict[str, Any]) -> dict[str, Any]:
    """Build stage `name`; `upstream` are the results of the stages it reads from."""
    from distributed import get_worker

    address = get_worker().address
    if any(u["outcome"] in SKIPPED for u in upstream):
        return {"outcome": StageOutcome.SKIPPED, "seconds": 0.0, "worker": address, "warnings": []}
    started = time.perf_counter()
    try:
        result = _build(bundle, name, build_id, Path(get_worker().local_directory))
    except BuildsysError as exc:
        result = {"outcome": StageOutcome.FAILED, "error": Failure.of(exc).to_dict(), "warnings": []}
    result.setdefault("seconds", round(time.perf_counter() - started, 3))
    return {**result, "worker": address}


def tool_version(tool: str) -> str | None:
    """The version of an external compiler on the worker this runs on."""
    from buildsys.compilers import COMPILERS

    return COMPILERS[tool].version()


def _build(bundle: Bundle, name: str, build_id: str, scratch: Path) -> dict[str, Any]:
    from buildsys.stages.engine import execute, outputs_intact

    recipe = name.split("/", 1)[0]  # stages read only their own recipe's stages
    plan = _plan(bundle, build_id, scratch / "buildsys" / bundle.digest[:16], recipe)
    stages = {s.task_name: s for s in plan.stages()}
    for stage in ancestors(plan, stages[name]):
        if outputs_intact(stage, plan.env):  # an earlier task here brought it in; same bundle, same key
            continue
        done = execute(stage, plan.env)
        if not isinstance(done, dict):
            return _failed(done, f"(bringing in its input stage {stage.task_name})")
    done = execute(stages[name], plan.env)
    if not isinstance(done, dict):
        return _failed(done)
    if done["outcome"] == StageOutcome.RESTORED:  # from this worker's own cache: the client needs it on the remote
        _ensure_pushed(stages[name], plan, done["key"])
    return {"outcome": done["outcome"], "seconds": done["seconds"], "warnings": done.get("warnings", [])}


def _plan(bundle: Bundle, build_id: str, root: Path, recipe: str) -> Plan:
    from distributed import get_worker

    cache = get_worker().plugins.get(PLANS)
    key = (bundle.digest, recipe, threading.get_ident())  # a plan's env is no thread's to share
    plan = cache.plans.get(key) if isinstance(cache, PlanCache) else None
    if plan is None:
        plan = worker_plan(bundle, build_id, root, recipe)
        if isinstance(cache, PlanCache):
            cache.plans[key] = plan
    plan.env.build_id = build_id
    return plan


def worker_plan(bundle: Bundle, build_id: str, root: Path, recipe: str) -> Plan:
    """The client's plan of `recipe`, made again in the scratch workspace `root` (planning
    all of a monorepo's recipes for each of its stages would cost more than most stages)."""
    from buildsys.plan import make_plan
    from buildsys.recipe import RecipeLoader
    from buildsys.workspace import Workspace

    materialise(bundle, root)
    ws = Workspace.at(root)
    plan = make_plan(RecipeLoader().load_all([root / bundle.recipes[recipe]], root), ws)
    plan.env.remote, plan.env.build_id = bundle.remote, build_id
    for stage in plan.stages():
        # the compiler version the client's keys use
        if isinstance(stage, Compile) and stage.task_name in bundle.compilers:
            stage.version = bundle.compilers[stage.task_name]
    _same_stages(plan, bundle)
    return plan


def _same_stages(plan: Plan, bundle: Bundle) -> None:
    """A worker with other tool versions would make entries under keys the client never asks for."""
    ours = {s.task_name: static_digest(s, plan.env.tools) for s in plan.stages()}
    if ours == {name: bundle.statics.get(name) for name in ours}:
        return
    tools = sorted(plan.env.tools.items())
    differ = [f"{k} {bundle.tools.get(k)}, here {v}" for k, v in tools if bundle.tools.get(k) != v]
    raise StageError(
        "this worker plans the build differently from the client"
        + (f": tools differ (client {'; '.join(differ)})" if differ else ""),
        hint="install the same buildsys and tool versions on the workers as on the client "
        "(`pip install -c constraints.txt -e .` in a buildsys checkout)",
    )


def ancestors(plan: Plan, stage: Stage) -> list[Stage]:
    """Every stage `stage` depends on, directly or not, in plan (dependency) order."""
    ups = upstreams(plan)
    needed: set[str] = set()
    todo = list(ups.get(stage.task_name, ()))
    while todo:
        name = todo.pop()
        if name not in needed:
            needed.add(name)
            todo += ups.get(name, ())
    return [s for s in plan.stages() if s.task_name in needed]


def _failed(fail: Any, where: str = "") -> dict[str, Any]:
    from buildsys.stages.engine import decode_failure

    error = decode_failure(getattr(fail, "message", str(fail)))
    if where:
        error = replace(error, message=f"{error.message} {where}".strip())
    return {"outcome": StageOutcome.FAILED, "error": error.to_dict(), "warnings": []}


def _ensure_pushed(stage: Stage, plan: Plan, key: str) -> None:
    from buildsys.cache import Cache
    from buildsys.remote.link import RemoteLink
    from buildsys.remote.store import RemoteUnavailable

    link = RemoteLink(plan.env.shared_cache(), plan.env.ws, plan.env.build_id, stage.task_name)
    cache = Cache(plan.env.ws.cache_dir)
    manifest = cache.lookup(key)
    try:
        if manifest is None or link.is_down() or link.store.has(link.store.manifest_path(key)):
            return
    except RemoteUnavailable:
        return  # then the client does not find it either, and builds the stage itself
    link.push(key, cache, manifest, 0.0)
