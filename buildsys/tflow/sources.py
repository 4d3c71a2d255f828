"""Load a source model TensorFlow traces (Keras, SavedModel, TF1 graph, Darknet) behind one interface.

Every format ends up as a `Source`: the model's own input/output names and a
`call` that maps input tensors (model order) to output tensors (model order),
usable eagerly and inside a tf.function.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf

from buildsys.errors import InputError
from buildsys.recipe.model import Source as ModelSource
from buildsys.tflow.quiet import last_error_line, quiet
from buildsys.tflow.shapes import TensorInfo


@dataclass(frozen=True)
class Source:
    path: Path
    inputs: list[TensorInfo]
    outputs: list[str]
    call: Callable[[list[tf.Tensor]], list[tf.Tensor]]
    # Loaded functions reference the model's variables weakly; keep the owner alive.
    owner: object


def load_source(model: ModelSource) -> Source:
    """The recipe's source, loaded by its format's loader."""
    loaders = {"keras": _load_keras, "saved_model": _load_saved_model, "tf1": _load_tf1, "darknet": _load_darknet}
    return loaders[model.format](model)


def _load_tf1(model: ModelSource) -> Source:
    from buildsys.tflow import tf1

    inputs, outputs = model.option("inputs"), model.option("outputs")
    if model.option("form") == "graph":
        return tf1.load_graph_source(model.path, inputs, outputs)
    return tf1.load_checkpoint_source(model.path, inputs, outputs)


def _load_darknet(model: ModelSource) -> Source:
    from buildsys.tflow.darknet import load_source as load_darknet

    return load_darknet(model.path, model.required_part("weights"))


def _load_keras(source: ModelSource) -> Source:
    src = source.path
    if not src.is_file():
        raise InputError(f"Keras model {src} does not exist or is not a file", path=str(src))
    if src.suffix == ".keras" and not zipfile.is_zipfile(src):
        # Keras reports this as "File not found", which sends users the wrong way.
        raise InputError(
            f"cannot load {src} as a Keras model: not a zip archive (truncated, or not a .keras file);"
            " re-export it or check the sha256",
            path=str(src),
        )
    try:
        with quiet() as log:
            model = keras.models.load_model(src, compile=False)
    except Exception as exc:  # noqa: BLE001 - Keras raises anything from zipfile/h5py/json
        reason = last_error_line(exc, log)
        raise InputError(
            f"cannot load {src} as a Keras model: {reason}; re-export it or check the sha256", path=str(src)
        ) from None
    tensors = _keras_inputs(model, src)
    inputs = [TensorInfo(_layer_name(t), _dims(t.shape), str(t.dtype)) for t in tensors]
    outputs = _unique([_layer_name(t) for t in model.outputs])
    struct = _input_struct(model, tensors)

    def call(xs: list[tf.Tensor]) -> list[tf.Tensor]:
        packed = keras.tree.pack_sequence_as(struct, list(xs))
        return keras.tree.flatten(model(packed, training=False))

    return Source(src, inputs, outputs, call, model)


def _keras_inputs(model, src: Path) -> list:
    try:
        tensors = list(model.inputs or [])
    except (AttributeError, ValueError):
        tensors = []
    if not tensors:
        raise InputError(
            f"{src} has no declared inputs (a subclassed Keras model?)",
            hint="save a functional or Sequential model built on keras.Input, or export a SavedModel",
            path=str(src),
        )
    return tensors


def _input_struct(model, tensors: list):
    """The nesting the model was built with (a dict, list or single tensor)."""
    try:
        struct = model.input
    except AttributeError:  # Sequential models only have `.inputs`
        struct = tensors
    if isinstance(struct, (list, tuple)) and len(struct) == 1:
        return struct[0]
    return struct


def _layer_name(tensor) -> str:
    # The InputLayer / producing layer name is saved in the file; a KerasTensor's
    # own name may be a process-global counter like "keras_tensor_3".
    history = getattr(tensor, "_keras_history", None)
    return history[0].name if history else tensor.name


def _dims(shape) -> list[int | None] | None:
    return None if shape is None else [None if d is None else int(d) for d in shape]


def _unique(names: list[str]) -> list[str]:
    """Two outputs of one layer share its name; suffix the repeats."""
    seen: dict[str, int] = {}
    result = []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        result.append(name if count == 0 else f"{name}_{count}")
    return result


def _load_saved_model(model: ModelSource) -> Source:
    src = model.path
    if not src.is_dir():
        raise InputError(f"SavedModel {src} does not exist or is not a directory", path=str(src))
    try:
        with quiet() as log:
            loaded = tf.saved_model.load(str(src))
    except Exception as exc:  # noqa: BLE001 - the loader raises many unrelated types
        reason = last_error_line(exc, log)
        raise InputError(
            f"cannot load {src} as a SavedModel: {reason}; re-export it or check the sha256", path=str(src)
        ) from None
    fn = _pick_signature(loaded, src)
    specs = fn.structured_input_signature[1]
    in_names = sorted(specs, key=_natural)
    inputs = [_spec_info(n, specs[n]) for n in in_names]
    out_names = sorted(fn.structured_outputs, key=_natural)

    def call(xs: list[tf.Tensor]) -> list[tf.Tensor]:
        result = fn(**dict(zip(in_names, xs)))
        return [result[n] for n in out_names]

    return Source(src, inputs, out_names, call, loaded)


def _spec_info(name: str, spec: tf.TensorSpec) -> TensorInfo:
    shape = None if spec.shape.rank is None else _dims(spec.shape.as_list())
    return TensorInfo(name, shape, spec.dtype.name)


def _pick_signature(loaded, src: Path):
    signatures = dict(loaded.signatures)
    if "serving_default" in signatures:
        return signatures["serving_default"]
    if len(signatures) == 1:
        return next(iter(signatures.values()))
    listed = ", ".join(sorted(signatures)) or "none"
    raise InputError(
        f"SavedModel {src} has no `serving_default` signature (signatures: {listed})",
        hint="re-export it with a serving_default signature",
        path=str(src),
    )


def _natural(name: str) -> list:
    """Sort key where "output_2" < "output_10" (signature maps have no order of their own)."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]
