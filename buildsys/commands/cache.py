"""`buildsys cache status|push|pull|gc`: the local and the remote store."""

from __future__ import annotations

import uuid
from typing import Any

from buildsys.cache import Cache
from buildsys.commands.common import load_recipes, workspace
from buildsys.errors import UsageError
from buildsys.remote.config import RemoteConfig, remote_config
from buildsys.ui import Ui
from buildsys.workspace import Workspace
from buildsys.wslock import exclusive


def run(args: Any, ui: Ui) -> int:
    ws = workspace(args)
    remote = remote_config(ws.root, args.remote)
    return {"status": _status, "push": _push, "pull": _pull, "gc": _gc}[args.action](args, ui, ws, remote)


def _link(ws: Workspace, remote: RemoteConfig | None, task: str, write: bool = False) -> Any:
    from buildsys.remote.link import RemoteLink

    if remote is None:
        raise UsageError(
            f"`buildsys cache {task}` needs a remote cache",
            hint="name one with --remote URL, BUILDSYS_REMOTE or `remote: {url: ...}` in buildsys.yaml",
        )
    if write and not remote.writable:
        raise UsageError(f"the remote cache {remote.shown()} is read-only here (BUILDSYS_REMOTE_MODE={remote.mode})")
    return RemoteLink(remote, ws, uuid.uuid4().hex, f"cache {task}")


def _finish(ui: Ui, ws: Workspace, link: Any) -> int:
    """Say what the remote refused or why it failed; a failed remote is exit 1."""
    from buildsys.fsutil import remove
    from buildsys.remote.link import down_marker

    for warning in link.warnings:
        ui.warning(warning)
    down = down_marker(ws, link.build_id)
    failed = down.exists()
    remove(down)
    return 1 if failed else 0


def _status(args: Any, ui: Ui, ws: Workspace, remote: RemoteConfig | None) -> int:
    from buildsys.remote.admin import local_usage, remote_usage

    doc: dict[str, Any] = {"local": {"path": ws.show(ws.cache_dir), **local_usage(Cache(ws.cache_dir)).as_json()}}
    if remote is not None:
        link = _link(ws, remote, "status")
        doc["remote"] = {"url": remote.shown(), "mode": remote.mode, "signed": remote.secret is not None}
        from buildsys.remote.store import RemoteUnavailable

        try:
            doc["remote"].update(remote_usage(link.store).as_json())
        except RemoteUnavailable as exc:
            doc["remote"]["error"] = exc.message
    if args.json:
        ui.data(doc)
    else:
        for where, facts in doc.items():
            ui.line(_usage_line(where, facts))
    return 1 if "error" in doc.get("remote", {}) else 0


def _usage_line(where: str, facts: dict[str, Any]) -> str:
    name = facts.get("path") or f"{facts['url']} ({facts['mode']}, {'signed' if facts['signed'] else 'unsigned'})"
    if "error" in facts:
        return f"{where:<7} {name}: {facts['error']}"
    return f"{where:<7} {name}: {facts['entries']} entries, {facts['objects']} objects, {_size(facts['bytes'])}"


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def _push(args: Any, ui: Ui, ws: Workspace, remote: RemoteConfig | None) -> int:
    from buildsys.remote.admin import push_all

    link = _link(ws, remote, "push", write=True)
    pushed, present = push_all(link, Cache(ws.cache_dir))
    ui.line(f"pushed {pushed} entries ({_size(link.moved)}) to {link.config.shown()}; {present} were there already")
    return _finish(ui, ws, link)


def _pull(args: Any, ui: Ui, ws: Workspace, remote: RemoteConfig | None) -> int:
    """The entries the recipes' lockfiles name: after it, `buildsys build` restores locally."""
    from buildsys import lockfile
    from buildsys.plan import make_plan
    from buildsys.remote.admin import pull_keys
    from buildsys.stages.keys import VOLATILE

    link = _link(ws, remote, "pull")
    wanted, measured = [], 0
    for rp in make_plan(load_recipes(args, ws), ws).recipes:
        locked = (lockfile.read(lockfile.lock_path(rp.recipe)) or {}).get("stages") or {}
        for stage in rp.stages:
            entry = locked.get(stage.local_id) or {}
            if VOLATILE in (entry.get("inputs") or {}).values():
                measured += 1  # the lock's key names a measurement by name only: not a cache key
            elif entry.get("key"):
                wanted.append((entry["key"], sorted(stage.outputs())))
    with exclusive(ws, "cache pull"):
        pulled, local, missing = pull_keys(link, Cache(ws.cache_dir), wanted)
    ui.line(f"pulled {pulled} entries ({_size(link.moved)}); {local} were local; {missing} not on the remote")
    if measured:
        ui.line(
            f"{measured} stages read this machine's measurements (reports): a build with the remote restores them",
            style="dim",
        )
    return _finish(ui, ws, link)


def _gc(args: Any, ui: Ui, ws: Workspace, remote: RemoteConfig | None) -> int:
    from buildsys.remote.admin import local_gc, parse_age, record_keys, remote_gc

    age = parse_age(args.older_than) if args.older_than else None
    if args.remote_store:
        if age is None:
            raise UsageError(
                "gc of the remote store needs --older-than",
                hint="e.g. `buildsys cache gc --remote-store --older-than 30d`",
            )
        link = _link(ws, remote, "gc", write=True)
        from buildsys.remote.store import RemoteUnavailable

        try:
            removed = remote_gc(link.store, age)
        except RemoteUnavailable as exc:
            ui.warning(exc.message)
            return 1
        where = link.config.shown()
    else:
        with exclusive(ws, "cache gc"):
            removed = local_gc(Cache(ws.cache_dir), age, record_keys(ws.records_dir))
        where = ws.show(ws.cache_dir)
    ui.line(f"removed {removed.entries} entries and {removed.objects} objects ({_size(removed.bytes)}) from {where}")
    return 0
