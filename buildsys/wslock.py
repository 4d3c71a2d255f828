"""One writer per workspace at a time: two would race on the doit DB, the cache and outputs.

The lock is a POSIX record lock (`lockf`), not `flock`: a forked stage worker
does not inherit it, so a build whose main process was killed frees the
workspace at once even if a worker outlives it for a moment. The holder writes
its pid into the file so a refused command can say who holds it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from buildsys.errors import UsageError
from buildsys.workspace import Workspace


def lock_file(ws: Workspace) -> Path:
    return ws.state / "build.lock"


@contextmanager
def exclusive(ws: Workspace, command: str = "build") -> Iterator[None]:
    ws.state.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_file(ws), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise _busy(ws, fd, command) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {command}\n".encode(), 0)
        # the lock is ours, so temp dirs left here belong to a killed build
        shutil.rmtree(ws.tmp_dir, ignore_errors=True)
        yield
    finally:
        os.close(fd)  # closing any descriptor of the file releases a POSIX lock


def _busy(ws: Workspace, fd: int, command: str) -> UsageError:
    pid, holder = _holder(fd)
    who = f"pid {pid} (`buildsys {holder}`)" if pid else "another buildsys process"
    stale = (
        f"if pid {pid} is hung, stop it (`kill {pid}`): finished stages are kept and the lock goes with the process"
        if pid
        else "the lock is released when that process exits"
    )
    return UsageError(
        f"cannot {command}: {who} is using the workspace {ws.root} (lock: {ws.show(lock_file(ws))})",
        hint=f"wait for it to finish; {stale}",
    )


def _holder(fd: int) -> tuple[int | None, str]:
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").split()
        return int(text[0]), " ".join(text[1:]) or "build"
    except (OSError, ValueError, IndexError):
        return None, ""
