"""Conversion errors: one table of every node the converter cannot take."""

from __future__ import annotations

from dataclasses import dataclass

from buildsys.converter.cut import DATA_DEPENDENT, SIZED_BY_INPUT, Suggestion, snippet
from buildsys.errors import StageError

# past this many rows the table has one row per op type: 181 rows bury what to do
GROUP_OVER = 20
EXAMPLES = 3


class Unsupported(Exception):
    """Raised by a handler for an attribute combination it cannot convert.

    Internal: the converter collects these into one `UnsupportedModel`."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class HandlerBug(Exception):
    """A handler raised something other than `Unsupported` (TypeError, AttributeError...).

    That is a bug in buildsys, not a property of the model, so it must not become a row
    of the "cannot be converted" table. Deliberately not a BuildsysError: the stage
    engine reports it as an internal error and logs the traceback, whose cause is the
    handler's own exception."""

    def __init__(self, node: str, op_type: str, cause: BaseException):
        super().__init__(f"ONNX node '{node}' ({op_type}): {type(cause).__name__}: {cause}")
        self.node = node
        self.op_type = op_type


@dataclass(frozen=True)
class Rejected:
    op_type: str
    domain: str
    opset: int
    node: str
    reason: str


class UnsupportedModel(StageError):
    """The model has nodes the converter cannot convert; lists all of them (grouped when many).

    `cut`: where the model's data-dependent post-processing starts, offered as the fix when
    refused nodes are of that kind."""

    def __init__(self, model: str, rejected: list[Rejected], cut: Suggestion | None = None):
        self.rejected = list(rejected)
        noun = "node" if len(rejected) == 1 else "nodes"
        super().__init__(
            f"{model}: {len(rejected)} {noun} cannot be converted\n" + table(rejected),
            hint=_hint(rejected, cut),
            path=model,
        )


def _hint(rejected: list[Rejected], cut: Suggestion | None) -> str:
    dynamic = sorted({r.op_type for r in rejected if r.op_type in DATA_DEPENDENT or r.op_type in SIZED_BY_INPUT})
    if dynamic and cut is not None and cut.tensors:
        return (
            f"what {', '.join(dynamic)} output depends on the data at run time (sizes, branches), which a static "
            "TFLite model cannot hold: "
            "keep that post-processing in the application and cut the model before it; add to the recipe:\n"
            + snippet(cut)
        )
    return (
        "replace or rewrite these nodes (recipe `replacements:`), or re-export the model "
        "with ops from the standard ONNX domain"
    )


def table(rows: list[Rejected]) -> str:
    if len(rows) > GROUP_OVER:
        return _render(("op type", "domain", "opset", "nodes", "examples", "reason"), _grouped(rows))
    cells: list[tuple[str, ...]] = [(r.op_type, r.domain or "ai.onnx", str(r.opset), r.node, r.reason) for r in rows]
    return _render(("op type", "domain", "opset", "node", "reason"), cells)


def _grouped(rows: list[Rejected]) -> list[tuple[str, ...]]:
    """One row per op type: node count, the first few node names, the most common reason."""
    groups: dict[tuple[str, str, int], list[Rejected]] = {}
    for r in rows:
        groups.setdefault((r.op_type, r.domain, r.opset), []).append(r)
    out: list[tuple[str, ...]] = []
    for (op_type, domain, opset), members in sorted(groups.items(), key=lambda g: (-len(g[1]), g[0])):
        names = [m.node for m in members[:EXAMPLES]] + (["..."] if len(members) > EXAMPLES else [])
        reasons = [m.reason for m in members]
        reason = max(dict.fromkeys(reasons), key=reasons.count)
        others = len(set(reasons)) - 1
        reason += f" (and {others} other reason{'s' if others != 1 else ''})" if others else ""
        out.append((op_type, domain or "ai.onnx", str(opset), str(len(members)), ", ".join(names), reason))
    return out


def _render(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """Columns padded to width; the last (the reason) runs free."""
    cells = [header, *rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header) - 1)]
    lines = ["  " + "  ".join(c.ljust(w) for c, w in zip(row[:-1], widths)) + "  " + row[-1] for row in cells]
    lines.insert(1, "  " + "  ".join("-" * w for w in widths) + "  " + "-" * 6)
    return "\n".join(lines)
