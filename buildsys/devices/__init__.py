"""Device profiles: data, not code. One YAML file per device.

The full catalogue (accelerators, op allowlists, external compilers) arrives
with the device issue; this holds the profile shape every stage reads.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from buildsys.errors import UsageError
from buildsys.hashing import digest_data

BUILTIN = Path(__file__).parent / "builtin"
MODES = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class Device:
    name: str
    description: str
    data: dict[str, Any]  # the profile as written; it is what enters stage keys

    @property
    def mode(self) -> str:
        return self.data["quantization"]["mode"]

    @property
    def per_channel(self) -> bool:
        return bool(self.data["quantization"].get("per_channel", True))

    @property
    def io_dtype(self) -> str:
        default = "int8" if self.mode == "int8" else "float32"
        return self.data["quantization"].get("io_dtype", default)

    @property
    def needs_calibration(self) -> bool:
        return self.mode == "int8"

    @property
    def digest(self) -> str:
        return digest_data(self.data)


class Catalogue:
    def __init__(self, directories: tuple[Path, ...] = (BUILTIN,)):
        self._devices = {}
        for directory in directories:
            for path in sorted(directory.glob("*.yaml")):
                device = _load(path)
                self._devices[device.name] = device

    def names(self) -> list[str]:
        return sorted(self._devices)

    def get(self, name: str) -> Device:
        try:
            return self._devices[name]
        except KeyError:
            close = difflib.get_close_matches(name, self.names(), n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise UsageError(
                f"unknown device '{name}'",
                hint=f"{hint}`buildsys devices` lists the {len(self._devices)} known devices",
            ) from None


def _load(path: Path) -> Device:
    data = yaml.load(path.read_text("utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    mode = data.get("quantization", {}).get("mode") if isinstance(data, dict) else None
    if mode not in MODES:
        raise UsageError(f"{path}: device profile needs quantization.mode, one of {', '.join(MODES)}")
    return Device(name=data["name"], description=data.get("description", ""), data=data)
