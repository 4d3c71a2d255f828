"""Chains of Reshape/Transpose as one data movement (MobileViT's patch unfold and fold).

MobileViT turns a feature map into patches with Reshape -> Transpose -> Reshape ->
Transpose -> Reshape and back. Taken one node at a time, each Reshape of a permuted
tensor costs a transpose to ONNX order, and a Reshape that happens to be free can
leave the result in a layout no later op wants (a [P, N, C] tensor stored as
[C, N, P], so every MatMul of the transformer moves it again).

The whole chain is a single permutation of "atoms": the finest factors every shape
along the chain splits its axes into. The input, stored in any layout, reshapes for
free into its atoms; one transpose puts them in the order the output layout needs;
a reshape gives the output. So a chain costs at most one transpose, and none when
the stored atoms already follow each other as some layout of the output needs.

`fuse_relayouts` runs on the converter's IR (like fusions.fuse_activations): each
private chain of two or more such nodes (at least one Reshape, constant shapes)
becomes one FUSED `Relayout` node, handled in ops/relayout.py, which keeps the
original nodes to convert them one by one when the atoms do not exist.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from buildsys.converter.fusions import FUSED, View
from buildsys.converter.ir import Graph, Node

RELAYOUT = "Relayout"
MOVES = frozenset({"Reshape", "Transpose"})
# readers that compute channels-last: the chain's output is best stored that way for them
CHANNELS_LAST_READERS = frozenset(
    {
        "Conv",
        "ConvTranspose",
        "MaxPool",
        "AveragePool",
        "GlobalAveragePool",
        "GlobalMaxPool",
        "BatchNormalization",
        "InstanceNormalization",
        "Resize",
        "DepthToSpace",
        "SpaceToDepth",
    }
)


# -- atoms --------------------------------------------------------------------
@dataclass(frozen=True)
class Movement:
    """Input and output ONNX axes as runs of atoms (outer to inner); unit axes have none."""

    in_axes: tuple[tuple[int, ...], ...]
    out_axes: tuple[tuple[int, ...], ...]
    sizes: tuple[int, ...]  # by atom id


class _Atoms:
    """Atom sizes, and the two halves each split atom became."""

    def __init__(self, shape: list[int]):
        self.sizes: list[int] = []
        self.halves: dict[int, tuple[int, int]] = {}
        self.axes = [[self.new(d)] if d != 1 else [] for d in shape]
        self.inputs = [list(a) for a in self.axes]

    def new(self, size: int) -> int:
        self.sizes.append(size)
        return len(self.sizes) - 1

    def leaves(self, atom: int) -> list[int]:
        if atom not in self.halves:
            return [atom]
        outer, inner = self.halves[atom]
        return self.leaves(outer) + self.leaves(inner)

    def flat(self, axes: list[list[int]]) -> list[int]:
        return [leaf for axis in axes for atom in axis for leaf in self.leaves(atom)]

    def split(self, atom: int, outer: int) -> tuple[int, int]:
        halves = (self.new(outer), self.new(self.sizes[atom] // outer))
        self.halves[atom] = halves
        return halves

    def reshape(self, dims: list[int]) -> bool:
        """Regroup the atoms into `dims`, splitting an atom a boundary falls inside."""
        seq, k, axes = self.flat(self.axes), 0, []
        for d in dims:
            group, need = [], d
            while need > 1:
                if k >= len(seq):
                    return False
                size = self.sizes[seq[k]]
                if need % size == 0:
                    group.append(seq[k])
                    need, k = need // size, k + 1
                elif size % need == 0:
                    outer, seq[k] = self.split(seq[k], need)
                    group.append(outer)
                    need = 1
                else:
                    return False
            axes.append(group)
        self.axes = axes
        return k == len(seq)


def movement(in_shape: list[int], steps: list[tuple[str, list[int]]]) -> Movement | None:
    """The atoms of a chain of ("reshape", dims) / ("transpose", perm) steps, or None when
    some reshape boundary splits an axis the others do not divide evenly."""
    atoms = _Atoms(in_shape)
    for kind, arg in steps:
        if kind == "transpose":
            atoms.axes = [atoms.axes[a] for a in arg]
        elif not atoms.reshape(arg):
            return None
    ins = tuple(tuple(atoms.flat([a])) for a in atoms.inputs)
    outs = tuple(tuple(atoms.flat([a])) for a in atoms.axes)
    return Movement(ins, outs, tuple(atoms.sizes))


def stored_atoms(axes: tuple[tuple[int, ...], ...], perm: tuple[int, ...]) -> list[int]:
    """Atoms in the order a tensor stored in `perm` holds them."""
    return [atom for a in perm for atom in axes[a]]


def free_order(mv: Movement, src: list[int]) -> list[int] | None:
    """Non-unit output axes in the order the stored input atoms already hold them, or None."""
    starts = {axis[0]: j for j, axis in enumerate(mv.out_axes) if axis}
    order, k = [], 0
    while k < len(src):
        j = starts.get(src[k])
        if j is None or tuple(src[k : k + len(mv.out_axes[j])]) != mv.out_axes[j]:
            return None
        order.append(j)
        k += len(mv.out_axes[j])
    return order


def merged_transpose(src: list[int], dst: list[int], sizes: tuple[int, ...]) -> tuple[list[int], list[int]]:
    """(dims, perm) of the one transpose taking atoms in `src` order to `dst` order, with
    atoms that stay neighbours in both merged (fewer axes: TFLite transposes up to 6-D)."""
    at = {a: i for i, a in enumerate(dst)}
    runs: list[list[int]] = []
    for k, atom in enumerate(src):
        if k and at[atom] == at[src[k - 1]] + 1:
            runs[-1].append(atom)
        else:
            runs.append([atom])
    dims = [math.prod(sizes[a] for a in run) for run in runs]
    perm = sorted(range(len(runs)), key=lambda r: at[runs[r][0]])
    return dims, perm


# -- the IR pass --------------------------------------------------------------
def fuse_relayouts(graph: Graph) -> Graph:
    """The graph with each private Reshape/Transpose chain replaced by one Relayout node."""
    view = View(graph)
    chains = [c for c in _chains(graph, view) if len(c) > 1 and any(n.op_type == "Reshape" for n in c)]
    if not chains:
        return graph
    by_last = {c[-1].index: c for c in chains}
    dropped = {n.index for c in chains for n in c}
    nodes = []
    for n in graph.nodes:
        chain = by_last.get(n.index)
        if chain is not None:
            nodes.append(_fused(chain, view))
        elif n.index not in dropped:
            nodes.append(n)
    return replace(graph, nodes=nodes, opsets={**graph.opsets, FUSED: 1})


def _chains(graph: Graph, view: View) -> list[list[Node]]:
    chains: list[list[Node]] = []
    taken: set[int] = set()
    for n in graph.nodes:
        if n.index in taken or not _movable(n, view):
            continue
        chain = [n]
        while True:
            nxt = view.sole_reader(chain[-1].outputs[0])
            if nxt is None or not _movable(nxt, view) or nxt.input(0) != chain[-1].outputs[0]:
                break
            chain.append(nxt)
        taken.update(c.index for c in chain)
        chains.append(chain)
    return chains


def _movable(node: Node, view: View) -> bool:
    if node.op_type not in MOVES or node.domain not in ("", "ai.onnx"):
        return False
    if node.op_type == "Transpose":
        return True
    if view.graph.opset("") < 5 or node.input(0) == node.input(1):
        return False
    shape = node.input(1)
    producer = view.producers.get(shape)
    return shape in view.graph.constants or (producer is not None and producer.op_type == "Constant")


def _fused(chain: list[Node], view: View) -> Node:
    last = chain[-1]
    out = last.outputs[0]
    readers = view.readers.get(out, [])
    nhwc_reader = any(r.op_type in CHANNELS_LAST_READERS and r.input(0) == out for r in readers)
    inputs = (chain[0].input(0), *(n.input(1) for n in chain if n.op_type == "Reshape"))
    attrs = {"chain": tuple(chain), "channels_last_reader": nhwc_reader}
    return Node(last.index, last.name, RELAYOUT, FUSED, inputs, (out,), attrs)
