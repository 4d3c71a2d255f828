"""The shared remote cache against a real S3-protocol server (moto, on loopback) and a directory."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import build_json, make_workspace, noop_build_imports, run_cli
from motoserver import S3Server, s3_server

KEY = "a-team-secret"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch):
    with s3_server() as server:
        url = server.bucket("team")
        for name, value in server.env(url).items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("BUILDSYS_CACHE_KEY", KEY)
        yield server


def digests(ws: Path) -> dict[str, str]:
    """Every artifact and lock of a workspace, by path (reports list the stage times of their build)."""
    files = sorted((ws / "build").rglob("*")) + sorted((ws / "recipes").glob("*.lock"))
    return {
        str(f.relative_to(ws)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in files
        if f.is_file() and f.suffix not in (".html", ".md")
    }


def record(ws: Path, local_id: str) -> dict:
    return json.loads((ws / ".buildsys" / "records" / "shapes" / f"{local_id.replace('/', '__')}.json").read_text())


def s3_files(server: S3Server) -> list[str]:
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=server.endpoint)
    return sorted(fs.find("team/cache"))


def test_fresh_workspace_restores_everything_from_s3(tmp_path: Path, s3: S3Server) -> None:
    first = make_workspace(tmp_path / "a")
    assert set(build_json(first).values()) == {"ran"}
    fresh = make_workspace(tmp_path / "b")
    outcomes = build_json(fresh)
    assert set(outcomes.values()) == {"restored (remote)"}, outcomes
    assert digests(fresh) == digests(first)
    assert set(build_json(fresh, "--locked").values()) == {"up-to-date"}
    manifests = [f for f in s3_files(s3) if "/keys/" in f]
    assert len(manifests) == len(outcomes)


def test_directory_remote_from_the_workspace_file_and_read_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BUILDSYS_REMOTE", raising=False)
    monkeypatch.delenv("BUILDSYS_CACHE_KEY", raising=False)
    remote = tmp_path / "shared"
    settings = "version: 1\nremote:\n  url: ../shared\n"
    reader = make_workspace(tmp_path / "reader")
    (reader / "buildsys.yaml").write_text(settings)
    monkeypatch.setenv("BUILDSYS_REMOTE_MODE", "read-only")
    proc = run_cli(reader, "build")
    assert not remote.exists(), "a read-only build wrote to the remote"
    assert "restored (remote)" not in proc.stdout
    monkeypatch.delenv("BUILDSYS_REMOTE_MODE")
    writer = make_workspace(tmp_path / "writer")
    (writer / "buildsys.yaml").write_text(settings)
    assert set(build_json(writer).values()) == {"ran"}
    assert not [p for p in remote.rglob("*") if p.name.endswith(".tmp")]
    fresh = make_workspace(tmp_path / "fresh")
    (fresh / "buildsys.yaml").write_text(settings)
    monkeypatch.setenv("BUILDSYS_REMOTE_MODE", "read-only")
    before = sorted(remote.rglob("*"))
    assert set(build_json(fresh).values()) == {"restored (remote)"}
    assert sorted(remote.rglob("*")) == before
    assert digests(fresh) == digests(writer)
    monkeypatch.setenv("BUILDSYS_REMOTE_MODE", "off")
    other = make_workspace(tmp_path / "other")
    (other / "buildsys.yaml").write_text(settings)
    assert set(build_json(other).values()) == {"ran"}


def test_tampered_manifest_and_object_are_refused_and_rebuilt(tmp_path: Path, s3: S3Server) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=s3.endpoint)
    first = make_workspace(tmp_path / "a")
    build_json(first)
    calibration = record(first, "calibration")
    path = f"team/cache/keys/{calibration['key']}.json"
    doc = json.loads(fs.cat_file(path))
    doc["seconds"] = 0.001  # any change breaks the signature
    fs.pipe_file(path, json.dumps(doc).encode())
    quantized = record(first, "cpu-int8/quantize")
    sha = next(iter(quantized["outputs"].values()))["sha256"]
    obj = f"team/cache/objects/{sha[:2]}/{sha}"
    data = bytearray(fs.cat_file(obj))
    data[len(data) // 2] ^= 0xFF
    fs.pipe_file(obj, bytes(data))

    second = make_workspace(tmp_path / "b")
    proc = run_cli(second, "build")
    outcomes = {line.split()[-2]: line.split()[0] for line in proc.stdout.splitlines() if "shapes/" in line}
    assert outcomes["shapes/calibration"] == "ran"
    assert outcomes["shapes/cpu-int8/quantize"] == "ran"
    assert "shapes/fetch" not in outcomes or outcomes["shapes/fetch"] == "restored"
    assert "signature does not match" in proc.stderr and "does not match its sha256" in proc.stderr
    assert proc.stderr.count("refused the remote cache entry") == 2
    assert digests(second) == digests(first)
    # the refused entries were replaced: a third machine restores everything
    third = make_workspace(tmp_path / "c")
    assert set(build_json(third).values()) == {"restored (remote)"}


def test_unsigned_or_foreign_key_entries_are_refused(
    tmp_path: Path, s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BUILDSYS_CACHE_KEY")
    first = make_workspace(tmp_path / "a")
    build_json(first)  # no key: unsigned entries
    monkeypatch.setenv("BUILDSYS_CACHE_KEY", KEY)
    second = make_workspace(tmp_path / "b")
    proc = run_cli(second, "build")
    assert "restored (remote)" not in proc.stdout
    assert "it is not signed" in proc.stderr
    assert digests(second) == digests(first)


def test_server_going_away_mid_build_leaves_a_good_local_build(tmp_path: Path, s3: S3Server) -> None:
    ws = make_workspace(tmp_path / "a")
    proc = subprocess.Popen(
        [sys.executable, "-m", "buildsys", "build"], cwd=ws, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    first_record = ws / ".buildsys" / "records" / "shapes" / "fetch.json"
    deadline = time.monotonic() + 300
    while not first_record.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    s3.stop()
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, out + err
    assert err.count("building locally for the rest of this build") == 1, err
    assert "Traceback" not in err
    assert set(build_json(ws, "--locked").values()) == {"up-to-date"}


def test_unreachable_remote_is_one_warning(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from motoserver import CREDENTIALS, free_port

    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    proc = run_cli(workspace, "build", "--remote", "s3://team/cache")
    assert proc.stderr.count("the remote cache s3://team/cache failed") == 1, proc.stderr
    assert "12 ran" in proc.stdout


def test_bad_remote_settings_are_usage_errors(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BUILDSYS_REMOTE", raising=False)
    monkeypatch.setenv("BUILDSYS_REMOTE_MODE", "sometimes")
    proc = run_cli(workspace, "build", "--remote", "../shared", check=2)
    assert "BUILDSYS_REMOTE_MODE" in proc.stderr and "read-only" in proc.stderr
    monkeypatch.delenv("BUILDSYS_REMOTE_MODE")
    (workspace / "buildsys.yaml").write_text("version: 1\nremote:\n  url: s3://x/y\n  mdoe: read-only\n")
    for command in ("build", "check"):
        proc = run_cli(workspace, command, check=2)
        assert "buildsys.yaml:4" in proc.stderr and "mdoe" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_noop_with_a_remote_imports_no_remote_package(workspace: Path, tmp_path: Path) -> None:
    (workspace / "buildsys.yaml").write_text(f"version: 1\nremote:\n  url: {tmp_path / 'shared'}\n")
    build_json(workspace)
    proc = noop_build_imports(workspace, {"fsspec", "s3fs", "distributed", "tensorflow"})
    assert proc.stdout.strip() == "0 []", proc.stdout + proc.stderr


def test_shards_split_the_targets_and_a_final_build_restores_all(tmp_path: Path, s3: S3Server) -> None:
    ran: dict[str, int] = {}
    for i in (1, 2):
        outcomes = build_json(make_workspace(tmp_path / f"shard{i}"), "--shard", f"{i}/2")
        for stage, outcome in outcomes.items():
            ran[stage] = ran.get(stage, 0) + (outcome == "ran")
    target_stages = {s: n for s, n in ran.items() if "/" in s}
    assert set(target_stages.values()) == {1}, ran  # every target stage built once in all
    assert {s.split("/")[0] for s in target_stages} == {"cpu-int8", "fp32"}
    assert not (tmp_path / "shard1" / "recipes" / "shapes.lock").exists()  # locks come from the final build
    final = make_workspace(tmp_path / "final")
    assert set(build_json(final).values()) == {"restored (remote)"}
    assert (final / "recipes" / "shapes.lock").is_file() and (final / "build" / "index.html").is_file()
    assert set(build_json(final, "--locked").values()) == {"up-to-date"}


def test_shard_assignment_is_stable_and_balanced_by_times() -> None:
    from buildsys.shard import Unit, assign, parse_shard

    units = [Unit(f"r{i}", f"r{i}", None, 1.0) for i in range(5)]
    split = [[u.name for u in s] for s in assign(units, 2)]
    assert split == [["r0", "r2", "r4"], ["r1", "r3"]]
    assert [[u.name for u in s] for s in assign(list(reversed(units)), 2)] == split  # order-free
    weighted = [Unit("big", "big", None, 10.0)] + [Unit(f"s{i}", f"s{i}", None, 1.0) for i in range(4)]
    assert [[u.name for u in s] for s in assign(weighted, 2)] == [["big"], ["s0", "s1", "s2", "s3"]]
    assert parse_shard("2/4").index == 2
    for bad in ("0/2", "3/2", "1", "a/b"):
        with pytest.raises(Exception, match="is not i/n"):
            parse_shard(bad)


def test_cache_commands_against_s3(tmp_path: Path, s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    first = make_workspace(tmp_path / "a")
    (first / "buildsys.yaml").write_text("version: 1\nremote:\n  url: s3://team/cache\n  mode: off\n")
    build_json(first)  # mode off in the file: nothing uploaded...
    (first / "buildsys.yaml").unlink()
    monkeypatch.delenv("BUILDSYS_REMOTE")
    assert not [f for f in s3_files(s3) if "/keys/" in f]
    status = json.loads(run_cli(first, "cache", "status", "--json", "--remote", "s3://team/cache").stdout)
    assert status["local"]["entries"] == 12 and status["remote"]["entries"] == 0 and status["remote"]["signed"]
    proc = run_cli(first, "cache", "push", "--remote", "s3://team/cache")  # ...until pushed
    assert "pushed 12 entries" in proc.stdout
    assert "pushed 0 entries" in run_cli(first, "cache", "push", "--remote", "s3://team/cache").stdout
    second = make_workspace(tmp_path / "b")
    (second / "recipes" / "shapes.lock").write_bytes((first / "recipes" / "shapes.lock").read_bytes())
    proc = run_cli(second, "cache", "pull", "--remote", "s3://team/cache")
    assert "pulled 10 entries" in proc.stdout and "0 not on the remote" in proc.stdout, proc.stdout
    assert "2 stages read this machine's measurements" in proc.stdout
    outcomes = build_json(second, "--remote", "s3://team/cache")
    assert {s: o for s, o in outcomes.items() if o != "restored"} == {
        "cpu-int8/report": "restored (remote)",
        "fp32/report": "restored (remote)",
    }
    assert digests(second) == digests(first)
    proc = run_cli(second, "cache", "gc", "--remote-store", "--older-than", "1h", "--remote", "s3://team/cache")
    assert "removed 0 entries and 0 objects" in proc.stdout
    proc = run_cli(second, "cache", "gc", "--remote-store", "--older-than", "0s", "--remote", "s3://team/cache")
    assert "removed 12 entries" in proc.stdout
    assert s3_files(s3) == []
    proc = run_cli(second, "cache", "gc", "--older-than", "0s")  # the last build's entries stay
    assert "removed 0 entries" in proc.stdout
    run_cli(second, "cache", "push", check=2)  # no remote named
    run_cli(second, "cache", "gc", "--older-than", "3 fortnights", check=2)
