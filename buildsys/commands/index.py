"""build/index.html: one page linking every recipe/target report with its status.

Written at the end of every `buildsys build`, up-to-date ones included, so it
must stay cheap: it reads metrics.json and compat.json and never imports
TensorFlow or matplotlib. `buildsys report` reads the same rows without build
outcomes, judging each target from the files it left.

A build of some recipes must not drop the others from the page: the rows are
kept in .buildsys/index.json, and a build replaces only its own recipes' rows.
Rows whose report is gone (`buildsys clean`) leave the page.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from buildsys.fsutil import atomic_write_text, remove
from buildsys.outcomes import StageOutcome
from buildsys.stages.base import TargetStage
from buildsys.stages.report import Report
from buildsys.stages.report_html import CSS, Raw, code, cosine_text, esc, table
from buildsys.stages.report_md import failure_lines, size_text

if TYPE_CHECKING:  # type names only: importing the runner would load doit for `buildsys report`
    from buildsys.plan import Plan, RecipePlan
    from buildsys.runner import Outcome
    from buildsys.workspace import Workspace

INDEX_CSS = (
    CSS + "header{margin-bottom:14px}.badge.ok{background:var(--ok)}.badge.notbuilt{background:var(--muted)}"
    "td ul{margin:4px 0 0;padding-left:18px}"
    "#targets td:nth-child(-n+3),#targets td:nth-child(5),#targets td:nth-child(8){white-space:nowrap}\n"
)
BADGES = {"ok": "ok", "failed": "failed", "not built": "notbuilt"}


@dataclass
class Row:
    """One recipe/target as the index and `buildsys report` show it."""

    recipe: str
    target: str
    device: str
    status: str  # ok | failed | not built
    report: Path  # report.html, whether or not it exists
    size: int | None = None
    key_metric: str = "-"
    placement: str = "-"
    details: list[str] = field(default_factory=list)
    stale: bool = False  # report.html is from an earlier build: this one failed before the report
    lock: str = ""  # the recipe's lockfile, as the workspace shows it
    lock_sha256: str | None = None  # None: not written (yet)

    @property
    def name(self) -> str:
        return f"{self.recipe}/{self.target}"


def index_path(plan: Plan) -> Path:
    return html_path(plan.env.ws)


def html_path(ws: Workspace) -> Path:
    return ws.root / "build" / "index.html"


def write_index(plan: Plan, outcomes: list[Outcome]) -> Path | None:
    """Write build/index.html: this build's rows and the kept rows of other recipes."""
    ws = plan.env.ws
    mine = {rp.recipe.name for rp in plan.recipes}
    kept = [r for r in load_rows(ws) if r.recipe not in mine]
    return publish(ws, sorted(kept + rows(plan, outcomes), key=lambda r: r.recipe))


def forget(ws: Workspace, recipes: set[str]) -> Path | None:
    """Drop recipes from the index (after `buildsys clean`); the page goes with the last report."""
    return publish(ws, [r for r in load_rows(ws) if r.recipe not in recipes])


def publish(ws: Workspace, items: list[Row]) -> Path | None:
    """Write the rows and the page (only when its bytes change); return the page's path.

    None, and no page, while no target has a report: a build that made nothing
    leaves nothing in build/.
    """
    path = html_path(ws)
    if not any(r.report.is_file() for r in items):
        remove(path)
        remove(_rows_file(ws))
        return None
    text = render_index(items, path.parent)
    try:
        unchanged = path.read_text("utf-8") == text
    except OSError:
        unchanged = False
    if not unchanged:
        atomic_write_text(path, text)
    atomic_write_text(_rows_file(ws), json.dumps([_row_doc(r, ws) for r in items], indent=1) + "\n")
    return path


def load_rows(ws: Workspace) -> list[Row]:
    """The rows the last builds left; those whose build directory is gone are dropped."""
    try:
        docs = json.loads(_rows_file(ws).read_text("utf-8"))
        found = [Row(**{**d, "report": ws.root / d["report"]}) for d in docs]
    except (OSError, ValueError, TypeError, KeyError):
        return []  # no index yet, or one from another buildsys version: rebuilt by the next build
    return [r for r in found if r.report.parent.is_dir()]


def _rows_file(ws: Workspace) -> Path:
    return ws.state / "index.json"


def _row_doc(r: Row, ws: Workspace) -> dict[str, Any]:
    doc = asdict(r)
    doc["report"] = os.path.relpath(r.report, ws.root)
    return doc


def rows(plan: Plan, outcomes: list[Outcome] | None) -> list[Row]:
    """Every target of the plan; `outcomes` None: judged from the files of the last build."""
    out = []
    for rp in plan.recipes:
        lock = _lock(rp, plan.env.ws)
        out += [_row(rp, s, outcomes, *lock) for s in rp.stages if isinstance(s, Report)]
    return out


def _lock(rp: RecipePlan, ws: Workspace) -> tuple[str, str | None]:
    """Where the recipe's lockfile is and the sha256 of its bytes: what was built, pinned."""
    from buildsys.hashing import digest_bytes
    from buildsys.lockfile import lock_path

    path = lock_path(rp.recipe)
    try:
        return ws.show(path), digest_bytes(path.read_bytes())
    except OSError:
        return ws.show(path), None


def _row(rp: RecipePlan, stage: Report, outcomes: list[Outcome] | None, lock: str, lock_sha256: str | None) -> Row:
    paths = stage.target_paths
    metrics, compat = _json(paths.metrics), _json(paths.compat)
    report = stage.outputs()["html"]
    failed = _failures(rp, stage, outcomes)
    details = [e for e in failed if e]
    if stage.validated and metrics is not None:
        details += [f"{name}: {line}" for name, line in failure_lines(metrics)]
    if failed:
        status = "failed"
    else:
        status = "ok" if report.is_file() else "not built"
    artifact = paths.model
    return Row(
        recipe=rp.recipe.name,
        target=stage.target.name,
        device=stage.device.name,
        status=status,
        report=report,
        size=artifact.stat().st_size if status != "not built" and artifact.is_file() else None,
        key_metric=_key_metric(metrics if stage.validated else None),
        placement=_placement(compat),
        details=list(dict.fromkeys(details)),  # a message may come from the outcome and metrics.json
        stale=outcomes is not None and not _reported(stage, outcomes),
        lock=lock,
        lock_sha256=lock_sha256,
    )


def _failures(rp: RecipePlan, stage: Report, outcomes: list[Outcome] | None) -> list[str]:
    """First lines of what failed this target ("" for a skipped stage): this build's
    outcomes, or without them the verdicts of the files the last build left."""
    if outcomes is None:
        judged = [(s, s.judged()) for s in rp.stages if isinstance(s, TargetStage) and s.target is stage.target]
        return [f"{s.local_id}: {e.message.splitlines()[0]}" for s, e in judged if e]
    mine = [
        o
        for o in outcomes
        if o.recipe == rp.recipe.name and o.outcome == StageOutcome.FAILED and o.target in (None, stage.target.name)
    ]
    return [_first_line(o) for o in mine]


def _reported(stage: Report, outcomes: list[Outcome]) -> bool:
    """Whether this build made (or confirmed) the target's report."""
    return any(
        o.recipe == stage.recipe.name
        and o.target == stage.target.name
        and o.stage == "report"
        and o.outcome != StageOutcome.FAILED
        for o in outcomes
    )


def _first_line(o: Outcome) -> str:
    if o.error and o.error.is_skip:
        return ""
    where = f"{o.target}/{o.stage}" if o.target else o.stage
    message = o.error.message if o.error else "failed"
    return f"{where}: {message.splitlines()[0]}"


def _key_metric(metrics: dict[str, Any] | None) -> str:
    """The worst cosine over the outputs (and top-1 agreement when measured)."""
    if metrics is None:
        return "not validated"
    outs = metrics.get("outputs", {}).values()
    cosines = [m["cosine"] for m in outs if "cosine" in m]
    text = f"cosine {cosine_text(min(cosines))}" if cosines else "-"
    top1 = [m["top1_agreement"] for m in outs if "top1_agreement" in m]
    accuracy = [m["accuracy"] for m in outs if "accuracy" in m]
    return text + (f", top-1 {min(top1):.1%}" if top1 else "") + (f", accuracy {min(accuracy):.1%}" if accuracy else "")


def _placement(compat: dict[str, Any] | None) -> str:
    if not compat:
        return "-"
    s = compat["summary"]
    return f"{s['accelerator']}/{s['ops']} on accelerator"


def _json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None


def render_index(items: list[Row], where: Path) -> str:
    counts = {s: sum(r.status == s for r in items) for s in BADGES}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no targets"
    body = [
        [
            r.recipe,
            r.target,
            code(r.device),
            _status(r),
            "-" if r.size is None else size_text(r.size),
            r.key_metric,
            r.placement,
            _link(r, where),
        ]
        for r in items
    ]
    head = ["recipe", "target", "device", "status", "artifact", "key metric", "device check", "report"]
    targets = table(head, body, frozenset({4}), id="targets")
    locks = {r.recipe: [r.recipe, code(r.lock), code(r.lock_sha256) if r.lock_sha256 else "not written"] for r in items}
    pinned = table(["recipe", "lockfile", "sha256"], list(locks.values()), id="locks")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>buildsys reports</title>\n<style>{INDEX_CSS}</style>\n</head>\n<body>\n<main>\n"
        "<header><h1>buildsys reports</h1></header>\n"
        f"<section>\n<p>{len(items)} targets: {esc(summary)}.</p>\n{targets}\n</section>\n"
        "<section>\n<h2>Lockfiles</h2>\n<p>What each recipe's last successful build pinned: tools, "
        f"device profiles, every stage's key and output digests.</p>\n{pinned}\n</section>\n"
        "</main>\n</body>\n</html>\n"
    )


def _status(r: Row) -> Raw:
    badge = f'<span class="badge {BADGES[r.status]}">{esc(r.status)}</span>'
    details = "".join(f"<li>{esc(d)}</li>" for d in r.details)
    return Raw(badge + (f'<ul class="bad">{details}</ul>' if details else ""))


def _link(r: Row, where: Path) -> Raw:
    if not r.report.is_file():
        return Raw('<span class="muted">none</span>')
    href = Path(os.path.relpath(r.report, where)).as_posix()
    note = ' <span class="warn">(from an earlier build)</span>' if r.stale else ""
    return Raw(f'<a href="{esc(href)}">{esc(r.name)}</a>{note}')
