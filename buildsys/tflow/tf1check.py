"""TensorFlow 1 source files: locate, parse and check them without building a model.

A TF1 source is either a frozen GraphDef (.pb) or a checkpoint written by
`tf.compat.v1.train.Saver`, named by its prefix (`model.ckpt`, with
`model.ckpt.meta`, `.index` and `.data-NNNNN-of-MMMMM` shards beside it).
The fetch stage calls the cheap checks here so a damaged download is reported
against the file that is damaged, before any conversion starts.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import tensorflow as tf
from google.protobuf.message import DecodeError
from tensorflow.core.framework import graph_pb2
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from buildsys.errors import InputError
from buildsys.tflow.quiet import last_error_line, quiet
from buildsys.tflow.tf1files import beside, checkpoint_files

_HINT = "re-export it or check the sha256"
VARIABLE_OPS = frozenset({"Variable", "VariableV2", "VarHandleOp", "_VarHandlesOp", "TemporaryVariable"})
_PLACEHOLDERS = frozenset({"Placeholder", "PlaceholderWithDefault"})
# Unconsumed nodes that are never a model's result: variables, saving, initialization, checks.
_NOT_OUTPUT_OPS = VARIABLE_OPS | _PLACEHOLDERS | {
    "NoOp", "Const", "Assign", "AssignVariableOp", "AssignAdd", "AssignSub", "SaveV2", "RestoreV2", "SaveSlices",
    "RestoreSlice", "MergeV2Checkpoints", "ShardedFilename", "StringJoin", "VarIsInitializedOp",
    "IsVariableInitialized", "Assert", "Print", "PrintV2",
}  # fmt: skip
# Name scopes tf.compat.v1 gives its own bookkeeping (Saver, initializers, optimizers).
_BOOKKEEPING_SCOPE = re.compile(
    r"^(save|init|gradients|report_uninitialized_variables|global_step|train|summaries)(_\d+)?$"
)


def read_graph_def(pb: Path) -> graph_pb2.GraphDef:
    """The GraphDef in `pb`; InputError (naming the file) if it is not a usable one."""
    pb = Path(pb)
    try:
        data = pb.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read frozen graph {pb}: {exc.strerror or exc}", path=str(pb)) from None
    try:
        graph_def = graph_pb2.GraphDef.FromString(data)
    except DecodeError:
        graph_def = None
    if graph_def is None or not graph_def.node:
        raise _not_a_graph(pb, data, empty=graph_def is not None)
    return graph_def


def _not_a_graph(pb: Path, data: bytes, empty: bool) -> InputError:
    what = "parses as a GraphDef but has no nodes" if empty else "is not a GraphDef (truncated or corrupt)"
    hint = _HINT
    # A SavedModel's or a checkpoint's graph is a different message: say which key the file belongs to.
    if pb.name == "saved_model.pb" or _parsed(saved_model_pb2.SavedModel, data).meta_graphs:
        hint = f"{pb.name} looks like a SavedModel: use `source: {{saved_model: {pb.parent}}}` for the directory"
    elif pb.suffix == ".meta" or _parsed(meta_graph_pb2.MetaGraphDef, data).graph_def.node:
        hint = "this looks like a checkpoint's .meta graph: use `checkpoint:` with the checkpoint prefix"
    return InputError(f"frozen graph {pb} {what}", hint=hint, path=str(pb))


def _parsed(message, data: bytes):
    """`data` as `message`, or an empty one if it does not parse."""
    try:
        return message.FromString(data)
    except DecodeError:
        return message()


def check_graph_file(pb: Path) -> None:
    """Fetch-stage check: `pb` is a complete GraphDef whose node inputs all exist."""
    graph_def = read_graph_def(Path(pb))
    names = {node.name for node in graph_def.node}
    for node in graph_def.node:
        for ref in node.input:
            source = ref.lstrip("^").split(":")[0]
            if source not in names:
                raise InputError(
                    f"frozen graph {pb} is incomplete: node {node.name!r} reads {ref!r}, which is not in the file",
                    hint=_HINT,
                    path=str(pb),
                )


def read_meta_graph(prefix: Path) -> meta_graph_pb2.MetaGraphDef:
    meta = beside(Path(prefix), ".meta")
    try:
        parsed = meta_graph_pb2.MetaGraphDef.FromString(meta.read_bytes())
    except OSError as exc:
        raise InputError(f"cannot read {meta}: {exc.strerror or exc}", path=str(meta)) from None
    except DecodeError:
        parsed = None
    if parsed is None or not parsed.graph_def.node:
        raise InputError(
            f"checkpoint graph {meta} is not a MetaGraphDef with a graph (truncated or corrupt)",
            hint=_HINT,
            path=str(meta),
        )
    return parsed


def check_checkpoint(prefix: Path) -> None:
    """Fetch-stage check: the files exist, the .meta parses, every saved tensor reads back.

    Reading each tensor is what makes TensorFlow verify shard sizes and CRCs."""
    prefix = Path(prefix)
    files = checkpoint_files(prefix)
    read_meta_graph(prefix)
    reading = False
    try:
        with quiet() as log:
            reader = tf.train.load_checkpoint(str(prefix))
            names = sorted(reader.get_variable_to_dtype_map())
            reading = True
            for name in names:
                reader.get_tensor(name)
    except Exception as exc:  # noqa: BLE001 - the bundle reader raises OpError or IndexError
        raise _damaged(prefix, files, exc, log, reading) from None


def _damaged(prefix: Path, files: tuple[Path, ...], exc: BaseException, log, reading: bool) -> InputError:
    """An InputError naming the checkpoint file TensorFlow failed on.

    The index is read when the checkpoint is opened; the data shards when a
    tensor is read, and TF names a shard only in some of its messages."""
    reason = last_error_line(exc, log)
    culprit = _culprit(files, reason, reading)
    what = culprit.name if culprit else "one of " + ", ".join(p.name for p in files[2:])
    return InputError(
        f"checkpoint {prefix}: {what} is damaged ({reason})",
        hint="copy the checkpoint files again or check their sha256",
        path=str(culprit or prefix),
    )


def _culprit(files: tuple[Path, ...], reason: str, reading: bool) -> Path | None:
    index, shards = files[1], files[2:]
    if not reading or "sstable" in reason:
        return index
    match = re.search(r"shard (\d+)", reason)
    if match and int(match.group(1)) < len(shards):
        return shards[int(match.group(1))]
    return shards[0] if len(shards) == 1 else None


def graph_summary(pb: Path) -> dict:
    """For `buildsys inspect`: what a recipe's `inputs:` / `outputs:` could name.

    {"nodes": n, "ops": {op: count}, "placeholders": [...], "likely_outputs": [...]}, each
    tensor as {"name", "dtype", "shape"} (None where the graph does not import here)."""
    return _summary(read_graph_def(Path(pb)))


def checkpoint_summary(prefix: Path) -> dict:
    """graph_summary of the .meta graph, plus the number of variables it declares."""
    graph_def = read_meta_graph(Path(prefix)).graph_def
    summary = _summary(graph_def)
    summary["variables"] = sum(node.op in VARIABLE_OPS for node in graph_def.node)
    return summary


def _summary(graph_def: graph_pb2.GraphDef) -> dict:
    ops = _imported_ops(graph_def)
    consumed = {ref.lstrip("^").split(":")[0] for node in graph_def.node for ref in node.input}
    placeholders = [n.name for n in graph_def.node if n.op in _PLACEHOLDERS and not _bookkeeping(n)]
    ends = [n.name for n in graph_def.node if n.name not in consumed and _may_be_output(n)]
    return {
        "nodes": len(graph_def.node),
        "ops": dict(sorted(Counter(node.op for node in graph_def.node).items())),
        "placeholders": [_described(name, ops) for name in placeholders],
        "likely_outputs": [_described(name, ops) for name in ends],
    }


def _may_be_output(node) -> bool:
    return node.op not in _NOT_OUTPUT_OPS and not _bookkeeping(node)


def _bookkeeping(node) -> bool:
    return bool(_BOOKKEEPING_SCOPE.match(node.name.split("/")[0]))


def _imported_ops(graph_def: graph_pb2.GraphDef) -> dict[str, tf.Operation]:
    """Op name -> op, whose outputs carry inferred dtypes and shapes; empty when the graph does not import."""
    graph = tf.Graph()
    try:
        with quiet(), graph.as_default():
            tf.graph_util.import_graph_def(graph_def, name="")
    except Exception:  # noqa: BLE001 - inspect still shows names and ops without shapes
        return {}
    return {op.name: op for op in graph.get_operations()}


def _described(name: str, ops: dict) -> dict:
    op = ops.get(name)
    if op is None or not op.outputs:
        return {"name": name, "dtype": None, "shape": None}
    out = op.outputs[0]
    shape = None if out.shape.rank is None else out.shape.as_list()
    described = {"name": name, "dtype": out.dtype.name, "shape": shape}
    if len(op.outputs) > 1:
        described["outputs"] = len(op.outputs)
    return described
