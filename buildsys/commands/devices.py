"""`buildsys devices [NAME]`: the device profiles this build knows."""

from __future__ import annotations

from typing import Any

import yaml

from buildsys.devices import Catalogue
from buildsys.ui import Ui


def run(args: Any, ui: Ui) -> int:
    catalogue = Catalogue()
    if args.name:
        device = catalogue.get(args.name)
        ui.quiet = False
        ui.line(yaml.safe_dump(device.data, sort_keys=False).rstrip())
        return 0
    for name in catalogue.names():
        device = catalogue.get(name)
        ui.line(f"  {name:<12} {device.mode:<5} {device.description}")
    return 0
