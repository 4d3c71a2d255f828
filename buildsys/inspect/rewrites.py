"""Which registered rewrites fit which nodes of a model, found by trying them on a copy.

A rewrite often fits only some nodes of its op type (div-to-mul needs a constant
divisor), and the recipe engine rejects an entry whose match selects a node
that does not fit; trying each rewrite the way `prepare` will (on the model as
loaded, before shapes are applied) makes the suggested entries pass as pasted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import onnx


@dataclass(frozen=True)
class Suggestion:
    """A rewrite for the nodes of one op type: `fits` are the labels of the nodes it takes.

    Grouped by the bare op_type, as a recipe `match` selects: same-named ops of a custom
    domain are in the group and, not fitting, keep the suggestion to `node:` entries."""

    op_type: str
    rewrite: str
    exact: bool
    bound: float
    summary: str
    fits: tuple[str, ...]
    named: tuple[str, ...]  # the fitting nodes that have names (a `node:` entry needs one)
    total: int  # nodes of this op type
    misfit: str | None  # why the first node that does not fit does not
    alternatives: tuple[str, ...]  # other rewrites that fit every node this one fits

    @property
    def fits_all(self) -> bool:
        return len(self.fits) == self.total


def load_rewrites() -> Mapping[str, Any]:
    """The registered rewrites (name -> Rewrite), or none while the registry is not installed."""
    try:
        from buildsys.rewrites.registry import REWRITES
    except ModuleNotFoundError as exc:
        if exc.name not in ("buildsys.rewrites", "buildsys.rewrites.registry"):
            raise  # a broken rewrites module is a bug to see, not "no rewrites"
        return MappingProxyType({})
    return REWRITES


def rewrites_by_op(rewrites: Mapping[str, Any]) -> dict[str, list[Any]]:
    """op type -> rewrites that take it; exact ones first, then by error bound and name."""
    out: dict[str, list[Any]] = {}
    for rewrite in rewrites.values():
        for op in rewrite.op_types:
            out.setdefault(op, []).append(rewrite)
    for found in out.values():
        found.sort(key=lambda r: (not r.exact, r.bound, r.name))
    return out


def suggest(model: onnx.ModelProto, by_op: Mapping[str, list[Any]]) -> list[Suggestion]:
    """For each op type with a registered rewrite (in graph order), the rewrite that fits most nodes."""
    groups: dict[str, list[tuple[int, onnx.NodeProto]]] = {}
    for i, node in enumerate(model.graph.node):
        if by_op.get(node.op_type):
            groups.setdefault(node.op_type, []).append((i, node))
    if not groups:
        return []
    trial = _Trial(model)
    return [_best(op_type, nodes, by_op[op_type], trial) for op_type, nodes in groups.items()]


def _best(op_type: str, nodes: list[tuple[int, onnx.NodeProto]], candidates: list[Any], trial: _Trial) -> Suggestion:
    results = [(r, *trial.fits(r, nodes)) for r in candidates]
    # most nodes taken wins; ties keep the registry order (exact first, then the smaller error)
    best, fits, misfit = max(results, key=lambda item: len(item[1]))
    others = tuple(r.name for r, f, _ in results if r is not best and f and fits <= f)
    taken = [(i, n) for i, n in nodes if i in fits]
    return Suggestion(
        op_type,
        best.name,
        best.exact,
        best.bound,
        best.summary,
        fits=tuple(label(i, n) for i, n in taken),
        named=tuple(n.name for _, n in taken if n.name),
        total=len(nodes),
        misfit=misfit,
        alternatives=others,
    )


def label(index: int, node: onnx.NodeProto) -> str:
    """A node as inspect names it: its name, or its position when it has none."""
    return node.name or f"#{index}"


class _Trial:
    """The rewrites' own context over one copy of the model: rewrites only add constants to it."""

    def __init__(self, model: onnx.ModelProto):
        from buildsys.rewrites.registry import RewriteContext, RewriteError

        self._error = RewriteError
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        self._ctx: RewriteContext | None
        self._why_not: str | None
        try:
            self._ctx = RewriteContext(copy)
            self._why_not = None
        except RewriteError as exc:
            self._ctx, self._why_not = None, exc.reason

    def fits(self, rewrite: Any, nodes: list[tuple[int, onnx.NodeProto]]) -> tuple[frozenset[int], str | None]:
        """(the positions of the nodes the rewrite takes, why the first it does not take does not)"""
        if self._ctx is None:
            return frozenset(), self._why_not
        fitting, misfit = set(), None
        for index, node in nodes:
            try:
                rewrite.apply(self._ctx, self._ctx.graph.node[index])
            except self._error as exc:
                misfit = misfit or f"{label(index, node)}: {exc.reason}"
                continue
            fitting.add(index)
        return frozenset(fitting), misfit
