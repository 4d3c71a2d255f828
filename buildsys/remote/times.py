"""Stage times kept on the remote, so `--shard` balances by what stages really cost.

Shards read only `times/all.json`, which the final build of a CI run (the one
without --shard) writes after every shard has finished: the jobs of one matrix
then all see the same times and compute the same split, whichever starts late.
Each shard leaves its own times in `times/shard-i-of-n.json` (replacing its slot's
previous file, so the folder stays as small as the matrix); the final build folds
every slot and its own runs into all.json, the newest file winning.
"""

from __future__ import annotations

import time
from typing import Any

from buildsys.remote.config import RemoteConfig
from buildsys.remote.store import RemoteStore, RemoteUnavailable

ALL = "all"


def read_times(config: RemoteConfig, every_slot: bool = False) -> tuple[dict[str, float], str | None]:
    """({task name: seconds}, a warning if the remote could not be read)."""
    store = RemoteStore(config)
    try:
        paths = [p for p, _ in store.listing("times")] if every_slot else [store.path("times", f"{ALL}.json")]
        docs = [d for d in (_read(store, p) for p in paths) if d is not None]
    except RemoteUnavailable as exc:
        return {}, f"{exc.message}; stage times are not used"
    merged: dict[str, float] = {}
    for doc in sorted(docs, key=lambda d: float(d.get("written") or 0)):
        merged.update({k: float(v) for k, v in doc["stages"].items() if isinstance(v, (int, float)) and v >= 0})
    return merged, None


def _read(store: RemoteStore, path: str) -> dict[str, Any] | None:
    try:
        doc = store.read_json(path)
    except ValueError:
        return None
    ok = isinstance(doc, dict) and isinstance(doc.get("stages"), dict)
    return doc if ok else None


def keep_times(config: RemoteConfig, slot: str, ran: dict[str, float]) -> str | None:
    """Record this build's stage times in its slot; a warning if the remote refused."""
    if not config.writable or not ran:  # a no-op build asks the remote nothing
        return None
    seconds = ran
    if slot == ALL:
        earlier, warning = read_times(config, every_slot=True)
        if warning:
            return warning
        seconds = {**earlier, **ran}
    store = RemoteStore(config)
    try:
        store.write_json(store.path("times", f"{slot}.json"), {"written": round(time.time(), 3), "stages": seconds})
    except RemoteUnavailable as exc:
        return f"{exc.message}; this build's stage times were not kept"
    return None
