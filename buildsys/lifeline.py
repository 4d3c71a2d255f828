"""Stage workers die with the build that forked them.

doit's process pool forks workers that block on a queue; if the main process is
killed (kill -9, an OOM kill, a closed CI job) nothing tells them, and a worker
could go on writing outputs beside the next build. On Linux the kernel can send
a signal when the parent goes; elsewhere this is a no-op and only the workspace
lock (which workers do not inherit) protects the next build.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when its parent exits (forked child side)."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request took hold
        os._exit(1)


def bind_forked_workers() -> None:
    """Every process forked from here on dies with this one.

    Fork hooks cannot be removed, and registering the same function twice would
    call it twice; prctl is idempotent, so repeated builds in one process are harmless.
    """
    os.register_at_fork(after_in_child=die_with_parent)
