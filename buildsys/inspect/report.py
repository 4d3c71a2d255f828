"""Everything `buildsys inspect` knows about one model, gathered once; printing is the command's job."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import onnx

from buildsys.converter.cut import Suggestion as Cut
from buildsys.converter.cut import cut, flow_of, snippet, suggest_cut
from buildsys.inspect import model as facts
from buildsys.inspect.model import Header, NodeLine, Tensor
from buildsys.inspect.quantized import Prequantized, prequantized
from buildsys.inspect.rewrites import Suggestion, load_rewrites, rewrites_by_op, suggest
from buildsys.inspect.suggest import replacements_snippet, shapes_snippet
from buildsys.inspect.support import Unsupported, unsupported
from buildsys.onnxprep.dynamic import dynamic_inputs
from buildsys.onnxprep.prepare import unknown_dims


@dataclass(frozen=True)
class FromRecipe:
    """The recipe an inspected model came from, and what its `prepare` applies before conversion."""

    path: str
    shapes: dict[str, tuple[int, ...]]
    batch: int | None
    replacements: tuple[Any, ...] = ()  # recipe.model.Replacement entries
    outputs: tuple[str, ...] = ()  # the recipe's cut
    file: Path | None = None  # the recipe's absolute path, to locate its keys in errors


@dataclass(frozen=True)
class Report:
    header: Header
    recipe: FromRecipe | None
    inputs: list[Tensor]  # as the model declares them
    applied: list[Tensor]  # after the recipe's shapes/batch (= inputs without a recipe)
    outputs: list[Tensor]
    histogram: list[tuple[str, int]]
    ops: tuple[str, ...]  # the --op filter
    nodes: list[NodeLine]  # those the filter selects (all without one)
    unsupported: list[Unsupported]
    rewrites: list[Suggestion]
    shapes: str | None  # snippets
    replacements: str | None
    cut: Cut | None = None  # where data-dependent post-processing starts
    cut_snippet: str | None = None  # `outputs:` lines for that cut
    quantized: Prequantized | None = None  # a QDQ model's own quantization

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self.header),
            "recipe": _recipe_json(self.recipe),
            "inputs": [_input_json(t, a, self.recipe is not None) for t, a in zip(self.inputs, self.applied)],
            "outputs": [_tensor_json(t) for t in self.outputs],
            "histogram": [{"op": op, "count": n} for op, n in self.histogram],
            "op_filter": list(self.ops),
            "nodes": [_node_json(n) for n in self.nodes],
            "unsupported": [asdict(u) for u in self.unsupported],
            "rewrites": [asdict(r) for r in self.rewrites],
            "cut": None if self.cut is None else asdict(self.cut),
            "quantized": None if self.quantized is None else asdict(self.quantized),
            "snippets": {"shapes": self.shapes, "replacements": self.replacements, "outputs": self.cut_snippet},
        }


def inspect_model(
    path: Path,
    ops: tuple[str, ...] = (),
    recipe: FromRecipe | None = None,
    registry: Any = None,
    rewrites: Mapping[str, Any] | None = None,
    label: str | None = None,
) -> Report:
    """The report on the ONNX file at `path`, named `label` (default: the path); `registry`/`rewrites`
    default to the converter's and the registered ones (tests pass their own)."""
    label = label or str(path)
    model = facts.read_model(path)
    if recipe is not None and recipe.replacements:
        model = _replaced(model, recipe)
    light = _inputs_only(model)
    unknown_dims(light)
    if recipe is not None:
        _apply(light, recipe, label)
        model = _cut(model, recipe)
    if registry is None:
        from buildsys.inspect.handled import converter_registry

        registry = converter_registry()
    fits = suggest(model, rewrites_by_op(load_rewrites() if rewrites is None else rewrites))
    missing = unsupported(model, registry, fits)
    graph = model.graph
    cut = suggest_cut(flow_of(graph))
    return Report(
        header=facts.header(model, path, label),
        recipe=recipe,
        inputs=[facts.tensor(v) for v in facts.graph_inputs(graph)],
        applied=[facts.tensor(v) for v in light.graph.input],
        outputs=[facts.tensor(v) for v in graph.output],
        histogram=facts.histogram(graph),
        ops=tuple(ops),
        nodes=facts.node_lines(graph, list(ops) or None),
        unsupported=missing,
        rewrites=fits,
        shapes=shapes_snippet(dynamic_inputs(light)),
        replacements=replacements_snippet(model, fits, {u.op for u in missing}),
        cut=cut,
        cut_snippet=snippet(cut) if cut is not None and cut.tensors else None,
        quantized=prequantized(model),
    )


def _inputs_only(model: onnx.ModelProto) -> onnx.ModelProto:
    """A model holding copies of the graph inputs: shapes are applied without copying the weights."""
    light = onnx.ModelProto(producer_name=model.producer_name)
    light.graph.input.extend(facts.graph_inputs(model.graph))
    return light


def _replaced(model: onnx.ModelProto, recipe: FromRecipe) -> onnx.ModelProto:
    """The model as prepare edits it, before shapes: what is left to suggest is what the recipe lacks."""
    from buildsys.onnxprep.replace import apply_replacements

    return apply_replacements(model, recipe.replacements, recipe.path)


def _cut(model: onnx.ModelProto, recipe: FromRecipe) -> onnx.ModelProto:
    """The model as prepare cuts it at the recipe's `outputs:` (same errors as prepare)."""
    if not recipe.outputs:
        return model
    from buildsys.stages.sources import recipe_at

    return cut(model, recipe.outputs, lambda i: recipe_at(recipe.file or Path(recipe.path), ("outputs", i)))


def _apply(light: onnx.ModelProto, recipe: FromRecipe, label: str) -> None:
    # prepare's own rule, so inspect reports exactly what prepare will see (and the same errors)
    from buildsys.onnxprep.prepare import set_input_shapes

    shapes = {name: list(dims) for name, dims in recipe.shapes.items()}
    set_input_shapes(light, shapes, recipe.batch, label)


def _recipe_json(recipe: FromRecipe | None) -> dict[str, Any] | None:
    if recipe is None:
        return None
    shapes = {k: list(v) for k, v in recipe.shapes.items()}
    out = {"path": recipe.path, "shapes": shapes, "batch": recipe.batch, "replacements": len(recipe.replacements)}
    return {**out, "outputs": list(recipe.outputs)} if recipe.outputs else out


def _tensor_json(t: Tensor) -> dict[str, Any]:
    return {"name": t.name, "dtype": t.dtype, "dims": None if t.dims is None else list(t.dims), "dynamic": t.dynamic}


def _input_json(t: Tensor, applied: Tensor, with_recipe: bool) -> dict[str, Any]:
    out = _tensor_json(t)
    if with_recipe:
        out["recipe_dims"] = None if applied.dims is None else list(applied.dims)
        out["dynamic"] = applied.dynamic  # what prepare will still find dynamic
    return out


def _node_json(n: NodeLine) -> dict[str, Any]:
    return {"name": n.name, "op": n.op, "inputs": list(n.inputs), "outputs": list(n.outputs)}
