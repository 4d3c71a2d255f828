"""One corpus model: recipe and data, a cold `buildsys build`, and what each target came to."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

WORKSPACE = Path(__file__).resolve().parent / ".corpus"
TARGETS = ("cpu-fp32", "cpu-int8", "axis-artpec8")
CALIB_SAMPLES, VAL_SAMPLES = 8, 4
BUILDSYS = Path(sys.executable).with_name("buildsys")


def child_env() -> dict:
    """Environment of build and measure processes: quiet TensorFlow, the buildsys under test first."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    source = os.environ.get("CORPUS_BUILDSYS_SOURCE")
    if source:  # a snapshot of the committed tree shadows the editable install (see corpus.snapshot)
        env["PYTHONPATH"] = source
    return env


RECIPE = """\
# written by bench/corpus.py: seeded N(0,1) data, no thresholds (the corpus records metrics, it does not gate)
version: 1
name: {name}
source:
  onnx: ../models/{model}.onnx
{shapes}{outputs}calibration:
  samples: {calib}
  seed: 0
  inputs:
{calib_inputs}
validate:
  samples: {val}
  inputs:
{val_inputs}
targets:
{targets}
"""


def write_recipe(name: str, record: dict, outputs: list[str] | None = None) -> Path:
    """recipes/<name>.yaml and its .npy data; `batch:` or `shapes:` when the export left dims dynamic,
    `outputs:` to cut the model there."""
    import numpy as np

    model = record["name"]
    data = WORKSPACE / "data" / model
    data.mkdir(parents=True, exist_ok=True)
    calib, val = [], []
    for i, (inp, shape) in enumerate(sorted(record["inputs"].items())):
        for kind, count, seed, lines in (("calib", CALIB_SAMPLES, i, calib), ("val", VAL_SAMPLES, 100 + i, val)):
            rng = np.random.default_rng(seed)
            np.save(data / f"{inp}.{kind}.npy", rng.standard_normal((count, *shape[1:]), dtype=np.float32))
            lines.append(f"    {inp}: {{npy: ../data/{model}/{inp}.{kind}.npy}}")
    dynamic = record.get("dynamic") or {}
    if dynamic and all(axes == [0] for axes in dynamic.values()):
        shapes = "batch: 1\n"
    elif dynamic:
        shapes = "shapes:\n" + "".join(f"  {k}: {record['inputs'][k]}\n" for k in sorted(dynamic))
    else:
        shapes = ""
    recipe = WORKSPACE / "recipes" / f"{name}.yaml"
    recipe.parent.mkdir(parents=True, exist_ok=True)
    recipe.write_text(
        RECIPE.format(
            name=name,
            model=model,
            shapes=shapes,
            outputs=f"outputs: {json.dumps(outputs)}\n" if outputs else "",
            calib=CALIB_SAMPLES,
            val=VAL_SAMPLES,
            calib_inputs="\n".join(calib),
            val_inputs="\n".join(val),
            targets="\n".join(f"  - device: {t}" for t in TARGETS),
        )
    )
    return recipe


def cold_build(name: str, recipe: Path, timeout: int) -> dict:
    """Run `buildsys build --json` with an empty cache; the process group is killed on timeout."""
    shutil.rmtree(WORKSPACE / ".buildsys", ignore_errors=True)
    shutil.rmtree(WORKSPACE / "build" / name, ignore_errors=True)
    started = time.perf_counter()
    proc = subprocess.Popen(
        [str(BUILDSYS), "build", "--json", "-C", str(WORKSPACE), str(recipe.relative_to(WORKSPACE))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        cwd=WORKSPACE,
        env=child_env(),
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return {"rc": None, "rows": [], "stderr": err, "seconds": timeout, "timed_out": True}
    (WORKSPACE / "build").mkdir(exist_ok=True)
    (WORKSPACE / "build" / f"{name}.stderr.log").write_text(err)
    try:
        rows = json.loads(out) if out.strip() else []
    except json.JSONDecodeError:
        rows = []
    return {
        "rc": proc.returncode,
        "rows": rows,
        "stderr": err,
        "seconds": time.perf_counter() - started,
        "timed_out": False,
    }


def stage_seconds(rows: list[dict]) -> dict:
    """{"_common": {stage: s}, target: {stage: s}} from the build's JSON outcomes."""
    out: dict = {}
    for r in rows:
        if r.get("seconds") is not None:
            out.setdefault(r.get("target") or "_common", {})[r["stage"]] = round(r["seconds"], 2)
    return out


def error_text(stderr: str) -> list[str]:
    """The build's error lines, without TensorFlow/absl log noise."""
    noise = re.compile(r"^(WARNING|I0000|W0000|E0000|INFO|\s*$)|^[IWE]\d{4} |tensorflow/|absl::")
    return [line.rstrip() for line in stderr.splitlines() if not noise.search(line)]


def refused_ops(lines: list[str]) -> list[str]:
    """Op types of the converter's refusal table (rows start with an ONNX op type in a table cell)."""
    ops = set()
    for line in lines:
        m = re.match(
            r"^\s*[|│]?\s*([A-Z][A-Za-z0-9]+)\s+[|│]?\s*(ai\.onnx|com\.microsoft|\S*\.\S*|\(default\)|onnx)\b", line
        )
        if m:
            ops.add(m.group(1))
    return sorted(ops)


def target_state(target: str, rows: list[dict], build: dict) -> tuple[str, str | None]:
    """ok / failed:<stage> / not-run, and the first error line that names this target's failure."""
    mine = [r for r in rows if r.get("target") == target]
    common_failed = [r for r in rows if not r.get("target") and r.get("outcome") == "failed"]
    failed = [r for r in mine if r.get("outcome") == "failed"]
    if build["timed_out"]:
        return "timeout", f"build timed out after {build['seconds']} s"
    # a shared stage (prepare, convert, calibration) that failed fails every target's later stages too
    for row in [*common_failed, *failed][:1]:
        return f"failed:{row['stage']}", first_reason(row, build["stderr"])
    if not mine:
        lines = error_text(build["stderr"])
        return "not-run", (lines[0] if lines else f"exit {build['rc']}, no stage ran")
    return "ok", None


def first_reason(row: dict, stderr: str) -> str:
    notes = row.get("notes") or []
    if isinstance(notes, str):
        notes = [notes]
    for text in [*notes, *error_text(stderr)]:
        text = str(text).strip()
        if text and not text.startswith("{"):
            return text[:300]
    return "no message"


def measure(tflite: Path) -> dict:
    """Op counts and 1-thread latency of one artifact, in a child process (a kernel abort kills only it)."""
    proc = subprocess.run(
        [sys.executable, str(WORKSPACE.parent / "corpus.py"), "--measure", str(tflite)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=WORKSPACE,
        env=child_env(),
    )
    if proc.returncode == 0 and proc.stdout.strip():
        return json.loads(proc.stdout.strip().splitlines()[-1])
    lines = error_text(proc.stderr)
    why = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
    return {"run_error": f"{why}: {lines[-1] if lines else 'no message'}"[:300]}


def metrics(path: Path) -> dict:
    """max abs error and cosine of the worst output, from metrics.json."""
    if not path.exists():
        return {}
    m = json.loads(path.read_text())
    outs = m.get("outputs") or {}
    cos = [o["cosine"] for o in outs.values() if o.get("cosine") is not None]
    err = [o["max_abs_error"] for o in outs.values() if o.get("max_abs_error") is not None]
    return {"cosine": min(cos) if cos else None, "max_abs_error": max(err) if err else None}


def suggested_cut(record: dict) -> list[str]:
    """The tensors `buildsys inspect` would cut a data-dependent detector at ([] when none)."""
    proc = subprocess.run(
        [str(BUILDSYS), "inspect", "--json", str(WORKSPACE / "models" / f"{record['name']}.onnx")],
        capture_output=True,
        text=True,
        cwd=WORKSPACE,
        env=child_env(),
        timeout=600,
    )
    try:
        return list((json.loads(proc.stdout).get("cut") or {}).get("tensors") or [])
    except json.JSONDecodeError:
        return []


def model_row(name: str, record: dict, timeout: int, outputs: list[str] | None = None) -> dict:
    """Build recipe `name` from the export `record` (cut at `outputs` when given) and measure it."""
    if not record["ok"]:
        return {"export": {"ok": False, "error": record["error"]}, "targets": {}}
    import onnx

    model = onnx.load(WORKSPACE / "models" / f"{record['name']}.onnx", load_external_data=False)
    row = {
        "export": {"ok": True, "seconds": record.get("seconds"), "dynamic": record.get("dynamic") or {}},
        "params": record.get("params"),
        "inputs": record["inputs"],
        "onnx": {"nodes": len(model.graph.node), "transposes": sum(n.op_type == "Transpose" for n in model.graph.node)},
    }
    if outputs:
        row["cut_at"] = outputs
    build = cold_build(name, write_recipe(name, record, outputs), timeout)
    row["build"] = {"exit": build["rc"], "seconds": round(build["seconds"], 1), "stages": stage_seconds(build["rows"])}
    row["refused_ops"] = refused_ops(error_text(build["stderr"]))
    row["targets"] = {}
    for target in TARGETS:
        state, reason = target_state(target, build["rows"], build)
        out = WORKSPACE / "build" / name / target
        entry = {"state": state, "reason": reason, **metrics(out / "metrics.json")}
        if (out / "model.tflite").exists():
            entry.update(measure(out / "model.tflite"))
        row["targets"][target] = entry
    return row
