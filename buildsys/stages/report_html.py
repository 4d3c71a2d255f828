"""report.html: the facts of one target as one self-contained page.

No network fetches and no JavaScript: inline CSS, plots as inline SVG
(buildsys.stages.plots). Every piece of text from a model, recipe or device
profile is escaped. Sections are a registry, rendered in order; a section with
nothing to show returns "" and is left out of the page and its navigation.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

from buildsys.compat.check import op_name, render_kernel_notes
from buildsys.stages import plots
from buildsys.stages.facts import ReportFacts
from buildsys.stages.metrics import THRESHOLDS
from buildsys.stages.report_md import (
    failure_lines,
    has_accuracy,
    not_validated_reason,
    quantization,
    short_key,
    size_text,
    target_verdict,
)

# One page, one look: kept here so the page needs no stylesheet from anywhere.
# code{overflow-wrap:anywhere}, not break-word: only `anywhere` lowers a cell's minimum
# width, so a long fused tensor name wraps instead of widening its table past the page.
CSS = """
:root{--fg:#1d1d1f;--muted:#5f6b7a;--line:#e3e6ea;--bg:#f6f7f9;--ok:#1a7f37;--bad:#c62828;--warn:#9a6700;--acc:#2a9d8f;--cpu:#e76f51}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif}
main{max-width:1040px;margin:0 auto;padding:24px}
header{display:flex;align-items:center;justify-content:space-between;gap:16px}
h1{font-size:22px;margin:0}
h2{font-size:17px;margin:0 0 10px}
nav{margin:10px 0 18px;font-size:13px}
nav a{margin-right:12px;color:var(--muted)}
section{background:#fff;border:1px solid var(--line);border-radius:8px;padding:16px 18px;margin:0 0 16px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{border-bottom:1px solid var(--line);padding:5px 8px;text-align:left;vertical-align:top}
th{background:var(--bg);font-weight:600}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
td.miss{color:var(--bad);font-weight:600}
code,pre{font-family:ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:12px}
code{overflow-wrap:anywhere}
pre{background:var(--bg);border:1px solid var(--line);border-radius:6px;padding:10px;overflow:auto}
.badge{display:inline-block;padding:3px 10px;border-radius:12px;font-weight:600;color:#fff;white-space:nowrap}
.badge.passed{background:var(--ok)}.badge.failed{background:var(--bad)}.badge.unvalidated{background:var(--muted)}
.card{display:grid;grid-template-columns:170px 1fr;gap:6px 14px;margin:0}
.card dt{color:var(--muted)}.card dd{margin:0}
.meter{height:8px;background:var(--line);border-radius:4px;max-width:320px;margin-top:4px}
.meter span{display:block;height:8px;border-radius:4px;background:var(--acc)}
.muted{color:var(--muted)}.bad{color:var(--bad)}.warn{color:var(--warn)}
figure{margin:8px 0 14px}figcaption{color:var(--muted);font-size:12px}
svg{max-width:100%;height:auto}
"""

# (column heading, metrics.json key, format) of the metrics table
METRIC_COLUMNS = (
    ("max abs error", "max_abs_error", ".6g"),
    ("mean abs error", "mean_abs_error", ".6g"),
    ("RMSE", "rmse", ".6g"),
    ("SNR dB", "snr_db", ".1f"),
    ("cosine", "cosine", ".6f"),
    ("min cosine", "min_cosine", ".6f"),
    ("top-1", "top1_agreement", ".1%"),
    ("top-5", "top5_agreement", ".1%"),
    ("NaN/Inf", "nonfinite", "d"),
)
LABEL_COLUMNS = (  # shown only when validate.labels gave some output an accuracy
    ("source accuracy", "source_accuracy", ".1%"),
    ("accuracy", "accuracy", ".1%"),
    ("accuracy drop", "accuracy_drop", ".2%"),
)
VERDICT_WORDS = MappingProxyType({"passed": "passed", "failed": "FAILED", "unvalidated": "not validated"})
LAYER_COLUMNS = (("relative_rmse", ".4g"), ("rmse_over_scale", ".3g"), ("cosine", ".5f"))


class Raw(str):
    """HTML made here (tags, escaped text): inserted as it is.

    Markup joined to markup stays markup: a plain `str` result would be escaped
    whole, tags included. (Joined to plain text it is plain text, as for str.)
    """

    def __add__(self, other: str) -> str:
        joined = str.__add__(self, other)
        return Raw(joined) if isinstance(other, Raw) else joined


def esc(value: Any) -> str:
    return value if isinstance(value, Raw) else html.escape(str(value))


def render_html(stage: Any, facts: ReportFacts) -> str:
    title = f"{stage.recipe.name} / {stage.target.name}"
    parts = [(sid, name, make(stage, facts)) for sid, (name, make) in SECTIONS.items()]
    parts = [(sid, name, body) for sid, name, body in parts if body]
    nav = " ".join(f'<a href="#{sid}">{esc(name)}</a>' for sid, name, _ in parts)
    sections = "\n".join(f'<section id="{sid}">\n<h2>{esc(name)}</h2>\n{body}\n</section>' for sid, name, body in parts)
    verdict, _ = _verdict(facts)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)} · buildsys report</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n"
        f"<header><h1>{esc(title)}</h1>{_badge(verdict)}</header>\n"
        f"<nav>{nav}</nav>\n{sections}\n</main>\n</body>\n</html>\n"
    )


# -- small builders -------------------------------------------------------------------


def table(headers: list[Any], rows: list[list[Any]], numeric: frozenset[int] = frozenset(), **attrs: str) -> str:
    """A table; columns in `numeric` are right-aligned. A cell may be (value, extra class)."""
    attr = "".join(f' {k}="{esc(v)}"' for k, v in attrs.items())
    head = "".join(f"<th{_cls(i, numeric)}>{esc(h)}</th>" for i, h in enumerate(headers))
    body = "\n".join("<tr>" + "".join(_td(i, c, numeric) for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table{attr}>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def _td(i: int, cell: Any, numeric: frozenset[int]) -> str:
    value, extra = cell if isinstance(cell, tuple) else (cell, "")
    return f"<td{_cls(i, numeric, extra)}>{esc(value)}</td>"


def _cls(i: int, numeric: frozenset[int], extra: str = "") -> str:
    names = " ".join(n for n in ("num" if i in numeric else "", extra) if n)
    return f' class="{names}"' if names else ""


def cosine_text(value: float) -> str:
    """Six decimals, cut rather than rounded: 0.9999996 is not a perfect match and must not read 1.000000."""
    return f"{value:.9f}"[:-3]


def code(text: Any) -> Raw:
    return Raw(f"<code>{esc(text)}</code>")


def para(*parts: Any) -> str:
    return "<p>" + "".join(esc(p) for p in parts) + "</p>"


def figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{esc(caption)}</figcaption></figure>"


def _badge(verdict: str) -> Raw:
    return Raw(f'<span class="badge {verdict}">{VERDICT_WORDS[verdict]}</span>')


def _verdict(f: ReportFacts) -> tuple[str, list[tuple[str, str]]]:
    metrics = f.metrics
    if metrics is None:
        return "unvalidated", []
    return ("passed" if metrics["passed"] else "failed"), failure_lines(metrics)


# -- sections -------------------------------------------------------------------------


def summary(stage: Any, f: ReportFacts) -> str:
    r, t, d, src = stage.recipe, stage.target, stage.device, f.source
    share = f.size / max(src["size"], 1)
    rows = [
        ("status", _status_line(f, d)),
        ("recipe", Raw(f"{esc(r.name)} ({_a(f.recipe_href, r.path.name)})")),
        ("target", t.name),
        ("device", Raw(f"{code(d.name)} {esc(d.description)}")),
        ("source", Raw(f"{code(r.source.written)} {esc(src['format'])}, {esc(size_text(src['size']))}")),
        ("source sha256", code(src["sha256"])),
        (
            "artifact",
            Raw(f"{code(d.artifact_name)} {esc(size_text(f.size))}, {share:.1%} of the source") + _meter(share),
        ),
        ("quantization", quantization(d)),
        ("validation", _validation_line(stage, f)),
        ("device check", _placement_line(f.compat, d)),
    ]
    if f.compile is not None:
        rows.append(("compiler", _compiler_line(f.compile)))
    items = "\n".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in rows)
    return f'<dl class="card">\n{items}\n</dl>'


def _meter(share: float) -> Raw:
    bar = f'<span style="width:{min(share, 1):.1%}"></span>'
    return Raw(f'<div class="meter" title="artifact size / source size">{bar}</div>')


def _a(href: str, text: str) -> Raw:
    return Raw(f'<a href="{esc(href)}">{esc(text)}</a>')


def _status_line(f: ReportFacts, d: Any) -> Raw:
    verdict, missed = target_verdict(f, d)
    items = "".join(f"<li>{esc(line)}</li>" for line in missed)
    return Raw(str(_badge(verdict)) + (f'<ul class="bad">{items}</ul>' if items else ""))


def _validation_line(stage: Any, f: ReportFacts) -> Raw:
    verdict, missed = _verdict(f)
    m = f.metrics
    if m is None:  # _verdict's "unvalidated"
        return Raw(f"{_badge(verdict)} {esc(not_validated_reason(stage.device))}")
    text = f"{_badge(verdict)} {esc(m['samples'])} samples ({esc(m['data'])} data)"
    if missed:
        items = "".join(f"<li>{code(name)}: {esc(line)}</li>" for name, line in missed)
        text += f'<ul class="bad">{items}</ul>'
    return Raw(text)


def _placement_line(compat: dict[str, Any], d: Any) -> str:
    s = compat["summary"]
    text = f"{s['accelerator']} of {s['ops']} operators on {d.name}'s accelerator, {s['cpu']} on the CPU"
    return text + (f", {s['unsupported']} unsupported" if s["unsupported"] else "")


def _compiler_line(summary: dict[str, Any]) -> str:
    if summary.get("status") == "not-installed":
        return f"{summary['tool']} is not installed: the artifact is not compiled"
    return f"{summary.get('tool', '?')} {summary.get('version', '')}: {summary.get('status', 'done')}"


def metrics_section(stage: Any, f: ReportFacts) -> str:
    m = f.metrics
    if m is None:
        return para(f"Not validated: {not_validated_reason(stage.device)}.")
    given = m["thresholds"]
    limits = {metric: (kind, given[name]) for name, (metric, kind) in THRESHOLDS.items() if name in given}
    columns = METRIC_COLUMNS + (LABEL_COLUMNS if has_accuracy(m) else ())
    headers = ["output"] + [_header(label, limits.get(key)) for label, key, _ in columns]
    rows = [
        [code(name)] + [_metric_cell(out, key, spec, limits.get(key)) for _, key, spec in columns]
        for name, out in m["outputs"].items()
    ]
    intro = para(
        f"{m['samples']} samples ({m['data']} data), artifact against the source model. "
        f"Thresholds: {_thresholds(m['thresholds'])}."
    )
    missed = failure_lines(m)
    tail = "".join(f'<p class="bad">{code(n)}: {esc(line)}</p>' for n, line in missed)
    numeric = frozenset(range(1, len(headers)))
    return intro + table(headers, rows, numeric, id="metrics", **{"class": "metrics"}) + tail


def _header(label: str, limit: tuple[str, float] | None) -> str:
    if limit is None:
        return label
    kind, value = limit
    return f"{label} ({'≥' if kind == 'min' else '≤'} {value:g})"


def _metric_cell(out: dict[str, Any], key: str, spec: str, limit: tuple[str, float] | None) -> Any:
    if key not in out:
        return "-"
    value = out[key]
    text = cosine_text(value) if key in ("cosine", "min_cosine") else format(value, spec)
    missed = key == "nonfinite" and value > 0
    if limit is not None:
        kind, bound = limit
        missed = value < bound if kind == "min" else value > bound
    return (text, "miss" if missed else "")


def _thresholds(thresholds: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in thresholds.items()) or "none (NaN/Inf always fail)"


def histograms(stage: Any, f: ReportFacts) -> str:
    outputs = (f.metrics or {}).get("outputs", {})
    figs = [
        figure(
            plots.error_histogram(h["edges"], h["counts"], name, f"hist{i}"),
            f"{name}: signed error of every output element over all validation samples "
            f"({sum(h['counts'])} elements, {len(h['counts'])} bins)",
        )
        for i, (name, out) in enumerate(outputs.items())
        if (h := out.get("error_histogram")) and h.get("counts")
    ]
    return "\n".join(figs)


def layers(stage: Any, f: ReportFacts) -> str:
    data = (f.metrics or {}).get("layers")
    if not data or not data.get("quantized") or not data.get("worst"):
        return ""
    intro = para(
        f"{data['tensors_compared']} quantized tensors compared (dequantized) with the float model on "
        f"{data['samples']} samples ({data['unmatched']} unmatched); worst first by {data['ranking']}."
    )
    svg = plots.layer_errors(data["worst"], "layers")
    named = any("nodes" in e for e in data["worst"])
    chart = figure(svg, f"relative RMSE of the worst layers: op type, position, {'ONNX node' if named else 'tensor'}")
    rows = [
        [e["position"], e["op"]]
        + ([code(", ".join(e["nodes"])) if e.get("nodes") else "-"] if named else [])
        + [code(e["tensor"])]
        + [_num(e.get(key), spec) for key, spec in LAYER_COLUMNS]
        for e in data["worst"]
    ]
    head = ["#", "op"] + (["ONNX node"] if named else []) + ["tensor", "relative RMSE", "RMSE / scale", "cosine"]
    numeric = frozenset({0, len(head) - 3, len(head) - 2, len(head) - 1})
    return intro + chart + table(head, rows, numeric, id="layers")


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def operators(stage: Any, f: ReportFacts) -> str:
    split = f.compat["summary"].get("by_op", {})
    rows = [(op, *_placement(split.get(op), n)) for op, n in f.ops.items()]
    caption = "operators of the artifact by type, split by where they run on the device"
    chart = figure(plots.op_split(rows, "ops"), caption)
    body = [[code(op), acc + cpu + unknown, acc, cpu] for op, acc, cpu, unknown in rows]
    head = ["op", "count", "on accelerator", "on CPU"]
    return chart + table(head, body, frozenset({1, 2, 3}), id="operators") + _signature(f)


def _placement(where: dict[str, int] | None, n: int) -> tuple[int, int, int]:
    """(accelerator, CPU, unknown): an op the check did not place is shown as such, not guessed."""
    acc, cpu = (where or {}).get("accelerator", 0), (where or {}).get("cpu", 0)
    return acc, cpu, max(n - acc - cpu, 0)


def _signature(f: ReportFacts) -> str:
    sig = f.signature
    if not sig:
        return ""
    rows = [
        [io[:-1], code(t.name), str(t.shape), (f.dtypes or {}).get(io, {}).get(t.name, t.dtype)]
        for io, tensors in (("inputs", sig.inputs), ("outputs", sig.outputs))
        for t in tensors
    ]
    return "<h3>Signature</h3>" + table(["io", "name", "shape", "dtype"], rows, id="signature")


def device_check(stage: Any, f: ReportFacts) -> str:
    compat, d = f.compat, stage.device
    s = compat["summary"]
    out = para(
        f"{s['ops']} operators: {s['accelerator']} on {d.name}'s accelerator, {s['cpu']} on the CPU, "
        f"{s['unsupported']} unsupported (partition: {compat['partition']}; on_unsupported: {d.on_unsupported})."
    )
    first = s.get("first_unsupported")
    if first:
        out += para("First unsupported operator: #", first["index"], " ", first["op"], " ", code(op_name(first)), ".")
    bad = [
        [op["index"], op["op"], code(op_name(op)), op["placement"], "; ".join(op["reasons"])]
        for op in compat["ops"]
        if not op["supported"]
    ]
    if bad:
        out += table(["#", "op", "name", "runs on", "reason"], bad, frozenset({0}), id="unsupported")
    io = [f"#{op['index']} {op['op']} ({op['io_conversion']})" for op in compat["ops"] if op.get("io_conversion")]
    if io:
        out += para(
            "IO conversions buildsys added for the device's uint8 IO, on the CPU as the device's rules "
            f"do not take them (nothing to fix): {'; '.join(io)}."
        )
    tensors = "".join(f"<li>tensor {code(t['name'])}: {esc(t['reason'])}</li>" for t in compat.get("tensors", []))
    tensors += "".join(f"<li>{esc(line)}</li>" for line in render_kernel_notes(compat))
    return out + (f"<ul>{tensors}</ul>" if tensors else "")


def compiler(stage: Any, f: ReportFacts) -> str:
    summary = f.compile
    if summary is None:
        return ""
    if summary.get("status") == "not-installed":
        return para(code(summary["tool"]), " is not installed: the artifact is not compiled. ", summary["install"])
    rows = [[k, _value(v)] for k, v in sorted(summary.items())]
    return table(["field", "value"], rows, id="compiler")


def _value(v: Any) -> str:
    if isinstance(v, list):
        return ", ".join(str(x) for x in v) or "-"
    return str(v)


def next_steps(stage: Any, f: ReportFacts) -> str:
    steps = stage.device.docs.get("next_steps")
    return para(steps.strip()) if steps else ""


def timings(stage: Any, f: ReportFacts) -> str:
    rows: list[list[Any]] = []
    outcomes: dict[str, int] = {}
    for local_id, rec in f.timings:
        outcome = rec.get("outcome", "-")
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        # the only numbers that differ between two builds of the same inputs: marked for diffing
        rows.append([local_id, outcome, (_seconds(rec.get("seconds")), "seconds"), code(short_key(rec))])
    counts = ", ".join(f"{n} {word}" for word, n in sorted(outcomes.items()))
    intro = para(
        f"The stages this report reads from, as they last ran: {counts}. "
        '"restored" is a cache hit (outputs restored from .buildsys/cache by key); '
        '"ran" means the stage computed its outputs. Each key starts the ',
        code("key"),
        " of that stage in the lockfile ",
        code(f.lock_name),
        ".",
    )
    return intro + table(["stage", "outcome", "seconds", "key"], rows, frozenset({2}), id="timings")


def _seconds(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "-"


def recipe(stage: Any, f: ReportFacts) -> str:
    r = stage.recipe
    digest = para(
        "recipe digest ",
        code(r.digest),
        " (sha256 of the recipe's canonical data, blind to comments and key order; the lockfile ",
        code(f.lock_name),
        ", written after the build, records it as ",
        code("recipe_digest"),
        ").",
    )
    link = para(
        _a(f.recipe_href, r.path.name),
        " as read when this report was made (an edit that changes nothing this target depends on,"
        " a comment for one, does not remake it):",
    )
    return digest + link + f'<pre id="recipe-text">{esc(f.recipe_text)}</pre>'


Section = Callable[[Any, ReportFacts], str]
# section id (distinct from the tables' ids) -> (heading, renderer); page order
SECTIONS: MappingProxyType[str, tuple[str, Section]] = MappingProxyType(
    {
        "summary": ("Summary", summary),
        "validation": ("Metrics", metrics_section),
        "histograms": ("Error histograms", histograms),
        "layer-error": ("Per-layer quantization error", layers),
        "ops": ("Operators", operators),
        "check": ("Device check", device_check),
        "compile": ("Compiler", compiler),
        "next": ("Next steps", next_steps),
        "stages": ("Stage timings and cache hits", timings),
        "recipe": ("Recipe", recipe),
    }
)
