"""The report's plots as inline SVG, drawn by matplotlib.

Imported by the report stage only when it runs, so no-op builds never load
matplotlib. Output is deterministic: a fixed hash salt for matplotlib's element
ids, no date in the metadata, glyphs drawn as paths from the DejaVu Sans that
ships with matplotlib (the page looks the same with or without that font
installed). Each figure's ids get a per-figure prefix because all figures share
one HTML document's id namespace.
"""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

# rcParams for every figure; applied in a context so nothing global changes
STYLE: dict[RcKeyType, Any] = {
    "svg.hashsalt": "buildsys-report",
    "svg.fonttype": "path",
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e3e6ea",
    "axes.axisbelow": True,
}
ACCELERATOR, CPU, UNKNOWN, ERROR = "#2a9d8f", "#e76f51", "#9aa5b1", "#3d5a80"
WIDTH = 9.0  # inches; the page scales the SVG to its column
_ID = re.compile(r'\bid="([^"]+)"')
_REF = re.compile(r'(href="#|url\(#)')
_METADATA = re.compile(r"\s*<metadata>.*?</metadata>", re.S)


def _styled(draw: Callable[..., str]) -> Callable[..., str]:
    """Run `draw` under STYLE: figures read rcParams when made as well as when saved."""

    @functools.wraps(draw)
    def wrapper(*args: Any, **kwargs: Any) -> str:
        import matplotlib

        with matplotlib.rc_context(STYLE):
            return draw(*args, **kwargs)

    return wrapper


@_styled
def error_histogram(edges: Sequence[float], counts: Sequence[int], output: str, prefix: str) -> str:
    """Signed error (artifact - source) of one output over all validation samples."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH, 2.6))
    ax = fig.add_subplot()
    widths = [b - a for a, b in zip(edges[:-1], edges[1:])]
    ax.bar(edges[:-1], counts, width=widths, align="edge", color=ERROR, edgecolor="white", linewidth=0.4)
    positive = [c for c in counts if c > 0]
    if positive and max(positive) > 20 * min(positive):
        ax.set_yscale("log")  # tails matter more than the peak at zero
    ax.axvline(0.0, color="#1d1d1f", linewidth=0.8)
    ax.set_xlabel(f"{output}: artifact - source")
    ax.set_ylabel("elements")
    return _render(fig, prefix, f"error histogram of output {output}")


@_styled
def layer_errors(worst: Sequence[dict[str, Any]], prefix: str) -> str:
    """Horizontal bars of relative RMSE, worst layer on top, labelled with op and position."""
    from matplotlib.figure import Figure

    rows = [e for e in worst if e.get("relative_rmse") is not None][::-1]
    fig = Figure(figsize=(WIDTH, 0.8 + 0.32 * max(len(rows), 1)))
    ax = fig.add_subplot()
    values = [e["relative_rmse"] for e in rows]
    # the ONNX node a replacement would select, when the converter recorded it
    labels = [f"{e['op']} #{e['position']}  {_short(', '.join(e.get('nodes') or [e['tensor']]))}" for e in rows]
    bars = ax.barh(range(len(rows)), values, color=ERROR, height=0.6)
    ax.bar_label(bars, labels=[f"{v:.3g}" for v in values], padding=3, fontsize=8)
    ax.set_yticks(range(len(rows)), labels)
    ax.set_xlabel("relative RMSE (RMSE / std of the float tensor)")
    ax.grid(axis="y", visible=False)
    ax.margins(x=0.12)
    fig.tight_layout()
    return _render(fig, prefix, "relative RMSE of the worst quantized layers")


@_styled
def op_split(rows: Sequence[tuple[str, int, int, int]], prefix: str) -> str:
    """Stacked bars per op: (op, on accelerator, on CPU, placement unknown)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    rows = list(rows)[::-1]
    fig = Figure(figsize=(WIDTH, 0.9 + 0.3 * max(len(rows), 1)))
    ax = fig.add_subplot()
    y = range(len(rows))
    left = [0] * len(rows)
    counts = [(r[1], r[2], r[3]) for r in rows]
    for column, (label, color) in enumerate((("accelerator", ACCELERATOR), ("CPU", CPU), ("unknown", UNKNOWN))):
        values = [c[column] for c in counts]
        if any(values):
            ax.barh(y, values, left=left, color=color, height=0.6, label=label)
            left = [a + b for a, b in zip(left, values)]
    ax.set_yticks(y, [r[0] for r in rows])
    locator = ax.xaxis.get_major_locator()
    if isinstance(locator, MaxNLocator):  # a linear axis's AutoLocator is one
        locator.set_params(integer=True)
    ax.set_xlabel("operators")
    ax.grid(axis="y", visible=False)
    ax.legend(loc="lower right", frameon=False)
    fig.tight_layout()
    return _render(fig, prefix, "operators by placement")


def _short(name: str, limit: int = 38) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def _render(fig: Any, prefix: str, label: str) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight")
    return _inline(buf.getvalue(), prefix, label)


def _inline(svg: str, prefix: str, label: str) -> str:
    """The <svg> element alone (no XML prolog, DOCTYPE or RDF metadata), ids unique to this figure."""
    import html

    svg = _METADATA.sub("", svg[svg.index("<svg") :], count=1)
    svg = _ID.sub(lambda m: f'id="{prefix}-{m.group(1)}"', svg)
    svg = _REF.sub(lambda m: f"{m.group(1)}{prefix}-", svg)
    return svg.replace("<svg ", f'<svg role="img" aria-label="{html.escape(label)}" ', 1)
