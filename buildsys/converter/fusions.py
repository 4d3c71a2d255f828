"""Activation subgraphs as one node, so TFLite runs one builtin (GELU, HARD_SWISH) for them.

Exporters spell GELU, HardSwish and Mish as primitive ops when the opset has no
such op (or when the model's code writes the formula out): Erf-GELU as
`x * 0.5 * (1 + erf(x / sqrt(2)))` lowered to TFLite is a polynomial, a SIGN and
a dozen elementwise ops, and in int8 that SIGN stays float between QUANTIZE and
DEQUANTIZE, which makes the int8 model several times slower than the float one.

This pass runs on the converter's IR (not in prepare): prepared.onnx is what
onnxruntime validates against and what a format-onnx device ships, so it keeps
standard ops of the model's own opset. A match becomes one node of the internal
domain FUSED, named after the subgraph's output node (TFLite tensors and reports
then point at a node the recipe's `replacements:` can name), and handled in
ops/activation.py. Constants are compared by value (relative FUZZ), never by
name; a subgraph whose intermediate tensor is read elsewhere, or is a graph
output, is left alone.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from buildsys.converter.ir import Graph, Node

FUSED = "buildsys.fused"
FUZZ = 1e-5
# how far above the anchor the outer product may end (x * A * 0.5 takes two Muls)
CLIMB = 3
PRODUCT_DEPTH = 4
GELU_TANH_SCALE = math.sqrt(2.0 / math.pi)
GELU_TANH_CUBE = 0.044715


@dataclass(frozen=True)
class Match:
    op_type: str
    x: str
    top: Node
    nodes: frozenset[int]
    attrs: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Product:
    """A tree of Mul/Div(const)/Pow(const) nodes as `scale * prod(factors)`."""

    factors: Counter
    scale: float
    nodes: frozenset[int]


class View:
    """Who reads and who writes each value of the graph, and which values are constants."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.outputs = {o.name for o in graph.outputs}
        self.producers = {o: n for n in graph.nodes for o in n.outputs if o}
        readers: dict[str, list[Node]] = {}
        for n in graph.nodes:
            for name in set(n.inputs):
                readers.setdefault(name, []).append(n)
        self.readers = readers

    def scalar(self, name: str) -> float | None:
        value = self.graph.constants.get(name)
        node = self.producers.get(name)
        if value is None and node is not None and node.op_type == "Constant":
            value = node.attr("value")
        if not isinstance(value, np.ndarray) or value.size != 1 or value.dtype.kind != "f":
            return None
        return float(value.reshape(-1)[0])

    def sole_reader(self, name: str) -> Node | None:
        """The one node reading `name`, if exactly one does and it is not a graph output."""
        readers = self.readers.get(name, [])
        return readers[0] if len(readers) == 1 and name not in self.outputs else None

    def private_producer(self, name: str) -> Node | None:
        """The node computing `name` when nothing else reads it (it can be fused away)."""
        node = self.producers.get(name)
        return node if node is not None and self.sole_reader(name) is not None else None

    def closed(self, nodes: frozenset[int], top: Node) -> bool:
        """True if every value made inside `nodes`, but the top's output, is read only inside."""
        for n in self.graph.nodes:
            if n.index not in nodes or n is top:
                continue
            for out in n.outputs:
                if out in self.outputs or any(r.index not in nodes for r in self.readers.get(out, [])):
                    return False
        return True

    def same_float_shape(self, a: str, b: str) -> bool:
        va, vb = self.graph.values.get(a), self.graph.values.get(b)
        if va is None or vb is None or va.shape is None or va.dtype is None:
            return False
        return va.shape == vb.shape and None not in va.shape and va.dtype.kind == "f" and va.dtype == vb.dtype


def close(value: float | None, want: float) -> bool:
    return value is not None and abs(value - want) <= FUZZ * abs(want)


# -- products -------------------------------------------------------------------
def product(view: View, node: Node, depth: int = PRODUCT_DEPTH) -> Product | None:
    """`node` (Mul, Div by a constant, Pow by 2 or 3) as a product, opening the private
    Mul/Div/Pow nodes that feed it; None when it is none of those."""
    if node.op_type == "Pow":
        power = view.scalar(node.input(1))
        if power not in (2.0, 3.0):
            return None
        return Product(Counter({node.input(0): int(power)}), 1.0, frozenset({node.index}))
    if node.op_type not in ("Mul", "Div") or len(node.inputs) != 2:
        return None
    factors: Counter[str] = Counter()
    scale, nodes = 1.0, {node.index}
    for i, name in enumerate(node.inputs):
        divide = node.op_type == "Div" and i == 1
        c = view.scalar(name)
        if c is not None:
            if divide and c == 0.0:
                return None
            scale = scale / c if divide else scale * c
            continue
        if divide:
            return None  # division by a computed tensor is not a product of factors
        inner = view.private_producer(name)
        sub = product(view, inner, depth - 1) if inner is not None and depth > 0 else None
        if sub is None:
            factors[name] += 1
            continue
        factors.update(sub.factors)
        scale *= sub.scale
        nodes |= sub.nodes
    return Product(factors, scale, frozenset(nodes))


def outer_product(view: View, start: str, factors: Counter, scale: float) -> tuple[Node, frozenset[int]] | None:
    """The node above `start` where the product of exactly `factors` times `scale` ends."""
    node = view.sole_reader(start)
    for _ in range(CLIMB):
        if node is None or node.op_type not in ("Mul", "Div"):
            return None
        found = product(view, node)
        if found is not None and found.factors == factors and close(found.scale, scale):
            return node, found.nodes
        node = view.sole_reader(node.outputs[0])
    return None


def scaled_input(view: View, name: str, scale: float) -> tuple[str, frozenset[int]] | None:
    """(x, nodes) if `name` is `scale * x`, computed by private nodes."""
    node = view.private_producer(name)
    found = product(view, node) if node is not None else None
    if found is None or sum(found.factors.values()) != 1 or not close(found.scale, scale):
        return None
    return next(iter(found.factors)), found.nodes


def plus_const(view: View, node: Node | None, want: float) -> str | None:
    """The computed operand of `node` if it is Add(operand, want) in either order."""
    if node is None or node.op_type != "Add" or len(node.inputs) != 2:
        return None
    a, b = node.inputs
    if close(view.scalar(b), want) and view.scalar(a) is None:
        return a
    if close(view.scalar(a), want) and view.scalar(b) is None:
        return b
    return None


# -- patterns, each from its anchor node -------------------------------------------
def _gelu_tail(view: View, anchor: Node, x: str, inner: frozenset[int], approximate: str) -> Match | None:
    """`0.5 * x * (1 + anchor)` above an Erf/Tanh anchor whose argument is `x` scaled."""
    one_plus = view.sole_reader(anchor.outputs[0])
    if one_plus is None or plus_const(view, one_plus, 1.0) != anchor.outputs[0]:
        return None
    outer = outer_product(view, one_plus.outputs[0], Counter({x: 1, one_plus.outputs[0]: 1}), 0.5)
    if outer is None:
        return None
    top, nodes = outer
    return Match("Gelu", x, top, inner | nodes | {anchor.index, one_plus.index}, (("approximate", approximate),))


def erf_gelu(view: View, node: Node) -> Match | None:
    found = scaled_input(view, node.input(0), 1.0 / math.sqrt(2.0))
    return None if found is None else _gelu_tail(view, node, found[0], found[1], "none")


def tanh_gelu(view: View, node: Node) -> Match | None:
    found = scaled_input(view, node.input(0), GELU_TANH_SCALE)
    if found is None:
        return None
    inner_sum, nodes = found
    add = view.private_producer(inner_sum)
    if add is None or add.op_type != "Add" or len(add.inputs) != 2:
        return None
    for x, cube in (add.inputs, add.inputs[::-1]):
        cubed = view.private_producer(cube)
        term = product(view, cubed) if cubed is not None else None
        if term is not None and term.factors == Counter({x: 3}) and close(term.scale, GELU_TANH_CUBE):
            return _gelu_tail(view, node, x, nodes | term.nodes | {add.index}, "tanh")
    return None


def mish(view: View, node: Node) -> Match | None:
    softplus = view.private_producer(node.input(0))
    if softplus is None or softplus.op_type != "Softplus":
        return None
    x = softplus.input(0)
    outer = outer_product(view, node.outputs[0], Counter({x: 1, node.outputs[0]: 1}), 1.0)
    if outer is None:
        return None
    return Match("Mish", x, outer[0], outer[1] | {softplus.index, node.index})


def hard_sigmoid_swish(view: View, node: Node) -> Match | None:
    if not (close(node.attr("alpha", 0.2), 1.0 / 6.0) and close(node.attr("beta", 0.5), 0.5)):
        return None
    x = node.input(0)
    outer = outer_product(view, node.outputs[0], Counter({x: 1, node.outputs[0]: 1}), 1.0)
    return None if outer is None else Match("HardSwish", x, outer[0], outer[1] | {node.index})


def relu6_swish(view: View, node: Node) -> Match | None:
    """x * Clip(x + 3, 0, 6) / 6 (torch's ReLU6 exports as Clip)."""
    if _clip_bound(view, node, 1, "min") != 0.0 or not close(_clip_bound(view, node, 2, "max"), 6.0):
        return None
    shifted = view.private_producer(node.input(0))
    x = plus_const(view, shifted, 3.0)
    if x is None or shifted is None:
        return None
    outer = outer_product(view, node.outputs[0], Counter({x: 1, node.outputs[0]: 1}), 1.0 / 6.0)
    return None if outer is None else Match("HardSwish", x, outer[0], outer[1] | {node.index, shifted.index})


def _clip_bound(view: View, node: Node, index: int, attr: str) -> float | None:
    # Clip-6 keeps its bounds as attributes, Clip-11 as inputs
    if attr in node.attrs:
        return float(node.attr(attr))
    return view.scalar(node.input(index))


ANCHORS: dict[str, tuple[Callable[[View, Node], Match | None], ...]] = {
    "Erf": (erf_gelu,),
    "Tanh": (tanh_gelu, mish),
    "HardSigmoid": (hard_sigmoid_swish,),
    "Clip": (relu6_swish,),
}


# -- the pass -------------------------------------------------------------------------
def rewritten(graph: Graph, nodes: frozenset[int]) -> bool:
    """True if a recipe `rewrite:` emitted any of `nodes`: the user asked for primitive ops
    there (a device without GELU), so they are not fused back. Rewrites name what they emit
    "<node>/<rewrite>/<op>" (rewrites/ops.Builder); a model whose own module is
    called like a rewrite ("/mlp/gelu/Erf") is left unfused too: slower, never wrong."""
    from buildsys.rewrites.registry import REWRITES

    names = [n.name for n in graph.nodes if n.index in nodes]
    return any(part in REWRITES for name in names for part in name.split("/")[1:-1])


def find_matches(graph: Graph) -> list[Match]:
    view = View(graph)
    found: list[Match] = []
    taken: set[int] = set()
    for node in graph.nodes:
        for matcher in ANCHORS.get(node.op_type, ()):
            m = matcher(view, node)
            if m is None or m.nodes & taken or not view.closed(m.nodes, m.top) or rewritten(graph, m.nodes):
                continue
            if not view.same_float_shape(m.x, m.top.outputs[0]):
                continue
            found.append(m)
            taken |= m.nodes
            break
    return found


def fuse_activations(graph: Graph) -> Graph:
    """The graph with every recognised activation subgraph replaced by one FUSED node."""
    matches = find_matches(graph)
    if not matches:
        return graph
    by_top = {m.top.index: m for m in matches}
    dropped = set().union(*(m.nodes for m in matches))
    nodes = []
    for n in graph.nodes:
        m = by_top.get(n.index)
        if m is not None:
            nodes.append(Node(n.index, n.name, m.op_type, FUSED, (m.x,), n.outputs[:1], dict(m.attrs)))
        elif n.index not in dropped:
            nodes.append(n)
    return replace(graph, nodes=nodes, opsets={**graph.opsets, FUSED: 1})
