"""Cutting a model at named tensors, and finding where its data-dependent post-processing starts.

Detector exports carry post-processing whose output sizes depend on the data (NonZero, NMS inside
an If, a TopK whose k is computed from scores): a static TFLite graph cannot hold it. The recipe's
`outputs:` cuts the graph so the named tensors become its outputs and the application keeps the
rest; `suggest_cut` proposes those tensors for `inspect` and the converter's refusal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import onnx
from onnx import helper

from buildsys.documents.closematch import close_matches
from buildsys.documents.yamlmarks import yaml_text
from buildsys.errors import InputError

# ops whose output size depends on tensor values
DATA_DEPENDENT = frozenset({"NonZero", "NonMaxSuppression", "Unique", "Compress"})
# ... and these when the inputs at these positions (a size, a branch condition, a trip count) are
# computed from the data; from shapes only (`If` on the batch size) they fold or stay static
SIZED_BY_INPUT = {
    **{"TopK": (1,), "Range": (0, 1, 2), "ConstantOfShape": (0,), "Expand": (1,), "Tile": (1,)},
    **{"If": (0,), "Loop": (0, 1)},
}
# outputs that depend on a tensor's shape only, never on its values
SHAPE_ONLY = frozenset({"Shape", "Size"})
# cheap ops that only prepare a selection (a threshold mask, a class's scores, a count): when
# nothing but the post-processing reads them, the cut goes before them
SELECTION = frozenset(
    {
        *("Greater", "GreaterOrEqual", "Less", "LessOrEqual", "Equal", "And", "Or", "Not", "Xor", "Where"),
        *("Cast", "ReduceMax", "ReduceMin", "ReduceSum", "ArgMax", "ArgMin", "Min", "Max", "Gather", "Slice"),
        *("Shape", "Size", "ConstantOfShape", "Range"),
    }
)
# data movement: pulled only when its input is read by the post-processing anyway (scores and
# their transpose for NMS are one output), else a box head's reshape would move the cut to its conv
LAYOUT = frozenset({"Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Expand", "Tile"})


@dataclass(frozen=True)
class Step:
    """A node as data flows through it: `inputs` includes what its subgraphs read from outside."""

    index: int
    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


@dataclass(frozen=True)
class Flow:
    steps: list[Step]
    inputs: list[str]  # graph inputs (not initializers)
    outputs: list[str]


@dataclass(frozen=True)
class Suggestion:
    tensors: tuple[str, ...]  # to become the graph outputs
    ops: tuple[tuple[str, int], ...]  # data-dependent op types and their counts
    dropped: int  # nodes the cut removes


def flow_of(graph: onnx.GraphProto) -> Flow:
    inits = {t.name for t in graph.initializer}
    steps = [
        Step(i, n.op_type, _reads(n.input, _subgraphs(n.attribute)), tuple(n.output)) for i, n in enumerate(graph.node)
    ]
    inputs = [v.name for v in graph.input if v.name not in inits]
    return Flow(steps, inputs, [o.name for o in graph.output])


def flow_of_ir(graph) -> Flow:
    """The converter's IR graph (converter.ir.Graph), whose subgraph attributes are GraphProtos."""
    steps = []
    for i, n in enumerate(graph.nodes):  # by position: passes may have replaced nodes
        subs = [
            g for v in n.attrs.values() for g in (v if isinstance(v, list) else [v]) if isinstance(g, onnx.GraphProto)
        ]
        steps.append(Step(i, n.op_type, _reads(n.inputs, subs), tuple(n.outputs)))
    return Flow(steps, [v.name for v in graph.inputs], [v.name for v in graph.outputs])


def _subgraphs(attributes) -> list[onnx.GraphProto]:
    out = []
    for a in attributes:
        if a.type == onnx.AttributeProto.GRAPH:
            out.append(a.g)
        elif a.type == onnx.AttributeProto.GRAPHS:
            out.extend(a.graphs)
    return out


def _reads(inputs: Iterable[str], subgraphs: list[onnx.GraphProto]) -> tuple[str, ...]:
    names = [i for i in inputs if i]
    for g in subgraphs:
        names += sorted(outer_names(g))
    return tuple(dict.fromkeys(names))


def outer_names(graph: onnx.GraphProto) -> set[str]:
    """Names a subgraph (and its own subgraphs) reads from the scopes around it."""
    local = {v.name for v in graph.input} | {t.name for t in graph.initializer}
    local |= {o for n in graph.node for o in n.output}
    read = {i for n in graph.node for i in _reads(n.input, _subgraphs(n.attribute))}
    read |= {o.name for o in graph.output}
    return read - local


def cut(model: onnx.ModelProto, names: Sequence[str], at: Callable[[int], str]) -> onnx.ModelProto:
    """The model computing only `names`, which become its outputs; `at(i)` locates `outputs[i]`
    in the recipe for the error about an unknown name."""
    graph = model.graph
    flow = flow_of(graph)
    producer = {o: s for s in flow.steps for o in s.outputs if o}
    known = [*flow.inputs, *producer]
    for i, name in enumerate(names):
        if name not in producer and name not in flow.inputs:
            close = close_matches(name, known)
            listing = "`buildsys inspect MODEL` lists the nodes and their tensors"
            hint = f"did you mean {', '.join(map(repr, close))}?" if close else listing
            raise InputError(f"{at(i)}: the model has no tensor named {name!r}", hint=hint)
    keep = _needed(names, producer)
    types = _types(model)
    nodes = [n for s, n in zip(flow.steps, graph.node) if s.index in keep]
    reads = {i for s in flow.steps if s.index in keep for i in s.inputs} | set(names)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    del g.node[:], g.output[:], g.value_info[:]
    g.node.extend(nodes)
    g.output.extend(types.get(n) or helper.make_empty_tensor_value_info(n) for n in names)
    inputs = [v for v in graph.input if v.name in reads]
    del g.input[:]
    g.input.extend(inputs)
    inits = [t for t in graph.initializer if t.name in reads]
    del g.initializer[:]
    g.initializer.extend(inits)
    return out


def _needed(names: Sequence[str], producer: dict[str, Step]) -> set[int]:
    keep: set[int] = set()
    todo = list(names)
    while todo:
        step = producer.get(todo.pop())
        if step is None or step.index in keep:
            continue
        keep.add(step.index)
        todo.extend(step.inputs)
    return keep


def _types(model: onnx.ModelProto) -> dict[str, onnx.ValueInfoProto]:
    """Element types (no shapes: prepare infers them) of every tensor ONNX can type."""
    try:
        typed = onnx.shape_inference.infer_shapes(model)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError):
        typed = model
    g = typed.graph
    out = {}
    for v in [*g.input, *g.value_info, *g.output]:
        if v.type.HasField("tensor_type") and v.type.tensor_type.elem_type:
            out[v.name] = helper.make_tensor_value_info(v.name, v.type.tensor_type.elem_type, None)
    return out


def suggest_cut(flow: Flow) -> Suggestion | None:
    """The tensors just before the data-dependent post-processing, with the graph outputs that do
    not depend on it; None when the graph has no such part."""
    producer = {o: s for s in flow.steps for o in s.outputs if o}
    data = _data_tensors(flow)
    seeds = [s for s in flow.steps if _data_dependent(s, data)]
    if not seeds:
        return None
    region = _downstream(flow, {s.index for s in seeds})
    region = _pull_selection(flow, region)
    wanted = [i for s in flow.steps if s.index in region for i in s.inputs]
    wanted += flow.outputs
    tensors = [t for t in dict.fromkeys(wanted) if t in producer and producer[t].index not in region and t in data]
    tensors.sort(key=lambda t: producer[t].index)
    counts: dict[str, int] = {}
    for s in seeds:
        counts[s.op_type] = counts.get(s.op_type, 0) + 1
    return Suggestion(tuple(tensors), tuple(sorted(counts.items())), len(region))


def _data_tensors(flow: Flow) -> set[str]:
    """Tensors whose values depend on the graph inputs' values (not only on their shapes)."""
    data = set(flow.inputs)
    for s in flow.steps:
        if s.op_type not in SHAPE_ONLY and any(i in data for i in s.inputs):
            data.update(s.outputs)
    return data


def _data_dependent(step: Step, data: set[str]) -> bool:
    if step.op_type in DATA_DEPENDENT:
        return True
    sized = SIZED_BY_INPUT.get(step.op_type, ())
    return any(i < len(step.inputs) and step.inputs[i] in data for i in sized)


def _downstream(flow: Flow, region: set[int]) -> set[int]:
    made = {o for s in flow.steps if s.index in region for o in s.outputs}
    for s in flow.steps:  # graph order: producers come first
        if s.index not in region and any(i in made for i in s.inputs):
            region.add(s.index)
            made.update(s.outputs)
    return region


def _pull_selection(flow: Flow, region: set[int]) -> set[int]:
    """Grow the region up over selection ops that only the post-processing reads."""
    readers: dict[str, set[int]] = {}
    for s in flow.steps:
        for i in s.inputs:
            readers.setdefault(i, set()).add(s.index)
    outputs = set(flow.outputs)
    grown = True
    while grown:
        grown = False
        for s in reversed(flow.steps):  # consumers come after producers: a pass settles most chains
            if s.index not in region and _pulled(s, readers, region, outputs):
                region.add(s.index)
                grown = True
    return region


def _pulled(s: Step, readers: dict[str, set[int]], region: set[int], outputs: set[str]) -> bool:
    if outputs.intersection(s.outputs) or s.op_type not in SELECTION | LAYOUT:
        return False
    read_by = set().union(*(readers.get(o, set()) for o in s.outputs))
    if not read_by or not read_by <= region:
        return False
    return s.op_type in SELECTION or any(readers.get(i, set()) & region for i in s.inputs[:1])


def snippet(suggestion: Suggestion) -> str:
    """`outputs:` lines to paste into a recipe."""
    ops = ", ".join(op for op, _ in suggestion.ops)
    lines = [f"outputs:   # cut before the data-dependent post-processing ({ops}); the application runs it"]
    return "\n".join([*lines, *(f"  - {yaml_text(t)}" for t in suggestion.tensors)])
