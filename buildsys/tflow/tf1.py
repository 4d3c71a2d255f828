"""TensorFlow 1 graphs as a `Source`: a frozen GraphDef, or a checkpoint frozen here.

The user names the tensors to feed and fetch, as TF1 code did with
`sess.run(outputs, feed_dict)`, and we cut the graph there: consumers of a fed
tensor read a name no node has (`buildsys_feed_<i>`), which `import_graph_def`
maps onto the caller's tensors. Whatever lies above a feed (the placeholder it
replaced, preprocessing) is dropped, so nothing unfed is left in the graph.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import tensorflow as tf
from tensorflow.core.framework import graph_pb2

from buildsys.errors import InputError
from buildsys.tflow.quiet import last_error_line, quiet
from buildsys.tflow.shapes import TensorInfo
from buildsys.tflow.sources import Source
from buildsys.tflow.tf1check import (
    check_checkpoint,
    check_graph_file,
    checkpoint_files,
    checkpoint_summary,
    graph_summary,
    read_graph_def,
    read_meta_graph,
)
from buildsys.tflow.tf1cut import (
    FEED,
    Ref,
    cut_graph,
    needed_nodes,
    parse_ref,
    subgraph,
)

__all__ = [
    "check_checkpoint",
    "check_graph_file",
    "checkpoint_files",
    "checkpoint_summary",
    "freeze_checkpoint",
    "graph_summary",
    "load_checkpoint_source",
    "load_graph_source",
]

# Saver.restore and session errors wrap TF's one useful line in these.
_SESSION_NOISE = (
    "Restoring from checkpoint failed", "Graph execution error", "Detected at node", "Node:", "[[", "Original stack"
)  # fmt: skip


def load_graph_source(pb: Path, inputs: list[str], outputs: list[str]) -> Source:
    pb = Path(pb)
    graph_def = read_graph_def(pb)
    return _source(pb, f"frozen graph {pb}", graph_def, _resolve(graph_def, inputs, outputs, pb))


def load_checkpoint_source(prefix: Path, inputs: list[str], outputs: list[str]) -> Source:
    prefix = Path(prefix)
    graph_def, refs = _freeze(prefix, inputs, outputs)
    return _source(prefix, f"checkpoint {prefix}", graph_def, refs)


def freeze_checkpoint(prefix: Path, outputs: list[str]) -> graph_pb2.GraphDef:
    """The checkpoint's graph cut down to `outputs`, variables replaced by their saved values."""
    return _freeze(Path(prefix), [], outputs)[0]


def _resolve(graph_def, inputs: list[str], outputs: list[str], path: Path) -> tuple[list[Ref], list[Ref]]:
    if not outputs:
        raise InputError(f"no outputs named for {path}", hint="list the tensors to fetch in `outputs:`", path=str(path))
    names = [n.name for n in graph_def.node]
    known = set(names)
    refs = []
    for role, given in (("input", inputs), ("output", outputs)):
        found = [_knownref(name, role, known, names, path) for name in given]
        # `x` and `x:0` are one tensor; `x:1` and an op `x_1` would share a signature name
        given_names = [r.signature_name for r in found]
        doubles = sorted({n for n in given_names if given_names.count(n) > 1})
        if doubles:
            raise InputError(
                f"{role}s of {path} name {', '.join(doubles)} twice", hint=f"list each {role} once", path=str(path)
            )
        refs.append(found)
    return refs[0], refs[1]


def _knownref(name: str, role: str, known: set[str], names: list[str], path: Path) -> Ref:
    ref = parse_ref(str(name).strip())
    if ref.op in known:
        return ref
    close = difflib.get_close_matches(ref.op, names, n=5)
    hint = f"close matches: {', '.join(close)}" if close else "`buildsys inspect` lists its placeholders and outputs"
    raise InputError(f"{role} {name!r} is not a node of {path} (or the file is truncated)", hint=hint, path=str(path))


def _source(path: Path, label: str, graph_def, refs: tuple[list[Ref], list[Ref]]) -> Source:
    feeds, fetches = refs
    cut = cut_graph(graph_def, feeds, fetches, label, path)
    infos = _probe(graph_def, feeds, fetches, label, path)
    return Source(path, infos, [r.signature_name for r in fetches], _caller(cut, feeds, fetches), cut)


def _probe(graph_def, feeds: list[Ref], fetches: list[Ref], label: str, path: Path) -> list[TensorInfo]:
    """Import the uncut graph once: the fed tensors' dtypes and shapes, and a check of every name."""
    nodes = {n.name: n for n in graph_def.node}
    needed = needed_nodes(nodes, [r.op for r in feeds + fetches], [], label, path)
    whole = subgraph(graph_def, needed, [])
    graph = tf.Graph()
    try:
        with quiet() as log, graph.as_default():
            tf.graph_util.import_graph_def(whole, name="")
    except Exception as exc:  # noqa: BLE001 - the importer raises ValueError, TypeError, OpError...
        raise InputError(
            f"cannot import {label}: {last_error_line(exc, log)}", hint="re-export it", path=str(path)
        ) from None
    for ref in fetches:
        _tensor(graph, ref, "output", label, path)
    fed = [_tensor(graph, ref, "input", label, path) for ref in feeds]
    return [TensorInfo(r.signature_name, _dims(t.shape), t.dtype.name) for r, t in zip(feeds, fed)]


def _tensor(graph: tf.Graph, ref: Ref, role: str, label: str, path: Path) -> tf.Tensor:
    op = graph.get_operation_by_name(ref.op)
    if ref.index >= len(op.outputs):
        raise InputError(
            f"{role} {ref.tensor!r} of {label}: op {ref.op!r} ({op.type}) has {len(op.outputs)} output(s)",
            hint=f"use {ref.op}:0 .. {ref.op}:{len(op.outputs) - 1}" if op.outputs else None,
            path=str(path),
        )
    return op.outputs[ref.index]


def _dims(shape: tf.TensorShape) -> list[int | None] | None:
    return None if shape.rank is None else list(shape.as_list())


def _caller(cut: graph_pb2.GraphDef, feeds: list[Ref], fetches: list[Ref]):
    """`call` for the Source: the cut graph imported once per input signature.

    Imported through wrap_function, not into the caller's tf.function: a
    tf.function adds automatic control dependencies, which join TF1 while-loop
    frames and make the graph invalid. The wrapped graph is built at the
    caller's static shapes, so its outputs have static shapes too."""
    fed = {r.tensor: i for i, r in enumerate(feeds)}
    returned = [r.tensor for r in fetches if r.tensor not in fed]
    built: dict[tuple, object] = {}

    def imported(*xs):
        mapping = {f"{FEED}{i}:0": x for i, x in enumerate(xs)}
        return tf.graph_util.import_graph_def(cut, input_map=mapping, return_elements=returned, name="tf1")

    def function_for(xs: list[tf.Tensor]):
        key = tuple((None if x.shape.rank is None else tuple(x.shape.as_list()), x.dtype) for x in xs)
        if key not in built:
            with quiet():
                built[key] = tf.compat.v1.wrap_function(imported, [tf.TensorSpec(x.shape, x.dtype) for x in xs])
        return built[key]

    def call(xs: list[tf.Tensor]) -> list[tf.Tensor]:
        xs = list(xs)
        got = iter(function_for(xs)(*xs) if returned else [])
        return [xs[fed[r.tensor]] if r.tensor in fed else next(got) for r in fetches]

    return call


def _freeze(prefix: Path, inputs: list[str], outputs: list[str]) -> tuple[graph_pb2.GraphDef, tuple]:
    checkpoint_files(prefix)
    meta = read_meta_graph(prefix)
    # Names are checked against the whole graph: freezing drops what the outputs do not need.
    refs = _resolve(meta.graph_def, inputs, outputs, prefix)
    keep = sorted({r.op for r in refs[0] + refs[1]})
    graph = tf.Graph()
    with quiet() as log, graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        saver = _import_meta(meta, prefix)
        if saver is not None:
            _restore(saver, session, prefix)
        try:
            # also drops what `keep` does not need: save/restore, init and training nodes
            frozen = tf.compat.v1.graph_util.convert_variables_to_constants(session, graph.as_graph_def(), keep)
        except Exception as exc:  # noqa: BLE001 - TF raises many types while freezing
            raise InputError(
                f"cannot freeze checkpoint {prefix}: {last_error_line(exc, log)}", hint="re-export it", path=str(prefix)
            ) from None
    return frozen, refs


def _import_meta(meta, prefix: Path):
    try:
        with quiet() as log:
            return tf.compat.v1.train.import_meta_graph(meta, clear_devices=True)
    except Exception as exc:  # noqa: BLE001 - unknown ops, bad attrs, anything the importer finds
        raise InputError(
            f"cannot import the graph of checkpoint {prefix}: {last_error_line(exc, log)}",
            hint="re-export it with this TensorFlow version",
            path=f"{prefix}.meta",
        ) from None


def _restore(saver, session, prefix: Path) -> None:
    try:
        with quiet():
            saver.restore(session, str(prefix))
    except Exception as exc:  # noqa: BLE001 - any OpError, IndexError from the bundle reader
        # The session's error names the op, not the file: the reader check finds the damaged file.
        check_checkpoint(prefix)
        raise InputError(
            f"cannot restore checkpoint {prefix}: {_session_reason(exc)}",
            hint="the .meta, .index and .data files must come from the same save",
            path=str(prefix),
        ) from None


def _session_reason(exc: BaseException) -> str:
    """The line of a session error that says what went wrong (not which node, nor where it was defined)."""
    message = getattr(exc, "message", None) or str(exc)
    for line in message.splitlines():
        line = line.strip()
        if line and not line.startswith(_SESSION_NOISE):
            return line
    return type(exc).__name__
