"""Reliability: damaged outputs, cache manifests, stat cache and verdicts; full and read-only disks.

Real builds of the shapes example through the CLI. One workspace is built once per
module and put back byte-for-byte (same path, same mtimes) before each test that
needs it, so doit, the records and the cache see the build they made. Disk faults
are real file systems (tmpfs mounts), not mocked os calls.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import RECIPE, build_json, make_workspace, run_cli

MODEL = Path("build/shapes/cpu-int8/model.tflite")
METRICS = Path("build/shapes/cpu-int8/metrics.json")
LOCK = Path("recipes/shapes.lock")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("integrity")
    ws = make_workspace(root / "ws")
    build_json(ws)
    pristine = root / "pristine"
    shutil.copytree(ws, pristine, symlinks=True)  # copy2 keeps mtimes: doit sees the same files
    return ws, pristine


@pytest.fixture
def ws(built: tuple[Path, Path]) -> Path:
    """The built workspace, as the module's build left it."""
    path, pristine = built
    shutil.rmtree(path)
    shutil.copytree(pristine, path, symlinks=True)
    return path


def rows(ws: Path, *args: str, check: int | None = 0) -> list[dict]:
    """`build --json` rows (with notes and errors)."""
    proc = run_cli(ws, "build", "--json", *args, check=check)
    assert proc.stdout.strip(), f"no JSON from the build (exit {proc.returncode}):\n{proc.stderr}"
    return json.loads(proc.stdout)


def row(rows_: list[dict], stage: str) -> dict:
    return next(r for r in rows_ if "/".join(p for p in (r["target"], r["stage"]) if p) == stage)


def said(rows_: list[dict]) -> str:
    """Every error message and hint of a build, one string."""
    errors = [r["error"] for r in rows_ if r.get("error")]
    return "\n".join(f"{e.get('message')}\n{e.get('hint')}" for e in errors)


@pytest.fixture
def mounts() -> Iterator:
    """mount(path, options): a tmpfs at `path`, unmounted after the test; skips where mounting is impossible."""
    done: list[Path] = []

    def mount(path: Path, options: str) -> None:
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root")
        path.mkdir(parents=True, exist_ok=True)
        cmd = ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
        done.append(path)

    yield mount
    for path in reversed(done):
        subprocess.run(["umount", str(path)], check=False)


def read_only(path: Path, mount, fill=None) -> None:
    """Make `path` a read-only directory holding what `fill(path)` writes: a read-only
    mount as root (root ignores permission bits), else permission bits."""
    if os.geteuid() != 0:
        path.mkdir(parents=True, exist_ok=True)
        if fill:
            fill(path)
        for d in [path, *(p for p in path.rglob("*") if p.is_dir())]:
            d.chmod(0o555)
        return
    mount(path, "size=1m")
    if fill:
        fill(path)
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)


# -- 5: a damaged output is restored, never validated or pinned ---------------------------


def test_damaged_artifact_is_restored_not_pinned(ws: Path) -> None:
    model, lock = ws / MODEL, ws / LOCK
    good, pinned = model.read_bytes(), lock.read_bytes()
    damaged = bytearray(good)
    damaged[len(damaged) // 2] ^= 0xFF  # same size: only the content says it changed
    model.write_bytes(bytes(damaged))

    outcomes = rows(ws, check=None)
    assert row(outcomes, "cpu-int8/quantize")["outcome"] == "restored", outcomes
    assert model.read_bytes() == good
    # nothing downstream read the damaged bytes, and the lock still pins the good ones
    assert row(outcomes, "cpu-int8/validate")["outcome"] == "up-to-date", outcomes
    assert lock.read_bytes() == pinned
    assert {r["outcome"] for r in rows(ws)} == {"up-to-date"}


# -- the stat cache never vouches for a hash it did not compute --------------------------


def test_corrupt_stat_cache_entries_are_not_trusted(ws: Path) -> None:
    lock = ws / LOCK
    pinned = lock.read_bytes()
    assert {r["outcome"] for r in rows(ws)} == {"up-to-date"}  # stat entries for this copy's inodes
    db = ws / ".buildsys" / "hashes.json"
    entries = json.loads(db.read_text())
    key = os.path.abspath(ws / MODEL)
    size, mtime_ns, inode, _sha, hashed = entries[key]
    # the file's stat still matches: only the entry's shape says it is not a hash we made
    entries[key] = [size, mtime_ns, inode, "not-a-sha256", hashed]
    db.write_text(json.dumps(entries))

    outcomes = rows(ws, check=None)
    assert {r["outcome"] for r in outcomes} == {"up-to-date"}, said(outcomes)
    assert lock.read_bytes() == pinned
    assert "not-a-sha256" not in db.read_text()


# -- 6: a damaged cache manifest is a miss, said once ------------------------------------


def test_damaged_cache_manifest_is_a_miss(ws: Path) -> None:
    record = json.loads((ws / ".buildsys" / "records" / "shapes" / "fetch.json").read_text())
    manifest = ws / ".buildsys" / "cache" / "keys" / f"{record['key']}.json"
    roles = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({role: {"size": 1} for role in roles}))  # no sha256
    (ws / "build" / "shapes" / "_common" / "source.json").unlink()  # so fetch looks the key up

    outcomes = rows(ws, check=None)
    fetch = row(outcomes, "fetch")
    assert fetch["outcome"] == "ran", said(outcomes)
    warned = [n for n in fetch.get("notes", []) if "cache" in n]
    assert len(warned) == 1 and "\n" not in warned[0] and manifest.name in warned[0], fetch
    stored = json.loads(manifest.read_text())  # the run stored a good entry again
    assert set(stored) == set(roles) and all(len(e["sha256"]) == 64 for e in stored.values())
    again = rows(ws)
    assert not any("cache" in n for r in again for n in r.get("notes", []))


# -- 10a: fail closed on an unreadable verdict -------------------------------------------


def report_lines(ws: Path) -> str:
    return " ".join(run_cli(ws, "report").stdout.split())  # unwrapped: the console folds long lines


def test_unreadable_verdict_fails_the_target(ws: Path, workspace: Path) -> None:
    metrics = ws / METRICS
    good = json.loads(metrics.read_text())
    assert "failed shapes/cpu-int8" not in report_lines(ws)

    failing = {**good, "failures": {"scores": ["cosine 0.5 < 0.95"]}, "passed": False}
    metrics.write_text(json.dumps(failing))
    assert "failed shapes/cpu-int8" in report_lines(ws)

    # the same failing file, partly lost: it must not turn the target green
    del failing["failures"]
    metrics.write_text(json.dumps(failing))
    out = report_lines(ws)
    assert "failed shapes/cpu-int8" in out and "metrics.json" in out and "unreadable" in out, out

    metrics.write_text(json.dumps(good)[: len(json.dumps(good)) // 2])  # truncated
    out = report_lines(ws)
    assert "failed shapes/cpu-int8" in out and "unreadable" in out, out

    # a workspace never built: missing outputs are no failure
    fresh = report_lines(workspace)
    assert "failed" not in fresh and "unreadable" not in fresh, fresh


# -- 7: read-only and full disks say so, never "a bug in buildsys" ---------------------------


COMMON = Path("build/shapes/_common")  # fetch's output folder: the first one a build writes


def test_read_only_build_dir_names_the_path(workspace: Path, mounts) -> None:
    read_only(workspace / COMMON, mounts)
    outcomes = rows(workspace, check=1)
    fetch = row(outcomes, "fetch")
    assert fetch["outcome"] == "failed"
    text = f"{fetch['error']['message']}\n{fetch['error']['hint']}"
    assert "build/shapes/_common/source.json" in text and "writable" in text, text
    assert "bug in buildsys" not in said(outcomes) and "internal error" not in said(outcomes)


def test_read_only_cleanup_does_not_hide_the_stage_error(workspace: Path, mounts) -> None:
    recipe = workspace / "recipes" / "shapes.yaml"
    pin = f"  keras: model/model.keras\n  sha256: '{'0' * 64}'\n"  # not the model's: fetch fails
    recipe.write_text(RECIPE.replace("  keras: model/model.keras\n", pin))

    def stale(common: Path) -> None:  # a previous build's output, which the failed fetch must drop
        (common / "source.json").write_text("{}")

    read_only(workspace / COMMON, mounts, stale)
    outcomes = rows(workspace, check=2)
    fetch = row(outcomes, "fetch")
    assert fetch["outcome"] == "failed" and "sha256 mismatch" in fetch["error"]["message"], fetch
    assert "bug in buildsys" not in said(outcomes)


def test_full_disk_says_free_space(workspace: Path, mounts) -> None:
    cache = workspace / ".buildsys" / "cache"  # where a stage's outputs are stored first
    mounts(cache, "size=256k")
    filler = cache / "filler"  # fills the disk; not buildsys's, so it must survive
    with open(filler, "wb", buffering=0) as fh:
        with pytest.raises(OSError) as full:
            while True:
                fh.write(b"\0" * 4096)
    assert full.value.errno == errno.ENOSPC
    size = filler.stat().st_size

    outcomes = rows(workspace, check=1)
    fetch = row(outcomes, "fetch")
    assert fetch["outcome"] == "failed"
    assert fetch["error"]["message"].startswith("No space left on device: free space in .buildsys/cache"), fetch
    assert "bug in buildsys" not in said(outcomes) and "internal error" not in said(outcomes)
    assert filler.stat().st_size == size
    assert not list(cache.rglob("*.tmp"))  # no half-written temp files left behind


def test_read_only_build_folder_is_one_clear_error(workspace: Path, mounts) -> None:
    """The whole of build/ read-only: the folder marker, written before any stage, fails first."""
    read_only(workspace / "build", mounts)
    proc = run_cli(workspace, "build", check=1)
    assert "cannot write build/shapes" in proc.stderr and "writable" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and "bug in buildsys" not in proc.stderr
