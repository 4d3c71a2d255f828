"""Quantization modes and the IO element types each can give the model.

Kept free of TensorFlow so plan-time checks cost nothing; the quantize
stage reads the same table.
"""

from __future__ import annotations

from types import MappingProxyType

# mode -> IO types it can produce; the first is the default
IO_TYPES_BY_MODE = MappingProxyType(
    {
        "none": ("float32",),
        "fp16": ("float32",),
        "dynamic-range": ("float32",),
        "int8": ("int8", "uint8", "float32"),
        "int16x8": ("int16", "float32"),
    }
)
MODES = tuple(IO_TYPES_BY_MODE)
CALIBRATED = ("int8", "int16x8")
# Op forms a profile can ask for with `quantization: {<form>: true}`, in the order tflow applies them:
# what XNNPACK (the CPU interpreter's delegate) runs fast and NPUs often lack. The int8 ones mean
# nothing to other modes. tflow/quantize.py says what each does.
OP_FORMS = ("unfold_batchmatmul", "split_hard_activations", "unfuse_lstm", "grouped_conv")
INT8_OP_FORMS = frozenset({"unfold_batchmatmul", "split_hard_activations", "unfuse_lstm"})
# `activations:` in a recipe target picks the integer mode
ACTIVATION_MODES = MappingProxyType({"int8": "int8", "int16": "int16x8"})


def needs_calibration(mode: str) -> bool:
    return mode in CALIBRATED


def default_io(mode: str) -> str:
    return IO_TYPES_BY_MODE[mode][0]
