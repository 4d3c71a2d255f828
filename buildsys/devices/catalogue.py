"""Device profiles by name (built-in) or by file, with `extends` resolved.

Built-in profiles are trusted (tests check them against the schema), so a
build pays for no schema validation; a user's profile file is checked like a
recipe: every problem at once, with lines, exit 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from buildsys.devices.merge import merged
from buildsys.devices.model import Device
from buildsys.devices.problems import ProfileError, merged_problems, profile_problems
from buildsys.documents.files import absolute, parse_file, shown_path
from buildsys.errors import Problem, UsageError
from buildsys.limits import MAX_TEXT_BYTES, file_problem

BUILTIN = Path(__file__).parent / "builtin"
PROFILE_SUFFIXES = (".yaml", ".yml")


def is_profile_path(spec: str) -> bool:
    return spec.endswith(PROFILE_SUFFIXES)


class Catalogue:
    def __init__(self, builtin: Path = BUILTIN, workspace: Path | None = None):
        self._builtin = builtin
        self._workspace = absolute(workspace or Path.cwd())
        self._resolved: dict[str, Device] = {}  # per catalogue: a build resolves each profile once

    def names(self) -> list[str]:
        return sorted(p.stem for p in self._builtin.glob("*.yaml"))

    def get(self, name: str) -> Device:
        """A built-in profile."""
        path = self._builtin / f"{name}.yaml"
        if not _is_file(path):
            hint = did_you_mean(name, self.names())
            raise UsageError(
                f"unknown device '{name}'",
                hint=f"{hint + ' ' if hint else ''}`buildsys devices` lists the {len(self.names())} built-in devices; "
                "a profile file is named by its path (./devices/my-npu.yaml)",
            )
        return self._device(path, trusted=True, chain=())

    def resolve(self, spec: str, base: Path) -> Device:
        """`spec` as a recipe target writes it: a built-in name or a profile path relative to `base`."""
        if not is_profile_path(spec):
            return self.get(spec)
        path = absolute(base / spec)
        if problem := file_problem(path, MAX_TEXT_BYTES, "a device profile"):  # a FIFO would block the read
            raise UsageError(f"device profile {shown_path(path, self._workspace)} {problem}", path=str(path))
        if not _is_file(path):
            raise UsageError(f"no such device profile file: {shown_path(path, self._workspace)}", path=str(path))
        return self._device(path, trusted=False, chain=())

    def _device(self, path: Path, trusted: bool, chain: tuple[Path, ...]) -> Device:
        key = str(path)
        if key not in self._resolved:
            self._resolved[key] = self._load(path, trusted, chain)
        return self._resolved[key]

    def _load(self, path: Path, trusted: bool, chain: tuple[Path, ...]) -> Device:
        shown = shown_path(path, self._workspace)
        parsed = parse_file(path, shown)
        problems = profile_problems(parsed, path.stem, check_schema=not trusted)
        parent, parent_problems = self._parent(parsed, path, trusted, chain + (path,))
        problems += parent_problems
        if not isinstance(parsed.data, dict):
            raise ProfileError(problems) if not trusted else _broken_builtin(problems)
        own = {k: v for k, v in parsed.data.items() if k != "extends"}
        data = merged(parent.data if parent else {}, own)
        data["name"] = own.get("name", path.stem)
        problems += merged_problems(parsed, data, trusted)
        if problems:
            raise ProfileError(problems) if not trusted else _broken_builtin(problems)
        origin = "built-in" if trusted else shown
        return Device(name=data["name"], data=data, origin=origin)

    def _parent(
        self, parsed: Any, path: Path, trusted: bool, chain: tuple[Path, ...]
    ) -> tuple[Device | None, list[Problem]]:
        spec = parsed.data.get("extends") if isinstance(parsed.data, dict) else None
        if not isinstance(spec, str):
            return None, []
        hint: str | None
        if is_profile_path(spec):
            target, hint = path.parent / spec, "a path is relative to this profile file"
        else:
            target, hint = self._builtin / f"{spec}.yaml", did_you_mean(spec, self.names())
        if not _is_file(target):
            return None, [parsed.at_value(("extends",), f"no profile '{spec}' to extend", hint)]
        if absolute(target) in chain:
            return None, [parsed.at_value(("extends",), f"'{spec}' extends this profile again (a cycle)")]
        try:
            builtin = target.parent == self._builtin
            return self._device(absolute(target), trusted=trusted or builtin, chain=chain), []
        except ProfileError as exc:
            return None, exc.problems


def _is_file(path: Path) -> bool:
    """is_file, where a name too long for the file system is simply no such file."""
    try:
        return path.is_file()
    except OSError:
        return False


def did_you_mean(word: str, choices: list[str]) -> str | None:
    from buildsys.documents.problems import did_you_mean as suggest  # imports jsonschema: only on errors

    return suggest(word, choices)


def _broken_builtin(problems: list[Problem]) -> UsageError:
    first = problems[0]
    return UsageError(f"built-in device profile {first.location()}: {first.message}", hint="this is a bug in buildsys")
