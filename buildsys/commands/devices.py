"""`buildsys devices [NAME|FILE]`: the device profiles, or one profile's rules and sources."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from buildsys.devices import Catalogue, Device
from buildsys.ui import Ui


def run(args: Any, ui: Ui) -> int:
    catalogue = Catalogue(workspace=Path(args.directory or "."))
    if args.name:
        device = catalogue.resolve(args.name, Path(args.directory or "."))
        if args.json:
            ui.data(device.data)
        else:
            ui.quiet = False
            show(device, ui)
        return 0
    devices = [catalogue.get(name) for name in catalogue.names()]
    if args.json:
        ui.data([summary(d) for d in devices])
        return 0
    rows = [summary(d) for d in devices]
    cells = [[column for column, _ in COLUMNS]] + [[str(r[key] or "-") for _, key in COLUMNS] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    for row, description in zip(cells, ["description"] + [r["description"] for r in rows]):
        ui.line("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + description)
    return 0


COLUMNS = (
    ("device", "name"),
    ("format", "format"),
    ("quantization", "quantization"),
    ("inputs", "input_type"),
    ("outputs", "output_type"),
    ("compiler", "compiler"),
)


def summary(d: Device) -> dict[str, Any]:
    return {
        "name": d.name,
        "format": d.format,
        "quantization": _quantization(d),
        "input_type": d.input_type if d.format == "tflite" else "-",
        "output_type": d.output_type if d.format == "tflite" else "-",
        "compiler": (d.compile or {}).get("tool"),
        "description": d.description,
    }


def _quantization(d: Device) -> str:
    if d.mode in ("int8", "int16x8", "dynamic-range"):
        return f"{d.mode} {'per-channel' if d.per_channel else 'per-tensor'}"
    return d.mode


def show(d: Device, ui: Ui) -> None:
    ui.line(f"{d.name}: {d.description}", style="bold")
    ui.line(f"  profile: {d.origin}")
    ui.line(
        f"  artifact: {d.artifact_name}; quantization: {_quantization(d)}; inputs {d.input_type}, outputs {d.output_type}"
    )
    ui.line(f"  unsupported ops: {d.data.get('partition', 'per-op')} fallback, on_unsupported: {d.on_unsupported}")
    if d.compile:
        ui.line(f"  compiler: {d.compile['tool']} {' '.join(d.compile.get('args', []))}")
    if d.thresholds:
        ui.line(f"  validation defaults: {', '.join(f'{k} {v}' for k, v in sorted(d.thresholds.items()))}")
    tensors = d.data.get("tensors")
    if tensors:
        ui.line(f"  tensors: {_rules(tensors)}")
    _ops(d, ui)
    _docs(d, ui)


def _ops(d: Device, ui: Ui) -> None:
    ops = d.data.get("ops")
    if ops is None:
        ui.line("  operators: any builtin operator")
        return
    ui.line(f"  operators ({len(ops)}):")
    width = max(len(op) for op in ops)
    for op, rules in sorted(ops.items()):
        ui.line(f"    {op.ljust(width)}  {_rules(rules) if rules else ''}".rstrip())


def _rules(rules: dict[str, Any]) -> str:
    return "; ".join(f"{k} {_value(v)}" for k, v in rules.items())


def _value(v: Any) -> str:
    return ", ".join(str(x) for x in v) if isinstance(v, list) else str(v).lower() if isinstance(v, bool) else str(v)


def _docs(d: Device, ui: Ui) -> None:
    docs = d.docs
    for note in docs.get("notes", []):
        ui.line(f"  note: {note}")
    if docs.get("next_steps"):
        ui.line(f"  next steps: {docs['next_steps'].strip()}")
    if docs.get("sources"):
        ui.line("  sources:")
        for source in docs["sources"]:
            ui.line(f"    {source['title']}: {source['url']}")
