"""Op counts and single-thread latency of one .tflite (run by corpus.py in a child process)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

RUNS, WARMUP = 20, 3


def feed(interp, seed: int = 0) -> None:
    """Seeded inputs in each input's own dtype (int8/uint8 over their whole range)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    for d in interp.get_input_details():
        dtype, shape = d["dtype"], d["shape"]
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            value = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
        else:
            value = rng.standard_normal(shape).astype(dtype)
        interp.set_tensor(d["index"], value)


def latency_ms(path: Path) -> float:
    """Median of RUNS invokes after WARMUP, 1 thread, the interpreter's default delegate (XNNPACK)."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=1)
    interp.allocate_tensors()
    feed(interp)
    for _ in range(WARMUP):
        interp.invoke()
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        interp.invoke()
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 3)


def measure(path: Path) -> dict:
    from buildsys.tflow.inspect import op_histogram

    ops = op_histogram(path)
    return {
        "ops": sum(ops.values()),
        "transposes": ops.get("TRANSPOSE", 0),
        "op_histogram": dict(sorted(ops.items())),
        "size_kib": round(path.stat().st_size / 1024, 1),
        "latency_ms": latency_ms(path),
    }
