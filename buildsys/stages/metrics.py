"""Error metrics between a reference model's outputs and an artifact's."""

from __future__ import annotations

from typing import Any

# threshold -> (metric it limits, "min" or "max")
THRESHOLDS = {
    "min_cosine": ("cosine", "min"),
    "max_abs_error": ("max_abs_error", "max"),
    "max_mean_abs_error": ("mean_abs_error", "max"),
    "max_rmse": ("rmse", "max"),
    "min_snr_db": ("snr_db", "min"),
    "min_top1_agreement": ("top1_agreement", "min"),
    "min_top5_agreement": ("top5_agreement", "min"),
    "min_accuracy": ("accuracy", "min"),
    "max_accuracy_drop": ("accuracy_drop", "max"),
}
# only outputs holding class scores have these: judged where present
LABEL_METRICS = frozenset({"accuracy", "accuracy_drop"})
SNR_CAP_DB = 999.0  # an exact match has infinite SNR, which JSON cannot hold


def compare(ref: Any, got: Any, classification: bool = False) -> dict[str, Any]:
    import numpy as np

    ref = np.asarray(ref, dtype=np.float64).reshape(len(ref), -1)
    got = np.asarray(got, dtype=np.float64).reshape(len(got), -1)
    nonfinite = int(np.count_nonzero(~np.isfinite(got) & np.isfinite(ref)))
    # NaN/Inf are counted, not averaged in: one NaN would make every other metric NaN; where the
    # reference itself is not finite (a model dividing by zero) there is nothing to measure
    finite = np.isfinite(ref)
    got = np.where(np.isfinite(got) & finite, got, 0.0)
    ref = np.where(finite, ref, 0.0)
    diff = np.abs(ref - got)
    out: dict[str, Any] = {
        "max_abs_error": float(diff.max()),
        "mean_abs_error": float(diff.mean()),
        "rmse": float(np.sqrt(np.mean(diff**2))),
        "snr_db": _snr_db(ref, diff),
        **_cosines(ref, got),
        "nonfinite": nonfinite,
        "error_histogram": _histogram(got - ref),
    }
    if ref.shape[1] > 1:
        out["top1_agreement"] = _topk_agreement(ref, got, 1)
    if classification and ref.shape[1] > 5:
        out["top5_agreement"] = _topk_agreement(ref, got, 5)
    return {k: round(v, 8) if isinstance(v, float) else v for k, v in out.items()}


def _limit(limit: float) -> str:
    """A limit as the recipe wrote it (0.9999999 must not read as 1), whole numbers bare."""
    return str(int(limit)) if float(limit).is_integer() else repr(float(limit))


def _away(value: float, kind: str) -> str:
    """Six digits rounded away from the limit: a cosine of 0.99999996 missing 1 must not
    read "1 < 1", and it reads as the reports' cosines do (cut, not rounded)."""
    from decimal import ROUND_CEILING, ROUND_FLOOR, Context

    digits = Context(prec=6, rounding=ROUND_FLOOR if kind == "min" else ROUND_CEILING)
    return f"{float(digits.create_decimal_from_float(value)):.6g}"


def accuracy(ref: Any, got: Any, labels: Any, highest: int | None = None) -> dict[str, float] | None:
    """Top-1 accuracy of reference and artifact against class ids; None when the output
    is not class scores for ids up to `highest` (one value per sample, or fewer classes)."""
    import numpy as np

    ref = np.asarray(ref, dtype=np.float64).reshape(len(ref), -1)
    got = np.asarray(got, dtype=np.float64).reshape(len(got), -1)
    highest = int(labels.max()) if highest is None else highest
    if ref.shape[1] < 2 or highest >= ref.shape[1]:
        return None
    got = np.where(np.isfinite(got), got, -np.inf)  # a NaN score never wins
    source = float(np.mean(ref.argmax(1) == labels))
    artifact = float(np.mean(got.argmax(1) == labels))
    return {
        "source_accuracy": round(source, 8),
        "accuracy": round(artifact, 8),
        "accuracy_drop": round(source - artifact, 8),
    }


def _histogram(errors, bins: int = 30) -> dict[str, list]:
    """Signed artifact-minus-reference errors in `bins` equal bins, symmetric around 0."""
    import numpy as np

    errors = errors[np.isfinite(errors)]  # where the reference itself is NaN/Inf there is no error to bin
    reach = float(np.abs(errors).max()) if errors.size else 0.0
    reach = reach or 1e-12
    counts, edges = np.histogram(errors, bins=bins, range=(-reach, reach))
    return {"edges": [float(f"{e:.6g}") for e in edges], "counts": [int(c) for c in counts]}


def _cosines(ref, got) -> dict[str, float]:
    import numpy as np

    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1)
    same = np.all(ref == got, axis=1)
    cos = np.where(norms > 0, np.sum(ref * got, axis=1) / np.where(norms > 0, norms, 1), same * 1.0)
    return {"cosine": float(cos.mean()), "min_cosine": float(cos.min())}


def _snr_db(ref, diff) -> float:
    import numpy as np

    noise = float(np.sum(diff**2))
    signal = float(np.sum(ref**2))
    if noise == 0:
        return SNR_CAP_DB
    if signal == 0:
        return -SNR_CAP_DB
    return float(min(SNR_CAP_DB, 10 * np.log10(signal / noise)))


def _topk_agreement(ref, got, k: int) -> float:
    """Share of samples whose reference top-1 class is among the artifact's top k."""
    import numpy as np

    best = ref.argmax(1)
    top = np.argsort(-got, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(top == best[:, None], axis=1)))


def judge(metrics: dict[str, float], thresholds: dict[str, float]) -> list[str]:
    """Human lines for every missed threshold, with the margin; NaN/Inf always fail."""
    missed = []
    if metrics.get("nonfinite"):
        missed.append(f"{metrics['nonfinite']} NaN/Inf values where the reference is finite")
    for name, limit in sorted(thresholds.items()):
        metric, kind = THRESHOLDS[name]
        if metric not in metrics and metric in LABEL_METRICS:
            continue
        if metric not in metrics:
            missed.append(f"{name}: this output has no {metric} (it needs more than one value per sample)")
            continue
        value = metrics[metric]
        if kind == "min" and value < limit:
            missed.append(f"{metric} {_away(value, kind)} < {name} {_limit(limit)} (short by {limit - value:.3g})")
        elif kind == "max" and value > limit:
            missed.append(f"{metric} {_away(value, kind)} > {name} {_limit(limit)} (over by {value - limit:.3g})")
    return missed
