"""The task graph on doit, embedded as a library: no dodo.py, our own loader and reporter."""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from doit.cmd_base import TaskLoader2
from doit.doit_cmd import DoitMain
from doit.task import dict_to_task
from doit.tools import config_changed

from buildsys.doitdb import set_aside_if_damaged
from buildsys.errors import BuildsysError, StageError
from buildsys.failures import Failure
from buildsys.lifeline import bind_forked_workers
from buildsys.outcomes import StageOutcome
from buildsys.plan import Plan
from buildsys.stages import Stage
from buildsys.stages.base import UNREADABLE
from buildsys.stages.engine import decode_failure, execute, outputs_intact
from buildsys.stages.keys import static_digest


@dataclass
class Outcome:
    recipe: str
    target: str | None
    stage: str
    outcome: StageOutcome
    seconds: float
    error: Failure | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def task_name(self) -> str:
        """recipe/target/stage, as the stage's task is named."""
        return "/".join(p for p in (self.recipe, self.target, self.stage) if p)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "recipe": self.recipe,
            "target": self.target,
            "stage": self.stage,
            "outcome": self.outcome,
            "seconds": self.seconds,
        }
        if self.error:
            out["error"] = self.error.to_dict()
        if self.notes:
            out["notes"] = self.notes
        return out


@dataclass
class Sink:
    """Where the reporter sends events; doit hands it to the reporter as its outstream."""

    stages: dict[str, Stage]
    on_event: Callable[[str, Outcome | str], None] = lambda kind, data: None
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    started: dict[str, float] = field(default_factory=dict)

    def write(self, text: str) -> None:  # doit writes to its outstream only in its own reporters
        pass

    def finish(
        self,
        name: str,
        outcome: StageOutcome,
        seconds: float | None = None,
        error: Failure | None = None,
        warnings: list[str] | None = None,
    ) -> None:
        stage = self.stages[name]
        if seconds is None:
            seconds = round(time.perf_counter() - self.started.get(name, time.perf_counter()), 3)
        if error is None and (judged := stage.judged()):
            error, outcome = Failure.of(judged), StageOutcome.FAILED
        result = Outcome(
            stage.recipe.name,
            stage.target_name,
            stage.kind,
            outcome,
            seconds,
            error,
            # warnings: what this run of the stage met (a damaged cache entry), said once;
            # an up-to-date stage said its notes before; `buildsys status` repeats them on demand
            list(warnings or []) + (_notes(stage) if error is None and outcome != StageOutcome.UP_TO_DATE else []),
        )
        self.outcomes[name] = result
        self.on_event("finished", result)


def _notes(stage: Stage) -> list[str]:
    # read from the committed outputs, so a restored stage warns like a fresh one
    try:
        return stage.notes(stage.outputs())
    except UNREADABLE:
        return []


class Reporter:
    """doit reporter interface; forwards to the Sink passed as `outstream`."""

    def __init__(self, outstream: Sink, options: dict[str, Any]):
        self.sink = outstream

    def initialize(self, tasks: Any, selected_tasks: Any) -> None:
        pass

    def get_status(self, task: Any) -> None:
        pass

    def execute_task(self, task: Any) -> None:
        self.sink.started[task.name] = time.perf_counter()
        self.sink.on_event("started", task.name)

    def add_success(self, task: Any) -> None:
        values = task.values or {}
        outcome = StageOutcome(values.get("outcome", StageOutcome.RAN))
        self.sink.finish(task.name, outcome, values.get("seconds"), warnings=values.get("warnings"))

    def skip_uptodate(self, task: Any) -> None:
        self.sink.finish(task.name, StageOutcome.UP_TO_DATE, 0.0)

    def skip_ignore(self, task: Any) -> None:
        self.sink.finish(task.name, StageOutcome.UP_TO_DATE, 0.0)

    def add_failure(self, task: Any, fail: Any) -> None:
        error = _failure(fail)
        seconds = 0.0 if error.is_skip else None
        self.sink.finish(task.name, StageOutcome.FAILED, seconds, error=error)

    def cleanup_error(self, exception: Any) -> None:
        self.sink.on_event("error", str(exception))

    def runtime_error(self, msg: str) -> None:
        self.sink.on_event("error", msg)

    def teardown_task(self, task: Any) -> None:
        pass

    def complete_run(self) -> None:
        pass


def _failure(fail: Any) -> Failure:
    from doit.exceptions import UnmetDependency

    if isinstance(fail, UnmetDependency):
        return Failure.skipped("not run: " + fail.message.strip())
    return decode_failure(getattr(fail, "message", str(fail)))


class Loader(TaskLoader2):
    def __init__(self, plan: Plan, sink: Sink, jobs: int):
        super().__init__()
        self.plan = plan
        self.sink = sink
        self.jobs = jobs

    def setup(self, opt_values: dict[str, Any]) -> None:
        pass

    def load_doit_config(self) -> dict[str, Any]:
        return {
            "dep_file": str(self.plan.env.ws.db_file),
            "backend": "buildsys-json",
            "check_file_uptodate": "md5",
            "verbosity": 2,
            "reporter": Reporter,
            "outfile": self.sink,
            "continue": True,
            "num_process": self.jobs if self.jobs > 1 else 0,
            "par_type": "process",
        }

    def load_tasks(self, cmd: Any, pos_args: list[str]) -> list[Any]:
        return [dict_to_task(task_dict(s, self.plan)) for s in self.plan.stages()]


def task_dict(stage: Stage, plan: Plan) -> dict[str, Any]:
    static = static_digest(stage, plan.env.tools)
    return {
        "name": stage.task_name,
        "actions": [(execute, [stage, plan.env])],
        "file_dep": sorted({str(f) for f in stage.input_files()}),
        "targets": [str(p) for p in stage.outputs().values()],
        # doit alone sees only that targets exist: a damaged output must not pass
        "uptodate": [config_changed(static), (outputs_intact, [stage, plan.env], {})],
        "verbosity": 2,  # stages print nothing; anything they do print is a clue
        "doc": f"{stage.kind} for {stage.recipe.name}",
    }


# our backend, by import path: doit builds its plugin table from the config
DOIT_CONFIG = {"BACKEND": {"buildsys-json": "buildsys.doitdb:AtomicJsonDB"}}


def run_plan(plan: Plan, jobs: int = 1, on_event: Callable | None = None) -> list[Outcome]:
    notify = on_event or (lambda kind, data: None)
    plan.env.ws.state.mkdir(parents=True, exist_ok=True)
    if warning := set_aside_if_damaged(plan.env.ws.db_file):
        notify("warning", warning)
    if jobs > 1:
        bind_forked_workers()
    stages = {s.task_name: s for s in plan.stages()}
    sink = Sink(stages, notify)
    # no config files: a pyproject.toml with [tool.doit] in the workspace is the user's, not ours
    doit = DoitMain(Loader(plan, sink, jobs), config_filenames=(), extra_config=DOIT_CONFIG)
    said = io.StringIO()
    with contextlib.redirect_stderr(said), contextlib.redirect_stdout(said):
        code = doit.run(["run"])
    outcomes = [sink.outcomes[name] for name in stages if name in sink.outcomes]
    # 1 and 2 are doit's words for failed and skipped tasks, which the sink has; a stage
    # without an outcome means doit itself stopped
    if code not in (0, 1, 2) or len(outcomes) < len(stages):
        raise _doit_failed(plan, code, said.getvalue())
    return outcomes


def _doit_failed(plan: Plan, code: int, said: str) -> BuildsysError:
    """doit stopped before or while running tasks: never a silent exit 0 with nothing built."""
    ws = plan.env.ws
    ws.logs_dir.mkdir(parents=True, exist_ok=True)
    log = ws.logs_dir / "doit.log"
    log.write_text(said, "utf-8")
    last = next((line for line in reversed(said.splitlines()) if line.strip()), "no message")
    return StageError(
        f"the task runner stopped (doit exit {code}): {last.strip()[:300]}",
        hint=f"its full output is in {ws.show(log)}; run the same command again, and if it repeats "
        f"`buildsys clean --cache` resets the build state (the artifacts are rebuilt)",
    )
