"""Reading a YAML file into a marked document, and naming files in problems."""

from __future__ import annotations

import os
from pathlib import Path

from buildsys.documents.yamlmarks import Parsed, parse_yaml
from buildsys.errors import Problem


def absolute(path: Path | str) -> Path:
    """Absolute and normalised, but symlinks kept: the user's view of the path."""
    return Path(os.path.abspath(path))


def shown_path(path: Path, workspace: Path) -> str:
    """How a file is named in problems: relative to the workspace when inside it."""
    try:
        return path.relative_to(workspace).as_posix()
    except ValueError:
        return str(path)


def sort_problems(problems: list[Problem]) -> list[Problem]:
    # Some keywords are rewritten per mapping, so two raw errors can make the same problem.
    unique = dict.fromkeys(problems)
    return sorted(unique, key=lambda p: (p.file, p.line or 0, p.column or 0, p.key, p.message))


def parse_file(path: Path, shown: str) -> Parsed:
    from buildsys.limits import MAX_TEXT_BYTES, read_regular

    try:
        raw = read_regular(path, MAX_TEXT_BYTES, "a YAML file")
    except OSError as exc:
        return _file_problem(shown, None, f"cannot read the file: {exc.strerror or exc}")
    except ValueError as exc:  # a FIFO, a device, a huge file: never read
        return _file_problem(shown, None, f"cannot read the file: {exc}")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return _file_problem(shown, line, f"not UTF-8 text (byte 0x{raw[exc.start]:02x})")
    return parse_yaml(text, shown)


def _file_problem(shown: str, line: int | None, message: str) -> Parsed:
    return Parsed(shown, problems=[Problem(shown, line, None, "", message)])
