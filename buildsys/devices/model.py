"""One resolved device profile: the merged data every stage reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from buildsys.hashing import digest_data
from buildsys.modes import INT8_OP_FORMS, OP_FORMS, default_io, needs_calibration


@dataclass(frozen=True)
class Device:
    name: str
    data: dict[str, Any]  # merged profile plus target overrides; it is what enters stage keys
    origin: str = "built-in"  # or the profile file, as shown to the user

    @property
    def description(self) -> str:
        return self.data.get("description", "")

    @property
    def format(self) -> str:
        return self.data.get("format", "tflite")

    @property
    def quantization(self) -> dict[str, Any]:
        return self.data.get("quantization") or {}

    @property
    def mode(self) -> str:
        return self.quantization.get("mode", "none")

    @property
    def per_channel(self) -> bool:
        return bool(self.quantization.get("per_channel", True))

    @property
    def input_type(self) -> str:
        return self.quantization.get("input_type") or default_io(self.mode)

    @property
    def output_type(self) -> str:
        return self.quantization.get("output_type") or default_io(self.mode)

    @property
    def op_forms(self) -> tuple[str, ...]:
        """The op forms the profile asks for and its mode can take (modes.OP_FORMS)."""
        wanted = self.quantization
        return tuple(f for f in OP_FORMS if wanted.get(f) and (self.mode == "int8" or f not in INT8_OP_FORMS))

    @property
    def needs_calibration(self) -> bool:
        # a target keeping a pre-quantized model's own scales (from_model) calibrates nothing
        return self.format == "tflite" and needs_calibration(self.mode) and not self.quantization.get("from_model")

    @property
    def on_unsupported(self) -> str:
        return self.data.get("on_unsupported", "warn")

    @property
    def compile(self) -> dict[str, Any] | None:
        return self.data.get("compile")

    @property
    def thresholds(self) -> dict[str, float]:
        return dict((self.data.get("validate") or {}).get("thresholds") or {})

    @property
    def docs(self) -> dict[str, Any]:
        return self.data.get("docs") or {}

    @property
    def artifact_name(self) -> str:
        return "model.onnx" if self.format == "onnx" else "model.tflite"

    @property
    def digest(self) -> str:
        return digest_data(self.data)
