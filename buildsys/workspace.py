"""Where buildsys keeps its state: like `make`, the directory it runs in."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def at(cls, root: Path | str | None = None) -> Workspace:
        return cls(Path(os.path.abspath(root or os.getcwd())))

    @property
    def state(self) -> Path:
        return self.root / ".buildsys"

    @property
    def cache_dir(self) -> Path:
        return self.state / "cache"

    @property
    def db_file(self) -> Path:
        return self.state / "doit.json"

    @property
    def records_dir(self) -> Path:
        return self.state / "records"

    @property
    def tmp_dir(self) -> Path:
        return self.state / "tmp"

    @property
    def logs_dir(self) -> Path:
        return self.state / "logs"

    @property
    def hash_db(self) -> Path:
        return self.state / "hashes.json"

    def show(self, path: Path | str) -> str:
        """A path for humans: relative to the workspace when inside it."""
        return relpath(path, self.root)


def relpath(path: Path | str, start: Path | str) -> str:
    """Posix relative path; stays absolute if it would only climb out of a different tree."""
    path, start = os.path.abspath(path), os.path.abspath(start)
    try:
        rel = os.path.relpath(path, start)
    except ValueError:
        return Path(path).as_posix()
    return Path(rel).as_posix()
