"""A recipe target's overrides of its device profile (IO types, per-channel, ...)."""

from __future__ import annotations

import copy
from typing import Any

from buildsys.devices.model import Device
from buildsys.modes import ACTIVATION_MODES, IO_TYPES_BY_MODE, default_io


def with_overrides(device: Device, overrides: dict[str, Any]) -> tuple[Device, list[tuple[str, str]]]:
    """The device as the target asks for it, and (key, problem) pairs for impossible asks."""
    if not overrides:
        return device, []
    data = copy.deepcopy(device.data)
    q = data.setdefault("quantization", {})
    problems = _activations(q, overrides.get("activations"), device)
    if "per_channel" in overrides:
        if q.get("mode", "none") in ("none", "fp16"):
            problems.append(
                ("per_channel", f"{device.name} does not quantize weights to integers ({q.get('mode', 'none')})")
            )
        q["per_channel"] = bool(overrides["per_channel"])
    for key in ("input_type", "output_type"):
        if key in overrides:
            problems += _io_type(q, key, overrides[key], device)
    if "on_unsupported" in overrides:
        data["on_unsupported"] = overrides["on_unsupported"]
    problems += _keep_quantization(data, overrides.get("quantization") or {}, device)
    return Device(name=device.name, data=data, origin=device.origin), problems


def _activations(q: dict[str, Any], wanted: str | None, device: Device) -> list[tuple[str, str]]:
    if wanted is None:
        return []
    mode = q.get("mode", "none")
    if mode not in ACTIVATION_MODES.values():
        return [
            ("activations", f"{device.name} quantizes with mode {mode}; activations apply to int8 and int16x8 devices")
        ]
    new = ACTIVATION_MODES[wanted]
    if new != mode:
        q["mode"] = new
        # IO types the old mode chose rarely exist in the new one: start from the new defaults
        for key in ("input_type", "output_type"):
            if q.get(key) not in IO_TYPES_BY_MODE[new]:
                q[key] = default_io(new)
    return []


def _io_type(q: dict[str, Any], key: str, wanted: str, device: Device) -> list[tuple[str, str]]:
    mode = q.get("mode", "none")
    allowed = IO_TYPES_BY_MODE[mode]
    q[key] = wanted
    if wanted in allowed:
        return []
    return [(key, f"{wanted} is not possible with {device.name}'s quantization {mode}; it gives {', '.join(allowed)}")]


def _keep_quantization(data: dict[str, Any], wanted: dict[str, Any], device: Device) -> list[tuple[str, str]]:
    """`quantization: {from_model: true}`: int8 from the model's own QDQ scales, no calibration."""
    if wanted.get("from_model") and wanted.get("requantize"):
        return [("quantization", "from_model keeps the model's scales and requantize replaces them: choose one")]
    if not wanted.get("from_model"):
        return []
    mode = data.get("quantization", {}).get("mode", "none")
    if data.get("format", "tflite") != "tflite" or mode != "int8":
        return [("quantization", f"from_model builds int8 TFLite, and {device.name} quantizes with mode {mode}")]
    data["quantization"]["from_model"] = True
    return []
