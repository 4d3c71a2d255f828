"""`buildsys inspect` on the sources that are not ONNX files: PyTorch (shown as the ONNX model the
export stage makes), TF1 graphs (placeholders and likely outputs) and Darknet cfgs (the layer table)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from buildsys.errors import UsageError
from buildsys.recipe.model import Source
from buildsys.ui import Ui

TORCH_SUFFIXES = (".pt2", ".pt", ".pth", ".ts")
HEAD = "bold"


def file_source(path: Path) -> Source | None:
    """A bare model file as the source a recipe would name, by its suffix; None for ONNX and unknowns."""
    suffix = path.suffix.lower()
    if suffix in TORCH_SUFFIXES:
        return Source("pytorch", path, str(path), options=(("exporter", "auto"), ("form", "file")))
    if suffix == ".pb":
        return Source("tf1", path, str(path), options=(("form", "graph"), ("inputs", []), ("outputs", [])))
    if suffix == ".meta":
        prefix = path.with_suffix("")
        return Source("tf1", prefix, str(prefix), options=(("form", "checkpoint"), ("inputs", []), ("outputs", [])))
    if suffix == ".cfg":
        return Source("darknet", path, str(path), parts=(("weights", path.with_suffix(".weights")),))
    return None


def exported_onnx(source: Source, shapes: dict[str, list[int]], batch: int | None, folder: Path) -> tuple[Path, str]:
    """The ONNX model the export stage would make, written in `folder`; and which exporter made it."""
    from buildsys.torchsrc import export
    from buildsys.torchsrc.load import load_model

    model = load_model(source)
    static = export.static_shapes(model, shapes, batch, source.written)
    proto, facts = export.export(model, static, source.option("exporter", "auto"), source.written)
    out = folder / "exported.onnx"
    export.write(proto, out)
    return out, facts["exporter"]


def with_exported(source: Source, shapes: dict, batch: int | None, inspect: Any) -> Any:
    """Call inspect(onnx path, label) on the PyTorch model's export, in a folder that is then removed."""
    with tempfile.TemporaryDirectory(prefix="buildsys-inspect-") as folder:
        onnx_path, exporter = exported_onnx(source, {k: list(v) for k, v in shapes.items()}, batch, Path(folder))
        return inspect(onnx_path, f"{source.written} (exported to ONNX by the {exporter} exporter)")


def show_darknet(source: Source, ui: Ui, as_json: bool) -> None:
    from buildsys.darknet.describe import layer_table, model_outputs

    rows, outputs = layer_table(source.path), model_outputs(source.path)
    if as_json:
        ui.data({"format": "darknet", "cfg": source.written, "layers": rows, "outputs": outputs})
        return
    ui.quiet = False
    ui.line(
        f"darknet cfg: {source.written} ({len(rows)} layers, {sum(r['params'] for r in rows):,} parameters)", style=HEAD
    )
    width = max((len(r["type"]) for r in rows), default=0)
    for r in rows:
        ui.line(f"  {r['index']:>3}  {r['type'].ljust(width)}  {r['output']:>14}  {r['params']:>9,}  {r['notes']}")
    ui.line()
    ui.line("outputs:", style=HEAD)
    for o in outputs:
        ui.line(f"  {o['name']}  layer {o['layer']}  {o['shape']}")
    ui.line()
    ui.line("# to paste into the recipe:", style="dim")
    weights = source.part("weights")
    ui.line(f"source:\n  darknet: {{cfg: {source.path.name}, weights: {weights.name if weights else 'NAME.weights'}}}")


def show_tf1(source: Source, ui: Ui, as_json: bool) -> None:
    from buildsys.tflow import tf1

    checkpoint = source.option("form") == "checkpoint"
    summary = tf1.checkpoint_summary(source.path) if checkpoint else tf1.graph_summary(source.path)
    if as_json:
        ui.data({"format": "tf1", "form": source.option("form"), "path": source.written, **summary})
        return
    ui.quiet = False
    what = f"checkpoint, {summary['variables']} variables" if checkpoint else "frozen graph"
    ui.line(f"tf1 {what}: {source.written} ({summary['nodes']} nodes)", style=HEAD)
    for title, tensors in (("placeholders", summary["placeholders"]), ("likely outputs", summary["likely_outputs"])):
        ui.line(f"{title}:", style=HEAD)
        for t in tensors:
            ui.line(f"  {t['name']}  {t['dtype'] or '?'}  {t['shape'] if t['shape'] is not None else 'shape unknown'}")
    ui.line(f"ops ({len(summary['ops'])} types):", style=HEAD)
    ui.line("  " + ", ".join(f"{op} {n}" for op, n in summary["ops"].items()))
    ui.line()
    ui.line("# to paste into the recipe:", style="dim")
    names = lambda ts: ", ".join(t["name"] for t in ts)  # noqa: E731
    form = "checkpoint" if checkpoint else "graph"
    ui.line(f"source:\n  tf1:\n    {form}: {source.path.name}\n    inputs: [{names(summary['placeholders'])}]")
    ui.line(f"    outputs: [{names(summary['likely_outputs'])}]")


def refuse(path: Path, fmt: str) -> UsageError:
    return UsageError(
        f"{path}: inspect reads ONNX models (and PyTorch, TF1 and Darknet ones); this is a {fmt} model",
        hint="inspect the .onnx file the model was exported to, or a recipe with such a source",
        path=str(path),
    )
