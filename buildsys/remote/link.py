"""One stage's use of the remote cache: pull a missing entry, push a fresh one.

Nothing the remote does can fail the build. A failure of the remote itself is said
once per build (a marker under .buildsys/ tells the other stages, which may run in
other processes, to leave the remote alone); an entry that fails its signature or
an object that fails its sha256 is refused with a warning and the stage runs. When
the cache is writable, the fresh result replaces what was refused.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from buildsys.cache import Cache, manifest_problem
from buildsys.fsutil import atomic_write_text
from buildsys.remote.config import RemoteConfig
from buildsys.remote.sign import signature_problem, signed
from buildsys.remote.store import FORMAT, RemoteStore, RemoteUnavailable
from buildsys.workspace import Workspace


def down_marker(ws: Workspace, build_id: str) -> Path:
    return ws.state / "remote-down" / build_id


@dataclass
class RemoteLink:
    config: RemoteConfig
    ws: Workspace
    build_id: str
    task: str  # the stage's name, for warnings
    warnings: list[str] = field(default_factory=list)
    moved: int = 0  # bytes downloaded or uploaded
    _refused: set[str] = field(default_factory=set)  # objects (sha) or "manifest" to replace on push
    _store: RemoteStore | None = None

    @property
    def store(self) -> RemoteStore:
        if self._store is None:
            self._store = RemoteStore(self.config)
        return self._store

    def is_down(self) -> bool:
        return down_marker(self.ws, self.build_id).exists()

    def pull(self, key: str, cache: Cache, roles: list[str]) -> dict[str, dict] | None:
        """The entry for `key`, its objects verified and committed to the local cache; or None."""
        if self.is_down():
            return None
        try:
            return self._pull(key, cache, roles)
        except RemoteUnavailable as exc:
            self._went_down(exc)
            return None

    def _pull(self, key: str, cache: Cache, roles: list[str]) -> dict[str, dict] | None:
        try:
            doc = self.store.read_json(self.store.manifest_path(key))
        except ValueError as exc:
            self._refuse("manifest", f"its manifest is not JSON ({exc})")
            return None
        if doc is None:
            return None
        why = _doc_problem(doc, key) or signature_problem(self.config.secret, doc)
        if why:
            self._refuse("manifest", why)
            return None
        outputs: dict[str, dict] = doc["outputs"]
        if not set(roles) <= outputs.keys():
            self._refuse("manifest", f"it lacks {', '.join(sorted(set(roles) - outputs.keys()))}")
            return None
        for role in roles:
            if not self._fetch(cache, role, outputs[role]):
                return None
        cache.commit_manifest(key, {role: outputs[role] for role in roles})
        return {role: outputs[role] for role in roles}

    def _fetch(self, cache: Cache, role: str, entry: dict[str, Any]) -> bool:
        sha = entry["sha256"]
        if cache.has_object(sha):  # restore re-hashes it, and drops the entry if it is damaged
            return True
        moved, why = self.store.fetch_object(sha, cache.object_path(sha), entry["size"])
        self.moved += moved
        if why is None:
            return True
        self._refuse(sha, f"its {role} object {sha[:12]}... {why}")
        return False

    def push(self, key: str, cache: Cache, manifest: dict[str, dict], seconds: float | None) -> None:
        """Upload a fresh result: objects first, the signed manifest last."""
        if not self.config.writable or self.is_down():
            return
        try:
            for entry in manifest.values():
                self._push_object(cache, entry["sha256"])
            doc: dict[str, Any] = {"format": FORMAT, "key": key, "outputs": manifest}
            if seconds is not None:
                doc["seconds"] = round(seconds, 3)
            self.store.write_json(self.store.manifest_path(key), signed(self.config.secret, doc))
        except RemoteUnavailable as exc:
            self._went_down(exc)

    def _push_object(self, cache: Cache, sha: str) -> None:
        path = self.store.object_path(sha)
        if sha not in self._refused and self.store.has(path):
            return
        self.store.upload(cache.object_path(sha), path)
        self.moved += cache.object_path(sha).stat().st_size

    def _refuse(self, what: str, why: str) -> None:
        self._refused.add(what)
        self.warnings.append(f"refused the remote cache entry for {self.task}: {why}; ran the stage")

    def _went_down(self, exc: RemoteUnavailable) -> None:
        if mark_down(self.ws, self.build_id, exc.message):
            self.warnings.append(f"{exc.message}; building locally for the rest of this build")


def mark_down(ws: Workspace, build_id: str, why: str) -> bool:
    """Tell this build's other stages (other processes too) to leave the remote alone;
    False if one already did, and said so."""
    marker = down_marker(ws, build_id)
    if marker.exists():
        return False
    try:
        atomic_write_text(marker, f"{time.time():.0f} {why}\n")
    except OSError:
        pass  # then the next stage tries the remote again, and says so again
    return True


def _doc_problem(doc: Any, key: str) -> str | None:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        return "its manifest is not a buildsys cache manifest (format 1)"
    if doc.get("key") != key:
        return "its manifest names another stage key"
    problem = manifest_problem(doc.get("outputs"))
    return f"its manifest is malformed ({problem})" if problem else None
