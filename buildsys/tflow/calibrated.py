"""int8 from a float model calibrated once: what TFLiteConverter does after calibrating, without
converting the float model again.

The ranges stage converts the float model once per distinct converted model and keeps it
calibrated (ranges measured as tflow/calibranges.py does), with what the converter passes its
quantizer (variable quantization, debug options) and the conversion metadata it writes. Each
int8 target then runs TF's quantizer on that model and the steps TFLiteConverter takes after it
(TF 2.21, lite.py `_optimize_tflite_model` and `_convert_and_export_metrics`): read-only buffers
deduplicated, then the conversion metadata with the new model's hash. tests/test_ranges.py holds
the bytes to those of a one-shot conversion.
"""

from __future__ import annotations

from types import MethodType
from typing import Any

# the conversion metadata's parts, as TF's ConversionMetadataT holds them
_METADATA_PARTS = ("environment", "options")


class Calibrated(Exception):  # noqa: N818 - not an error: carries the model out of the converter
    def __init__(self, model_id: str, entry: dict | None, calibrated: bytes | None):
        super().__init__(model_id)
        self.model_id, self.entry, self.calibrated = model_id, entry, calibrated


def capture(converter: Any, known: frozenset[str]) -> None:
    """Make `converter` stop where it would quantize int8 and raise Calibrated: the converted
    model's id, and unless `known` has it, the calibrated model and how to quantize it."""
    from buildsys.tflow.calibranges import true_ranges, with_intermediates
    from buildsys.tflow.rangetable import model_id

    def quantize(self, result, input_type, output_type, activations_type, *rest):
        model = with_intermediates(result)
        found = model_id(model)
        if found in known:
            raise Calibrated(found, None, None)
        calibrated = true_ranges(model, self.representative_dataset)
        variables, debug_options = rest[-2], rest[-1]
        entry = {
            "variables": bool(variables),
            "debug_options": debug_options.SerializeToString().hex(),
            "metadata": {part: dict(vars(getattr(self._metadata, part))) for part in _METADATA_PARTS},
        }
        raise Calibrated(found, entry, calibrated)

    converter._quantize = MethodType(quantize, converter)


def quantized(calibrated: bytes, entry: dict, per_channel: bool, input_type: str, output_type: str) -> bytes:
    """The int8 model TFLiteConverter would give for `calibrated` (see the module docstring)."""
    import tensorflow as tf
    from tensorflow.lite.python import lite
    from tensorflow.lite.python.convert import mlir_quantize
    from tensorflow.lite.tools import flatbuffer_utils

    model = mlir_quantize(
        calibrated,
        not per_channel,
        input_data_type=tf.as_dtype(input_type),
        output_data_type=tf.as_dtype(output_type),
        enable_variable_quantization=entry["variables"],
        disable_per_channel_for_dense_layers=False,
        debug_options_str=bytes.fromhex(entry["debug_options"]),
    )
    model = lite._deduplicate_readonly_buffers(model)
    found = flatbuffer_utils.convert_bytearray_to_object(model)
    metadata = _metadata(entry["metadata"])
    metadata.options.modelOptimizationModes.extend(lite._get_sparsity_modes(found))
    metadata.environment.modelHash = lite._get_model_hash(found)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(lite._populate_conversion_metadata(found, metadata)))


def _metadata(fields: dict) -> Any:
    from tensorflow.lite.python import conversion_metadata_schema_py_generated as fb

    metadata = fb.ConversionMetadataT()
    metadata.environment, metadata.options = fb.EnvironmentT(), fb.ConversionOptionsT()
    for part in _METADATA_PARTS:
        for name, value in fields[part].items():
            setattr(getattr(metadata, part), name, list(value) if isinstance(value, list) else value)
    return metadata
