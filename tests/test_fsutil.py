"""Atomic writes leave ordinary files: umask-respecting modes, no temp files."""

from __future__ import annotations

import os
from pathlib import Path

from buildsys.fsutil import atomic_copy, atomic_write_bytes


def test_atomic_files_get_umask_mode_and_leave_no_temp(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a" / "x.bin", b"data")
        atomic_copy(tmp_path / "a" / "x.bin", tmp_path / "b" / "y.bin")
    finally:
        os.umask(old)
    for path in (tmp_path / "a" / "x.bin", tmp_path / "b" / "y.bin"):
        assert path.read_bytes() == b"data"
        assert path.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["x.bin", "y.bin"]
