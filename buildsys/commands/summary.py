"""`build --summary FILE`: one Markdown table of the build, appended for CI job summaries."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from buildsys.errors import UsageError
from buildsys.outcomes import StageOutcome
from buildsys.plan import Plan, RecipePlan
from buildsys.runner import Outcome
from buildsys.stages.base import TargetStage

HEADER = (
    "| recipe | target | device | artifact | cosine | max abs error | accuracy | ops on device | status |\n"
    "|---|---|---|---|---|---|---|---|---|\n"
)


SUMMARY_HINT = "name a file in an existing folder; the table is appended to it (in CI: $GITHUB_STEP_SUMMARY)"


def check_summary_path(path: Path) -> None:
    """Before the build: a path the table cannot be appended to fails now, not after an hour of building."""
    if problem := _summary_problem(path):
        raise UsageError(f"--summary {path}: {problem}", hint=SUMMARY_HINT, path=str(path))


def _summary_problem(path: Path) -> str | None:
    if path.is_dir():
        return "is a directory"
    folder = path.parent
    if not folder.is_dir():
        return f"the folder {folder} does not exist" if not folder.exists() else f"{folder} is not a folder"
    if path.exists() and not os.access(path, os.W_OK):
        return "the file is not writable"
    if not path.exists() and not os.access(folder, os.W_OK | os.X_OK):
        return f"cannot create a file in {folder} (no permission)"
    return None


def append_summary(path: Path, plan: Plan, outcomes: list[Outcome]) -> None:
    rows = [row for rp in plan.recipes for row in _rows(rp, outcomes)]
    text = "### buildsys build\n\n" + HEADER + "".join(rows) + "\n"
    try:
        with open(path, "a", encoding="utf-8") as out:
            out.write(text)
    except OSError as exc:  # checked before the build; the path changed since
        raise UsageError(
            f"--summary {path}: cannot append the table: {exc.strerror or exc}", hint=SUMMARY_HINT
        ) from None


def _rows(rp: RecipePlan, outcomes: list[Outcome]) -> list[str]:
    recipe = rp.recipe.name
    mine = [o for o in outcomes if o.recipe == recipe]
    rows = []
    for target in rp.recipe.targets:
        stage = next(s for s in rp.stages if isinstance(s, TargetStage) and s.target is target)
        paths = stage.target_paths
        stopped = [o for o in mine if o.outcome == StageOutcome.FAILED and o.target in (None, target.name)]
        failed = [o.stage for o in stopped if not (o.error and o.error.is_skip)]
        made = not any(o.target is None or o.stage == "quantize" for o in stopped)  # else: an old artifact
        stale = {o.stage for o in stopped if o.stage not in failed}  # files an earlier build left
        metrics = None if "validate" in stale else _json(paths.metrics)
        compat = None if "check" in stale else _json(paths.compat)
        cells = [
            recipe,
            target.name,
            stage.device.name,
            _size(paths.model) if made else "-",
            _worst(metrics, "cosine", min),
            _worst(metrics, "max_abs_error", max),
            _accuracy(metrics),
            _on_device(compat),
            f"failed ({', '.join(failed)})" if stopped else "ok",
        ]
        rows.append("| " + " | ".join(cells) + " |\n")
    return rows


def _json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None


def _worst(metrics: dict[str, Any] | None, key: str, pick) -> str:
    values = [m[key] for m in (metrics or {}).get("outputs", {}).values() if key in m]
    return f"{pick(values):.6g}" if values else "-"


def _accuracy(metrics: dict[str, Any] | None) -> str:
    """The artifact's accuracy against validate.labels and its change from the source's."""
    found = [m for m in (metrics or {}).get("outputs", {}).values() if "accuracy" in m]
    if not found:
        return "-"
    worst = min(found, key=lambda m: m["accuracy"])
    return f"{worst['accuracy']:.1%} ({-worst['accuracy_drop']:+.1%})"


def _on_device(compat: dict[str, Any] | None) -> str:
    if not compat:
        return "-"
    s = compat["summary"]
    return f"{s['accelerator']}/{s['ops']}"


def _size(path: Path) -> str:
    try:
        n = path.stat().st_size
    except OSError:
        return "-"
    return f"{n / 1024:.1f} KiB" if n < 1 << 20 else f"{n / (1 << 20):.2f} MiB"
