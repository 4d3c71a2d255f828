"""doit's dependency DB, written atomically and never trusted when damaged.

doit's JsonDB rewrites `.buildsys/doit.json` in place, so a build killed while
it writes leaves a truncated file that makes every later run fail. Here the
file is replaced whole (temp file + rename), and a file that does not parse as
doit's {task: {dependency: value}} is set aside before doit opens it. Losing it
costs little: each stage's key is then looked up in the content cache.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from doit.dependency import JsonDB

from buildsys.fsutil import atomic_write_text


class AtomicJsonDB(JsonDB):
    desc = "JSON file replaced atomically"

    def dump(self) -> None:
        atomic_write_text(Path(self.name), self.codec.encode(self._db))


def set_aside_if_damaged(db: Path) -> str | None:
    """Move a damaged DB out of the way; returns a one-line warning, or None when it is sound."""
    why = damage(db)
    if why is None:
        return None
    aside = db.with_name(f"{db.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    try:
        os.replace(db, aside)
    except OSError as exc:
        return f"build state {db} is damaged ({why}) and could not be moved aside: {exc.strerror}"
    return f"build state {db.name} was damaged ({why}); moved to {aside.name}, stages are checked against the cache"


def damage(db: Path) -> str | None:
    if not db.exists() and not db.is_symlink():
        return None
    if not db.is_file():
        return "not a regular file"
    try:
        data = json.loads(db.read_text("utf-8"))
    except UnicodeDecodeError:
        return "not UTF-8"
    except json.JSONDecodeError as exc:
        return f"not JSON: {exc.msg} at byte {exc.pos}"
    except OSError as exc:
        return exc.strerror or "unreadable"
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        return "not a map of task records"
    return None
