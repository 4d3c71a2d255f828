"""Source models -> the float model file, and float reference outputs.

`export_float` writes the frozen GraphDef that quantization starts from (see
frozen.py for why that format) and returns the model's signature.
`run_source` runs the original model in float: the reference for validation.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import tensorflow as tf

from buildsys.errors import BuildsysError, InputError, StageError
from buildsys.recipe.model import Source as ModelSource
from buildsys.signature import Signature, TensorEntry
from buildsys.tflow.frozen import freeze, write_float
from buildsys.tflow.quiet import last_error_line, quiet
from buildsys.tflow.runtime import run_tflite
from buildsys.tflow.samples import check_sample_shape, check_samples, gather
from buildsys.tflow.shapes import TensorInfo, resolve_shapes
from buildsys.tflow.sources import Source, load_source

# TensorFlow's rule for op (and so placeholder / signature input) names.
_NODE_NAME = re.compile(r"^[A-Za-z0-9.][A-Za-z0-9_.\\/>-]*$")


def export_float(model: ModelSource, shapes: dict[str, list[int]] | None, batch: int | None, out: Path) -> Signature:
    """Write the float model for the recipe's source to `out`; return its signature.

    The bytes of `out` depend only on the model, the shapes and the TF version.
    """
    src = model.path
    source = load_source(model)
    _check_input_names(source, str(src))
    static = resolve_shapes(source.inputs, shapes, batch, str(src))
    _check_memory(source, static, str(src))
    # Placeholder names are positional; the model's names live in the signature.
    specs = [
        tf.TensorSpec(shape, tf.as_dtype(info.dtype), name=f"input_{i}")
        for i, (info, shape) in enumerate(zip(source.inputs, static))
    ]
    try:
        with quiet() as log:
            graph_def, outputs = freeze(source.call, specs)
    except BuildsysError:
        raise
    except Exception as exc:  # noqa: BLE001 - tracing can fail with any TF/Keras error
        shown = {t.name: s for t, s in zip(source.inputs, static)}
        raise StageError(
            f"cannot export {src} at input shapes {shown}: {last_error_line(exc, log)}",
            hint="check `shapes:` / `batch:` in the recipe",
            path=str(src),
        ) from None
    signature = _signature(source, static, outputs)
    write_float(Path(out), graph_def, signature)
    return signature


def _check_memory(source: Source, static: list[list[int]], model: str) -> None:
    """Refuse input shapes the machine cannot hold before tracing (Grappler segfaults on them)."""
    from buildsys.limits import INPUT_FACTOR, itemsize, memory_problem

    problem = memory_problem([(t.name, s, itemsize(t.dtype)) for t, s in zip(source.inputs, static)], INPUT_FACTOR)
    if problem:
        shown = ", ".join(f"{t.name} {s}" for t, s in zip(source.inputs, static))
        raise InputError(
            f"{model} at input shapes {shown} {problem}",
            hint="lower `batch:` / the `shapes:` dims in the recipe (calibration and validation feed whole batches)",
            path=model,
        )


def _check_input_names(source: Source, model: str) -> None:
    # Input names become TensorSpec names in the TFLite signature; TF would
    # silently rewrite an invalid one and callers could no longer feed by name.
    for info in source.inputs:
        if not _NODE_NAME.match(info.name):
            raise InputError(
                f"input name {info.name!r} of {model} cannot be used as a TFLite signature name",
                hint="rename the input to letters, digits and . _ - / > (not starting with _ - / >)",
                path=model,
            )


def _signature(source: Source, static: list[list[int]], outputs: list[tf.Tensor]) -> Signature:
    inputs = [TensorEntry(t.name, list(s), t.dtype) for t, s in zip(source.inputs, static)]
    outs = [
        TensorEntry(name, None if t.shape.rank is None else t.shape.as_list(), t.dtype.name)
        for name, t in zip(source.outputs, outputs)
    ]
    return Signature(inputs, outs)


def run_source(model: ModelSource, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run the original model in float on samples (N, ...); outputs by name."""
    src = model.path
    if model.format == "tflite":  # a pass-through source is its own reference
        return run_tflite(src, inputs)
    source = load_source(model)
    arrays, count = check_samples([t.name for t in source.inputs], inputs, str(src))
    for info in source.inputs:
        check_sample_shape(info.name, arrays[info.name], info.shape, str(src))
    step = _chunk(source.inputs)
    if count % step:
        raise InputError(
            f"{src} has a fixed batch of {step}; the sample count {count} is not a multiple of it", path=str(src)
        )
    dtypes = [tf.as_dtype(t.dtype) for t in source.inputs]
    # Traced once for the per-call shape: much faster than eager per sample.
    call = tf.function(lambda *xs: source.call(list(xs)))
    results = []
    for start in range(0, count, step):
        xs = [tf.constant(arrays[t.name][start : start + step], dtype=d) for t, d in zip(source.inputs, dtypes)]
        results.append(_call(source, call, xs))
    return gather(results, source.outputs)


def _chunk(inputs: list[TensorInfo]) -> int:
    """Samples per call: 1, unless the model fixes its leading (batch) dimension."""
    lead = {t.shape[0] for t in inputs if t.shape}
    fixed = [d for d in lead if d is not None]
    return fixed[0] if len(fixed) == 1 and None not in lead else 1


def _call(source: Source, call, xs: list[tf.Tensor]) -> dict[str, np.ndarray]:
    try:
        outs = call(*xs)
    except Exception as exc:  # noqa: BLE001 - surfaced as a short stage error
        shapes = {t.name: list(x.shape) for t, x in zip(source.inputs, xs)}
        raise StageError(
            f"running {source.path} on samples of shape {shapes} failed: {last_error_line(exc)}",
            path=str(source.path),
        ) from None
    return {name: np.asarray(o) for name, o in zip(source.outputs, outs)}
