"""What a target's two reports (report.md and report.html) show: gathered once by the report
stage from its inputs and the build records, then rendered by report_md and report_html."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from buildsys.signature import Signature


@dataclass(frozen=True)
class ReportFacts:
    source: dict[str, Any]  # the fetch stage's source.json
    metrics: dict[str, Any] | None  # metrics.json; None when the target is not validated
    compat: dict[str, Any]  # compat.json: the device check
    compile: dict[str, Any] | None  # the compiler's summary; None for a device without a compile step
    ops: dict[str, int]  # the artifact's op histogram
    dtypes: dict[str, Any] | None  # the artifact's IO element types (TFLite artifacts only)
    size: int  # the artifact's bytes
    timings: list[tuple[str, dict[str, Any]]]  # (stage id, its build record) for each upstream stage
    signature: Signature | None  # signature.json (TFLite artifacts only)
    recipe_text: str
    recipe_href: str  # relative to the target folder, so two checkouts' reports are byte-identical
    lock_name: str
