"""`buildsys build --scheduler tcp://host:8786`: the build's stages as Dask tasks.

One task per stage, each depending on the futures of the stages it reads from,
so Dask honours the stage graph. Outputs travel through the remote cache (the
workers share no file system with the client): a task pushes what it builds,
and its downstream tasks, on any worker, restore it from there.

When every task is done, the client runs the ordinary local build: each stage
restores from the remote, and locks, index and reports are written as always;
a stage built on the cluster is shown as `ran` with the worker's address.

A stage that needs an external binary asks Dask for a worker resource named
after the tool (TOOL_RESOURCES); a worker that has it is started with e.g.
`dask worker tcp://host:8786 --resources "edgetpu_compiler=1"`. Vela is a pip
package, installed with buildsys on every worker, so it needs none.

`distributed` is imported only here, and this module only with --scheduler.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from buildsys.errors import UsageError
from buildsys.failures import Failure
from buildsys.outcomes import StageOutcome
from buildsys.plan import Plan, upstreams
from buildsys.runner import Outcome, run_plan
from buildsys.stages.base import Stage

if TYPE_CHECKING:
    from buildsys.stages.compile import Compile

CONNECT_TIMEOUT = 10.0  # seconds to reach the scheduler: a wrong address must not hang the build
TOOL_TIMEOUT = 60.0  # seconds for a worker offering a tool's resource to answer
# compile.tool -> the Dask worker resource a worker that has the binary offers
TOOL_RESOURCES = MappingProxyType({"edgetpu_compiler": "edgetpu_compiler"})
SKIPPED = (StageOutcome.FAILED, StageOutcome.SKIPPED)


@dataclass
class ClusterOutcome(Outcome):
    """A stage that ran on a Dask worker and was restored here from the remote."""

    worker: str = ""

    def as_json(self) -> dict[str, Any]:
        return {**super().as_json(), "worker": self.worker}


def run_on_cluster(plan: Plan, address: str, ui: Any, jobs: int = 1, on_event: Callable | None = None) -> list[Outcome]:
    """Build `plan` on the cluster at `address`, then finish locally; the outcomes run_plan returns."""
    from buildsys.cluster.bundle import make_bundle

    notify = on_event or (lambda kind, data: None)
    require_remote(plan)
    client = connect(address)
    try:
        from buildsys.cluster.worker import PLANS, PlanCache

        client.register_plugin(PlanCache(), name=PLANS)
        pin_compilers(client, plan, address)
        results = build_on(client, plan, make_bundle(plan), notify)
    finally:
        client.close()
    return finish(plan, results, ui, jobs, notify)


def require_remote(plan: Plan) -> None:
    remote = plan.env.remote
    where = "--remote URL, BUILDSYS_REMOTE, or remote.url in buildsys.yaml"
    if remote is None:
        raise UsageError(
            "--scheduler needs a remote cache: the workers send stage outputs back through it",
            hint=f"set {where} (a bucket or directory every worker and this machine can reach)",
        )
    if not remote.writable:
        raise UsageError(
            f"--scheduler needs the remote cache {remote.shown()} in read-write mode (it is {remote.mode})",
            hint="unset BUILDSYS_REMOTE_MODE or set it to read-write (or remote.mode in buildsys.yaml)",
        )


def connect(address: str) -> Any:
    try:
        from distributed import Client
    except ImportError as exc:
        raise UsageError(
            "--scheduler needs Dask's distributed package, which is not installed", hint="pip install 'buildsys[dask]'"
        ) from exc
    try:
        client = Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except Exception as exc:  # refused, unresolvable, a bad URL: all the user's to fix
        raise UsageError(
            f"cannot reach the Dask scheduler at {address} within {CONNECT_TIMEOUT:.0f}s ({type(exc).__name__}: {exc})",
            hint="check the address (tcp://host:8786) and that `dask scheduler` runs there",
        ) from None
    if not client.scheduler_info().get("workers"):  # tasks would wait for a worker forever
        client.close()
        raise UsageError(f"the Dask scheduler at {address} has no workers", hint=f"start some: dask worker {address}")
    return client


def pin_compilers(client: Any, plan: Plan, address: str) -> None:
    """An external compiler's version enters its stage's key: take it from a worker that has
    the tool, since this machine may not (the keys of client and workers must agree)."""
    from buildsys.cluster.worker import tool_version

    tools = sorted({s.tool for s in _compiles(plan) if s.tool in TOOL_RESOURCES})
    for tool in tools:
        future = client.submit(tool_version, tool, resources={TOOL_RESOURCES[tool]: 1}, pure=False)
        try:
            version = future.result(timeout=TOOL_TIMEOUT)
        except TimeoutError:
            future.cancel()
            raise UsageError(
                f"no worker of the Dask cluster at {address} offers {tool} within {TOOL_TIMEOUT:.0f}s",
                hint=f"start one where {tool} is installed: "
                f'dask worker {address} --resources "{TOOL_RESOURCES[tool]}=1"',
            ) from None
        for stage in _compiles(plan):
            if stage.tool == tool:
                stage.version = version
    if tools:  # a compiled stage writes more files: the build folders must list them for `clean`
        from buildsys.plan import claim_outputs

        claim_outputs(plan)


def _tool(stage: Stage) -> str | None:
    from buildsys.stages.compile import Compile

    return stage.tool if isinstance(stage, Compile) else None


def _compiles(plan: Plan) -> list[Compile]:
    from buildsys.stages.compile import Compile

    return [s for s in plan.stages() if isinstance(s, Compile)]


def build_on(client: Any, plan: Plan, bundle: Any, notify: Callable) -> dict[str, dict[str, Any]]:
    """Submit one task per stage (in dependency order), wait for all; {stage: result}."""
    from buildsys.cluster.worker import run_stage

    ups, build_id = upstreams(plan), plan.env.build_id
    futures: dict[str, Any] = {}
    for stage in plan.stages():  # plan order is dependency order: upstream futures exist
        name = stage.task_name
        tool = _tool(stage) or ""  # "": no compiler, no resource
        futures[name] = client.submit(
            run_stage, bundle, name, build_id, *[futures[u] for u in ups[name]],
            key=f"buildsys-{build_id}-{name}", retries=2, pure=False,
            resources={TOOL_RESOURCES[tool]: 1} if tool in TOOL_RESOURCES else None,
        )  # fmt: skip
    notify("started", f"{len(futures)} stages on the cluster")
    client.gather(list(futures.values()), errors="skip")  # waits for all; failures are read below
    results: dict[str, dict[str, Any]] = {}
    for name, future in futures.items():
        results[name] = _result(name, future, [results[u] for u in ups[name]])
    return results


def _result(name: str, future: Any, upstream: list[dict[str, Any]]) -> dict[str, Any]:
    """A task's result; a task Dask gave up on (a worker lost three times) is a failure."""
    if future.status == "finished":
        return future.result()
    if any(u["outcome"] in SKIPPED for u in upstream):  # Dask fails the dependents of a failed task
        return {"outcome": StageOutcome.SKIPPED, "seconds": 0.0, "worker": "", "warnings": []}
    try:
        why = f"{type(future.exception()).__name__}: {future.exception()}"
    except Exception as exc:  # cancelled: there is no exception to ask for
        why = type(exc).__name__
    error = Failure(f"the Dask cluster could not run {name}: {why}", "ClusterError")
    return {"outcome": StageOutcome.FAILED, "seconds": 0.0, "worker": "", "warnings": [], "error": error.to_dict()}


def finish(plan: Plan, results: dict[str, dict], ui: Any, jobs: int, notify: Callable) -> list[Outcome]:
    """The local build: every stage restores from the remote; recipes that failed on the cluster
    are not built again here, their failures are reported as the cluster met them."""
    failed = {s.recipe.name for s in plan.stages() if results[s.task_name]["outcome"] in SKIPPED}
    ok = Plan(plan.env, [rp for rp in plan.recipes if rp.recipe.name not in failed])
    shown = _shown(results, ui, notify)
    outcomes = [_where(o, results) for o in run_plan(ok, jobs, shown)] if ok.recipes else []
    for rp in plan.recipes:
        if rp.recipe.name in failed:
            outcomes += [_from_cluster(s, plan, results[s.task_name], shown) for s in rp.stages]
    order = [s.task_name for s in plan.stages()]
    return sorted(outcomes, key=lambda o: order.index(o.task_name))


def _where(o: Outcome, results: dict[str, dict]) -> Outcome:
    """Restored here from what a worker ran: say it ran, and where."""
    r = results.get(o.task_name, {})
    if r.get("outcome") != StageOutcome.RAN or o.outcome != StageOutcome.RESTORED_REMOTE:
        return o
    fields = {
        **{f.name: getattr(o, f.name) for f in dataclass_fields(o)},
        "outcome": StageOutcome.RAN,
        "seconds": r["seconds"],
        "notes": list(r["warnings"]) + o.notes,
    }
    return ClusterOutcome(**fields, worker=r["worker"])


def _shown(results: dict[str, dict], ui: Any, notify: Callable) -> Callable:
    def on_event(kind: str, data: Any) -> None:
        if kind == "finished":
            data = _where(data, results)
        if isinstance(data, ClusterOutcome):
            ui.outcome_line(StageOutcome.RAN, data.task_name, data.seconds, extra=f"on {data.worker}")
        else:
            notify(kind, data)

    return on_event


def _from_cluster(stage: Stage, plan: Plan, r: dict[str, Any], shown: Callable) -> Outcome:
    """A stage of a recipe that failed on the cluster: its result there; what succeeded is
    restored here (no doit run: the failed stages must not be built again on this machine)."""
    from buildsys.stages.engine import decode_failure, execute

    outcome, seconds = StageOutcome.FAILED, r["seconds"]
    error = Failure.from_dict(r["error"]) if r.get("error") else None
    if r["outcome"] == StageOutcome.SKIPPED:
        seconds, error = 0.0, Failure.skipped("not run: an input stage failed")
    elif r["outcome"] != StageOutcome.FAILED:
        done = execute(stage, plan.env)
        if isinstance(done, dict):
            outcome = StageOutcome(done["outcome"])
        else:
            error = decode_failure(getattr(done, "message", str(done)))
    result = _where(
        Outcome(stage.recipe.name, stage.target_name, stage.kind, outcome, seconds, error), {stage.task_name: r}
    )
    shown("finished", result)
    return result
