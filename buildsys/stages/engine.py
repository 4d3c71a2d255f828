"""Runs one stage the way doit calls it: key -> cache restore or run -> atomic commit.

`execute` is what every doit task calls. It never raises: a BuildsysError comes
back as a doit TaskFailed carrying a JSON payload the reporter turns into a
one-screen message; any other exception is a bug, logged with its traceback.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from doit.exceptions import TaskFailed

from buildsys.cache import Cache
from buildsys.errors import BuildsysError, StageError
from buildsys.fsutil import atomic_copy, atomic_write_text, remove
from buildsys.hashing import FileHasher, digest_data
from buildsys.stages.base import RunContext, Stage, StageEnv


def key_doc(stage: Stage, hasher: FileHasher, tools: dict[str, str]) -> dict[str, Any]:
    doc = stage.static_doc(tools)
    doc["inputs"] = {
        inp.role: [[name, hasher.digest(f)] for name, f in inp.named()] for inp in stage.inputs()
    }
    return doc


def stage_key(doc: dict[str, Any]) -> str:
    return digest_data(doc)


def record_path(env: StageEnv, stage: Stage) -> Path:
    return env.ws.records_dir / stage.recipe.name / (stage.local_id.replace("/", "__") + ".json")


def read_record(env: StageEnv, stage: Stage) -> dict[str, Any]:
    try:
        return json.loads(record_path(env, stage).read_text("utf-8"))
    except (OSError, ValueError):
        return {}


def execute(stage: Stage, env: StageEnv) -> dict[str, Any] | TaskFailed:
    started = time.perf_counter()
    # doit tees sys.stdout/err through a Writer while an action runs; TensorFlow's
    # absl logger keeps whatever stream it first sees and fails at exit closing a Writer
    teed = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    try:
        key, outcome = _execute(stage, env)
    except BuildsysError as exc:
        return TaskFailed(encode_failure(exc))
    except Exception as exc:  # a bug in buildsys: keep the traceback for the report
        return TaskFailed(encode_failure(_internal(stage, env, exc)))
    finally:
        sys.stdout, sys.stderr = teed
    seconds = round(time.perf_counter() - started, 3)
    result = {"outcome": outcome, "seconds": seconds, "key": key}
    atomic_write_text(record_path(env, stage), json.dumps(result, sort_keys=True))
    return result


def _execute(stage: Stage, env: StageEnv) -> tuple[str, str]:
    hasher = FileHasher(env.ws.hash_db)
    key = stage_key(key_doc(stage, hasher, env.tools))
    cache = Cache(env.ws.cache_dir)
    outputs = stage.outputs()
    manifest = cache.lookup(key)
    if manifest is not None and cache.restore(key, manifest, outputs):
        outcome = "restored"
    else:
        _run(stage, env, cache, key, outputs, hasher)
        outcome = "ran"
    hasher.save()
    return key, outcome


def _run(
    stage: Stage, env: StageEnv, cache: Cache, key: str, outputs: dict[str, Path], hasher: FileHasher
) -> None:
    env.ws.tmp_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=stage.kind + "-", dir=env.ws.tmp_dir))
    try:
        out = {role: tmp / f"{role}{p.suffix}" for role, p in outputs.items()}
        ctx = RunContext(stage, env, out=out, hasher=hasher)
        try:
            stage.run(ctx)
        except BaseException:
            for path in outputs.values():  # stale outputs must not pass for this build's
                remove(path)
            raise
        missing = [role for role, path in ctx.out.items() if not path.is_file()]
        if missing:
            raise StageError(f"stage {stage.task_name} did not write {', '.join(missing)}")
        cache.store(key, ctx.out)
        for role, path in outputs.items():
            atomic_copy(ctx.out[role], path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _internal(stage: Stage, env: StageEnv, exc: Exception) -> BuildsysError:
    env.ws.logs_dir.mkdir(parents=True, exist_ok=True)
    log = env.ws.logs_dir / f"{stage.task_name.replace('/', '__')}.log"
    log.write_text("".join(traceback.format_exception(exc)), "utf-8")
    return StageError(
        f"internal error in stage {stage.task_name}: {type(exc).__name__}: {exc}",
        hint=f"this is a bug in buildsys; the traceback is in {env.ws.show(log)}",
    )


def failure_payload(exc: BuildsysError) -> dict[str, Any]:
    return {"type": type(exc).__name__, "message": exc.message, "hint": exc.hint, "exit_code": exc.exit_code}


def encode_failure(exc: BuildsysError) -> str:
    return json.dumps(failure_payload(exc))


def decode_failure(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError:
        return {"type": "TaskError", "message": text.strip(), "hint": None, "exit_code": 1}
    return data if isinstance(data, dict) else {"message": str(data), "exit_code": 1}
