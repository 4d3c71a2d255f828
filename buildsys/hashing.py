"""Canonical JSON and content hashes: the only place buildsys makes a hash.

Keys must not depend on cosmetic edits, so everything hashed goes through
`canonical_json` (sorted keys, no whitespace, UTF-8, no NaN).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

CHUNK = 1 << 20


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
        return data if isinstance(data, dict) else {}

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
