"""Canonical JSON and content hashes: the only place buildsys makes a hash.

Keys must not depend on cosmetic edits, so everything hashed goes through
`canonical_json` (sorted keys, no whitespace, UTF-8, no NaN).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any, TypeGuard

CHUNK = 1 << 20
SHA256 = re.compile(r"[0-9a-f]{64}")


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def digest_data(data: Any) -> str:
    """sha256 hex of the canonical JSON of `data`."""
    return hashlib.sha256(canonical_json(data).encode("utf-8")).hexdigest()


def digest_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def is_sha256(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and SHA256.fullmatch(value) is not None


def digest_tree(files: dict[str, str]) -> str:
    """Digest of a directory given {relative posix path: sha256} of its files."""
    return digest_data(sorted(files.items()))


class FileHasher:
    """Content hashes with a stat cache, so a no-op build hashes nothing.

    An entry is trusted only while (size, mtime_ns, inode) are unchanged and the
    file was last modified well before the entry was made: a file rewritten within
    the same clock tick keeps its mtime, so young entries are re-hashed (git's
    "racy clean" rule).
    """

    RACY_SECONDS = 2.0

    def __init__(self, db: Path | None = None):
        self._db = db
        self._entries: dict[str, list] = self._load(db)
        self._dirty = False

    @staticmethod
    def _load(db: Path | None) -> dict[str, list]:
        if db is None or not db.exists():
            return {}
        try:
            data = json.loads(db.read_text("utf-8"))
        except (OSError, ValueError):
            return {}  # a damaged stat cache only costs re-hashing
        if not isinstance(data, dict):
            return {}
        # a hash read back from here ends up in lockfiles: trust only entries of our own shape
        return {key: entry for key, entry in data.items() if _valid_entry(entry)}

    def digest(self, path: Path) -> str:
        import os
        import time

        key = os.path.abspath(path)
        st = os.stat(key)
        stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
        entry = self._entries.get(key)
        if entry and entry[:3] == stamp and entry[4] - st.st_mtime_ns / 1e9 > self.RACY_SECONDS:
            return entry[3]
        sha = digest_file(Path(key))
        self._entries[key] = [*stamp, sha, time.time()]
        self._dirty = True
        return sha

    def save(self) -> None:
        if not (self._dirty and self._db):
            return
        from buildsys.fsutil import atomic_write_text

        atomic_write_text(self._db, json.dumps(self._entries, sort_keys=True))
        self._dirty = False


def _valid_entry(entry: object) -> bool:
    """[size, mtime_ns, inode, sha256, time hashed], as `FileHasher.digest` writes it."""
    if not (isinstance(entry, list) and len(entry) == 5):
        return False
    size, mtime_ns, inode, sha, hashed = entry
    stamp_ok = all(type(v) is int for v in (size, mtime_ns, inode)) and size >= 0  # bool is no size
    hashed_ok = type(hashed) in (int, float) and math.isfinite(hashed)
    return stamp_ok and hashed_ok and is_sha256(sha)
