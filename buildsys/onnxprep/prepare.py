"""prepare: ONNX -> ONNX with static shapes, folded constants and no Identity/Dropout.

The converter needs every shape static and every shape-computing subgraph
(Shape -> Gather -> Concat -> Reshape chains) folded into constants. This pass
applies the recipe's graph `replacements` and `shapes`/`batch`, runs ONNX shape inference, folds
constant nodes with the ONNX reference implementation, and drops
Identity/Dropout. Its output bytes depend only on the input model and options.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

from buildsys.converter.cut import cut
from buildsys.documents.closematch import did_you_mean
from buildsys.errors import InputError
from buildsys.onnxprep.dynamic import DynamicInputs, dynamic_inputs
from buildsys.onnxprep.replace import apply_replacements
from buildsys.recipe.model import Replacement

# Nodes worth folding only when their result is not much bigger than their
# inputs; a folded ConstantOfShape/Expand/Tile could otherwise bloat the model.
GROWING = frozenset({"ConstantOfShape", "Expand", "Tile", "Range", "Resize", "Upsample"})
MAX_GROWN_ELEMENTS = 1 << 16
NEVER_FOLD = frozenset(
    {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"}
)
PASSTHROUGH = frozenset({"Identity", "Dropout"})
MAX_FOLD_ROUNDS = 8
# exporters (producer_name) that write dim_value 0 for a dim they do not know
ZERO_IS_UNKNOWN = ("paddle",)


def load_onnx(src: Path) -> onnx.ModelProto:
    try:
        return onnx.load(str(src))
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types
        raise InputError(f"cannot read ONNX model {src}: {exc}", hint="re-export it", path=str(src)) from None


def prepare_model(
    model: onnx.ModelProto,
    shapes: Mapping[str, list[int]] | None = None,
    batch: int | None = None,
    label: str = "model",
    replacements: Sequence[Replacement] = (),
    recipe_file: str = "recipe",
    outputs: Sequence[str] = (),
    outputs_at: Callable[[int], str] | None = None,
) -> onnx.ModelProto:
    """`outputs`: tensors to cut the graph at (they become its outputs); `outputs_at(i)` locates
    the i-th in the recipe for an error."""
    model = _copy(model)
    _check(model, label)
    unknown_dims(model)
    if replacements:
        # node names are the exported ones, before folding renames or removes any
        model = apply_replacements(model, replacements, recipe_file)
    set_input_shapes(model, shapes or {}, batch, label)
    if outputs:
        # after shapes: an input only the dropped post-processing read may still be named there
        model = cut(model, outputs, outputs_at or (lambda i: f"{recipe_file}: outputs[{i}]"))
    model = _infer(model, label)
    missing = dynamic_inputs(model)
    if missing:
        raise DynamicInputs(label, missing)
    _drop_passthrough(model.graph)
    # a fold can make a later Shape static (Pad by folded pads): fold to a fixpoint
    for _ in range(MAX_FOLD_ROUNDS):
        count = len(model.graph.node)
        _fold_constants(model, label)
        model = _infer(model, label)
        if len(model.graph.node) == count:
            break
    # the fold loop ended with shape inference; pruning and the IR version change no shape
    _prune_initializers(model.graph)
    _lowest_ir_version(model)
    return model


def tensor_sizes(model: onnx.ModelProto) -> list[tuple[str, list[int], int]]:
    """(name, static shape, bytes per element) of every tensor shape inference sized."""
    graph = model.graph
    out = []
    for v in [*graph.input, *graph.value_info, *graph.output]:
        t = v.type.tensor_type
        if not t.HasField("shape") or not all(d.HasField("dim_value") for d in t.shape.dim):
            continue
        try:
            itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type)).itemsize
        except (KeyError, TypeError, ValueError):
            itemsize = 4  # an exotic element type: sized like float32
        out.append((v.name, [d.dim_value for d in t.shape.dim], itemsize))
    return out


def input_shapes(model: onnx.ModelProto) -> str:
    """`image [1, 3, 64, 64], mask [1, 64]`: the graph inputs as they are now."""
    return ", ".join(f"{v.name} {_dims(v)}" for v in _graph_inputs(model.graph))


def _dims(v: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in v.type.tensor_type.shape.dim]


def unknown_dims(model: onnx.ModelProto) -> None:
    """`dim_value: -1` means a dynamic dim, and so does `0` from exporters that write it for one
    (PaddlePaddle, for batch and image sides): made an unnamed dim, so `shapes:`/`batch:` set it
    and shape inference never computes with it. Elsewhere `0` is an empty tensor, as ONNX says
    (the backend cases' empty-set reductions). Reshape's -1 and 0 live in its shape tensor, not
    here, and keep their ONNX meaning."""
    lowest = 0 if _zero_means_unknown(model) else -1
    graph = model.graph
    for v in [*graph.input, *graph.value_info, *graph.output]:
        for d in v.type.tensor_type.shape.dim:
            if d.HasField("dim_value") and d.dim_value <= lowest:
                d.Clear()


def _zero_means_unknown(model: onnx.ModelProto) -> bool:
    return any(name in model.producer_name.lower() for name in ZERO_IS_UNKNOWN)


def _check(model: onnx.ModelProto, label: str) -> None:
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid model"
        raise InputError(
            f"{label} is not a valid ONNX model: {first}",
            hint="re-export it; `python -c \"import onnx; onnx.checker.check_model('MODEL')\"` shows the details",
            path=label,
        ) from None


def _lowest_ir_version(model: onnx.ModelProto) -> None:
    """The oldest IR version that holds the model's opsets: a model saved by a newer onnx
    than the installed onnxruntime knows still validates."""
    try:
        lowest = helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True)
    except (ValueError, KeyError):
        return
    model.ir_version = min(model.ir_version, lowest)


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def _graph_inputs(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    inits = {t.name for t in graph.initializer}
    return [v for v in graph.input if v.name not in inits]


def set_input_shapes(model: onnx.ModelProto, shapes: Mapping[str, list[int]], batch: int | None, label: str) -> None:
    inputs = {v.name: v for v in _graph_inputs(model.graph)}
    unknown = sorted(set(shapes) - set(inputs))
    if unknown:
        raise InputError(
            f"{label}: `shapes:` names {', '.join(map(repr, unknown))}, which the model does not have as inputs",
            hint=did_you_mean(unknown[0], inputs) or f"the model's inputs are: {', '.join(map(repr, inputs))}",
            path=label,
        )
    for name, v in inputs.items():
        dims = v.type.tensor_type.shape.dim
        if name in shapes:
            _set_dims(v, shapes[name], label)
        elif batch is not None and len(dims) and not dims[0].HasField("dim_value"):
            dims[0].ClearField("dim_param")
            dims[0].dim_value = batch


def _set_dims(v: onnx.ValueInfoProto, wanted: list[int], label: str) -> None:
    dims = v.type.tensor_type.shape.dim
    if len(dims) != len(wanted) and len(dims):
        raise InputError(
            f"{label}: `shapes: {v.name}` has {len(wanted)} dims but the input has rank {len(dims)}",
            hint=f"give {len(dims)} dims for {v.name!r}",
            path=label,
        )
    for i, want in enumerate(wanted):
        fixed = dims[i].dim_value if i < len(dims) and dims[i].HasField("dim_value") else None
        if fixed is not None and fixed != want:
            raise InputError(
                f"{label}: `shapes: {v.name}` sets dim {i} to {want}, but the model fixes it at {fixed}",
                hint="only dynamic dims can be set; leave fixed dims as the model has them",
                path=label,
            )
    v.type.tensor_type.shape.Clear()
    for want in wanted:
        v.type.tensor_type.shape.dim.add().dim_value = int(want)


def _infer(model: onnx.ModelProto, label: str) -> onnx.ModelProto:
    # stale intermediate shapes from the exporter would pin old dynamic dims
    del model.graph.value_info[:]
    for out in model.graph.output:
        out.type.tensor_type.ClearField("shape")
    try:
        return shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError) as exc:
        raise InputError(
            f"{label}: ONNX shape inference failed: {str(exc).strip().splitlines()[-1]}",
            hint="check `shapes:` against what the model expects; the model may be invalid",
            path=label,
        ) from None


def _fold_constants(model: onnx.ModelProto, label: str) -> None:
    graph = model.graph
    known = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    shapes = _static_shapes(model)
    opsets = list(model.opset_import)
    kept = []
    for node in graph.node:
        values = _fold(node, known, shapes, opsets)
        if values is None:
            kept.append(node)
            continue
        known.update(values)
    folded = set(known) - {t.name for t in graph.initializer}
    del graph.node[:]
    graph.node.extend(kept)
    used = {i for n in kept for i in n.input} | {o.name for o in graph.output}
    graph.initializer.extend(numpy_helper.from_array(known[n], n) for n in sorted(folded) if n in used)


def _static_shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    out = {}
    for v in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        dims = v.type.tensor_type.shape.dim
        if v.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            out[v.name] = [d.dim_value for d in dims]
    return out


def _fold(node, known, shapes, opsets) -> dict[str, np.ndarray] | None:
    if node.domain not in ("", "ai.onnx") or node.op_type in NEVER_FOLD:
        return None
    if node.op_type in ("Shape", "Size") and node.input[0] in shapes:
        return _shape_of(node, shapes[node.input[0]])
    if node.op_type in PASSTHROUGH or any(i and i not in known for i in node.input):
        return None
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
        return None
    values = _evaluate(node, {i: known[i] for i in node.input if i}, opsets)
    if values is None:
        return None
    biggest_in = max((known[i].size for i in node.input if i), default=1)
    if node.op_type in GROWING and any(v.size > max(MAX_GROWN_ELEMENTS, 4 * biggest_in) for v in values.values()):
        return None
    return values


def _shape_of(node, dims: list[int]) -> dict[str, np.ndarray]:
    if node.op_type == "Size":
        return {node.output[0]: np.asarray(int(np.prod(dims)), dtype=np.int64)}
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    rank = len(dims)
    start, end = attrs.get("start", 0), attrs.get("end", rank)
    return {node.output[0]: np.asarray(dims[slice(start, end)], dtype=np.int64)}


def _evaluate(node, feeds: dict[str, np.ndarray], opsets) -> dict[str, np.ndarray] | None:
    from onnx.reference import ReferenceEvaluator

    inputs = [
        helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape) for n, v in feeds.items()
    ]
    outputs = [helper.make_empty_tensor_value_info(o) for o in node.output if o]
    graph = helper.make_graph([node], "fold", inputs, outputs)
    model = helper.make_model(graph, opset_imports=opsets)
    try:
        results = ReferenceEvaluator(model).run(None, feeds)
    except Exception:  # noqa: BLE001 - anything the reference cannot run is left for the converter
        return None
    return {o: np.asarray(r) for o, r in zip([o for o in node.output if o], results)}


def _drop_passthrough(graph: onnx.GraphProto) -> None:
    """Rewire consumers of Identity/Dropout outputs to their input."""
    outputs = {o.name for o in graph.output}
    rename: dict[str, str] = {}
    kept = []
    for node in graph.node:
        node.input[:] = [rename.get(i, i) for i in node.input]
        is_pass = node.op_type in PASSTHROUGH and (node.op_type == "Identity" or len(node.output) == 1)
        if is_pass and node.output[0] not in outputs and not _training_dropout(node):
            rename[node.output[0]] = node.input[0]
            continue
        kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)


def _training_dropout(node) -> bool:
    # Dropout with a training_mode input set to true is not the identity
    return node.op_type == "Dropout" and len(node.input) > 2 and bool(node.input[2])


def _prune_initializers(graph: onnx.GraphProto) -> None:
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    inputs = [v for v in graph.input if v.name in used or v.name not in {t.name for t in kept}]
    del graph.input[:]
    graph.input.extend(inputs)
