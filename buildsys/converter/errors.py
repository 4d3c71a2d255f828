"""Conversion errors: one table of every node the converter cannot take."""

from __future__ import annotations

from dataclasses import dataclass

from buildsys.errors import StageError


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
    """The model has nodes the converter cannot convert; lists all of them."""

    def __init__(self, model: str, rejected: list[Rejected]):
        self.rejected = list(rejected)
        noun = "node" if len(rejected) == 1 else "nodes"
        super().__init__(
            f"{model}: {len(rejected)} {noun} cannot be converted\n" + table(rejected),
            hint="replace or rewrite these nodes (recipe `replacements:`), or re-export the model "
            "with ops from the standard ONNX domain",
            path=model,
        )


def table(rows: list[Rejected]) -> str:
    header = ("op type", "domain", "opset", "node", "reason")
    cells = [header] + [(r.op_type, r.domain or "ai.onnx", str(r.opset), r.node, r.reason) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(4)]
    lines = []
    for row in cells:
        lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(row[:4], widths)) + "  " + row[4])
    lines.insert(1, "  " + "  ".join("-" * w for w in widths) + "  " + "-" * 6)
    return "\n".join(lines)
