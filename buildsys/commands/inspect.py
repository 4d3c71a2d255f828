"""`buildsys inspect MODEL|RECIPE [--op TYPE ...]`: what a model holds and what to put in its recipe."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text

from buildsys.errors import InputError
from buildsys.ui import Ui

if TYPE_CHECKING:  # the command imports onnx only when it runs
    from buildsys.inspect import Report
    from buildsys.inspect.model import Tensor
    from buildsys.recipe.model import Recipe, Source

RECIPE_SUFFIXES = (".yaml", ".yml")
OTHER_MODELS = (".tflite", ".keras", ".h5")
REFUSED = ("keras", "saved_model", "tflite")  # TensorFlow's own formats: inspect their ONNX export
DYNAMIC = "bold yellow"
HEAD = "bold"
WIDTH = 80  # what plain output is laid out for
UNITS = ("bytes", "kB", "MB", "GB")


def run(args: Any, ui: Ui) -> int:
    root = Path(args.directory or ".")
    source, recipe = _source(Path(args.model), root)
    if source.format in ("tf1", "darknet"):
        from buildsys.commands import inspect_sources

        show_source = inspect_sources.show_tf1 if source.format == "tf1" else inspect_sources.show_darknet
        show_source(source, ui, args.json)
        return 0
    report = _report(source, recipe, tuple(args.op or ()), root)
    if args.json:
        ui.data(report.to_json())
        return 0
    ui.quiet = False  # the report is what was asked for, as with `devices NAME`
    show(report, ui)
    return 0


def _report(source: Source, recipe: Recipe | None, ops: tuple[str, ...], root: Path) -> Report:
    from buildsys.documents.files import absolute, shown_path
    from buildsys.inspect import FromRecipe, inspect_model

    exported = source.format == "pytorch"
    fixes = None
    if recipe is not None:  # an export applies the shapes itself: the recipe's edits and cut remain
        shapes, batch = ({}, None) if exported else (dict(recipe.shapes), recipe.batch)
        fixes = FromRecipe(str(recipe.path), shapes, batch, recipe.replacements, recipe.outputs, recipe.path)
    if exported:
        from buildsys.commands.inspect_sources import with_exported

        shapes, batch = (recipe.shapes, recipe.batch) if recipe else ({}, None)
        return with_exported(
            source, shapes, batch, lambda path, label: inspect_model(path, ops, recipe=fixes, label=label)
        )
    label = source.written if recipe is None else shown_path(source.path, absolute(root))
    _check_readable(source.path, label)
    return inspect_model(source.path, ops=ops, recipe=fixes, label=label)


def _source(given: Path, root: Path) -> tuple[Source, Recipe | None]:
    """What to inspect and the recipe it came from; like make -C, `given` is relative to the workspace."""
    from buildsys.commands.inspect_sources import file_source, refuse

    path = root / given
    if not path.exists() and not path.with_name(path.name + ".meta").exists():
        raise InputError(f"{path} does not exist", hint="give a model file or a recipe .yaml", path=str(path))
    if path.suffix in RECIPE_SUFFIXES:
        from buildsys.recipe import RecipeLoader

        recipe = RecipeLoader().load(given, root)
        if recipe.source.format in REFUSED:
            raise refuse(path, recipe.source.format)
        return recipe.source, recipe
    if path.is_dir() or path.suffix.lower() in OTHER_MODELS:
        raise refuse(path, "SavedModel" if path.is_dir() else path.suffix)
    found = file_source(path) if not path.is_dir() else None
    if found is None and not path.exists():  # a checkpoint prefix
        found = file_source(path.with_name(path.name + ".meta"))
    from buildsys.recipe.model import Source

    return found or Source("onnx", path, str(given)), None


def _check_readable(model: Path, label: str) -> None:
    """/dev/zero or a FIFO would never finish loading."""
    from buildsys.limits import MAX_MODEL_BYTES, file_problem

    if problem := file_problem(model, MAX_MODEL_BYTES, "models"):
        raise InputError(f"{label} {problem}", hint="give the model file itself", path=str(model))


def show(report: Report, ui: Ui) -> None:
    for section in (_header, _io, _histogram, _nodes, _unsupported, _quantized, _post_processing, _snippets):
        section(report, ui)


def _header(report: Report, ui: Ui) -> None:
    h = report.header
    ui.line(f"model: {h.file} ({_size(h.size)})", style=HEAD)
    if report.recipe is not None:
        applied = [f"shapes for {', '.join(report.recipe.shapes)}"] if report.recipe.shapes else []
        applied += [f"batch {report.recipe.batch}"] if report.recipe.batch is not None else []
        applied += [f"cut at {len(report.recipe.outputs)} outputs"] if report.recipe.outputs else []
        edits = len(report.recipe.replacements)
        applied += [f"{edits} replacement{'s' if edits != 1 else ''}"] if edits else []
        ui.line(f"  from recipe {report.recipe.path}; applied: {'; '.join(applied) or 'nothing'}")
    opsets = ", ".join(f"{domain} {version}" for domain, version in h.opsets.items())
    ui.line(f"  IR version {h.ir_version}; opsets: {opsets or 'none'}")
    producer = " ".join(p for p in (h.producer, h.producer_version) if p)
    ui.line(f"  producer: {producer or 'not recorded'}")
    ui.line(f"  nodes: {h.node_count}; initializers: {h.initializers} ({h.parameters:,} parameters)")


def _size(n: int) -> str:
    power = min(len(UNITS) - 1, (len(str(n)) - 1) // 3)  # thousands
    return f"{n} {UNITS[0]}" if power == 0 else f"{n / 1000**power:.1f} {UNITS[power]}"


def _io(report: Report, ui: Ui) -> None:
    still = sum(t.dynamic for t in report.applied)
    after = " after the recipe" if report.recipe is not None else ""
    ui.line()
    ui.line(f"inputs ({still} with dynamic dims{after}):" if still else "inputs:", style=HEAD)
    rows = [(t, a) for t, a in zip(report.inputs, report.applied)]
    width = max((len(t.name) for t in [*report.inputs, *report.outputs]), default=0)
    dtypes = max((len(t.dtype) for t in [*report.inputs, *report.outputs]), default=0)
    for declared, applied in rows:
        line = _tensor_line(applied, width, dtypes)
        if applied.dims != declared.dims:
            line.append("  (recipe; the model has ")
            line.append_text(_dims(declared))
            line.append(")")
        ui.line(line)
    ui.line("outputs:", style=HEAD)
    for t in report.outputs:
        ui.line(_tensor_line(t, width, dtypes))


def _tensor_line(t: Tensor, width: int, dtypes: int) -> Text:
    line = Text(f"  {t.name.ljust(width)}  {t.dtype.ljust(dtypes)}  ")
    line.append_text(_dims(t))
    return line


def _dims(t: Tensor) -> Text:
    if t.dims is None:
        return Text("rank unknown", style=DYNAMIC)
    text = Text("[")
    for i, d in enumerate(t.dims):
        if i:
            text.append(", ")
        # `?name`: the dim the recipe must fix; "?" alone when the model gives no name
        if isinstance(d, int):
            text.append(str(d))
        else:
            text.append("?" + d.lstrip("?"), style=DYNAMIC)
    text.append("]")
    return text


def _histogram(report: Report, ui: Ui) -> None:
    ui.line()
    ui.line(f"ops ({report.header.node_count} nodes, {len(report.histogram)} types):", style=HEAD)
    ops = max((len(op) for op, _ in report.histogram), default=0)
    counts = max((len(str(n)) for _, n in report.histogram), default=0)
    for line in columns([f"{op.ljust(ops)}  {str(n).rjust(counts)}" for op, n in report.histogram]):
        ui.line(line)


def columns(cells: list[str], indent: int = 2, gap: int = 4) -> list[str]:
    """Cells read down then across, as many columns as fit in WIDTH."""
    if not cells:
        return []
    cell = max(len(c) for c in cells) + gap
    across = max(1, (WIDTH - indent) // cell)
    down = -(-len(cells) // across)
    rows = [cells[r::down] for r in range(down)]
    return [" " * indent + "".join(c.ljust(cell) for c in row).rstrip() for row in rows]


def _nodes(report: Report, ui: Ui) -> None:
    if not report.ops:
        return
    ui.line()
    ui.line(f"nodes ({', '.join(report.ops)}): {len(report.nodes)}", style=HEAD)
    width = min(max((len(n.label) for n in report.nodes), default=0), 40)
    ops = max((len(n.op) for n in report.nodes), default=0)
    for n in report.nodes:
        ins = ", ".join(i or "''" for i in n.inputs)
        ui.line(f"  {n.label.ljust(width)}  {n.op.ljust(ops)}  {ins} -> {', '.join(n.outputs)}")
    _missing_ops(report, ui)


def _missing_ops(report: Report, ui: Ui) -> None:
    """`--op Cnv` selects nothing: name the op types the model has that are nearest."""
    from buildsys.documents.closematch import close_matches

    have = [op for op, _ in report.histogram]
    found = {n.op.lower() for n in report.nodes} | {n.op.rsplit(".", 1)[-1].lower() for n in report.nodes}
    for op in report.ops:
        if op.lower() not in found:
            near = close_matches(op, have)
            ui.line(f"  no {op} node" + (f"; did you mean {', '.join(near)}?" if near else ""), style="yellow")


def _unsupported(report: Report, ui: Ui) -> None:
    ui.line()
    if not report.unsupported:
        ui.line("converter: every op type is handled at this model's opsets", style=HEAD)
        return
    ui.line("not supported by the converter yet:", style=HEAD)
    for u in report.unsupported:
        names = ", ".join(u.nodes) + (", ..." if u.count > len(u.nodes) else "")
        ui.line(f"  {u.op} (opset {u.opset}): {u.count} node{'s' if u.count != 1 else ''}: {names}", style="red")
        ui.line(f"    {u.reason}")
        if u.rewrites:
            ui.line(f"    rewrite {' or '.join(u.rewrites)} can replace it: see `replacements:` below")
        if u.rewrite_misfit:
            ui.line(f"    not every node fits a registered rewrite: {u.rewrite_misfit}")


def _quantized(report: Report, ui: Ui) -> None:
    if report.quantized is None:
        return
    ui.line()
    ui.line(f"pre-quantized (QDQ): {report.quantized.describe()}", style=HEAD)
    ui.line("  an int8 target keeps these scales with `quantization: {from_model: true}` (no calibration needed);")
    ui.line("  without it the target recalibrates the model and replaces them")


def _post_processing(report: Report, ui: Ui) -> None:
    cut = report.cut
    if cut is None:
        return
    ops = ", ".join(f"{op} x{n}" for op, n in cut.ops)
    ui.line()
    ui.line(f"data-dependent post-processing: {cut.dropped} nodes from {ops}", style=HEAD)
    ui.line("  their output sizes depend on the data, which a static TFLite model cannot hold;")
    if cut.tensors:
        ui.line(
            f"  cut the model before them at {len(cut.tensors)} tensors (`outputs:` below) and run the rest in the application"
        )


def _snippets(report: Report, ui: Ui) -> None:
    snippets = [s for s in (report.shapes, report.replacements, report.cut_snippet) if s]
    if not snippets:
        return
    ui.line()
    ui.line("# to paste into the recipe:", style="dim")
    for text in snippets:
        for line in text.splitlines():
            ui.line(line)
