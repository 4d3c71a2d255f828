"""The float model file: one frozen, canonically named GraphDef.

Why a GraphDef and not a SavedModel: a SavedModel is a directory whose
saved_model.pb embeds process-global function names and whose variables live in
a checkpoint, so its bytes change from one export to the next. A frozen GraphDef
holds weights as constants, and after `graphcanon.canonicalize` plus
deterministic serialization its bytes depend only on the model.

Layout: placeholders `input_<i>` and Identity nodes `output_<j>` in signature
order, plus a disconnected string Const `buildsys_signature` holding the
signature as canonical JSON, so the file is self-describing and renaming a
model input changes the file's hash.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import tensorflow as tf
from google.protobuf.message import DecodeError
from tensorflow.core.framework import graph_pb2, types_pb2
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from buildsys.errors import InputError, StageError
from buildsys.hashing import canonical_json, digest_bytes
from buildsys.signature import Signature
from buildsys.tflow.graphcanon import canonicalize, suffix_functions

SIGNATURE_NODE = "buildsys_signature"


def freeze(
    call: Callable[[list[tf.Tensor]], list[tf.Tensor]],
    specs: list[tf.TensorSpec],
    autograph: bool = True,
    keep_scopes: bool = False,
) -> tuple[graph_pb2.GraphDef, list[tf.Tensor]]:
    """Trace `call` at fixed shapes, fold variables into constants, canonicalize.

    Returns (graph_def, output_tensors) where output tensors carry static shapes.
    `autograph=False` for callers that are plain graph builders (the ONNX
    converter): transpiling them costs seconds and adds nothing. `keep_scopes`:
    see graphcanon.canonicalize.
    """
    fn = tf.function(lambda *xs: list(call(list(xs))), input_signature=specs, autograph=autograph)
    concrete = fn.get_concrete_function()
    if _keeps_composites(concrete):
        frozen = concrete
    else:
        frozen = convert_variables_to_constants_v2(concrete, lower_control_flow=False)
    placeholders = [t for t in frozen.inputs if t.dtype != tf.resource]
    if len(placeholders) != len(specs) or len(placeholders) != len(frozen.inputs):
        raise StageError("the model still reads resources (tables or variables) after freezing; it cannot be exported")
    outputs = [(t.name, t.dtype.as_datatype_enum) for t in frozen.outputs]
    graph_def = canonicalize(frozen.graph.as_graph_def(), [t.op.name for t in placeholders], outputs, keep_scopes)
    return graph_def, list(frozen.outputs)


def _keeps_composites(concrete) -> bool:
    """True for a graph without variables that calls composite functions (`api_implements`,
    e.g. the converter's fusable LSTMs). Freezing would run grappler's function optimizer,
    which inlines or specializes them (constant arguments moved into the body), and the
    TFLite converter then no longer recognises them; with nothing to freeze, skip it."""
    if concrete.captured_inputs:
        return False
    library = concrete.graph.as_graph_def().library.function
    return any("api_implements" in f.attr for f in library)


def write_float(out: Path, graph_def: graph_pb2.GraphDef, signature: Signature) -> None:
    """Serialize deterministically and replace `out` atomically."""
    stored = graph_pb2.GraphDef()
    stored.CopyFrom(graph_def)
    _add_signature_node(stored, signature)
    data = stored.SerializeToString(deterministic=True)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # A private temp name in the same directory: concurrent builds never see a
    # half-written file, and os.replace is atomic on one filesystem.
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=out.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _add_signature_node(graph_def: graph_pb2.GraphDef, signature: Signature) -> None:
    node = graph_def.node.add(name=SIGNATURE_NODE, op="Const")
    node.attr["dtype"].type = types_pb2.DT_STRING
    tensor = node.attr["value"].tensor
    tensor.dtype = types_pb2.DT_STRING
    tensor.string_val.append(canonical_json(signature.to_dict()).encode("utf-8"))


def read_float(path: Path) -> tuple[graph_pb2.GraphDef, Signature]:
    """Parse a float model file; InputError if it is not one of ours."""
    path = Path(path)
    try:
        graph_def = graph_pb2.GraphDef.FromString(path.read_bytes())
    except (OSError, DecodeError) as exc:
        raise InputError(
            f"cannot read float model {path}: {exc}", hint="delete it and rebuild", path=str(path)
        ) from None
    signature = _signature_of(graph_def)
    if signature is None:
        raise InputError(
            f"{path} is not a buildsys float model (no {SIGNATURE_NODE} node)",
            hint="delete it and rebuild",
            path=str(path),
        )
    return graph_def, signature


def _signature_of(graph_def: graph_pb2.GraphDef) -> Signature | None:
    for node in graph_def.node:
        if node.name == SIGNATURE_NODE and node.attr["value"].tensor.string_val:
            try:
                return Signature.from_dict(json.loads(node.attr["value"].tensor.string_val[0].decode("utf-8")))
            except (ValueError, KeyError, TypeError):  # not JSON, or JSON without inputs and outputs
                return None
    return None


def as_function(graph_def: graph_pb2.GraphDef, n_inputs: int, n_outputs: int):
    """A ConcreteFunction input_0.. -> [output_0, ..] over the imported graph."""

    # only graphs with functions need them renamed: serializing and hashing a large model's bytes is not free
    unique = graph_def
    if graph_def.library.function:
        unique = suffix_functions(graph_def, digest_bytes(graph_def.SerializeToString(deterministic=True)))

    def _import() -> None:
        tf.graph_util.import_graph_def(unique, name="")

    wrapped = tf.compat.v1.wrap_function(_import, [])
    graph = wrapped.graph
    feeds = [graph.get_tensor_by_name(f"input_{i}:0") for i in range(n_inputs)]
    fetches = [graph.get_tensor_by_name(f"output_{j}:0") for j in range(n_outputs)]
    return wrapped.prune(feeds, fetches)
