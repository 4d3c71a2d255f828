"""Content-addressed store of stage outputs.

Layout under `.buildsys/cache/`:
  objects/ab/<sha256>      file contents, named by their full sha256
  keys/<stage key>.json    {role: {"sha256", "size"}} for one stage run

An entry is written objects first, manifest last, each atomically, so a killed
build leaves at worst an orphan object, never a manifest that points at
missing or partial data. Objects are re-hashed on restore, so even a damaged
object is caught and the stage re-runs.
"""

from __future__ import annotations

import json
from pathlib import Path

from buildsys.fsutil import atomic_copy, atomic_write_text, remove
from buildsys.hashing import digest_file


class Cache:
    def __init__(self, root: Path):
        self.root = root

    def _object(self, sha: str) -> Path:
        return self.root / "objects" / sha[:2] / sha

    def _manifest(self, key: str) -> Path:
        return self.root / "keys" / f"{key}.json"

    def lookup(self, key: str) -> dict[str, dict] | None:
        try:
            data = json.loads(self._manifest(key).read_text("utf-8"))
        except (OSError, ValueError):
            return None
        if not all(self._object(o["sha256"]).is_file() for o in data.values()):
            return None
        return data

    def store(self, key: str, outputs: dict[str, Path]) -> dict[str, dict]:
        """Copy finished outputs in; returns the manifest."""
        manifest = {}
        for role, path in sorted(outputs.items()):
            sha = digest_file(path)
            obj = self._object(sha)
            if not obj.is_file():
                atomic_copy(path, obj)
            manifest[role] = {"sha256": sha, "size": path.stat().st_size}
        atomic_write_text(self._manifest(key), json.dumps(manifest, sort_keys=True, indent=1))
        return manifest

    def restore(self, key: str, manifest: dict[str, dict], dests: dict[str, Path]) -> bool:
        """Materialise outputs; False (and the entry dropped) if an object is damaged."""
        for role, dest in dests.items():
            entry = manifest.get(role)
            if entry is None:
                return False
            obj = self._object(entry["sha256"])
            if digest_file(obj) != entry["sha256"]:
                remove(obj)
                remove(self._manifest(key))
                return False
            atomic_copy(obj, dest)
        return True
