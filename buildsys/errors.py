"""One exception family. The CLI turns these into one-screen messages and exit codes.

Exit codes: 0 ok, 1 a stage or check failed, 2 bad input or usage.
"""

from __future__ import annotations

from dataclasses import dataclass


class BuildsysError(Exception):
    """Base of every error buildsys reports to a user (never shown as a traceback)."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None, path: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.path = path


class UsageError(BuildsysError):
    """Bad command line or bad input files: the user must change something."""

    exit_code = 2


@dataclass(frozen=True)
class Problem:
    """One problem in a file, located for a human."""

    file: str
    line: int | None
    column: int | None
    key: str  # dotted path of the offending key, e.g. "calibration.inputs.input_1.resize"
    message: str
    hint: str | None = None

    def location(self) -> str:
        loc = self.file
        if self.line is not None:
            loc += f":{self.line}"
            if self.column is not None:
                loc += f":{self.column}"
        return loc


class RecipeError(UsageError):
    """A recipe (or several) failed to load; carries every problem found."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        files = sorted({p.file for p in self.problems})
        noun = "problem" if len(self.problems) == 1 else "problems"
        super().__init__(
            f"{len(self.problems)} {noun} in {', '.join(files)}",
            hint="fix the keys listed above; see the recipe reference in README.md",
        )


class InputError(UsageError):
    """An input file named by a recipe is missing, corrupt or does not match its pin."""


class StageError(BuildsysError):
    """A stage ran and failed (conversion, quantization, a missed threshold)."""


class InternalError(StageError):
    """A bug in buildsys hit while a stage ran; the traceback is kept for `-v` and the log."""

    def __init__(self, message: str, *, traceback: str, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.traceback = traceback


class LockMismatch(BuildsysError):
    """`--locked` was given and the build would change a lockfile."""
