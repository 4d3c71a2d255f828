"""`buildsys build --scheduler`: the stages on a real Dask cluster (LocalCluster, worker
processes on loopback), outputs through a directory remote, compared with local builds."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, make_workspace, run_cli
from motoserver import free_port
from test_remote import digests

distributed = pytest.importorskip("distributed")
# The schedulers serve HTTP on any free port: with dashboard_address=None they try 8787, and where
# an earlier cluster (or another test run on the machine) holds it, distributed leaks the socket it
# failed to bind, a ResourceWarning.
DASHBOARD = ":0"


def local_cluster():
    return distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=DASHBOARD
    )


@pytest.fixture(scope="module")
def cluster():
    with local_cluster() as local:
        yield local


@pytest.fixture
def cold_cluster():
    """Workers that have not loaded TensorFlow yet: a stage's run() then lasts seconds."""
    with local_cluster() as local:
        yield local


@pytest.fixture(autouse=True)
def no_remote_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BUILDSYS_REMOTE", "BUILDSYS_REMOTE_MODE", "BUILDSYS_CACHE_KEY"):
        monkeypatch.delenv(name, raising=False)


def cluster_build(ws: Path, cluster, remote: Path, *args: str, check: int = 0) -> list[dict]:
    proc = run_cli(
        ws, "build", "--json", "--scheduler", cluster.scheduler_address, "--remote", str(remote), *args, check=check
    )
    return json.loads(proc.stdout)


def name(row: dict) -> str:
    return "/".join(p for p in (row["recipe"], row["target"], row["stage"]) if p)


def test_build_on_the_cluster_matches_a_local_build(tmp_path: Path, cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    local = make_workspace(tmp_path / "local")
    run_cli(local, "build")
    # the workers were started without it: they sign with the key the bundle carries, or
    # the client refuses their entries and builds here
    monkeypatch.setenv("BUILDSYS_CACHE_KEY", "a-team-secret")
    ws = make_workspace(tmp_path / "ws")
    remote = tmp_path / "shared"
    rows = cluster_build(ws, cluster, remote)
    assert len(rows) == 12
    # every stage ran on a worker (none here): the client only restored what they pushed
    assert all(r["outcome"] == "ran" and r["worker"].startswith("tcp://127.0.0.1:") for r in rows), rows
    assert digests(ws) == digests(local)
    manifests = sorted((remote / "keys").glob("*.json"))
    assert len(manifests) == 12 and all("sig" in json.loads(m.read_text()) for m in manifests)
    model = __import__("hashlib").sha256((ws / "recipes" / "model" / "model.keras").read_bytes()).hexdigest()
    assert (remote / "objects" / model[:2] / model).is_file(), "the source model was not uploaded"
    # nothing stale: the next cluster build is a no-op here, and the lock holds
    again = cluster_build(ws, cluster, remote, "--locked")
    assert {r["outcome"] for r in again} == {"up-to-date"}


def test_failed_stage_on_the_cluster_skips_its_downstream(tmp_path: Path, cluster) -> None:
    ws = make_workspace(tmp_path / "ws")
    recipe = ws / "recipes" / "shapes.yaml"
    source = "  keras: model/model.keras\n"
    recipe.write_text(recipe.read_text().replace(source, f"{source}  sha256: {'ab' * 32}\n"))
    proc = run_cli(ws, "build", "--scheduler", cluster.scheduler_address, "--remote", str(tmp_path / "shared"), check=2)
    assert "sha256 mismatch" in proc.stderr and "Traceback" not in proc.stderr
    # calibration reads no output of fetch: it runs, like in a local build; the rest waits on fetch
    assert "1 ran, 1 failed, 10 skipped" in proc.stdout, proc.stdout
    assert "shapes/calibration" in next(line for line in proc.stdout.splitlines() if " on tcp://" in line)
    assert not (ws / "recipes" / "shapes.lock").exists()


def test_bundled_examples_on_the_cluster_reproduce_the_committed_locks(tmp_path: Path, cluster) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(ROOT / "recipes", ws / "recipes")
    shutil.copytree(ROOT / "examples", ws / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    locks = sorted((ROOT / "recipes").glob("*.lock"))
    assert locks
    for lock in locks:
        (ws / "recipes" / lock.name).unlink()
    rows = cluster_build(ws, cluster, tmp_path / "shared")
    assert all(r["outcome"] == "ran" and r.get("worker") for r in rows), rows
    for lock in locks:
        assert (ws / "recipes" / lock.name).read_bytes() == lock.read_bytes(), lock.name
    # the artifacts are what the locks pin: a plain local --locked build finds nothing to do
    rows = json.loads(run_cli(ws, "build", "--json", "--locked").stdout)
    assert {r["outcome"] for r in rows} == {"up-to-date"}


def test_scheduler_needs_a_writable_remote(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proc = run_cli(workspace, "build", "--scheduler", "tcp://127.0.0.1:1", check=2)
    assert "needs a remote cache" in proc.stderr and "--remote" in proc.stderr and "BUILDSYS_REMOTE" in proc.stderr
    monkeypatch.setenv("BUILDSYS_REMOTE_MODE", "read-only")
    proc = run_cli(workspace, "build", "--scheduler", "tcp://127.0.0.1:1", "--remote", "../shared", check=2)
    assert "read-write" in proc.stderr and "Traceback" not in proc.stderr


def test_unreachable_scheduler_is_a_quick_usage_error(workspace: Path, tmp_path: Path) -> None:
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    proc = run_cli(workspace, "build", "--scheduler", address, "--remote", str(tmp_path / "shared"), check=2)
    assert time.monotonic() - started < 60
    assert f"cannot reach the Dask scheduler at {address}" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_worker_lost_mid_stage_is_rescheduled(tmp_path: Path, cold_cluster) -> None:
    cluster = cold_cluster
    local = make_workspace(tmp_path / "local")
    run_cli(local, "build")
    ws = make_workspace(tmp_path / "ws")
    command = [sys.executable, "-m", "buildsys", "build", "--json", "--scheduler", cluster.scheduler_address]
    proc = subprocess.Popen(
        [*command, "--remote", str(tmp_path / "shared")],
        cwd=ws,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with distributed.Client(cluster.scheduler_address, set_as_default=False) as client:
        worker = busy_with(client, "shapes/calibration", proc)
        running = lambda: client.run(stage_dirs, "calibration-", workers=[worker])[worker]  # noqa: E731
        wait_for(running, proc)  # mid-stage: engine.execute made its temp dir, the stage is in run()
        pid = client.run(os.getpid, workers=[worker])[worker]
        os.kill(pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, out + err
    rows = json.loads(out)
    assert all(r["outcome"] == "ran" and r["worker"] for r in rows), rows
    assert next(r["worker"] for r in rows if name(r) == "shapes/calibration") != worker
    assert digests(ws) == digests(local)
    assert not [p for p in (tmp_path / "shared").rglob("*") if p.name.endswith(".tmp")]


def busy_with(client, stage: str, proc: subprocess.Popen) -> str:
    """The address of the worker running `stage`'s task, once it runs."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        for address, keys in client.processing().items():
            if any(str(key).endswith(f"-{stage}") for key in keys):
                return address
        time.sleep(0.02)
    raise AssertionError(f"{stage} never ran on the cluster")


def stage_dirs(prefix: str, dask_worker=None) -> list[str]:
    """On a worker (client.run passes it): the temp dirs of stages running in its scratch
    workspaces. Imports inside: the function travels by value."""
    import glob
    import os

    return glob.glob(os.path.join(dask_worker.local_directory, "buildsys", "*", ".buildsys", "tmp", prefix + "*"))


def wait_for(condition, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while not condition():
        assert time.monotonic() < deadline and proc.poll() is None, "the stage never ran"
        time.sleep(0.02)


def test_without_distributed_installed_says_what_to_install(workspace: Path, tmp_path: Path) -> None:
    probe = (
        "import sys\n"
        "sys.modules['distributed'] = None  # as if not installed: importing it raises ImportError\n"
        "from buildsys.cli import main\n"
        f"raise SystemExit(main(['build', '--scheduler', 'tcp://127.0.0.1:1', '--remote', {str(tmp_path / 's')!r}]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], cwd=workspace, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "pip install 'buildsys[dask]'" in proc.stderr and "Traceback" not in proc.stderr


@pytest.fixture
def edgetpu_cluster(tmp_path: Path):
    """Workers offering the edgetpu_compiler resource, with a stand-in compiler on their PATH
    only: the client has none, so the version in the keys must come from a worker."""
    from test_compilers import CONSOLE, FAKE_COMPILER, OPLOG

    script = tmp_path / "bin" / "edgetpu_compiler"
    script.parent.mkdir()
    script.write_text(FAKE_COMPILER.format(python=sys.executable, texts=json.dumps([CONSOLE, OPLOG])))
    script.chmod(0o755)
    with pytest.MonkeyPatch.context() as patch:  # the worker processes take the environment at start
        patch.setenv("PATH", f"{script.parent}{os.pathsep}{os.environ['PATH']}")
        local = distributed.LocalCluster(
            n_workers=1, threads_per_worker=2, processes=True, host="127.0.0.1", dashboard_address=DASHBOARD,
            resources={"edgetpu_compiler": 1},
        )  # fmt: skip
    with local:
        yield local


def test_edgetpu_compile_runs_where_the_tool_is(tmp_path: Path, edgetpu_cluster) -> None:
    ws = make_workspace(tmp_path / "ws")
    recipe = ws / "recipes" / "shapes.yaml"
    recipe.write_text(recipe.read_text().replace("  - device: cpu-int8\n", "  - device: coral-edgetpu\n"))
    rows = cluster_build(ws, edgetpu_cluster, tmp_path / "shared")
    compiled = next(r for r in rows if name(r) == "shapes/coral-edgetpu/compile")
    assert compiled["outcome"] == "ran" and compiled["worker"], compiled
    target = ws / "build" / "shapes" / "coral-edgetpu"
    summary = json.loads((target / "compile.json").read_text())
    assert summary["status"] == "compiled" and summary["version"] == "16.0.384591198"
    assert (target / "model_edgetpu.tflite").is_file()
    marker = json.loads((ws / "build" / "shapes" / ".buildsys-output.json").read_text())
    assert "coral-edgetpu/model_edgetpu.tflite" in marker["files"]
