"""Float model file -> .tflite bytes in one of the quantization modes.

The converter is fed a tf.function whose TensorSpecs carry the model's own
input names and which returns a dict keyed by the model's output names, so the
.tflite signature `serving_default` speaks the same names as the source model.

Importing this module does not import TensorFlow (that costs seconds): the plan
reads `MODES`, `IO_TYPES_BY_MODE` and `needs_calibration` without converting.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType

import numpy as np

from buildsys.errors import InputError, StageError
from buildsys.hashing import canonical_json
from buildsys.modes import IO_TYPES_BY_MODE, MODES, OP_FORMS
from buildsys.modes import needs_calibration as calibrated
from buildsys.signature import Signature
from buildsys.tflow.calibrated import Calibrated
from buildsys.tflow.isolate import run_isolated
from buildsys.tflow.lstmclip import unclipped
from buildsys.tflow.quiet import last_error_line, no_interpreter_warning, quiet
from buildsys.tflow.runtime import tflite_inputs_outputs
from buildsys.tflow.samples import batch_size, check_sample_shape, check_samples
from buildsys.tflow.unfuse import unfused


@dataclass(frozen=True)
class _ModeSpec:
    """How one mode sets up the TFLite converter."""

    optimize: bool = False  # converter.optimizations = [DEFAULT]
    weight_types: tuple[str, ...] = ()  # target_spec.supported_types
    ops: tuple[str, ...] = ()  # target_spec.supported_ops, by tf.lite.OpsSet name


# The IO types each mode allows and whether it calibrates live in devices.modes,
# which plan-time checks read without TensorFlow.
_SPECS = MappingProxyType(
    {
        "none": _ModeSpec(),
        "fp16": _ModeSpec(optimize=True, weight_types=("float16",)),
        # No representative dataset: TF quantizes weights only (hybrid kernels).
        "dynamic-range": _ModeSpec(optimize=True),
        "int8": _ModeSpec(optimize=True, ops=("TFLITE_BUILTINS_INT8",)),
        "int16x8": _ModeSpec(optimize=True, ops=("EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8",)),
    }
)

# TF 2.21 refuses a 16x8 model with an op it has no int16 kernel for; the recurrent ones
# are named by the ONNX op they came from
NO_16X8_KERNEL = re.compile(r"Quantization to 16x8-bit not yet supported for op: '([A-Z0-9_]+)'")
SEQUENCE_OPS = MappingProxyType(
    {
        "UNIDIRECTIONAL_SEQUENCE_LSTM": "LSTM",
        "BIDIRECTIONAL_SEQUENCE_LSTM": "LSTM",
        "UNIDIRECTIONAL_SEQUENCE_RNN": "RNN",
    }
)


def needs_calibration(mode: str) -> bool:
    """True when `mode` converts with a representative dataset (calibration samples)."""
    _spec(mode)
    return calibrated(mode)


@dataclass(frozen=True)
class _Options:
    mode: str
    per_channel: bool
    input_type: str
    output_type: str
    forms: frozenset[str] = frozenset()


def to_tflite(
    float_path: Path,
    signature: Signature,
    mode: str,
    calib: dict[str, np.ndarray] | None = None,
    per_channel: bool = True,
    input_type: str | None = None,
    output_type: str | None = None,
    forms: Collection[str] = (),
) -> bytes:
    """Convert the float model at `float_path`; returns deterministic .tflite bytes.

    `input_type` / `output_type` (None: the mode's default, IO_TYPES_BY_MODE[mode][0])
    apply to float inputs and outputs; integer ones keep their type. Invalid mode/type combinations are
    programming errors (ValueError): callers validate user input first. `forms` (devices.modes.OP_FORMS):
    `unfold_batchmatmul`: each BATCH_MATMUL becomes one FULLY_CONNECTED per matrix (see _configure);
    `split_hard_activations`: HardSwish and HardSigmoid in ops XNNPACK runs at int8 (tflow/hardact.py);
    `unfuse_lstm`: LSTMs run as unrolled cells, not UNIDIRECTIONAL_SEQUENCE_LSTM (tflow/unfuse.py);
    `grouped_conv`: a convolution split per group becomes one grouped CONV_2D (tflow/groupedconv.py).
    """
    if unknown := set(forms) - set(OP_FORMS):
        raise ValueError(f"unknown op forms {sorted(unknown)}; expected some of {OP_FORMS}")
    options = replace(_options(mode, per_channel, input_type, output_type), forms=frozenset(forms))
    from buildsys.tflow.frozen import read_float  # imports TensorFlow

    float_path = Path(float_path)
    graph_def, stored = read_float(float_path)
    _check_signature(stored, signature, float_path)
    calibrated = needs_calibration(options.mode)
    # Samples given to a mode that does not calibrate are not used at all.
    calib = _calibration_arrays(signature, calib, options.mode, str(float_path)) if calibrated else None
    args = (float_path, signature, options, calib)
    data = _guarded(
        calibrated and _has_while_loop(graph_def), f"{options.mode} calibration of {float_path}", _convert_file, *args
    )
    _check_tflite_io(data, signature, options, float_path)
    return data


def activation_ranges(
    float_path: Path, signature: Signature, calib: dict[str, np.ndarray], variants: Collection[Collection[str]]
) -> tuple[dict, dict[str, bytes]]:
    """The float model calibrated for int8 on `calib`, once per distinct converted model that the
    op-form sets in `variants` give (most models convert the same whatever the forms).

    Returns ({"variants": [{"forms", "model"}], "models": {model id: {"table", quantizer settings}}},
    {model id: calibrated model}); `from_calibrated` quantizes each target from them.
    """
    from buildsys.tflow.frozen import read_float
    from buildsys.tflow.rangetable import read_table

    float_path = Path(float_path)
    graph_def, stored = read_float(float_path)
    _check_signature(stored, signature, float_path)
    calib = _calibration_arrays(signature, calib, "int8", str(float_path))
    isolate = _has_while_loop(graph_def)
    doc: dict = {"variants": [], "models": {}}
    models: dict[str, bytes] = {}
    for forms in sorted({tuple(sorted(f)) for f in variants}):
        options = replace(_options("int8", True, None, None), forms=frozenset(forms))
        args = (float_path, signature, options, calib, frozenset(models))
        found, entry, calibrated = _guarded(isolate, f"int8 calibration of {float_path}", _calibrate_file, *args)
        doc["variants"].append({"forms": list(forms), "model": found})
        if calibrated is not None:
            models[found] = calibrated
            doc["models"][found] = {**entry, "table": read_table(calibrated)}
    return doc, models


def from_calibrated(
    calibrated: bytes,
    entry: dict,
    signature: Signature,
    per_channel: bool,
    input_type: str | None,
    output_type: str | None,
    label: Path,
) -> bytes:
    """The int8 model of one target from `activation_ranges`' calibrated model: the bytes `to_tflite`
    gives for the same ranges, without converting the float model again."""
    from buildsys.tflow.calibrated import quantized

    options = _options("int8", per_channel, input_type, output_type)
    try:
        with quiet() as log, no_interpreter_warning():
            data = unclipped(quantized(calibrated, entry, options.per_channel, options.input_type, options.output_type))
    except Exception as exc:  # noqa: BLE001 - the quantizer's errors come in many types
        raise StageError(
            f"int8 quantization of {label} failed: {last_error_line(exc, log)}",
            hint=_failure_hint(options),
            path=str(label),
        ) from None
    _check_tflite_io(data, signature, options, label)
    return data


def _guarded(isolate: bool, what: str, fn, *args):
    # TF's calibrator can segfault on while loops (tensorflow#75140); in a
    # child process that costs a TF import instead of the whole build.
    return run_isolated(what, fn, *args) if isolate else fn(*args)


def _calibrate_file(float_path: Path, signature: Signature, options: _Options, calib, known: frozenset[str]):
    """(model id, quantizer settings, calibrated model) of the converted model; no model when `known` has it."""
    from buildsys.tflow.calibrated import capture
    from buildsys.tflow.frozen import read_float

    graph_def = _in_forms(read_float(float_path)[0], options)
    try:
        _convert_graph(graph_def, signature, options, calib, float_path, lambda c: capture(c, known))
    except Calibrated as done:
        return done.model_id, done.entry, done.calibrated
    raise StageError(
        f"the int8 conversion of {float_path} never calibrated", hint="this is a converter problem; please report it"
    )


def _spec(mode: str) -> _ModeSpec:
    spec = _SPECS.get(mode)
    if spec is None:
        raise ValueError(f"unknown quantization mode {mode!r}; expected one of {MODES}")
    return spec


def _options(mode: str, per_channel: bool, input_type: str | None, output_type: str | None) -> _Options:
    _spec(mode)
    allowed = IO_TYPES_BY_MODE[mode]
    chosen = {"input_type": input_type or allowed[0], "output_type": output_type or allowed[0]}
    for what, value in chosen.items():
        if value not in allowed:
            raise ValueError(f"{what} {value!r} is not possible in quantization mode {mode!r}; one of {allowed}")
    return _Options(mode, bool(per_channel), input_type=chosen["input_type"], output_type=chosen["output_type"])


def _convert_file(float_path: Path, signature: Signature, options: _Options, calib) -> bytes:
    from buildsys.tflow.frozen import read_float

    graph_def = _in_forms(read_float(float_path)[0], options)
    try:
        return _convert_graph(graph_def, signature, options, calib, float_path)
    except NoKernel as exc:
        if (plain := unfused(graph_def)) is None:
            raise
        refusal = exc
    # no int16 fused LSTM (nor for what feeds its fresh state): the same cells, unfused (see
    # tflow/unfuse.py); if that fails too, the refusal says what to do
    try:
        return _convert_graph(plain, signature, options, calib, float_path)
    except (StageError, InputError):
        raise refusal from None


def _in_forms(graph_def, options: _Options):
    """The float graph in the op forms the target's profile asks for (each module says why);
    unfold_batchmatmul is a converter switch instead (_configure)."""
    from buildsys.tflow.groupedconv import merge_grouped_convs
    from buildsys.tflow.hardact import split_hard_activations

    rewrites = {
        "split_hard_activations": split_hard_activations,
        "unfuse_lstm": unfused,
        "grouped_conv": merge_grouped_convs,
    }
    for form in OP_FORMS:
        if form in options.forms and form in rewrites:
            graph_def = rewrites[form](graph_def) or graph_def
    return graph_def


def _convert_graph(graph_def, signature: Signature, options: _Options, calib, float_path, hook=None) -> bytes:
    """`hook(converter)` replaces how a calibrated conversion quantizes (default: use_true_ranges)."""
    import tensorflow as tf

    from buildsys.tflow.calibranges import use_true_ranges

    module, concrete = _servable(graph_def, signature, float_path)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], module)
    _configure(converter, options, _representative(signature, calib) if calib else None)
    if calib:
        (hook or use_true_ranges)(converter)
    return _convert(converter, options, float_path)


def _has_while_loop(graph_def) -> bool:
    nodes = list(graph_def.node) + [n for f in graph_def.library.function for n in f.node_def]
    return any(n.op in ("While", "StatelessWhile") for n in nodes)


def _check_signature(stored: Signature, given: Signature, float_path: Path) -> None:
    # The file carries the signature it was exported with; a different one
    # here means the caller mixed up artifacts. Compared as the JSON both were
    # written as: dataclass equality would take an int shape for a float one.
    if canonical_json(_io_doc(stored)) != canonical_json(_io_doc(given)):
        raise StageError(
            f"the signature passed for {float_path} differs from the one it was exported with",
            hint="re-run the export stage",
        )


def _io_doc(signature: Signature) -> dict:
    return {"inputs": [e.to_dict() for e in signature.inputs], "outputs": [e.to_dict() for e in signature.outputs]}


def _servable(graph_def, signature: Signature, float_path):
    """A tf.Module whose `serve` maps named inputs to a dict of named outputs."""
    import tensorflow as tf

    from buildsys.tflow.frozen import as_function

    ins, outs = signature.inputs, signature.outputs
    try:
        with quiet():
            pruned = as_function(graph_def, len(ins), len(outs))
    except (KeyError, ValueError, tf.errors.OpError) as exc:
        raise InputError(
            f"{float_path} is not a valid float model: {last_error_line(exc)}",
            hint="delete it and rebuild",
            path=str(float_path),
        ) from None
    specs = [tf.TensorSpec(i.shape, tf.as_dtype(i.dtype), name=i.name) for i in ins]
    names = [o.name for o in outs]

    @tf.function(input_signature=specs, autograph=False)
    def serve(*xs):
        return dict(zip(names, pruned(*xs)))

    module = tf.Module()
    module.serve = serve
    module.graph = pruned  # keep the imported graph alive with the module
    return module, serve.get_concrete_function()


def _configure(converter, options: _Options, representative) -> None:
    import tensorflow as tf

    spec = _SPECS[options.mode]
    if spec.optimize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if spec.weight_types:
        converter.target_spec.supported_types = [tf.as_dtype(t) for t in spec.weight_types]
    if spec.ops:
        converter.target_spec.supported_ops = [getattr(tf.lite.OpsSet, name) for name in spec.ops]
    if calibrated(options.mode):
        converter.representative_dataset = representative
        converter.inference_input_type = tf.as_dtype(options.input_type)
        converter.inference_output_type = tf.as_dtype(options.output_type)
    # Private, but the only switch for per-tensor weight scales (some NPUs
    # need them); modes that quantize no weights to integers ignore it.
    converter._experimental_disable_per_channel = not options.per_channel
    # XNNPACK runs no int8 BATCH_MATMUL: TFLite's own kernel took 13x the fp32 time for
    # attention's matmuls (1.5 ms vs 0.11 at 3x197x197x64), and int8 FULLY_CONNECTED with the
    # other operand as weights, one per head, runs in XNNPACK (0.05 ms a head)
    converter.unfold_batchmatmul = "unfold_batchmatmul" in options.forms


def _calibration_arrays(signature: Signature, calib: dict[str, np.ndarray] | None, mode: str, where: str) -> dict:
    """Checked calibration arrays by input name, cast to the input dtypes."""
    import tensorflow as tf

    if not calib:
        raise StageError(
            f"{mode} quantization of {where} needs calibration samples and none were given",
            hint="add a `calibration:` section to the recipe",
        )
    inputs = signature.inputs
    label = f"calibration data for {where}"
    arrays, count = check_samples([i.name for i in inputs], calib, label)
    step = _batch(signature)
    for info in inputs:
        check_sample_shape(info.name, arrays[info.name], info.shape, label)
        arrays[info.name] = arrays[info.name].astype(tf.as_dtype(info.dtype).as_numpy_dtype)
        # NaN/inf in calibration data crash TF's calibrator (tensorflow#120295).
        if arrays[info.name].dtype.kind == "f" and not np.all(np.isfinite(arrays[info.name])):
            raise InputError(f"{label}: samples for input {info.name!r} contain NaN or infinity")
    if count % step:
        raise InputError(f"{label}: {count} samples do not fill whole batches of {step}")
    return arrays


def _batch(signature: Signature) -> int:
    return batch_size(signature.inputs[0])


def _representative(signature: Signature, arrays: dict[str, np.ndarray]):
    """The converter's dataset: {input name: batch} in sample order."""
    step = _batch(signature)
    count = len(next(iter(arrays.values())))

    def samples() -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, count, step):
            yield {n: a[start : start + step] for n, a in arrays.items()}

    return samples


def _convert(converter, options: _Options, float_path) -> bytes:
    try:
        with quiet() as log, no_interpreter_warning():
            return unclipped(bytes(converter.convert()))
    except Calibrated:
        raise
    except Exception as exc:  # noqa: BLE001 - converter errors come in many types
        line = last_error_line(exc, log)
        if missing := NO_16X8_KERNEL.search(line):
            raise NoKernel(missing.group(1), options, float_path) from None
        raise StageError(
            f"{options.mode} conversion of {float_path} failed: {line}",
            hint=_failure_hint(options),
            path=str(float_path),
        ) from None


class NoKernel(StageError):
    """TF's 16x8 quantizer lacks int16 kernels for some ops: it says which, and which devices
    build the model instead."""

    def __init__(self, op: str, options: _Options, float_path):
        self.op = op
        origin = f" (what an ONNX {SEQUENCE_OPS[op]} becomes)" if op in SEQUENCE_OPS else ""
        super().__init__(
            f"{options.mode} conversion of {float_path} failed: TensorFlow's int16x8 quantizer has no"
            f" int16 kernel for {op}{origin}",
            hint="build this model for cpu-int8 (it has integer kernels for the fused LSTM), cpu-dynamic-range or"
            f" cpu-fp16 instead, or replace the ONNX nodes behind {op} in the recipe (replacements:)",
            path=str(float_path),
        )


def _failure_hint(options: _Options) -> str:
    hint = f"the model uses something the TFLite converter cannot handle in {options.mode} mode"
    if calibrated(options.mode) and not options.per_channel:
        # TF 2.21's int16x8 quantizer fails on per-tensor depthwise weights.
        hint += "; TF cannot quantize every op with per-tensor weights: try per_channel: true"
    return hint


def _check_tflite_io(data: bytes, signature: Signature, options: _Options, float_path) -> None:
    """The converted model keeps the signature's names and has the IO types asked for."""
    got = tflite_inputs_outputs(data)
    wanted_type = {"inputs": options.input_type, "outputs": options.output_type}
    for side, entries in (("inputs", signature.inputs), ("outputs", signature.outputs)):
        want = sorted(t.name for t in entries)
        have = sorted(t["name"] for t in got[side])
        if want != have:
            raise StageError(
                f"the converted model for {float_path} names its {side} {have}, expected {want}",
                hint="this is a converter problem; please report it",
            )
        # Only float tensors change type; integer inputs (ids, masks) stay as they are.
        floats = {t.name for t in entries if t.dtype == "float32"}
        wrong = {t["name"]: t["dtype"] for t in got[side] if t["name"] in floats and t["dtype"] != wanted_type[side]}
        if wrong:
            raise StageError(
                f"the {options.mode} model for {float_path} has {side} of type {wrong}, expected {wanted_type[side]}",
                hint="this TensorFlow version cannot give this model that IO type; pick another input/output type",
            )
