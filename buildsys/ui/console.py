"""The one Console: every line buildsys prints for humans goes through `Ui`."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.text import Text

from buildsys.errors import BuildsysError, RecipeError

if TYPE_CHECKING:
    from buildsys.failures import Failure

STYLES = {
    "ran": "green",
    "restored": "cyan",
    "restored (remote)": "cyan",
    "up-to-date": "dim",
    "failed": "bold red",
    "stale": "yellow",
    "skipped": "dim red",
}


class Ui:
    def __init__(self, quiet: bool = False, json_mode: bool = False, verbose: bool = False):
        self.quiet = quiet or json_mode
        self.verbose = verbose
        # bound to the streams of now: the runner captures what doit prints, not what we print
        self.out = Console(file=sys.stdout, highlight=False, soft_wrap=True)
        self.err = Console(file=sys.stderr, stderr=True, highlight=False, soft_wrap=True)
        self._status: Any = None

    # -- plain output -------------------------------------------------------------
    def line(self, text: Any = "", style: str | None = None) -> None:
        """A str, or any rich renderable (Text, Table)."""
        if not self.quiet:
            self.out.print(Text(text, style=style or "") if isinstance(text, str) else text)

    def data(self, payload: Any) -> None:
        """Machine output (--json): exactly one JSON document on stdout."""
        sys.stdout.write(json.dumps(payload, indent=2, sort_keys=False) + "\n")

    def outcome_line(self, word: str, name: str, seconds: float | None = None, extra: str = "") -> None:
        text = Text("  ")
        text.append(f"{word:<10}", style=STYLES.get(word, ""))
        text.append(f" {name}")
        if seconds is not None:
            text.append(f"  {seconds:.2f}s", style="dim")
        if extra:
            text.append(f"  {extra}", style="dim")
        self.line(text)

    # -- progress -------------------------------------------------------------------
    def progress(self, label: str) -> None:
        if self.quiet or not self.err.is_terminal:
            return
        if self._status is None:
            self._status = self.err.status(label)
            self._status.start()
        else:
            self._status.update(label)

    def stop_progress(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    # -- errors ---------------------------------------------------------------------
    def error(self, exc: BuildsysError, show: Any = str) -> None:
        self.stop_progress()
        head = Text("error: ", style="bold red")
        head.append(exc.message)
        self.err.print(head)
        if isinstance(exc, RecipeError):
            for p in exc.problems:
                self.err.print(_problem(p, show))
        if exc.hint:
            self.err.print(Text(f"  hint: {exc.hint}", style="yellow"))

    def warning(self, text: str) -> None:
        head = Text("warning: ", style="bold yellow")
        head.append(text)
        self.err.print(head)

    def failure(self, name: str, error: Failure) -> None:
        head = Text("error: ", style="bold red")
        head.append(f"{name}: ", style="bold")
        head.append(error.message)
        self.err.print(head)
        if error.hint:
            self.err.print(Text(f"  hint: {error.hint}", style="yellow"))
        if self.verbose and error.traceback:  # internal errors: a bug report needs it
            self.err.print(Text(error.traceback.rstrip(), style="dim"))


def _problem(p: Any, show: Any) -> Text:
    loc = show(p.file)
    if p.line is not None:
        loc += f":{p.line}" + (f":{p.column}" if p.column is not None else "")
    text = Text("  ")
    text.append(loc, style="bold")
    if p.key:
        text.append(f"  {p.key}", style="cyan")
    text.append(f"  {p.message}")
    if p.hint:
        text.append(f"  ({p.hint})", style="yellow")
    return text
