"""Issue 12.2, 12.3, 12.9, 12.11: the workspace lock, doit's state file, kill -9, repeated warnings."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import build_json, run_cli


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # field 4 (ppid) follows the command name, which is in parentheses and may hold spaces
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait(predicate, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_kill_9_of_a_parallel_build_frees_the_workspace(workspace: Path) -> None:
    main = subprocess.Popen(
        [sys.executable, "-m", "buildsys", "build", "-j", "2"],
        cwd=workspace,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert _wait(lambda: len(_children(main.pid)) >= 2, 60), "the pool never started"
        workers = _children(main.pid)
        time.sleep(1.0)  # let the workers get into their stages
    finally:
        main.send_signal(signal.SIGKILL)
        main.wait()
    try:
        assert _wait(lambda: not any(_alive(w) for w in workers), 10), "workers outlived their build"
    finally:
        for w in workers:
            if _alive(w):
                os.kill(w, signal.SIGKILL)
    outcomes = build_json(workspace)
    assert "failed" not in outcomes.values()
    assert set(build_json(workspace, "--locked").values()) == {"up-to-date"}


def test_a_truncated_doit_db_is_set_aside_and_the_build_goes_on(workspace: Path) -> None:
    first = build_json(workspace)
    db = workspace / ".buildsys" / "doit.json"
    db.write_bytes(db.read_bytes()[:100])
    proc = run_cli(workspace, "build", "--json", check=0)
    assert "Traceback" not in proc.stderr
    assert "doit.json was damaged" in proc.stderr and "moved to doit.json.damaged-" in proc.stderr
    # every stage is accounted for: the cache restores what the lost state would have skipped
    import json

    rows = json.loads(proc.stdout)
    assert len(rows) == len(first) and {r["outcome"] for r in rows} <= {"restored", "up-to-date", "ran"}
    assert set(build_json(workspace, "--locked").values()) == {"up-to-date"}
    # and after clean, which used to leave the damaged file behind
    db.write_text("{")
    run_cli(workspace, "clean")
    proc = run_cli(workspace, "build", "--locked", check=0)
    assert "Traceback" not in proc.stderr and "damaged" in proc.stderr


def test_a_doit_db_that_is_not_a_file_is_set_aside(workspace: Path) -> None:
    (workspace / ".buildsys" / "doit.json").mkdir(parents=True)
    proc = run_cli(workspace, "build", check=0)
    assert "not a regular file" in proc.stderr and "Traceback" not in proc.stderr


def test_clean_waits_for_the_workspace_lock(workspace: Path) -> None:
    from buildsys.workspace import Workspace
    from buildsys.wslock import exclusive

    build_json(workspace)
    with exclusive(Workspace.at(workspace)):
        proc = run_cli(workspace, "clean", "--cache", check=2)
        assert f"pid {os.getpid()}" in proc.stderr and "cannot clean" in proc.stderr
        assert (workspace / ".buildsys" / "cache").is_dir() and (workspace / ".buildsys" / "build.lock").is_file()
        assert (workspace / "build" / "shapes" / "fp32" / "model.tflite").is_file()


def test_warnings_show_when_the_stage_runs_not_on_every_no_op_build(workspace: Path) -> None:
    recipe = workspace / "recipes" / "shapes.yaml"
    recipe.write_text(recipe.read_text() + "  - device: coral-edgetpu\n")
    first = run_cli(workspace, "build", check=None)
    notes = [line for line in first.stderr.splitlines() if line.startswith("warning: shapes/coral-edgetpu")]
    assert notes, first.stderr
    again = run_cli(workspace, "build", check=None)
    assert not [line for line in again.stderr.splitlines() if line.startswith("warning:")], again.stderr
    status = run_cli(workspace, "status")
    assert set(notes) <= set(status.stderr.splitlines())
