"""One build per workspace at a time: two would race on the doit DB and on outputs."""

from __future__ import annotations

import fcntl
import os
import shutil
from contextlib import contextmanager
from typing import Iterator

from buildsys.errors import UsageError
from buildsys.workspace import Workspace


@contextmanager
def exclusive(ws: Workspace) -> Iterator[None]:
    ws.state.mkdir(parents=True, exist_ok=True)
    fd = os.open(ws.state / "build.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(
                f"another buildsys build is running in {ws.root}",
                hint="wait for it to finish; the lock is released when that process exits",
            ) from None
        # the lock is ours, so temp dirs left here belong to a killed build
        shutil.rmtree(ws.tmp_dir, ignore_errors=True)
        yield
    finally:
        os.close(fd)
