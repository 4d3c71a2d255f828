"""Activation ranges as the float model really has them, for TFLite's int8 quantizer.

TF 2.21's calibrator runs the float model in a TFLite interpreter that lets elementwise
ops (MUL, ADD, SUB, ...) write their output over an input nobody else reads, and records an
op's input range after the op has run. Such an input gets its consumer's range instead of
its own. Measured on the corpus: 61 of 640 ranges in a ViT-tiny (attention projections
recorded as +-2.7, really +-0.025: 100x too coarse), 73 of 251 in YOLOv8n, 18 of 213 in a
Faster R-CNN, whose box decoding `exp(dw) * anchor_size` gave EXP the product's range
(up to 860 for values near 1), so every int8 box collapsed to a point.

Here every range of the calibrated model is the min/max that tensor takes over the same samples,
read from an interpreter that keeps every tensor (no buffer is shared), and TF's own int8
quantizer runs on the result. TF's calibrator runs on one batch only, to lay out the range
fields, unless some range is not a model input or main-graph op output (LSTM intermediates,
control-flow bodies): then it runs over every sample and its op-output ranges are replaced. The
min/max fields are rewritten in place in the flatbuffer; nothing else in the calibrated model
changes. The int16x8 quantizer calibrates inside one call and is left as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import MethodType
from typing import Any

import numpy as np


def use_true_ranges(converter: Any) -> None:
    """Make `converter` quantize int8 from ranges measured without shared buffers."""
    import tensorflow as tf

    original = converter._quantize

    def quantize(self, result, input_type, output_type, activations_type, *rest):
        if activations_type == tf.int16 or not self.experimental_new_quantizer:
            return original(result, input_type, output_type, activations_type, *rest)
        enable_variable_quantization, debug_options = rest[-2], rest[-1]
        calibrated = true_ranges(with_intermediates(result), self.representative_dataset)
        return _quantized(self, calibrated, input_type, output_type, enable_variable_quantization, debug_options)

    converter._quantize = MethodType(quantize, converter)


def true_ranges(model: bytes, dataset: Any) -> bytes:
    """`model` calibrated on `dataset`, each op output's range measured without shared buffers.

    TF's calibrator runs over every sample only when the model has ranges the measurement cannot
    see (control-flow bodies, LSTM intermediates): otherwise it would record values that are all
    replaced, and it costs more than the measurement itself.
    """
    samples = _samples(dataset)
    return _measured_alone(_one_batch(model, dataset), samples) or measured(_calibrated(model, dataset), samples)


def _measured_alone(structure: bytes, samples: Callable[[], Iterable]) -> bytes | None:
    """`structure` with every range measured; None when some range is not a main-graph input or op output."""
    from buildsys.tflow.rangetable import range_views

    out = bytearray(structure)
    slots = range_views(out)
    if any(sub for sub, _ in slots):
        return None
    found = _ranges(structure, samples, {index for _, index in slots}, with_inputs=True)
    if len(found) != len(slots):
        return None
    for index, (low, high) in found.items():
        _, low_view, high_view = slots[(0, index)]
        low_view[0], high_view[0] = low, high
    return bytes(out)


def _one_batch(model: bytes, dataset: Any) -> bytes:
    """`model` calibrated on the dataset's first batch only: every range slot in place, to be overwritten."""
    first = next(iter(_samples(dataset)()))
    return _calibrated(model, lambda: iter([first]))


def with_intermediates(model: bytes) -> bytes:
    """The converted float model as TF calibrates it (LSTMs get their intermediate tensors)."""
    from tensorflow.lite.python.optimize import calibrator

    return bytes(calibrator.add_intermediate_tensors(model))


def _calibrated(model: bytes, dataset: Any) -> bytes:
    from tensorflow.lite.python.optimize import calibrator

    return bytes(calibrator.Calibrator(model).calibrate(_samples(dataset)))


def _samples(dataset: Any) -> Callable[[], Iterable]:
    return getattr(dataset, "input_gen", dataset)


def _quantized(converter, calibrated: bytes, input_type, output_type, variables: bool, debug_options) -> bytes:
    # what TFLiteConverter._quantize does after calibrating (TF 2.21, MLIR quantizer)
    from tensorflow.lite.python.convert import mlir_quantize

    return mlir_quantize(
        calibrated,
        converter._experimental_disable_per_channel,
        input_data_type=input_type,
        output_data_type=output_type,
        enable_variable_quantization=variables,
        disable_per_channel_for_dense_layers=converter._experimental_disable_per_channel_quantization_for_dense_layers,
        debug_options_str=debug_options.SerializeToString(),
    )


def measured(calibrated: bytes, samples: Callable[[], Iterable]) -> bytes:
    """`calibrated` with each op output's recorded min/max set to what the samples give it."""
    out = bytearray(calibrated)
    stored = _stored_ranges(out)
    for index, (low, high) in _ranges(calibrated, samples, set(stored)).items():
        stored[index][0][0], stored[index][1][0] = low, high
    return bytes(out)


def _ranges(
    model: bytes, samples: Callable[[], Iterable], stored: set[int], with_inputs: bool = False
) -> dict[int, tuple[float, float]]:
    """Tensor index -> (min, max) over the samples, for the op outputs (and model inputs) among `stored`
    (main graph)."""
    if not stored:
        return {}
    interpreter = _keeping_every_tensor(model)
    if not interpreter.get_signature_list():  # fed by name below; the converter always writes one
        return {}
    inputs = {int(d["index"]) for d in interpreter.get_input_details()} if with_inputs else set()
    recorded = (_op_outputs(interpreter) | inputs) & stored
    runner = interpreter.get_signature_runner()
    low: dict[int, float] = {}
    high: dict[int, float] = {}
    for sample in samples():
        runner(**sample)
        for index in recorded:
            value = interpreter.get_tensor(index)
            if value.dtype == np.float32 and value.size:
                low[index] = min(low.get(index, np.inf), float(value.min()))
                high[index] = max(high.get(index, -np.inf), float(value.max()))
    return {i: (low[i], high[i]) for i in low}


def _keeping_every_tensor(model: bytes):
    """TFLite's own kernels (no delegate), every tensor kept in a buffer of its own."""
    import importlib

    from buildsys.tflow.quiet import no_interpreter_warning
    from buildsys.tflow.runtime import interpreter_class

    cls = interpreter_class()
    resolver = importlib.import_module(cls.__module__).OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    with no_interpreter_warning():
        interpreter = cls(
            model_content=model, experimental_preserve_all_tensors=True, experimental_op_resolver_type=resolver
        )
    interpreter.allocate_tensors()
    return interpreter


def _op_outputs(interpreter) -> set[int]:
    return {int(t) for op in interpreter._get_ops_details() for t in op["outputs"] if t >= 0}


def _stored_ranges(data: bytearray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Tensor index -> writable views of its one-element min and max, for subgraph 0's tensors that have them."""
    from buildsys.tflow.rangetable import range_views

    return {index: (low, high) for (sub, index), (_, low, high) in range_views(data).items() if sub == 0}
