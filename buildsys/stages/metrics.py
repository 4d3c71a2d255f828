"""Error metrics between a reference model's outputs and an artifact's."""

from __future__ import annotations

from typing import Any

THRESHOLDS = {
    "min_cosine": ("cosine", "min"),
    "max_abs_error": ("max_abs_error", "max"),
    "max_mean_abs_error": ("mean_abs_error", "max"),
}


def compare(ref: Any, got: Any) -> dict[str, float]:
    import numpy as np

    ref = np.asarray(ref, dtype=np.float64).reshape(len(ref), -1)
    got = np.asarray(got, dtype=np.float64).reshape(len(got), -1)
    diff = np.abs(ref - got)
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1)
    same = np.all(ref == got, axis=1)
    cos = np.where(norms > 0, np.sum(ref * got, axis=1) / np.where(norms > 0, norms, 1), same * 1.0)
    out = {
        "max_abs_error": float(diff.max()),
        "mean_abs_error": float(diff.mean()),
        "cosine": float(cos.mean()),
        "min_cosine": float(cos.min()),
    }
    if ref.shape[1] > 1:
        out["top1_agreement"] = float(np.mean(ref.argmax(1) == got.argmax(1)))
    return {k: round(v, 8) for k, v in out.items()}


def judge(metrics: dict[str, float], thresholds: dict[str, float]) -> list[str]:
    """Human lines for every missed threshold."""
    missed = []
    for name, limit in sorted(thresholds.items()):
        metric, kind = THRESHOLDS[name]
        value = metrics[metric]
        if (kind == "min" and value < limit) or (kind == "max" and value > limit):
            missed.append(f"{metric} {value:.6g} {'<' if kind == 'min' else '>'} {name} {limit:g}")
    return missed
