"""The content-addressed cache (buildsys/cache.py): hits, misses, and damage that must never
be trusted nor be fatal. Fast, and without TensorFlow: plain files and the test-only stages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from core_stages import build, words_workspace

from buildsys.cache import Cache
from buildsys.hashing import digest_bytes

KEY = "a" * 64
OTHER = "b" * 64


@pytest.fixture
def cache(tmp_path: Path) -> Cache:
    return Cache(tmp_path / "cache")


def outputs(tmp_path: Path, **texts: str) -> dict[str, Path]:
    """{role: a file holding text}, as a stage's temp outputs."""
    out = {}
    for role, text in texts.items():
        out[role] = tmp_path / "made" / f"{role}.txt"
        out[role].parent.mkdir(parents=True, exist_ok=True)
        out[role].write_text(text)
    return out


def test_a_stored_entry_is_a_hit_and_restores_the_same_bytes(cache: Cache, tmp_path: Path) -> None:
    manifest = cache.store(KEY, outputs(tmp_path, model="weights", log="ran once"))
    assert manifest["model"] == {"sha256": digest_bytes(b"weights"), "size": 7}
    assert cache.lookup(KEY) == manifest
    dests = {"model": tmp_path / "out" / "model.bin", "log": tmp_path / "out" / "log.txt"}
    assert cache.restore(KEY, manifest, dests)
    assert dests["model"].read_text() == "weights" and dests["log"].read_text() == "ran once"
    assert cache.dropped == []


def test_an_unknown_key_is_a_miss(cache: Cache, tmp_path: Path) -> None:
    cache.store(KEY, outputs(tmp_path, model="weights"))
    assert cache.lookup(OTHER) is None
    assert cache.dropped == []  # nothing was damaged: a miss is not worth a warning


def test_identical_outputs_of_two_keys_share_one_object(cache: Cache, tmp_path: Path) -> None:
    a = cache.store(KEY, outputs(tmp_path, model="same bytes"))
    b = cache.store(OTHER, outputs(tmp_path, model="same bytes"))
    assert a == b
    assert len(list((cache.root / "objects").rglob("*"))) == 2  # one fan-out folder, one object


def test_a_damaged_object_is_not_restored_and_its_entry_is_dropped(cache: Cache, tmp_path: Path) -> None:
    manifest = cache.store(KEY, outputs(tmp_path, model="weights"))
    obj = cache.object_path(manifest["model"]["sha256"])
    obj.write_text("WEIGHTS")  # same size, other bytes: only re-hashing catches it
    dest = tmp_path / "out" / "model.bin"
    assert not cache.restore(KEY, manifest, {"model": dest})
    assert not dest.exists() and not obj.exists()
    assert cache.lookup(KEY) is None
    assert [why for _, why in cache.dropped] == ["model: its object is missing or damaged"]


def test_a_manifest_naming_a_missing_object_is_a_miss(cache: Cache, tmp_path: Path) -> None:
    manifest = cache.store(KEY, outputs(tmp_path, model="weights"))
    cache.object_path(manifest["model"]["sha256"]).unlink()  # an interrupted `cache gc`
    assert cache.lookup(KEY) is None


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda text: text[: len(text) // 2].encode(), id="truncated"),
        pytest.param(lambda text: b"\xff\xfe\x00garbage", id="not-utf8"),
        pytest.param(lambda text: b"", id="empty"),
        pytest.param(lambda text: json.dumps(["a list"]).encode(), id="not-a-map"),
        pytest.param(lambda text: text.replace('"size": 7', '"size": -7').encode(), id="negative-size"),
        pytest.param(lambda text: text.replace('"sha256": "', '"sha256": "zz').encode(), id="bad-sha"),
    ],
)
def test_a_damaged_manifest_is_a_miss_not_an_exception(cache: Cache, tmp_path: Path, damage) -> None:
    cache.store(KEY, outputs(tmp_path, model="weights"))
    path = cache.manifest_path(KEY)
    path.write_bytes(damage(path.read_text()))
    assert cache.lookup(KEY) is None
    assert not path.exists()  # dropped, so the next build does not meet it again
    assert [p for p, _ in cache.dropped] == [path]


def test_the_engine_reruns_a_stage_whose_cached_object_is_damaged(tmp_path: Path) -> None:
    ws = words_workspace(tmp_path / "ws")
    build(ws)
    upper = ws.root / "build" / "words" / "_common" / "upper.txt"
    for obj in (ws.cache_dir / "objects").rglob("*"):
        if obj.is_file() and obj.read_text() == "SOME QUIET WORDS\n":
            obj.write_text("some quiet words\n")  # same size: a bit flip on disk
    upper.unlink()
    assert build(ws)["upper"] == "ran"  # not "restored" from the damaged object
    assert upper.read_text() == "SOME QUIET WORDS\n"


def test_the_engine_reruns_a_stage_whose_manifest_is_cut_short(tmp_path: Path) -> None:
    ws = words_workspace(tmp_path / "ws")
    build(ws)
    for manifest in (ws.cache_dir / "keys").glob("*.json"):
        manifest.write_text(manifest.read_text()[:10])
    (ws.root / "build" / "words" / "_common" / "upper.txt").unlink()
    assert build(ws) == {"upper": "ran", "count": "up-to-date"}  # same bytes again: count stays
