"""`buildsys build`: run stale stages, then write (or, with --locked, check) lockfiles."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from buildsys import lockfile
from buildsys.commands.common import plan as make_plan
from buildsys.errors import LockMismatch
from buildsys.hashing import FileHasher
from buildsys.outcomes import StageOutcome
from buildsys.plan import Plan, RecipePlan, claim_outputs
from buildsys.runner import Outcome, run_plan
from buildsys.schemafiles import load_schema
from buildsys.shard import Shard, parse_shard, shard_plan
from buildsys.ui import Ui
from buildsys.wslock import exclusive


def run(args: Any, ui: Ui) -> int:
    started = time.perf_counter()
    if args.summary:
        from buildsys.commands.summary import check_summary_path

        check_summary_path(Path(args.summary))
    shard = parse_shard(args.shard) if getattr(args, "shard", None) else None
    plan = make_plan(args)
    use_remote(plan, args)
    if shard is not None:
        plan = shard_plan(plan, shard, _times(plan, ui))
    for rp in plan.recipes:  # a directory where a lock goes fails before the build, not after
        lockfile.check_writable(lockfile.lock_path(rp.recipe))
    if args.locked:
        precheck_locks(plan)
    with exclusive(plan.env.ws):
        claim_outputs(plan)
        try:
            if getattr(args, "scheduler", None):  # stages as Dask tasks, outputs through the remote
                from buildsys.cluster.schedule import run_on_cluster

                outcomes = run_on_cluster(plan, args.scheduler, ui, jobs=args.jobs, on_event=_events(ui))
            else:
                outcomes = run_plan(plan, jobs=args.jobs, on_event=_events(ui))
            _keep_times(plan, shard, outcomes, ui)
        finally:
            forget_remote_state(plan)
        ui.stop_progress()
        code = _failure_code(outcomes)
        if shard is None:
            lock_code = settle_locks(plan, outcomes, ui, locked=args.locked)
            from buildsys.commands.index import write_index

            write_index(plan, outcomes)
        else:  # a shard builds part of a recipe: its lock and the index come from the final build
            lock_code = 0
            ui.line(
                f"shard {shard}: {_share(plan)}; lockfiles and the index are left to a build without --shard",
                style="dim",
            )
    if args.json:
        ui.data([o.as_json() for o in outcomes])
    if args.summary:
        from buildsys.commands.summary import append_summary

        append_summary(Path(args.summary), plan, outcomes)
    _summary(ui, outcomes, time.perf_counter() - started)
    for o in outcomes:
        for note in o.notes:
            ui.warning(f"{o.task_name}: {note}")
    for o in outcomes:
        if o.outcome == StageOutcome.FAILED and o.error and not o.error.is_skip:
            ui.failure(o.task_name, o.error)
    return code or lock_code


def use_remote(plan: Plan, args: Any) -> None:
    """Point the build at the shared cache, if the workspace, environment or --remote names one."""
    import uuid

    from buildsys.remote.config import remote_config

    plan.env.remote = remote_config(plan.env.ws.root, getattr(args, "remote", None))
    plan.env.build_id = uuid.uuid4().hex


def forget_remote_state(plan: Plan) -> None:
    if plan.env.remote is None:
        return
    from buildsys.fsutil import remove
    from buildsys.remote.link import down_marker

    remove(down_marker(plan.env.ws, plan.env.build_id))


def _times(plan: Plan, ui: Ui) -> dict[str, float]:
    if plan.env.remote is None:
        return {}
    from buildsys.remote.times import read_times

    times, warning = read_times(plan.env.remote)
    if warning:
        from buildsys.remote.link import mark_down

        ui.warning(warning)
        mark_down(plan.env.ws, plan.env.build_id, warning)  # the stages stay quiet
    return times


def _keep_times(plan: Plan, shard: Shard | None, outcomes: list[Outcome], ui: Ui) -> None:
    """Stage times for the next build's --shard balance, kept on a writable remote."""
    if plan.env.remote is None or not plan.env.remote.writable:
        return
    from buildsys.remote.link import down_marker
    from buildsys.remote.times import ALL, keep_times

    if down_marker(plan.env.ws, plan.env.build_id).exists():
        return  # said once already

    ran = {o.task_name: o.seconds for o in outcomes if o.outcome == StageOutcome.RAN}
    slot = f"shard-{shard.index}-of-{shard.count}" if shard else ALL
    if warning := keep_times(plan.env.remote, slot, ran):
        ui.warning(warning)


def _share(plan: Plan) -> str:
    targets = sorted({f"{s.recipe.name}/{s.target_name}" for s in plan.stages() if s.target_name is not None})
    shown = ", ".join(targets[:4]) + (f" and {len(targets) - 4} more" if len(targets) > 4 else "")
    return f"{len(targets)} target{'s' if len(targets) != 1 else ''} ({shown or 'none'})"


def _events(ui: Ui):
    def on_event(kind: str, data: Any) -> None:
        if kind == "started":
            ui.progress(f"building {data}")
        elif kind == "finished":
            o: Outcome = data
            if _word(o) == StageOutcome.SKIPPED:
                ui.outcome_line(StageOutcome.SKIPPED, o.task_name, extra="an input stage failed")
            elif o.outcome != StageOutcome.UP_TO_DATE or ui.verbose:
                ui.outcome_line(o.outcome, o.task_name, o.seconds if o.outcome != StageOutcome.UP_TO_DATE else None)
        elif kind == "error":
            ui.err.print(f"error: {data}")
        elif kind == "warning":
            ui.warning(data)

    return on_event


def _word(o: Outcome) -> StageOutcome:
    return StageOutcome.SKIPPED if o.error and o.error.is_skip else o.outcome


def _failure_code(outcomes: list[Outcome]) -> int:
    codes = [int(o.error.exit_code) for o in outcomes if o.outcome == StageOutcome.FAILED and o.error]
    return max(codes, default=0)


def _summary(ui: Ui, outcomes: list[Outcome], seconds: float) -> None:
    words = [_word(o) for o in outcomes]
    counts = {k: words.count(k) for k in StageOutcome}
    parts = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
    ui.line(f"{len(outcomes)} stages: {parts or 'nothing to do'} in {seconds:.2f}s", style="bold")


def precheck_locks(plan: Plan) -> None:
    """Fail before building when the recipe, params or tools already differ from the lock."""
    problems: list[str] = []
    locked_tools: dict[str, str] = {}
    for rp in plan.recipes:
        path = lockfile.lock_path(rp.recipe)
        shown = plan.env.ws.show(path)
        old = lockfile.read(path)
        if old is None:
            problems.append(f"{shown}: no lockfile (run `buildsys build` without --locked once)")
            continue
        if old.get("recipe_digest") != rp.recipe.digest:
            problems.append(f"{shown}: recipe {rp.recipe.path.name} changed since the lock was written")
        tools = {k: plan.env.tools[k] for k in old.get("tools", {}) if k in plan.env.tools}
        problems += [f"{shown}: {line}" for line in lockfile.diff(old.get("tools"), tools, "tools")]
        locked_tools.update({k: str(v) for k, v in old.get("tools", {}).items() if tools.get(k, v) != v})
        locked_stages = old.get("stages", {})
        for stage in rp.stages:
            entry = locked_stages.get(stage.local_id, {})
            where = f"stages.{stage.local_id}.params"
            problems += [f"{shown}: {line}" for line in lockfile.diff(entry.get("params"), stage.params(), where)]
    if problems:
        raise LockMismatch(
            "--locked: the build would change lockfiles:\n  " + "\n  ".join(problems),
            hint=install_hint(locked_tools),
        )


def install_hint(locked: dict[str, str]) -> str | None:
    """The command that puts the locked tool versions back, when tools are what differs."""
    if not locked:
        return None
    from buildsys.tools import pip_requirement

    python = locked.pop("python", None)
    pins = " ".join(f"'{pip_requirement(name, version)}'" for name, version in sorted(locked.items()))
    parts = [f"install the locked versions: pip install {pins}"] if pins else []
    if python:
        parts.append(f"the lock was made with Python {python}")
    parts.append("or, in a buildsys checkout, `pip install -c constraints.txt -e .` installs the tested set")
    return "; ".join(parts)


def settle_locks(plan: Plan, outcomes: list[Outcome], ui: Ui, locked: bool) -> int:
    failed = {o.recipe for o in outcomes if o.outcome == StageOutcome.FAILED}
    hasher = FileHasher(plan.env.ws.hash_db)
    schema = load_schema("lock.schema.json")
    mismatches: list[str] = []
    for rp in plan.recipes:
        if rp.recipe.name in failed:
            continue
        mismatches += _settle(rp, plan, hasher, schema, ui, locked)
    hasher.save()
    if mismatches:
        ui.error(LockMismatch("--locked: the build would change lockfiles:\n  " + "\n  ".join(mismatches)))
        return LockMismatch.exit_code
    return 0


def _settle(rp: RecipePlan, plan: Plan, hasher: FileHasher, schema: dict, ui: Ui, locked: bool) -> list[str]:
    path = lockfile.lock_path(rp.recipe)
    data = lockfile.lock_data(rp.recipe, rp.stages, hasher, plan.env.tools)
    if locked:
        return [f"{plan.env.ws.show(path)}: {line}" for line in lockfile.diff(lockfile.read(path), data)]
    if lockfile.write(path, data, schema):
        ui.line(f"  wrote {plan.env.ws.show(path)}", style="dim")
    return []
