"""The corpus result file, its table, and what changed between two results."""

from __future__ import annotations

import math
import time
from collections import defaultdict

from corpus_build import CALIB_SAMPLES, TARGETS, VAL_SAMPLES

SHORT = {"cpu-fp32": "fp32", "cpu-int8": "int8", "axis-artpec8": "a8"}
# metric -> (lower is better, relative change that counts, absolute change that counts)
METRICS = {
    "cosine": (False, 0.0, 0.001),
    "max_abs_error": (True, 0.5, 1e-6),
    "transposes": (True, 0.0, 0.5),
    "ops": (True, 0.0, 0.5),
    "latency_ms": (True, 0.15, 0.05),
}


def rounded(value):
    """Floats to 6 significant digits, recursively: results diff by meaning, not by noise."""
    if isinstance(value, float):
        return float(f"{value:.6g}") if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return value


def result(rows: dict, tools: dict) -> dict:
    return {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "settings": {
            "targets": list(TARGETS),
            "calibration_samples": CALIB_SAMPLES,
            "validate_samples": VAL_SAMPLES,
            "latency": "1 thread, default XNNPACK interpreter (ai-edge-litert), median of 20 after 3 warm-up",
        },
        "tools": tools,
        "models": rounded(rows),
    }


def states(row: dict) -> str:
    if not row["export"]["ok"]:
        return "export failed"
    return " ".join(f"{SHORT[t]}={row['targets'][t]['state']}" for t in TARGETS)


def fmt(value, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def table(result: dict) -> None:
    models = result["models"]
    head = f"{'model':<38}{'fp32':>8}{'int8':>8}{'a8':>8}{'cos32':>9}{'cos8':>9}{'cosa8':>9}"
    head += f"{'T onnx':>7}{'T32':>5}{'T8':>5}{'ops8':>6}{'ms32':>9}{'ms8':>9}{'8/32':>6}{'build s':>8}"
    print(head)
    passed = 0
    for name in sorted(models):
        row = models[name]
        if not row["export"]["ok"]:
            print(f"{name:<38}  export failed: {row['export']['error'][:90]}")
            continue
        t = row["targets"]
        passed += all(t[x]["state"] == "ok" for x in TARGETS)
        f32, i8, a8 = t["cpu-fp32"], t["cpu-int8"], t["axis-artpec8"]
        ratio = i8.get("latency_ms") / f32["latency_ms"] if i8.get("latency_ms") and f32.get("latency_ms") else None
        print(
            f"{name:<38}"
            + "".join(f"{_state(t[x]):>8}" for x in TARGETS)
            + f"{fmt(f32.get('cosine')):>9}{fmt(i8.get('cosine')):>9}{fmt(a8.get('cosine')):>9}"
            + f"{row['onnx']['transposes']:>7}{fmt(f32.get('transposes'), 'd'):>5}{fmt(i8.get('transposes'), 'd'):>5}"
            + f"{fmt(i8.get('ops'), 'd'):>6}{fmt(f32.get('latency_ms'), '.1f'):>9}{fmt(i8.get('latency_ms'), '.1f'):>9}"
            + f"{fmt(ratio, '.2f'):>6}{fmt(row['build']['seconds'], '.0f'):>8}"
        )
    print(
        f"\n{len(models)} models, {passed} pass all three targets "
        f"({sum(r['export']['ok'] for r in models.values())} exported)"
    )
    causes(models)


def _state(entry: dict) -> str:
    return _full_state(entry).replace("failed:", "F:")[:7]


def _full_state(entry: dict) -> str:
    """The build's state, or `abort` when the artifact built but does not run."""
    return "abort" if entry["state"] == "ok" and entry.get("run_error") else entry["state"]


def causes(models: dict) -> None:
    """Failures grouped by cause: refused ONNX ops, failing stage + first error line, run-time aborts."""
    groups = defaultdict(set)
    for name, row in models.items():
        if not row["export"]["ok"]:
            groups[f"export: {row['export']['error'][:120]}"].add(name)
            continue
        for op in row.get("refused_ops", []):
            groups[f"refused ONNX op {op}"].add(name)
        failed = {t: e for t, e in row["targets"].items() if e["state"] != "ok"}
        if row.get("refused_ops"):
            failed = {}  # the refused ops above are the cause
        for target, entry in failed.items():
            # the model's own name out of the message, so one cause groups several models
            reason = (entry["reason"] or "").replace(name, "<model>")[:120]
            shared = len(failed) == len(TARGETS) and len({e["reason"] for e in failed.values()}) == 1
            groups[f"{entry['state']}: {reason}"].add(name if shared else f"{name}/{SHORT[target]}")
            if entry.get("run_error"):
                groups[f"artifact does not run: {entry['run_error'][:120]}"].add(f"{name}/{SHORT[target]}")
    if groups:
        print("\nfailures by cause:")
    for cause in sorted(groups, key=lambda c: (-len(groups[c]), c)):
        print(f"  {len(groups[cause]):>3}  {cause}\n       {', '.join(sorted(groups[cause]))}")


def changes(old: dict, new: dict) -> list[tuple[str, str, str, str]]:
    """(model, what, old -> new, better|worse) for every change that counts."""
    out = []
    for name in sorted(set(old) & set(new)):
        a, b = old[name], new[name]
        if a["export"]["ok"] != b["export"]["ok"]:
            out.append((name, "export", f"{a['export']['ok']} -> {b['export']['ok']}", _word(b["export"]["ok"])))
        for target in TARGETS:
            ta, tb = a.get("targets", {}).get(target), b.get("targets", {}).get(target)
            if not ta or not tb:
                continue
            sa, sb = _full_state(ta), _full_state(tb)
            if sa != sb:
                out.append((name, f"{SHORT[target]} state", f"{sa} -> {sb}", _word(sb == "ok")))
            for metric, (lower, rel, absolute) in METRICS.items():
                x, y = ta.get(metric), tb.get(metric)
                if (
                    isinstance(x, (int, float))
                    and isinstance(y, (int, float))
                    and abs(y - x) > max(absolute, rel * abs(x))
                ):
                    out.append((name, f"{SHORT[target]} {metric}", f"{x:g} -> {y:g}", _word((y < x) == lower)))
        x, y = _ratio(a), _ratio(b)
        if x and y and abs(y - x) > 0.15 * x:  # a ratio within one run is steadier than ms under varying load
            out.append((name, "int8/fp32 latency", f"{x:.2f} -> {y:.2f}", _word(y < x)))
    return out


def _ratio(row: dict) -> float | None:
    t = row.get("targets") or {}
    i8, f32 = (t.get("cpu-int8") or {}).get("latency_ms"), (t.get("cpu-fp32") or {}).get("latency_ms")
    return i8 / f32 if i8 and f32 else None


def _word(good: bool) -> str:
    return "better" if good else "worse"


def compare(old: dict, new: dict) -> None:
    rows = changes(old["models"], new["models"])
    print(
        f"\n{new['tools'].get('buildsys_commit')} ({new['measured_at']}) compared with the baseline "
        f"{old['tools'].get('buildsys_commit')} ({old['measured_at']}):"
    )
    if not rows:
        print("  nothing changed beyond the noise margins")
    for word in ("better", "worse"):
        picked = [r for r in rows if r[3] == word]
        if picked:
            print(f"  {word} ({len(picked)}):")
        for name, what, change, _ in picked:
            print(f"    {name:<38}{what:<22}{change}")
    only_new = sorted(set(new["models"]) - set(old["models"]))
    if only_new:
        print(f"  not in the baseline: {', '.join(only_new)}")
