"""Float model file -> .tflite bytes (fp32, fp16 weights, or full INT8).

The converter is fed a tf.function whose TensorSpecs carry the model's own
input names and which returns a dict keyed by the model's output names, so the
.tflite signature `serving_default` speaks the same names as the source model.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tensorflow as tf

from buildsys.errors import InputError, StageError
from buildsys.hashing import canonical_json
from buildsys.tflow.frozen import as_function, read_float
from buildsys.tflow.isolate import run_isolated
from buildsys.tflow.quiet import last_error_line, no_interpreter_warning, quiet
from buildsys.tflow.runtime import tflite_inputs_outputs
from buildsys.tflow.samples import check_sample_shape, check_samples

MODES = ("fp32", "fp16", "int8")
IO_DTYPES = {"int8": tf.int8, "uint8": tf.uint8, "float32": tf.float32}


def to_tflite(
    float_path: Path,
    signature: dict,
    mode: str,
    calib: dict[str, np.ndarray] | None = None,
    per_channel: bool = True,
    io_dtype: str = "int8",
) -> bytes:
    """Convert the float model at `float_path`; returns deterministic .tflite bytes."""
    _check_options(mode, io_dtype)
    graph_def, stored = read_float(Path(float_path))
    _check_signature(stored, signature, float_path)
    if mode == "int8":
        calib = _calibration_arrays(signature, calib, str(float_path))
    args = (Path(float_path), signature, mode, calib, per_channel, io_dtype)
    if mode == "int8" and _has_while_loop(graph_def):
        # TF's calibrator can segfault on while loops (tensorflow#75140); in a
        # child process that costs a TF import instead of the whole build.
        data = run_isolated(f"int8 calibration of {float_path}", _convert_file, *args)
    else:
        data = _convert_file(*args)
    _check_tflite_names(data, signature, float_path)
    return data


def _convert_file(float_path: Path, signature: dict, mode: str, calib, per_channel: bool, io_dtype: str) -> bytes:
    graph_def, _ = read_float(float_path)
    module, concrete = _servable(graph_def, signature, float_path)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], module)
    _configure(converter, mode, signature, calib, per_channel, io_dtype)
    return _convert(converter, mode, float_path)


def _has_while_loop(graph_def) -> bool:
    nodes = list(graph_def.node) + [n for f in graph_def.library.function for n in f.node_def]
    return any(n.op in ("While", "StatelessWhile") for n in nodes)


def _check_options(mode: str, io_dtype: str) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown quantization mode {mode!r}; expected one of {MODES}")
    if io_dtype not in IO_DTYPES:
        raise ValueError(f"unknown io_dtype {io_dtype!r}; expected one of {tuple(IO_DTYPES)}")


def _check_signature(stored: dict, given: dict, float_path: Path) -> None:
    # The file carries the signature it was exported with; a different one
    # here means the caller mixed up artifacts.
    keys = ("inputs", "outputs")
    if canonical_json({k: stored.get(k) for k in keys}) != canonical_json({k: given.get(k) for k in keys}):
        raise StageError(
            f"the signature passed for {float_path} differs from the one it was exported with",
            hint="re-run the export stage",
        )


def _servable(graph_def, signature: dict, float_path) -> tuple[tf.Module, object]:
    """A tf.Module whose `serve` maps named inputs to a dict of named outputs."""
    ins, outs = signature["inputs"], signature["outputs"]
    try:
        with quiet():
            pruned = as_function(graph_def, len(ins), len(outs))
    except (KeyError, ValueError, tf.errors.OpError) as exc:
        raise InputError(
            f"{float_path} is not a valid float model: {last_error_line(exc)}",
            hint="delete it and rebuild",
            path=str(float_path),
        ) from None
    specs = [tf.TensorSpec(i["shape"], tf.as_dtype(i["dtype"]), name=i["name"]) for i in ins]
    names = [o["name"] for o in outs]

    @tf.function(input_signature=specs, autograph=False)
    def serve(*xs):
        return dict(zip(names, pruned(*xs)))

    module = tf.Module()
    module.serve = serve
    module.graph = pruned  # keep the imported graph alive with the module
    return module, serve.get_concrete_function()


def _configure(converter, mode: str, signature: dict, calib, per_channel: bool, io_dtype: str) -> None:
    if mode == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = _representative(signature, calib)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = IO_DTYPES[io_dtype]
        converter.inference_output_type = IO_DTYPES[io_dtype]
        # Private, but the only switch for per-tensor weight scales (some NPUs need them).
        converter._experimental_disable_per_channel = not per_channel


def _calibration_arrays(signature: dict, calib: dict[str, np.ndarray] | None, where: str) -> dict:
    """Checked calibration arrays by input name, cast to the input dtypes."""
    if not calib:
        raise StageError(
            f"int8 quantization of {where} needs calibration samples and none were given",
            hint="add a `calibration:` section to the recipe",
        )
    inputs = signature["inputs"]
    label = f"calibration data for {where}"
    arrays, count = check_samples([i["name"] for i in inputs], calib, label)
    step = _batch(signature)
    for info in inputs:
        check_sample_shape(info["name"], arrays[info["name"]], info["shape"], label)
        arrays[info["name"]] = arrays[info["name"]].astype(tf.as_dtype(info["dtype"]).as_numpy_dtype)
        # NaN/inf in calibration data crash TF's calibrator (tensorflow#120295).
        if arrays[info["name"]].dtype.kind == "f" and not np.all(np.isfinite(arrays[info["name"]])):
            raise InputError(f"{label}: samples for input {info['name']!r} contain NaN or infinity")
    if count % step:
        raise InputError(f"{label}: {count} samples do not fill whole batches of {step}")
    return arrays


def _batch(signature: dict) -> int:
    shape = signature["inputs"][0]["shape"]
    return shape[0] if shape else 1


def _representative(signature: dict, arrays: dict[str, np.ndarray]):
    """The converter's dataset: {input name: batch} in sample order."""
    step = _batch(signature)
    count = len(next(iter(arrays.values())))

    def samples() -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, count, step):
            yield {n: a[start : start + step] for n, a in arrays.items()}

    return samples


def _convert(converter, mode: str, float_path) -> bytes:
    try:
        with quiet() as log, no_interpreter_warning():
            return bytes(converter.convert())
    except Exception as exc:  # noqa: BLE001 - converter errors come in many types
        raise StageError(
            f"{mode} conversion of {float_path} failed: {last_error_line(exc, log)}",
            hint=f"the model uses something the TFLite converter cannot handle in {mode} mode",
            path=str(float_path),
        ) from None


def _check_tflite_names(data: bytes, signature: dict, float_path) -> None:
    got = tflite_inputs_outputs(data)
    for side in ("inputs", "outputs"):
        want = sorted(t["name"] for t in signature[side])
        have = sorted(t["name"] for t in got[side])
        if want != have:
            raise StageError(
                f"the converted model for {float_path} names its {side} {have}, expected {want}",
                hint="this is a converter problem; please report it",
            )
