"""A node order for a GraphDef (or function body) that ignores how it was traced.

Tracing emits some nodes in an order that depends on object ids (e.g. the
variable reads a while-loop captures) and lists control inputs in set order.
Node order and control-input order carry no meaning, so we rebuild both from
structure alone: a depth-first walk from the outputs, following data inputs in
their (meaningful) order and control inputs sorted by a structural hash that
is blind to node and function names.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Sequence

from tensorflow.core.framework import attr_value_pb2, node_def_pb2

# An input string resolved to (source node name or None, label). For a node
# source the label is the output suffix (":1", ":out:0"); for a function
# argument it is a stable name for that argument.
Resolve = Callable[[str], tuple[str | None, str]]

# Attributes that only name other nodes; they must not influence the hash.
_NAME_ONLY_ATTRS = ("_class", "_user_specified_name")


def canonical_order(
    nodes: Sequence[node_def_pb2.NodeDef],
    roots: Sequence[str],
    resolve: Resolve,
    fixed: dict[str, str],
    functions: Collection[str],
) -> list[node_def_pb2.NodeDef]:
    """Nodes reachable from `roots` (input strings) in canonical post-order,
    then any unreachable ones by hash. `fixed` gives some nodes (placeholders)
    a stable label that is part of their hash; `functions` are the library
    function names, which are ignored like node names.
    """
    by_name = {n.name: n for n in nodes}
    hashes = _structural_hashes(nodes, by_name, resolve, fixed, frozenset(functions))

    def children(name: str) -> list[str]:
        return _ordered_inputs(by_name[name], resolve, hashes)

    order: list[str] = []
    visited: set[str] = set()
    for root in roots:
        source = _source(root, resolve)
        if source is not None:
            _post_order(source, children, visited, order)
    placed = set(order)
    rest = sorted((n for n in nodes if n.name not in placed), key=lambda n: hashes[n.name])
    return [by_name[name] for name in order] + rest


def _source(ref: str, resolve: Resolve) -> str | None:
    """The node an input string reads from ("^node" is a control input)."""
    return ref[1:] if ref.startswith("^") else resolve(ref)[0]


def _ordered_inputs(node, resolve: Resolve, hashes: dict[str, str]) -> list[str]:
    data, control = [], []
    for ref in node.input:
        if ref.startswith("^"):
            control.append(ref[1:])
        else:
            source, _ = resolve(ref)
            if source is not None:
                data.append(source)
    return data + sorted(control, key=lambda name: hashes[name])


def _post_order(root: str, children: Callable[[str], list[str]], visited: set[str], order: list[str]) -> None:
    """Append nodes under `root` not yet `visited` to `order`, inputs first.

    Iterative: graphs can be deeper than Python's recursion limit.
    """
    stack = [(root, False)]
    while stack:
        name, expanded = stack.pop()
        if expanded:
            order.append(name)
            continue
        if name in visited:
            continue
        visited.add(name)
        stack.append((name, True))
        stack.extend((child, False) for child in reversed(children(name)) if child not in visited)


def _structural_hashes(nodes, by_name, resolve: Resolve, fixed: dict[str, str], functions) -> dict[str, str]:
    """Merkle hash of each node over op, attributes and inputs, never names."""
    hashes: dict[str, str] = {}

    def deps(name: str) -> list[str]:
        sources = (_source(ref, resolve) for ref in by_name[name].input)
        return [s for s in sources if s is not None and s in by_name]

    order: list[str] = []
    visited: set[str] = set()
    for start in nodes:
        _post_order(start.name, deps, visited, order)
    for name in order:
        hashes[name] = _node_hash(by_name[name], resolve, hashes, fixed.get(name, ""), functions)
    return hashes


def _node_hash(node, resolve: Resolve, hashes: dict[str, str], label: str, functions) -> str:
    h = hashlib.sha256()
    h.update(f"{'<fn>' if node.op in functions else node.op}|{label}|".encode())
    for key in sorted(node.attr):
        if key not in _NAME_ONLY_ATTRS:
            h.update(key.encode() + b"=" + _attr_bytes(node.attr[key]) + b"|")
    data, control = [], []
    for ref in node.input:
        if ref.startswith("^"):
            control.append(hashes.get(ref[1:], "cycle"))
        else:
            source, suffix = resolve(ref)
            data.append(("" if source is None else hashes.get(source, "cycle")) + suffix)
    h.update(("in:" + ",".join(data) + "|ctl:" + ",".join(sorted(control))).encode())
    return h.hexdigest()


def _attr_bytes(value: attr_value_pb2.AttrValue) -> bytes:
    """Serialized attribute with function names blanked out."""
    copy = attr_value_pb2.AttrValue()
    copy.CopyFrom(value)
    _blank_functions(copy)
    return copy.SerializeToString(deterministic=True)


def _blank_functions(value: attr_value_pb2.AttrValue) -> None:
    funcs = [value.func] if value.HasField("func") else list(value.list.func)
    for func in funcs:
        func.name = ""
        for key in func.attr:
            _blank_functions(func.attr[key])
