"""Whole-store operations behind `buildsys cache`: sizes, push, pull and garbage collection.

gc deletes only what has buildsys's own names (64-hex manifests and objects under
keys/ and objects/), so a prefix shared with other files loses none of them. An
object is deleted only when no kept manifest names it and it is itself older than
the cut-off: an upload in flight writes its objects before its manifest.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from buildsys.cache import Cache, manifest_problem
from buildsys.errors import UsageError
from buildsys.fsutil import remove
from buildsys.hashing import is_sha256
from buildsys.remote.link import RemoteLink
from buildsys.remote.store import RemoteStore

_HEX = re.compile(r"^[0-9a-f]{64}$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass
class Usage:
    entries: int = 0
    objects: int = 0
    bytes: int = 0

    def as_json(self) -> dict[str, int]:
        return {"entries": self.entries, "objects": self.objects, "bytes": self.bytes}


def parse_age(text: str) -> float:
    """'30d', '12h', '90m', '2w' -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text or "")
    if not match:
        raise UsageError(f"--older-than '{text}' is not an age", hint="write a number and a unit: 30d, 12h, 90m, 2w")
    return float(match.group(1)) * _UNITS[match.group(2)]


# -- the local store ------------------------------------------------------------------------
def local_files(cache: Cache, folder: str) -> list[Path]:
    root = cache.root / folder
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []


def local_usage(cache: Cache) -> Usage:
    manifests = [p for p in local_files(cache, "keys") if _HEX.match(p.stem)]
    objects = [p for p in local_files(cache, "objects") if _HEX.match(p.name)]
    return Usage(len(manifests), len(objects), sum(p.stat().st_size for p in objects))


def local_gc(cache: Cache, max_age: float | None, keep: set[str]) -> Usage:
    """Drop manifests unused for `max_age` (never those in `keep`: the last build's), then
    every object no manifest names. Returns what was removed."""
    now, removed = time.time(), Usage()
    named: set[str] = set()
    for path in local_files(cache, "keys"):
        if not _HEX.match(path.stem):
            continue
        old = max_age is not None and now - path.stat().st_mtime > max_age and path.stem not in keep
        manifest = None if old else cache.lookup(path.stem)
        if manifest is None:
            remove(path)
            removed.entries += 1
        else:
            named.update(entry["sha256"] for entry in manifest.values())
    for path in local_files(cache, "objects"):
        if _HEX.match(path.name) and path.name not in named:
            removed.objects, removed.bytes = removed.objects + 1, removed.bytes + path.stat().st_size
            remove(path)
    return removed


# -- the remote store ----------------------------------------------------------------------
def remote_usage(store: RemoteStore) -> Usage:
    usage = Usage()
    for path, _info in store.listing("keys"):
        usage.entries += _named_manifest(path) is not None
    for path, info in store.listing("objects"):
        if _HEX.match(path.rsplit("/", 1)[-1]):
            usage.objects += 1
            usage.bytes += int(info.get("size") or 0)
    return usage


def push_all(link: RemoteLink, cache: Cache) -> tuple[int, int]:
    """Upload every local entry the remote lacks: (entries pushed, entries already there)."""
    pushed = present = 0
    for path in local_files(cache, "keys"):
        manifest = cache.lookup(path.stem) if _HEX.match(path.stem) else None
        if manifest is None:
            continue
        if link.store.has(link.store.manifest_path(path.stem)):
            present += 1
            continue
        link.push(path.stem, cache, manifest, None)
        pushed += 1
    return pushed, present


def pull_keys(link: RemoteLink, cache: Cache, keys: Iterable[tuple[str, list[str]]]) -> tuple[int, int, int]:
    """Fetch the entries for (key, roles): (pulled, already local, not on the remote)."""
    pulled = local = missing = 0
    for key, roles in keys:
        if cache.lookup(key) is not None:
            local += 1
        elif link.pull(key, cache, roles) is not None:
            pulled += 1
        else:
            missing += 1
    return pulled, local, missing


def remote_gc(store: RemoteStore, max_age: float) -> Usage:
    now, removed = time.time(), Usage()
    named: set[str] = set()
    for path, info in store.listing("keys"):
        if _named_manifest(path) is None:
            continue
        if now - _mtime(info) > max_age:
            store.delete(path)
            removed.entries += 1
            continue
        named.update(_object_names(store, path))
    for path, info in store.listing("objects"):
        name = path.rsplit("/", 1)[-1]
        if _HEX.match(name) and name not in named and now - _mtime(info) > max_age:
            store.delete(path)
            removed.objects, removed.bytes = removed.objects + 1, removed.bytes + int(info.get("size") or 0)
    return removed


def _named_manifest(path: str) -> str | None:
    name = path.rsplit("/", 1)[-1]
    return name[:-5] if name.endswith(".json") and _HEX.match(name[:-5]) else None


def _object_names(store: RemoteStore, path: str) -> set[str]:
    try:
        doc = store.read_json(path)
    except ValueError:
        return set()
    outputs = doc.get("outputs") if isinstance(doc, dict) else None
    if outputs is None or manifest_problem(outputs) is not None:
        return set()
    return {entry["sha256"] for entry in outputs.values() if is_sha256(entry["sha256"])}


def _mtime(info: dict[str, Any]) -> float:
    """Seconds since the epoch of a listing entry, whichever way the backend says it."""
    for name in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = info.get(name)
        if value is None:
            continue
        if isinstance(value, (int, float)):
            return float(value)
        if hasattr(value, "timestamp"):
            return float(value.timestamp())
        try:
            from datetime import datetime

            return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
        except ValueError:
            continue
    return time.time()  # unknown age: never old enough to delete


def record_keys(records_dir: Path) -> set[str]:
    """Keys of the last build of every recipe (kept by a local gc whatever their age)."""
    keys = set()
    for path in records_dir.rglob("*.json") if records_dir.is_dir() else ():
        try:
            key = json.loads(path.read_text("utf-8")).get("key")
        except (OSError, ValueError, AttributeError):
            continue
        if is_sha256(key):
            keys.add(key)
    return keys
