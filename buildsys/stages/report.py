"""report: report.md per target — sizes, op histogram, metrics, stage timings.

Timings come from the stage records of this build, so report.md is volatile:
the lockfile pins its path, not its bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from buildsys.stages.base import Input, RunContext, Stage


class Report(Stage):
    kind = "report"
    VERSION = 1
    TOOLS = ("tensorflow",)
    VOLATILE = ("report",)

    def __init__(self, *args: Any, upstream: tuple[Stage, ...] = (), **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.upstream = upstream

    @property
    def validated(self) -> bool:
        return self.recipe.source.format != "tflite"

    def inputs(self) -> list[Input]:
        common, tdir = self.paths.common, self.paths.target_dir(self.target)
        out = [
            Input("source", (common / "source.json",)),
            Input("signature", (common / "signature.json",)),
            Input("model", (tdir / "model.tflite",)),
        ]
        if self.validated:
            out.append(Input("metrics", (tdir / "metrics.json",)))
        return out

    def params(self) -> dict[str, Any]:
        return {"recipe": self.recipe.name, "target": self.target.name, "device": self.device.name}

    def outputs(self) -> dict[str, Path]:
        return {"report": self.paths.target_dir(self.target) / "report.md"}

    def run(self, ctx: RunContext) -> None:
        from buildsys.stages.engine import read_record
        from buildsys.tflow.inspect import op_histogram, tensor_dtypes

        model = ctx.input("model").read_bytes()
        facts = {
            "source": _json(ctx.input("source")),
            "signature": _json(ctx.input("signature")),
            "metrics": _json(ctx.input("metrics")) if self.validated else None,
            "ops": op_histogram(model),
            "dtypes": tensor_dtypes(model),
            "size": len(model),
            "timings": [(s.local_id, read_record(ctx.env, s)) for s in self.upstream],
        }
        ctx.out["report"].write_text(render(self, facts), "utf-8")


def _json(path: Path) -> Any:
    return json.loads(path.read_text("utf-8"))


def render(stage: Report, f: dict[str, Any]) -> str:
    r, t, d = stage.recipe, stage.target, stage.device
    src = f["source"]
    lines = [
        f"# {r.name} / {t.name}",
        "",
        f"- device: `{d.name}` ({d.description})",
        f"- source: `{r.source.written}` ({src['format']}, {_size(src['size'])}, sha256 `{src['sha256']}`)",
        f"- artifact: `model.tflite`, {_size(f['size'])} ({f['size'] / max(src['size'], 1):.1%} of the source)",
        f"- input/output dtypes: {_dtypes(f['dtypes'])}",
        "",
        "## Signature",
        "",
        "| io | name | shape | dtype |",
        "|---|---|---|---|",
    ]
    for io in ("inputs", "outputs"):
        for tensor in f["signature"][io]:
            lines.append(f"| {io[:-1]} | `{tensor['name']}` | {tensor['shape']} | {tensor['dtype']} |")
    lines += ["", "## Operators", "", "| op | count |", "|---|---|"]
    lines += [f"| {op} | {n} |" for op, n in f["ops"].items()]
    lines += ["", *_metrics(f["metrics"]), "", "## Stage timings", "", "| stage | outcome | seconds |", "|---|---|---|"]
    for local_id, rec in f["timings"]:
        lines.append(f"| {local_id} | {rec.get('outcome', '-')} | {rec.get('seconds', '-')} |")
    return "\n".join(lines) + "\n"


def _metrics(metrics: dict[str, Any] | None) -> list[str]:
    if metrics is None:
        return ["## Validation", "", "Not validated: a TFLite source has no reference model."]
    verdict = "passed" if metrics["passed"] else "FAILED"
    out = [
        "## Validation",
        "",
        f"{metrics['samples']} samples ({metrics['data']} data); thresholds {metrics['thresholds'] or 'none'}: **{verdict}**",
        "",
        "| output | max abs error | mean abs error | cosine | min cosine | top-1 agreement |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in metrics["outputs"].items():
        top1 = f"{m['top1_agreement']:.1%}" if "top1_agreement" in m else "-"
        out.append(
            f"| `{name}` | {m['max_abs_error']:.6g} | {m['mean_abs_error']:.6g} | "
            f"{m['cosine']:.6f} | {m['min_cosine']:.6f} | {top1} |"
        )
    return out


def _dtypes(dtypes: Any) -> str:
    if isinstance(dtypes, dict):
        return ", ".join(f"{k}: {v}" for k, v in sorted(dtypes.items()))
    return str(dtypes)


def _size(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n < 1 << 20 else f"{n / (1 << 20):.2f} MiB"
