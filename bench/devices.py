"""One architecture built for every device in the catalogue, through `buildsys build`.

    python bench/devices.py [--arch mobilenet_v2] [--samples 32]

A fresh workspace gets the model (tests/archs.py) and one target per built-in
device; one cold `buildsys build` makes them all. Prints per target the stage
times (quantize, check, compile), the artifact size, the device check's
accelerator/CPU split with the first unsupported operator, and, for Vela
targets, the estimated cycles, inference time and SRAM.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from convert import architectures, build, workspace  # noqa: E402

from buildsys.devices import Catalogue  # noqa: E402


def row(out: Path, device, stages: dict) -> str:
    tdir = out / device.name
    compat = json.loads((tdir / "compat.json").read_text())["summary"]
    first = compat["first_unsupported"]
    size = (tdir / device.artifact_name).stat().st_size / 1024
    times = "".join(f"{stages.get((device.name, k), 0.0):>9.2f}" for k in ("quantize", "check", "compile"))
    line = f"{device.name:<19}{times}{size:>9.0f}{compat['accelerator']:>6}{compat['cpu']:>5}  {first['op'] if first else '-':<24}"
    summary = tdir / "compile.json"
    if summary.is_file():
        c = json.loads(summary.read_text())
        if c.get("status") == "compiled" and c["tool"] == "vela":
            line += f"vela: {c['npu_ops']} NPU / {c['cpu_ops']} CPU ops, {c['cycles']:,} cycles, {c['inference_time_ms']:.2f} ms, SRAM {c['sram_used_kib']:.0f} KiB"
        else:
            line += f"{c['tool']}: {c['status']}"
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="mobilenet_v2")
    parser.add_argument("--samples", type=int, default=32)
    args = parser.parse_args()
    catalogue = Catalogue()
    devices = [catalogue.get(name) for name in catalogue.names()]
    model = architectures()[args.arch]()
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / args.arch
        targets = "".join(f"  - device: {d.name}\n" for d in devices)
        workspace(ws, args.arch, model, args.samples, targets)
        wall, rows = build(ws)
        stages = {(r["target"], r["stage"]): r["seconds"] or 0.0 for r in rows}
        print(f"{args.arch}: {len(devices)} targets, {len(rows)} stages in {wall:.1f} s (cold, one process)")
        print(
            f"{'device':<19}{'quant s':>9}{'check s':>9}{'comp. s':>9}{'KiB':>9}{'acc':>6}{'cpu':>5}  {'first unsupported':<24}compiler"
        )
        for device in devices:
            print(row(ws / "build" / args.arch, device, stages))


if __name__ == "__main__":
    main()
