"""Grouped convolutions as one grouped CONV_2D, for CPU targets.

The converter emits an ONNX Conv with 1 < group < channels as SPLIT -> one CONV_2D per group
-> CONCATENATION, the form every TFLite consumer takes (Edge TPU, Vela and most NPUs have no
grouped CONV_2D). XNNPACK runs TFLite's grouped CONV_2D directly, float and int8, and the split
form costs it dearly: 46 groups of 8 channels at 7x7 took 0.25 ms int8 split (XNNPACK left it
to TFLite's own kernels) against 0.09 ms as one grouped op; 0.072 vs 0.053 ms in float.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from buildsys.tflow.graphrefs import add_const, const_value, consumers, node_name, set_inputs

_CONV_ATTRS = ("strides", "padding", "dilations", "data_format", "explicit_paddings")


class _Group(NamedTuple):
    split: Any
    convs: list  # Conv2D per group, in output order
    biases: list  # BiasAdd per group, or empty
    concat: Any


def merge_grouped_convs(graph_def: Any) -> Any | None:
    """A copy of `graph_def` with each split-per-group convolution as one grouped Conv2D; None if none."""
    out = type(graph_def)()
    out.CopyFrom(graph_def)
    groups = list(_groups(out))
    if not groups:
        return None
    unused: set[str] = set()
    for group in groups:
        unused |= _merge(out, group)
    still_read = {node_name(ref) for n in out.node if n.name not in unused for ref in n.input}
    kept = [n for n in out.node if n.name not in unused or n.name in still_read]
    del out.node[:]
    out.node.extend(kept)
    return out


def _groups(graph_def: Any):
    nodes = {n.name: n for n in graph_def.node}
    readers = consumers(graph_def)
    for split in graph_def.node:
        if split.op == "Split" and _is_channel_axis(nodes.get(node_name(split.input[0]))):
            group = _group_of(nodes, readers, split)
            if group is not None:
                yield group


def _group_of(nodes: dict, readers: dict, split: Any) -> _Group | None:
    # NodeDefs (untyped protobufs), None where a tensor has not exactly one reader
    convs: list[Any] = [_only_reader(readers, split.name, i) for i in range(split.attr["num_split"].i)]
    if any(c is None or c.op != "Conv2D" or not _same_conv(convs[0], c) or not _const_input(nodes, c) for c in convs):
        return None
    tails: list[Any] = [_only_reader(readers, c.name, 0) for c in convs]
    biases: list[Any] = []
    if all(t is not None and t.op == "BiasAdd" and _const_input(nodes, t) for t in tails):
        biases, tails = tails, [_only_reader(readers, b.name, 0) for b in tails]
    concat = tails[0]
    if concat is None or concat.op != "ConcatV2" or not _is_channel_axis(nodes.get(node_name(concat.input[-1]))):
        return None
    if list(concat.input[:-1]) != [n.name for n in biases or convs]:
        return None
    return _Group(split, convs, biases, concat)


def _merge(graph_def: Any, group: _Group) -> set[str]:
    """Rewires group.convs[0] (and its BiasAdd) to do every group, and the concat to read it;
    returns the names of the nodes that no longer feed anything new (Split, the other groups, old constants)."""
    nodes = {n.name: n for n in graph_def.node}
    first, rest = group.convs[0], group.convs[1:] + group.biases[1:]
    old = {node_name(n.input[1]) for n in group.convs + group.biases} | {node_name(group.concat.input[-1])}
    filt = np.concatenate([const_value(nodes[node_name(c.input[1])]) for c in group.convs], axis=-1)
    set_inputs(first, [group.split.input[1], add_const(graph_def, f"{first.name}/grouped_filter", filt)])
    last = first
    if group.biases:
        head = group.biases[0]
        bias = np.concatenate([const_value(nodes[node_name(b.input[1])]) for b in group.biases])
        set_inputs(head, [first.name, add_const(graph_def, f"{head.name}/grouped_bias", bias)])
        last = head
    dtype = group.concat.attr["T"].type
    group.concat.op = "Identity"
    group.concat.ClearField("attr")
    group.concat.attr["T"].type = dtype
    set_inputs(group.concat, [last.name])
    return {group.split.name, node_name(group.split.input[0])} | {n.name for n in rest} | old


def _only_reader(readers: dict, name: str, output: int) -> Any | None:
    found = readers.get((name, output), [])
    return found[0] if len(found) == 1 else None


def _same_conv(a: Any, b: Any) -> bool:
    return all(a.attr[k] == b.attr[k] for k in _CONV_ATTRS)


def _const_input(nodes: dict, node: Any) -> bool:
    """True when `node`'s second (weight or bias) input is a Const."""
    other = nodes.get(node_name(node.input[1])) if len(node.input) == 2 else None
    return other is not None and other.op == "Const"


def _is_channel_axis(node: Any) -> bool:
    axis = const_value(node, max_size=1)
    return axis is not None and axis.size == 1 and int(axis.item()) in (-1, 3)
