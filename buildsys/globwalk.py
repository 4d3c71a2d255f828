"""Bounded glob: `glob.glob(pattern, recursive=True)` that stops past a limit.

glob.glob materialises every match and walks wherever `**` leads, so
`images: /**/*.png` walks the whole file system before anything can object.
This walk gives the same matches (same hidden-file and symlink rules) but
counts what it looks at and raises `GlobLimit` as soon as a limit is passed.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field

from buildsys.errors import InputError

MAGIC = set("*?[")


class GlobLimit(InputError):
    """A glob matched, or had to look at, more than its limit allows."""


def has_magic(part: str) -> bool:
    return bool(MAGIC & set(part))


def fixed_prefix(pattern: str) -> str:
    """The leading folders of `pattern` that hold no wildcard: where the walk starts."""
    parts = pattern.split(os.sep)
    fixed = []
    for part in parts:
        if has_magic(part):
            break
        fixed.append(part)
    if len(fixed) == len(parts):
        return os.path.dirname(pattern)
    return os.sep.join(fixed) or os.sep


def recursive(pattern: str) -> bool:
    return "**" in pattern.split(os.sep)


@dataclass
class _Walk:
    max_matches: int
    max_entries: int
    pattern: str
    entries: int = 0
    found: set[str] = field(default_factory=set)

    def add(self, path: str) -> None:
        self.found.add(path)
        if len(self.found) > self.max_matches:
            raise GlobLimit(
                f"'{self.pattern}' matches more than {self.max_matches:,} files",
                hint="narrow the pattern (a folder, an extension), or split the data into smaller folders",
            )

    def scan(self, folder: str) -> list[os.DirEntry]:
        try:
            with os.scandir(folder or os.curdir) as it:
                listed = list(_bounded(it, self))
        except OSError:
            return []  # unreadable folders match nothing, as with glob.glob
        return listed


def _bounded(it, walk: _Walk):
    for entry in it:
        walk.entries += 1
        if walk.entries > walk.max_entries:
            raise GlobLimit(
                f"'{walk.pattern}' had to look at more than {walk.max_entries:,} files and folders",
                hint="start the pattern in the folder that holds the data instead of a wide `**`",
            )
        yield entry


def bounded_glob(pattern: str, max_matches: int, max_entries: int) -> list[str]:
    """Paths matching `pattern` (absolute, normalised), like glob.glob(recursive=True), unsorted."""
    walk = _Walk(max_matches, max_entries, pattern)
    parts = pattern.split(os.sep)
    first = next((i for i, part in enumerate(parts) if has_magic(part)), None)
    if first is None:  # no wildcard: the path itself, if it is there
        if os.path.lexists(pattern):
            walk.add(pattern)
    else:
        _match(os.sep.join(parts[:first]) or os.sep, parts[first:], walk, frozenset())
    return list(walk.found)


def _match(folder: str, parts: list[str], walk: _Walk, ancestors: frozenset) -> None:
    if not parts:
        walk.add(folder)
        return
    part, rest = parts[0], parts[1:]
    if part == "**":
        while rest and rest[0] == "**":  # a/**/**/b is a/**/b
            rest = rest[1:]
        _recurse(folder, rest, walk, ancestors)
    elif not has_magic(part):
        path = os.path.join(folder, part)
        if (not rest and os.path.lexists(path)) or (rest and os.path.isdir(path)):
            _match(path, rest, walk, ancestors)
    else:
        hidden_ok = part.startswith(".")
        for entry in walk.scan(folder):
            if (hidden_ok or not entry.name.startswith(".")) and fnmatch.fnmatchcase(entry.name, part):
                if not rest:
                    walk.add(entry.path)
                elif _is_dir(entry):
                    _match(entry.path, rest, walk, ancestors)


def _recurse(folder: str, rest: list[str], walk: _Walk, ancestors: frozenset) -> None:
    """`**`: `rest` matched in `folder` and in every folder below it (hidden ones skipped)."""
    ident = _identity(folder)
    if ident in ancestors:  # a symlink back up the tree: glob.glob would loop until ELOOP
        return
    ancestors = ancestors | {ident}
    if rest:
        _match(folder, rest, walk, ancestors)
    for entry in walk.scan(folder):
        if entry.name.startswith("."):
            continue
        if not rest:
            walk.add(entry.path)
        if _is_dir(entry):
            _recurse(entry.path, rest, walk, ancestors)


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _identity(folder: str) -> tuple[int, int]:
    try:
        st = os.stat(folder)
    except OSError:
        return (-1, -1)
    return (st.st_dev, st.st_ino)
