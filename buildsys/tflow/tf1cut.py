"""Cutting a TF1 GraphDef where the user feeds and fetches it.

Consumers of a fed tensor read a name no node has (`buildsys_feed_<i>`), which
`import_graph_def` maps onto the caller's tensors; whatever lies above a feed is
dropped, so nothing unfed is left in the graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tensorflow.core.framework import graph_pb2

from buildsys.errors import InputError
from buildsys.tflow.tf1check import VARIABLE_OPS

FEED = "buildsys_feed_"
FROZEN_HINT = "freeze it (convert_variables_to_constants), or use `checkpoint:` with the checkpoint prefix"


@dataclass(frozen=True)
class Ref:
    """One tensor: output `index` of op `op`."""

    op: str
    index: int

    @property
    def tensor(self) -> str:
        return f"{self.op}:{self.index}"

    @property
    def signature_name(self) -> str:
        # ":" is not allowed in a TFLite signature name
        return self.op if self.index == 0 else f"{self.op}_{self.index}"


def parse_ref(name: str) -> Ref:
    """`x`, `x:0` and `x:2` as users (and NodeDef inputs) write them."""
    op, sep, index = name.rpartition(":")
    if sep and index.isdigit():
        return Ref(op, int(index))
    return Ref(name, 0)


def cut_graph(graph_def, feeds: list[Ref], fetches: list[Ref], label: str, path: Path) -> graph_pb2.GraphDef:
    """The nodes the fetches need, with fed tensors read from `buildsys_feed_<i>`."""
    nodes = {n.name: n for n in graph_def.node}
    fed = {r.tensor: i for i, r in enumerate(feeds)}
    needed = needed_nodes(nodes, [r.op for r in fetches if r.tensor not in fed], feeds, label, path)
    _check_cut(nodes, needed, feeds, fetches, label, path)
    return subgraph(graph_def, needed, feeds)


def subgraph(graph_def, needed: set[str], feeds: list[Ref]) -> graph_pb2.GraphDef:
    """The `needed` nodes, in file order, reading fed tensors from `buildsys_feed_<i>`."""
    fed = {r.tensor: i for i, r in enumerate(feeds)}
    fed_ops = {r.op for r in feeds}
    out = graph_pb2.GraphDef()
    out.versions.CopyFrom(graph_def.versions)
    out.library.CopyFrom(graph_def.library)
    for node in graph_def.node:
        if node.name not in needed:
            continue
        copy = out.node.add()
        copy.CopyFrom(node)
        del copy.input[:]
        for ref in node.input:
            if ref.startswith("^"):
                # waiting on an op the user replaced by a feed means nothing any more
                if ref[1:] not in fed_ops:
                    copy.input.append(ref)
            else:
                i = fed.get(parse_ref(ref).tensor)
                copy.input.append(ref if i is None else f"{FEED}{i}")
        _drop_colocation(copy, needed)
    return out


def _drop_colocation(node, kept: set[str]) -> None:
    """The importer refuses a node colocated with one that is not imported (TF1 cond and
    optimizers pin ops next to their inputs); placement is irrelevant to a converted model."""
    if "_class" not in node.attr:
        return
    groups = [g for g in node.attr["_class"].list.s if g.decode("utf-8", "replace").removeprefix("loc:@") in kept]
    if groups:
        del node.attr["_class"].list.s[:]
        node.attr["_class"].list.s.extend(groups)
    else:
        del node.attr["_class"]


def needed_nodes(nodes: dict, roots: list[str], feeds: list[Ref], label: str, path: Path) -> set[str]:
    """Names of the nodes `roots` depend on, not looking past fed tensors."""
    fed = {r.tensor for r in feeds}
    fed_ops = {r.op for r in feeds}
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        if name not in nodes:
            raise InputError(f"{label} is incomplete: it has no node {name!r}", hint="re-export it", path=str(path))
        seen.add(name)
        for ref in nodes[name].input:
            if ref.startswith("^"):
                if ref[1:] not in fed_ops:
                    stack.append(ref[1:])
            elif parse_ref(ref).tensor not in fed:
                stack.append(parse_ref(ref).op)
    return seen


def _check_cut(nodes: dict, needed: set[str], feeds: list[Ref], fetches: list[Ref], label: str, path: Path) -> None:
    for name in sorted(needed):
        op = nodes[name].op
        if op in VARIABLE_OPS:
            raise InputError(f"{label} is not frozen: it reads variable {name!r}", hint=FROZEN_HINT, path=str(path))
        if op == "Placeholder":
            raise InputError(
                f"the outputs of {label} depend on placeholder {name!r}, which is not among the inputs",
                hint=f"add {name!r} to `inputs:`",
                path=str(path),
            )
    read = {parse_ref(ref).tensor for name in needed for ref in nodes[name].input if not ref.startswith("^")}
    read |= {r.tensor for r in fetches}
    for ref in feeds:
        if ref.tensor not in read:
            raise InputError(
                f"input {ref.tensor!r} of {label} feeds none of the outputs",
                hint="remove it from `inputs:` or check `outputs:`",
                path=str(path),
            )
