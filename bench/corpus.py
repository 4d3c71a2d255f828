"""A real-model corpus: export public architectures, build each for three devices, record what happens.

    python bench/corpus.py                        # run everything, write bench/corpus-baseline.json
    python bench/corpus.py --only crnn,unet --out new.json   # a subset; prints what changed vs the baseline
    python bench/corpus.py --compare new.json     # compare a result file with the baseline, run nothing
    python bench/corpus.py --show bench/corpus-baseline.json    # print a result file's table

Outside CI (pytest does not collect bench/). Steps, one model at a time (2 cores: no parallel jobs):
1. an export venv (default bench/.corpus/venv) with torch 2.14.1 / torchvision 0.29.1 / timm /
   ultralytics; bench/corpus_export.py writes each model as ONNX with seeded random weights (nothing
   downloaded), cached in bench/.corpus/models/ (`--reexport` to redo);
2. a recipe per model in bench/.corpus/recipes/ (targets cpu-fp32, cpu-int8, axis-artpec8; 8 seeded
   N(0,1) calibration samples, 4 validation samples; `batch:`/`shapes:` for dynamic exports);
3. a cold `buildsys build --json` in the bench/.corpus workspace (its cache and the model's build
   folder are removed first, so stage seconds are cold and a rerun sees today's converter);
4. per target: pass state, first error line (refused ONNX op types), validation metrics, TRANSPOSE
   and op counts, and fp32/int8 latency (1 thread, default XNNPACK, median of 20) measured in a
   child process, so a kernel abort is a row, not the end of the run.
Results: bench/corpus-baseline.json (sorted keys, no absolute paths, one `measured_at`) and a table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
BASELINE = BENCH / "corpus-baseline.json"
EXPORT_PACKAGES = ["torch==2.14.1", "torchvision==0.29.1", "timm", "ultralytics", "onnx", "onnxscript"]

sys.path.insert(0, str(BENCH))
import corpus_build  # noqa: E402  (bench/ is not a package)
import corpus_report  # noqa: E402
from corpus_build import WORKSPACE  # noqa: E402


def ensure_venv(venv: Path) -> Path:
    """The export venv's python; created and filled on first use (a ~5.5 GB install, once)."""
    python = venv / "bin" / "python"
    if python.exists():
        return python
    print(f"creating the export venv {venv} (torch, torchvision, timm, ultralytics: minutes, once)", flush=True)
    subprocess.run([shutil.which("python3.11") or sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *EXPORT_PACKAGES], check=True)
    return python


def model_names(python: Path) -> list[str]:
    out = subprocess.run(
        [str(python), str(BENCH / "corpus_export.py"), "--list"], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def export(python: Path, name: str, again: bool, timeout: int) -> dict:
    """The export record of one model, from the cache in models/ unless missing or `again`."""
    models = WORKSPACE / "models"
    models.mkdir(parents=True, exist_ok=True)
    record, onnx_path = models / f"{name}.export.json", models / f"{name}.onnx"
    if record.exists() and not again:
        return json.loads(record.read_text())
    partial = models / f"{name}.partial.onnx"
    try:
        proc = subprocess.run(
            [str(python), str(BENCH / "corpus_export.py"), name, str(partial)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        row = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else None
    except subprocess.TimeoutExpired:
        row, proc = None, None
    if row is None:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1] if proc else f"timed out after {timeout} s"
        row = {"name": name, "ok": False, "error": f"export process died: {tail}"}
    (models / f"{name}.export.log").write_text(proc.stderr if proc else "")
    if row["ok"]:
        partial.replace(onnx_path)
    else:
        partial.unlink(missing_ok=True)
        onnx_path.unlink(missing_ok=True)
    record.write_text(json.dumps(row, indent=1, sort_keys=True))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated model names (default: all)")
    parser.add_argument("--venv", type=Path, default=WORKSPACE / "venv", help="the export venv (made if missing)")
    parser.add_argument("--out", type=Path, default=BASELINE, help="result file (default: the baseline)")
    parser.add_argument("--compare", type=Path, metavar="RESULT", help="compare RESULT with the baseline; run nothing")
    parser.add_argument("--show", type=Path, metavar="RESULT", help="print the table of a result file; run nothing")
    parser.add_argument("--reexport", action="store_true", help="export again even if the ONNX file exists")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per model build (default 900)")
    parser.add_argument(
        "--tree",
        action="store_true",
        help="build with the working tree's buildsys (default: a snapshot of the committed HEAD, so other "
        "people's uncommitted edits do not leak into the numbers)",
    )
    parser.add_argument("--commit", default="HEAD", help="the commit whose buildsys is built with (default HEAD)")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        import corpus_measure

        print(json.dumps(corpus_measure.measure(args.measure)))
        return
    if args.show:
        corpus_report.table(json.loads(args.show.read_text()))
        return
    if args.compare:
        corpus_report.compare(json.loads(BASELINE.read_text()), json.loads(args.compare.read_text()))
        return
    run(args)


def run(args: argparse.Namespace) -> None:
    python = ensure_venv(args.venv.resolve())
    tools = record_versions(python)
    commit = git("rev-parse", "--short=12", args.commit)
    if args.tree:
        dirty = git("status", "--porcelain", "--", "buildsys", "schemas")
        commit += "+working-tree" if dirty else ""
    else:
        os.environ["CORPUS_BUILDSYS_SOURCE"] = str(snapshot(commit))
    tools["buildsys_commit"] = commit
    names = model_names(python)
    if args.only:
        wanted = args.only.split(",")
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            sys.exit(f"unknown model(s): {', '.join(unknown)}; known: {', '.join(names)}")
        names = list(dict.fromkeys(wanted))  # in the order given: the models that matter most first
    rows = {}
    for name in names:
        started = time.perf_counter()
        print(f"[{time.strftime('%H:%M:%S')}] {name}: export", end="", flush=True)
        record = export(python, name, args.reexport, timeout=600)
        print(", build" if record["ok"] else f" FAILED: {record['error']}", end="", flush=True)
        rows[name] = corpus_build.model_row(name, record, args.timeout)
        print(f" ({time.perf_counter() - started:.0f} s) {corpus_report.states(rows[name])}", flush=True)
        cut = cut_variant(name, record, rows[name], args.timeout)
        if cut:
            rows[f"{name}_cut"] = cut
        result = save(args, rows, tools)  # after every model: a killed run keeps what it measured
    corpus_report.table(result)
    if args.out.resolve() != BASELINE and BASELINE.exists():
        corpus_report.compare(json.loads(BASELINE.read_text()), result)


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout.strip()


def snapshot(commit: str) -> Path:
    """buildsys/ and schemas/ of the commit, extracted once into bench/.corpus/src/<commit> (git archive)."""
    dest = WORKSPACE / "src" / commit
    if not (dest / "buildsys" / "__init__.py").exists():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", commit, "buildsys", "schemas"], capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def cut_variant(name: str, record: dict, row: dict, timeout: int) -> dict | None:
    """A detector the converter refuses for its data-dependent tail, built again cut where inspect says."""
    if not record["ok"] or row["targets"]["cpu-fp32"]["state"] == "ok":
        return None
    outputs = corpus_build.suggested_cut(record)
    if not outputs:
        return None
    started = time.perf_counter()
    print(f"[{time.strftime('%H:%M:%S')}] {name}_cut: build cut at {', '.join(outputs)}", end="", flush=True)
    cut = corpus_build.model_row(f"{name}_cut", record, timeout, outputs)
    print(f" ({time.perf_counter() - started:.0f} s) {corpus_report.states(cut)}", flush=True)
    return cut


def save(args: argparse.Namespace, rows: dict, tools: dict) -> dict:
    result = corpus_report.result(rows, tools)
    if args.only and args.out == BASELINE and BASELINE.exists():
        # a subset refreshes its own rows of the baseline and keeps the others
        old = json.loads(BASELINE.read_text())
        result["models"] = {**old["models"], **result["models"]}
    args.out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    return result


def record_versions(python: Path) -> dict:
    """Tool versions of both venvs and the buildsys commit the run measured."""
    from importlib.metadata import PackageNotFoundError, version

    out = subprocess.run(
        [
            str(python),
            "-c",
            "import json, importlib.metadata as m; print(json.dumps({p: m.version(p) for p in "
            "('torch', 'torchvision', 'timm', 'ultralytics')}))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    tools = json.loads(out.stdout)
    for names in (("tensorflow", "tensorflow-cpu"), ("onnx",), ("onnxruntime",), ("ai-edge-litert",)):
        for name in names:
            try:
                tools[names[0]] = version(name)
                break
            except PackageNotFoundError:
                continue
    return tools


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    main()
