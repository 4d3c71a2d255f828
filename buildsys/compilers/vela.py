"""Arm Vela (ethos-u-vela): compiles an int8 .tflite for the Ethos-U55/U65/U85 NPUs.

Vela replaces each run of NPU-supported operators with one `ethos-u` custom
operator and leaves the rest for the CPU, then writes <stem>_vela.tflite and a
one-row <stem>_summary_<system config>.csv of its performance estimate into
--output-dir. The op split is read from the two models (what is left outside
the custom ops runs on the CPU), not from Vela's console text, whose operator
names are internal ones; the estimate comes from the CSV, picked by column name.
"""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path
from types import MappingProxyType

from buildsys.compilers.base import (
    CompileResult,
    CompilerMissing,
    check_args,
    failure,
    remove_stale,
    require_model,
    run_tool,
)
from buildsys.errors import BuildsysError, StageError
from buildsys.tflow.inspect import op_histogram
from buildsys.tools import installed_versions

NPU_OP = "ethos-u"
_RESERVED = ("--output-dir", "--output-format")
_HINT = "check that the model is a fully int8 (or int16x8) .tflite and the compile args in the device profile"

# summary key -> (CSV column, scale, decimals; None = a whole number). Vela
# writes memory in KiB and the inference time in seconds.
_CSV_FIELDS = MappingProxyType(
    {
        "cycles": ("cycles_total", 1, None),
        "npu_cycles": ("cycles_npu", 1, None),
        "macs": ("nn_macs", 1, None),
        "inference_time_ms": ("inference_time", 1000, 6),
        "inferences_per_second": ("inferences_per_second", 1, 2),
        "sram_used_kib": ("sram_memory_used", 1, 3),
        "dram_used_kib": ("dram_memory_used", 1, 3),
        "on_chip_flash_used_kib": ("on_chip_flash_memory_used", 1, 3),
        "off_chip_flash_used_kib": ("off_chip_flash_memory_used", 1, 3),
        "weights_bytes": ("total_original_weights", 1, None),
        "encoded_weights_bytes": ("total_npu_encoded_weights", 1, None),
    }
)


class Vela:
    name = "vela"

    def version(self) -> str | None:
        # the dist-info directory name, so asking costs no import of Vela
        return installed_versions().get("ethos_u_vela")

    def install_hint(self) -> str:
        return "pip install 'buildsys[vela]' (installs ethos-u-vela from PyPI)"

    def compile(self, model: Path, workdir: Path, args: list[str]) -> CompileResult:
        version = self.version()
        if version is None:
            raise CompilerMissing("vela (ethos-u-vela) is not installed", hint=self.install_hint())
        args = check_args(self.name, args, _RESERVED)
        model, workdir = Path(model).resolve(), Path(workdir).resolve()
        require_model(self.name, model)
        workdir.mkdir(parents=True, exist_ok=True)
        artifact = workdir / f"{model.stem}_vela.tflite"
        remove_stale(workdir, [artifact.name], (f"{model.stem}_summary_*.csv",))
        # run as a module of this interpreter: works without the venv's bin/ on PATH
        argv = [sys.executable, "-m", "ethosu.vela", str(model), "--output-dir", str(workdir)]
        code, log = run_tool([*argv, "--show-cpu-operations", *args], cwd=workdir, tool=self.name)
        if code != 0 or not artifact.is_file():
            raise failure(self.name, model, log, workdir, code=code, artifact=artifact, hint=_HINT)
        summary = {"tool": self.name, "version": version}
        summary.update(_estimate(workdir, model.stem))
        summary.update(op_split(model, artifact))
        return CompileResult(artifact=artifact, log=log, summary=summary)


def op_split(model: Path, artifact: Path) -> dict:
    """NPU/CPU split: ops outside the ethos-u custom ops stay on the CPU, the model's others went to the NPU."""
    compiled = _histogram(artifact)
    cpu = {name: n for name, n in compiled.items() if name != NPU_OP}
    cpu_ops = sum(cpu.values())
    return {
        "npu_ops": max(sum(_histogram(model).values()) - cpu_ops, 0),
        "cpu_ops": cpu_ops,
        "cpu_op_list": sorted(cpu),
        "npu_partitions": compiled.get(NPU_OP, 0),
    }


def _histogram(path: Path) -> dict[str, int]:
    try:
        return op_histogram(path)
    except BuildsysError as exc:  # a model Vela accepted but the schema cannot read: a stage failure, not bad input
        raise StageError(f"vela: {exc.message}", hint=_HINT, path=str(path)) from None


def _estimate(workdir: Path, stem: str) -> dict:
    """Accelerator, configuration and performance estimate from Vela's summary CSV."""
    row = _csv_row(workdir, stem)
    accel = row.get("accelerator_configuration")
    out: dict[str, str | int | float | None] = {
        # Ethos_U55_128 -> ethos-u55-128, the spelling --accelerator-config takes
        "accelerator": accel.lower().replace("_", "-") if accel else None,
        "system_config": row.get("system_config"),
        "memory_mode": row.get("memory_mode"),
    }
    for key, (column, scale, decimals) in _CSV_FIELDS.items():
        out[key] = _number(row.get(column), scale, decimals)
    return out


def _csv_row(workdir: Path, stem: str) -> dict[str, str]:
    found = sorted(workdir.glob(f"{stem}_summary_*.csv"))
    if not found:
        return {}
    with found[0].open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return {k.strip(): (v or "").strip() for k, v in rows[0].items() if k} if rows else {}


def _number(text: str | None, scale: float, decimals: int | None) -> int | float | None:
    if text is None:
        return None
    try:
        value = float(text) * scale
    except (TypeError, ValueError):
        return None
    if not math.isfinite(value):  # NaN (no cycles) and inf are not JSON
        return None
    return int(round(value)) if decimals is None else round(value, decimals)
