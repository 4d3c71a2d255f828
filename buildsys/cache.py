"""Content-addressed store of stage outputs.

Layout under `.buildsys/cache/`:
  objects/ab/<sha256>      file contents, named by their full sha256
  keys/<stage key>.json    {role: {"sha256", "size"}} for one stage run

An entry is written objects first, manifest last, each atomically, so a killed
build leaves at worst an orphan object, never a manifest that points at
missing or partial data. Objects are re-hashed on restore, so even a damaged
object is caught and the stage re-runs. A manifest that does not parse or has
the wrong shape is a miss too: it is dropped and noted in `dropped`, so the
stage runs and the build says so once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from buildsys.fsutil import atomic_copy, atomic_write_text, remove
from buildsys.hashing import digest_file, is_sha256


class Cache:
    def __init__(self, root: Path):
        self.root = root
        self.dropped: list[tuple[Path, str]] = []  # (damaged manifest, why), for the build's warnings

    def _object(self, sha: str) -> Path:
        return self.root / "objects" / sha[:2] / sha

    def _manifest(self, key: str) -> Path:
        return self.root / "keys" / f"{key}.json"

    object_path = _object
    manifest_path = _manifest

    def has_object(self, sha: str) -> bool:
        return self._object(sha).is_file()

    def commit_manifest(self, key: str, manifest: dict[str, dict]) -> None:
        """Write a manifest whose objects are all in place (objects first, manifest last)."""
        atomic_write_text(self._manifest(key), json.dumps(manifest, sort_keys=True, indent=1))

    def lookup(self, key: str) -> dict[str, dict] | None:
        path = self._manifest(key)
        try:
            raw = path.read_bytes()
        except OSError:
            return None
        try:
            data = json.loads(raw)
        except ValueError as exc:  # UnicodeDecodeError is one too
            self._drop(path, f"not JSON: {exc}")
            return None
        problem = manifest_problem(data)
        if problem:
            self._drop(path, problem)
            return None
        if not all(self._object(o["sha256"]).is_file() for o in data.values()):
            return None
        return data

    def _drop(self, path: Path, why: str) -> None:  # a miss, noted
        try:
            remove(path)
        except OSError:
            pass  # then `store` replaces it, or the next lookup drops it again
        self.dropped.append((path, why))
        return None

    def store(self, key: str, outputs: dict[str, Path]) -> dict[str, dict]:
        """Copy finished outputs in; returns the manifest."""
        manifest = {}
        for role, path in sorted(outputs.items()):
            sha = digest_file(path)
            obj = self._object(sha)
            if not obj.is_file():
                atomic_copy(path, obj)
            manifest[role] = {"sha256": sha, "size": path.stat().st_size}
        self.commit_manifest(key, manifest)
        return manifest

    def restore(self, key: str, manifest: dict[str, dict], dests: dict[str, Path]) -> bool:
        """Materialise outputs; False (and the entry dropped) if an object is damaged."""
        for role, dest in dests.items():
            entry = manifest.get(role)
            if entry is None:
                return False
            obj = self._object(entry["sha256"])
            if not obj.is_file() or digest_file(obj) != entry["sha256"]:
                remove(obj)
                self._drop(self._manifest(key), f"{role}: its object is missing or damaged")
                return False
            atomic_copy(obj, dest)
        try:
            os.utime(self._manifest(key))  # last use, for `buildsys cache gc --older-than`
        except OSError:
            pass
        return True


def manifest_problem(data: object) -> str | None:
    """What is wrong with a manifest's shape ({role: {"sha256": 64 hex, "size": int}}), or None."""
    if not isinstance(data, dict):
        return "not a map of roles"
    for role, entry in data.items():
        if not isinstance(entry, dict):
            return f"{role}: not a map"
        if not is_sha256(entry.get("sha256")):
            return f"{role}: sha256 is not 64 hex digits"
        size = entry.get("size")
        if type(size) is not int or size < 0:  # bool is no size
            return f"{role}: size is not a byte count"
    return None
