"""A full disk or an unwritable folder is the machine's state, not a bug: say where and what to do."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from buildsys.errors import StageError
from buildsys.workspace import Workspace

NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})
NOT_WRITABLE = frozenset({errno.EACCES, errno.EROFS, errno.EPERM})


def is_disk_error(exc: BaseException, errnos: frozenset[int] = NO_SPACE | NOT_WRITABLE) -> bool:
    return isinstance(exc, OSError) and exc.errno in errnos


def disk_error(ws: Workspace, exc: OSError, path: Path) -> StageError:
    """The error for writing `path` (a file or folder) that failed with `exc`."""
    named = exc.filename2 or exc.filename  # filename2: the destination of a copy or rename
    failed = Path(os.fsdecode(named)) if isinstance(named, (str, bytes, os.PathLike)) else path
    # the folder written to: the path if it is one, else its parent (of a file, of a temp
    # name beside it, or of a folder that could not be made)
    where = ws.show(failed if failed.is_dir() else failed.parent)
    if exc.errno in NO_SPACE:
        return StageError(
            f"No space left on device: free space in {where}",
            hint=f"writing {ws.show(path)} failed ({exc.strerror}); finished stages are kept, "
            "so build again once there is room",
            path=where,
        )
    return StageError(
        f"cannot write {ws.show(path)}: {exc.strerror} ({where})",
        hint=f"make {where} writable (chmod u+w, or remount it read-write) and build again, "
        "or build in a workspace you can write: `buildsys -C DIR build`",
        path=ws.show(path),
    )
