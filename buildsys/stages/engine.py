"""Runs one stage the way doit calls it: key -> cache restore or run -> atomic commit.

`execute` is what every doit task calls. It never raises: a BuildsysError comes
back as a doit TaskFailed carrying a JSON payload the reporter turns into a
one-screen message; a full disk or an unwritable directory becomes one too;
any other exception is a bug, logged with its traceback.

`outputs_intact` is the up-to-date check doit lacks: its own only sees that
targets exist, so a damaged output would otherwise be read downstream and pinned.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from doit.exceptions import TaskFailed

from buildsys.cache import Cache, manifest_problem
from buildsys.diskerrors import NO_SPACE, NOT_WRITABLE, disk_error
from buildsys.errors import BuildsysError, InternalError, StageError
from buildsys.failures import Failure
from buildsys.fsutil import atomic_copy, atomic_write_text, remove
from buildsys.hashing import FileHasher, is_sha256
from buildsys.outcomes import StageOutcome
from buildsys.stages.base import RunContext, Stage, StageEnv
from buildsys.stages.keys import cache_key


def record_path(env: StageEnv, stage: Stage) -> Path:
    return env.ws.records_dir / stage.recipe.name / (stage.local_id.replace("/", "__") + ".json")


def read_record(env: StageEnv, stage: Stage) -> dict[str, Any]:
    try:
        data = json.loads(record_path(env, stage).read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def outputs_intact(stage: Stage, env: StageEnv) -> bool:
    """Whether every output still holds the bytes the stage committed (doit's uptodate).

    Cheap on a no-op build: a size compare, then the stat cache; a file is hashed
    only when its stat changed. False makes the stage run, which restores the
    committed bytes from the cache (or remakes them) before anything reads them.
    """
    committed = _committed(env, stage)
    hasher = env.stat_cache()
    for role, path in stage.outputs().items():
        entry = committed.get(role)
        try:
            if entry is None or path.stat().st_size != entry["size"] or hasher.digest(path) != entry["sha256"]:
                return False
        except OSError:
            return False
    return True


def _committed(env: StageEnv, stage: Stage) -> dict[str, dict]:
    """{role: {sha256, size}} of the stage's last run: its record, or for a record
    written before records listed outputs, the cache manifest of its key."""
    record = read_record(env, stage)
    outputs = record.get("outputs")
    if outputs is not None and manifest_problem(outputs) is None:
        return outputs
    key = record.get("key")
    return (Cache(env.ws.cache_dir).lookup(key) if is_sha256(key) else None) or {}


def execute(stage: Stage, env: StageEnv) -> dict[str, Any] | TaskFailed:
    started = time.perf_counter()
    # doit tees sys.stdout/err through a Writer while an action runs; TensorFlow's
    # absl logger keeps whatever stream it first sees and fails at exit closing a Writer
    teed = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    try:
        key, outcome, committed, warnings = _execute(stage, env)
        result = {"outcome": outcome, "seconds": round(time.perf_counter() - started, 3), "key": key}
        with _writing(env, record_path(env, stage)):
            atomic_write_text(record_path(env, stage), json.dumps({**result, "outputs": committed}, sort_keys=True))
    except BuildsysError as exc:
        return TaskFailed(encode_failure(exc))
    except Exception as exc:  # a bug in buildsys: keep the traceback for the report
        return TaskFailed(encode_failure(_internal(stage, env, exc)))
    finally:
        sys.stdout, sys.stderr = teed
    if warnings:  # this build's only: doit hands them to the reporter, no later build repeats them
        result["warnings"] = warnings
    return result


def _execute(stage: Stage, env: StageEnv) -> tuple[str, StageOutcome, dict[str, dict], list[str]]:
    """(key, outcome, what was committed per role, warnings)."""
    hasher = FileHasher(env.ws.hash_db)
    key = cache_key(stage, hasher, env.tools)
    cache = Cache(env.ws.cache_dir)
    outputs = stage.outputs()
    link = _link(stage, env)
    outcome, manifest = StageOutcome.RESTORED, cache.lookup(key)
    if manifest is None and link is not None:
        with _writing(env, env.ws.cache_dir):
            outcome, manifest = StageOutcome.RESTORED_REMOTE, link.pull(key, cache, sorted(outputs))
    with _writing(env, Path(os.path.commonpath(list(outputs.values())))):
        restored = manifest is not None and cache.restore(key, manifest, outputs)
    if manifest is None or not restored:
        started = time.perf_counter()
        manifest, outcome = _run(stage, env, cache, key, outputs, hasher), StageOutcome.RAN
        if link is not None:
            link.push(key, cache, manifest, time.perf_counter() - started)
    with _writing(env, env.ws.hash_db):
        hasher.save()
    warnings = [
        f"dropped the damaged cache entry {env.ws.show(path)} ({why}) and ran the stage" for path, why in cache.dropped
    ]
    return key, outcome, {role: manifest[role] for role in outputs}, warnings + (link.warnings if link else [])


def _link(stage: Stage, env: StageEnv) -> Any:
    """The stage's way to the remote cache; the remote package loads only when one is set."""
    if env.remote is None:
        return None
    from buildsys.remote.link import RemoteLink

    return RemoteLink(env.remote, env.ws, env.build_id, stage.task_name, _store=env.remote_store())


def _run(
    stage: Stage, env: StageEnv, cache: Cache, key: str, outputs: dict[str, Path], hasher: FileHasher
) -> dict[str, dict]:
    """Run the stage in a temp dir, store its outputs, commit them; returns the manifest."""
    with _writing(env, env.ws.tmp_dir):
        env.ws.tmp_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=stage.kind + "-", dir=env.ws.tmp_dir))
    try:
        out = {role: tmp / f"{role}{p.suffix}" for role, p in outputs.items()}
        ctx = RunContext(stage, env, out=out, hasher=hasher)
        try:
            with _writing(env, tmp, NO_SPACE):  # EACCES in a stage is as likely a read: its own business
                stage.run(ctx)
        except BaseException:
            _discard(outputs)
            raise
        missing = [role for role, path in ctx.out.items() if not path.is_file()]
        if missing:
            raise StageError(f"stage {stage.task_name} did not write {', '.join(missing)}")
        with _writing(env, env.ws.cache_dir):
            manifest = cache.store(key, ctx.out)
        for role, path in outputs.items():
            with _writing(env, path):
                atomic_copy(ctx.out[role], path)
        return manifest
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _discard(outputs: dict[str, Path]) -> None:
    """Remove a failed stage's stale outputs, so they never pass for this build's.

    Called while the stage's own error propagates: one that cannot be removed
    (a read-only directory) must not replace that error. doit records the task
    as failed, so the next build runs it again whatever stays.
    """
    for path in outputs.values():
        try:
            remove(path)
        except OSError:
            pass


@contextmanager
def _writing(env: StageEnv, path: Path, errnos: frozenset[int] = NO_SPACE | NOT_WRITABLE) -> Iterator[None]:
    """Writing `path` (a file or directory): a full disk or an unwritable directory is
    the machine's state, not a bug in buildsys, so it becomes a StageError saying
    where and what to do."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in errnos:
            raise
        raise disk_error(env.ws, exc, path) from exc


def _internal(stage: Stage, env: StageEnv, exc: Exception) -> BuildsysError:
    env.ws.logs_dir.mkdir(parents=True, exist_ok=True)
    log = env.ws.logs_dir / f"{stage.task_name.replace('/', '__')}.log"
    text = "".join(traceback.format_exception(exc))
    log.write_text(text, "utf-8")
    return InternalError(
        f"internal error in stage {stage.task_name}: {type(exc).__name__}: {exc}",
        hint=f"this is a bug in buildsys; the traceback is in {env.ws.show(log)} (-v prints it)",
        traceback=text,
    )


def encode_failure(exc: BuildsysError) -> str:
    return json.dumps(Failure.of(exc).to_dict())


def decode_failure(text: str) -> Failure:
    """The failure encode_failure wrote; doit's own failures are plain text."""
    try:
        data = json.loads(text)
    except ValueError:
        return Failure(text.strip(), "TaskError")
    return Failure.from_dict(data) if isinstance(data, dict) else Failure(str(data))
