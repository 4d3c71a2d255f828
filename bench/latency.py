"""int8 vs fp32 latency of GELU models (issue 13.5): the rule is int8 never slower.

    python bench/latency.py [--only vit,convnext] [--runs 20] [--size 224]

Each model (built in tests/archs.py with onnx.helper: ViT-tiny as timm exports it,
ConvNeXt-atto as torchvision exports it) goes through the build's own library path:
prepare -> convert -> TFLite fp32 (cpu-fp32) and int8 (cpu-int8: per-channel, int8
IO, 16 calibration images). Each artifact runs in the LiteRT interpreter with 1
thread and its default XNNPACK delegate; the script prints the median of `--runs`
invocations after 3 warm-up runs (fp32 and int8 taking turns), TRANSPOSE ops in the .tflite against Transpose
nodes in the ONNX graph, GELU ops, and the int8 output's cosine to onnxruntime.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import archs  # noqa: E402

MODELS = {
    "vit": lambda size: archs.vit(size),
    "convnext": lambda size: archs.convnext(size),
}
CALIBRATION = 16


def build(model, workdir: Path) -> tuple[dict, dict[str, bytes]]:
    """(signature, {"fp32": .tflite, "int8": .tflite}) through the build's library functions."""
    from buildsys.devices.catalogue import Catalogue
    from buildsys.onnxprep.prepare import prepare_model
    from buildsys.tflow.onnxsource import export_onnx
    from buildsys.tflow.quantize import to_tflite
    from buildsys.tflow.samples import to_stored

    float_path = workdir / "float.pb"
    signature = export_onnx(prepare_model(model), float_path)
    calib = to_stored(archs.sample_inputs(model, CALIBRATION, seed=100), signature["inputs"])
    # the op forms the two CPU profiles ask for (XNNPACK runs int8 FULLY_CONNECTED, not BATCH_MATMUL, ...)
    forms = {name: Catalogue().get(name).op_forms for name in ("cpu-fp32", "cpu-int8")}
    return signature, {
        "fp32": to_tflite(float_path, signature, "none", forms=forms["cpu-fp32"]),
        "int8": to_tflite(
            float_path,
            signature,
            "int8",
            calib,
            per_channel=True,
            input_type="int8",
            output_type="int8",
            forms=forms["cpu-int8"],
        ),
    }


def latency_ms(artifacts: dict[str, bytes], runs: int) -> dict[str, float]:
    """Median ms per artifact; the artifacts take turns, so load from other processes
    on the machine weighs on each of them alike."""
    from buildsys.tflow.runtime import interpreter_class

    interpreters = {}
    for kind, data in artifacts.items():
        interpreter = interpreter_class()(model_content=data, num_threads=1)
        interpreter.allocate_tensors()
        for detail in interpreter.get_input_details():
            interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
        interpreters[kind] = interpreter
    times: dict[str, list[float]] = {kind: [] for kind in artifacts}
    for i in range(runs + 3):
        for kind, interpreter in interpreters.items():
            start = time.perf_counter()
            interpreter.invoke()
            if i >= 3:
                times[kind].append((time.perf_counter() - start) * 1000)
    return {kind: statistics.median(t) for kind, t in times.items()}


def int8_cosine(model, signature: dict, tflite: bytes) -> float:
    from buildsys.tflow.runtime import run_tflite
    from buildsys.tflow.samples import to_onnx_layout, to_stored

    feeds = archs.sample_inputs(model, 4, seed=7)
    want = archs.run_ort(model, feeds)
    got = to_onnx_layout(run_tflite(tflite, to_stored(feeds, signature["inputs"])), signature["outputs"])
    a, b = (np.concatenate([d[k].reshape(-1) for k in sorted(want)]).astype(np.float64) for d in (want, got))
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(MODELS), help="comma-separated: " + ", ".join(MODELS))
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--size", type=int, default=224, help="input image size")
    args = parser.parse_args()
    from buildsys.tflow.inspect import op_histogram

    print(
        f"{'model':10} {'fp32 ms':>8} {'int8 ms':>8} {'int8/fp32':>9} {'TRANSPOSE':>9} {'ONNX':>5} {'GELU':>5} {'int8 cos':>8}"
    )
    slower = []
    for name in args.only.split(","):
        model = MODELS[name](args.size)
        with tempfile.TemporaryDirectory() as tmp:
            signature, artifacts = build(model, Path(tmp))
        ms = latency_ms(artifacts, args.runs)
        ops = {kind: op_histogram(data) for kind, data in artifacts.items()}
        onnx_transposes = sum(n.op_type == "Transpose" for n in model.graph.node)
        transposes = max(o.get("TRANSPOSE", 0) for o in ops.values())
        cosine = int8_cosine(model, signature, artifacts["int8"])
        ratio = ms["int8"] / ms["fp32"]
        print(
            f"{name:10} {ms['fp32']:8.1f} {ms['int8']:8.1f} {ratio:9.2f} {transposes:9d} {onnx_transposes:5d} "
            f"{ops['int8'].get('GELU', 0):5d} {cosine:8.4f}",
            flush=True,
        )
        if ratio > 1.0 or transposes > onnx_transposes:
            slower.append(name)
    if slower:
        print(f"rule broken (int8 slower than fp32, or more TRANSPOSE than the ONNX graph): {', '.join(slower)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
