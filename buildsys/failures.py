"""Why a stage failed, as one value: raised in a worker process, carried as JSON inside
doit's TaskFailed (or a Dask result), shown by the UI and written by `build --json`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from buildsys.errors import BuildsysError, InternalError
from buildsys.outcomes import StageOutcome

# documents of these types have always listed exit_code before hint; kept so `--json` stays byte-stable
_EXIT_CODE_FIRST = frozenset({StageOutcome.SKIPPED, "ClusterError"})


@dataclass(frozen=True)
class Failure:
    message: str
    # the error's class name, "skipped", or "TaskError" for a message that was not ours;
    # None for a document that was JSON but not an object (it has only message and exit_code)
    type: str | None = None
    hint: str | None = None
    exit_code: int = 1
    traceback: str | None = None  # internal errors only: -v prints it

    @classmethod
    def of(cls, exc: BuildsysError) -> Failure:
        # for -v: a worker process's error reaches the UI only as this document
        traceback = exc.traceback if isinstance(exc, InternalError) else None
        return cls(exc.message, type(exc).__name__, exc.hint, exc.exit_code, traceback)

    @classmethod
    def skipped(cls, message: str) -> Failure:
        """A stage not run because an input stage failed."""
        return cls(message, StageOutcome.SKIPPED)

    @property
    def is_skip(self) -> bool:
        return self.type == StageOutcome.SKIPPED

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Failure:
        return cls(
            str(data.get("message", "")),
            data.get("type"),
            data.get("hint"),
            data.get("exit_code", 1),
            data.get("traceback"),
        )

    def to_dict(self) -> dict[str, Any]:
        if self.type is None:
            return {"message": self.message, "exit_code": self.exit_code}
        if self.type in _EXIT_CODE_FIRST:
            return {"type": self.type, "message": self.message, "exit_code": self.exit_code, "hint": self.hint}
        doc = {"type": self.type, "message": self.message, "hint": self.hint, "exit_code": self.exit_code}
        if self.traceback is not None:
            doc["traceback"] = self.traceback
        return doc
