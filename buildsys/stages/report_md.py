"""report.md: the facts of one target, rendered for people.

The small wording helpers (quantization, sizes, why a target is not validated,
what failed) are shared with report.html and the workspace index.
"""

from __future__ import annotations

from typing import Any

from buildsys.compat.check import op_name, render_kernel_notes
from buildsys.signature import Signature
from buildsys.stages.facts import ReportFacts


def render(stage: Any, f: ReportFacts) -> str:
    r, t, d = stage.recipe, stage.target, stage.device
    src = f.source
    lines = [
        f"# {r.name} / {t.name}",
        "",
        f"- device: `{d.name}` ({d.description})",
        f"- source: `{r.source.written}` ({src['format']}, {size_text(src['size'])}, sha256 `{src['sha256']}`)",
        f"- artifact: `{d.artifact_name}`, {size_text(f.size)} ({f.size / max(src['size'], 1):.1%} of the source)",
        f"- quantization: {quantization(d)}",
        f"- status: {_status(f, d)}",
    ]
    lines += _signature(f.signature, f.dtypes)
    lines += _operators(f.ops, f.compat)
    lines += ["", *_metrics(f.metrics, d)]
    lines += _layers((f.metrics or {}).get("layers"))
    lines += _check(f.compat, d)
    lines += _compiled(f.compile)
    lines += _next_steps(d)
    lines += ["", "## Stage timings", "", f"Keys are the start of each stage's `key` in `{f.lock_name}`.", ""]
    lines += ["| stage | outcome | seconds | key |", "|---|---|---|---|"]
    for local_id, rec in f.timings:
        lines.append(f"| {local_id} | {rec.get('outcome', '-')} | {rec.get('seconds', '-')} | `{short_key(rec)}` |")
    return "\n".join(lines) + "\n"


def target_verdict(f: ReportFacts, d: Any) -> tuple[str, list[str]]:
    """passed | failed | unvalidated, with every reason the target failed."""
    missed = [f"validation, output {name}: {line}" for name, line in failure_lines(f.metrics)]
    unsupported = f.compat["summary"]["unsupported"]
    if d.on_unsupported == "fail" and unsupported:
        missed.append(
            f"device check: {unsupported} operator{'s' if unsupported != 1 else ''} {d.name} cannot run (on_unsupported: fail)"
        )
    if missed:
        return "failed", missed
    return ("passed" if f.metrics else "unvalidated"), []


def _status(f: ReportFacts, d: Any) -> str:
    verdict, missed = target_verdict(f, d)
    words = {"passed": "passed", "failed": "**FAILED**", "unvalidated": "not validated"}
    return words[verdict] + "".join(f"\n  - {line}" for line in missed)


def short_key(record: dict[str, Any]) -> str:
    """Enough of a stage key to find it in the lockfile."""
    return str(record.get("key", "-"))[:16]


def quantization(d: Any) -> str:
    if d.format == "onnx":
        return "none (the vendor toolchain quantizes the ONNX model)"
    if d.mode in ("none", "fp16"):
        return d.mode
    granularity = "per-channel" if d.per_channel else "per-tensor"
    return f"{d.mode}, {granularity} weights, {d.input_type} in, {d.output_type} out"


def _signature(signature: Signature | None, dtypes: dict[str, Any] | None) -> list[str]:
    """IO names and shapes of the float model, element types of the artifact itself."""
    if not signature:
        return []
    lines = ["", "## Signature", "", "| io | name | shape | dtype |", "|---|---|---|---|"]
    for io, tensors in (("inputs", signature.inputs), ("outputs", signature.outputs)):
        for tensor in tensors:
            dtype = (dtypes or {}).get(io, {}).get(tensor.name, tensor.dtype)
            lines.append(f"| {io[:-1]} | `{tensor.name}` | {tensor.shape} | {dtype} |")
    return lines


def _operators(ops: dict[str, int], compat: dict[str, Any]) -> list[str]:
    split = compat["summary"].get("by_op", {})
    lines = ["", "## Operators", "", "| op | count | on accelerator | on CPU |", "|---|---|---|---|"]
    for op, n in ops.items():
        where = split.get(op, {})
        lines.append(f"| {op} | {n} | {where.get('accelerator', '-')} | {where.get('cpu', '-')} |")
    return lines


def _check(compat: dict[str, Any], d: Any) -> list[str]:
    s = compat["summary"]
    lines = [
        "",
        "## Device check",
        "",
        f"{s['ops']} operators: {s['accelerator']} on {d.name}'s accelerator, {s['cpu']} on the CPU, "
        f"{s['unsupported']} unsupported (partition: {compat['partition']}; on_unsupported: {d.on_unsupported}).",
    ]
    first = s.get("first_unsupported")
    if first:
        lines.append(f"First unsupported operator: #{first['index']} {first['op']} `{op_name(first)}`.")
    bad = [op for op in compat["ops"] if not op["supported"]]
    if bad:
        lines += ["", "| # | op | name | reason |", "|---|---|---|---|"]
        lines += [f"| {op['index']} | {op['op']} | `{op_name(op)}` | {'; '.join(op['reasons'])} |" for op in bad]
    lines += [f"- tensor `{t['name']}`: {t['reason']}" for t in compat.get("tensors", [])]
    lines += [f"- {line}" for line in render_kernel_notes(compat)]
    return lines


def _compiled(summary: dict[str, Any] | None) -> list[str]:
    if summary is None:
        return []
    lines = ["", "## Compiler", ""]
    if summary.get("status") == "not-installed":
        return lines + [f"`{summary['tool']}` is not installed: the artifact is not compiled. {summary['install']}"]
    lines += ["| field | value |", "|---|---|"]
    lines += [f"| {k} | {_value(v)} |" for k, v in sorted(summary.items()) if k != "status"]
    return lines


def _value(v: Any) -> str:
    if isinstance(v, list):
        return ", ".join(str(x) for x in v) or "-"
    return str(v)


def _next_steps(d: Any) -> list[str]:
    steps = d.docs.get("next_steps")
    return ["", "## Next steps", "", steps.strip()] if steps else []


def _metrics(metrics: dict[str, Any] | None, d: Any) -> list[str]:
    if metrics is None:
        return ["## Validation", "", f"Not validated: {not_validated_reason(d)}."]
    verdict = "passed" if metrics["passed"] else "FAILED"
    out = [
        "## Validation",
        "",
        f"{metrics['samples']} samples ({metrics['data']} data); thresholds {metrics['thresholds'] or 'none'}: **{verdict}**",
        "",
        "| output | max abs error | mean abs error | RMSE | SNR dB | cosine | min cosine | top-1 | top-5 | NaN/Inf |"
        + (" source accuracy | accuracy | accuracy drop |" if has_accuracy(metrics) else ""),
        "|---|---|---|---|---|---|---|---|---|---|" + ("---|---|---|" if has_accuracy(metrics) else ""),
    ]
    for name, m in metrics["outputs"].items():
        row = (
            f"| `{name}` | {m['max_abs_error']:.6g} | {m['mean_abs_error']:.6g} | {m['rmse']:.6g} | "
            f"{m['snr_db']:.1f} | {m['cosine']:.6f} | {m['min_cosine']:.6f} | {_share(m, 'top1_agreement')} | "
            f"{_share(m, 'top5_agreement')} | {m['nonfinite']} |"
        )
        if has_accuracy(metrics):
            row += f" {_share(m, 'source_accuracy')} | {_share(m, 'accuracy')} | {_share(m, 'accuracy_drop', '.2%')} |"
        out.append(row)
    failures = [f"- `{name}`: {line}" for name, line in failure_lines(metrics)]
    return out + (["", "Missed:", *failures] if failures else [])


def not_validated_reason(d: Any) -> str:
    if d.format == "onnx":
        return "the artifact is the prepared ONNX model itself"
    return "a TFLite source has no reference model"


def failure_lines(metrics: dict[str, Any] | None) -> list[tuple[str, str]]:
    """(output, what was missed and by how much) for every missed threshold."""
    return [(name, line) for name, lines in (metrics or {}).get("failures", {}).items() for line in lines]


def _layers(layers: dict[str, Any] | None) -> list[str]:
    """The quantized tensors that lost the most, so the user knows where to look."""
    if not layers or not layers.get("quantized"):
        return []
    lines = [
        "",
        "## Per-layer quantization error",
        "",
        f"{layers['tensors_compared']} quantized tensors compared with the float model on {layers['samples']} "
        f"samples ({layers['unmatched']} unmatched); worst first by {layers['ranking']}.",
        "",
    ]
    named = any("nodes" in e for e in layers["worst"])
    lines += [
        "| # | op |" + (" ONNX node |" if named else "") + " tensor | relative RMSE | RMSE / scale | cosine |",
        "|---|---|" + ("---|" if named else "") + "---|---|---|---|",
    ]
    for e in layers["worst"]:
        rel = "-" if e["relative_rmse"] is None else f"{e['relative_rmse']:.4g}"
        node = (f" `{', '.join(e['nodes'])}` |" if e.get("nodes") else " - |") if named else ""
        lines.append(
            f"| {e['position']} | {e['op']} |{node} `{e['tensor']}` | {rel} | {e['rmse_over_scale']:.3g} | {e['cosine']:.5f} |"
        )
    return lines


def _share(m: dict[str, Any], key: str, spec: str = ".1%") -> str:
    return format(m[key], spec) if key in m else "-"


def has_accuracy(metrics: dict[str, Any] | None) -> bool:
    """Whether validate.labels gave some output an accuracy."""
    return any("accuracy" in m for m in (metrics or {}).get("outputs", {}).values())


def size_text(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n < 1 << 20 else f"{n / (1 << 20):.2f} MiB"
