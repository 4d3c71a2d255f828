"""Graph inputs with dynamic dims: found before conversion, explained with the recipe fix."""

from __future__ import annotations

import onnx

from buildsys.errors import InputError


def dynamic_inputs(model: onnx.ModelProto) -> list[tuple[str, list]]:
    """[(input name, dims)] for inputs with any unknown dim; dims are ints or dim_param names."""
    inits = {t.name for t in model.graph.initializer}
    out = []
    for v in model.graph.input:
        if v.name in inits:
            continue
        dims = [_dim(d) for d in v.type.tensor_type.shape.dim]
        if not v.type.tensor_type.HasField("shape") or any(not isinstance(d, int) for d in dims):
            out.append((v.name, dims))
    return out


def _dim(d) -> int | str:
    if d.HasField("dim_value"):
        return d.dim_value
    return d.dim_param or "?"


class DynamicInputs(InputError):
    """The model has inputs with dynamic dims the recipe does not fix."""

    def __init__(self, model: str, inputs: list[tuple[str, list]]):
        self.inputs = inputs
        listing = "\n".join(f"  {name}: [{', '.join(map(str, dims))}]" for name, dims in inputs)
        super().__init__(
            f"{model} has inputs with dynamic dims:\n{listing}\n"
            "buildsys converts static shapes only; add to the recipe:\n" + snippet(inputs),
            hint=_hint(inputs),
            path=model,
        )


def _hint(inputs: list[tuple[str, list]]) -> str:
    only_batch = all(isinstance(d, int) for _, dims in inputs for d in dims[1:])
    if only_batch:
        return "only the batch dim is dynamic: `batch: 1` in the recipe fixes it for every input"
    return "replace the example sizes with the ones you deploy at (batch first)"


def snippet(inputs: list[tuple[str, list]]) -> str:
    lines = ["shapes:"]
    for name, dims in inputs:
        values = [suggest(i, d, dims) for i, d in enumerate(dims)]
        # an unnamed dim (`?`, or -1/0 in the model) is called by its position
        unknown = [f"dim {i}" if d == "?" else str(d) for i, d in enumerate(dims) if not isinstance(d, int) and i > 0]
        note = f"  # example sizes for {', '.join(unknown)}" if unknown else ""
        lines.append(f"  {name}: [{', '.join(map(str, values))}]{note}")
    return "\n".join(lines)


def suggest(index: int, dim, dims: list) -> int:
    """1 for a dynamic batch; for dynamic image sides, the size of the other side or 224."""
    if isinstance(dim, int):
        return dim
    if index == 0:
        return 1
    sides = [d for d in dims[2:] if isinstance(d, int)] if len(dims) == 4 else []
    return sides[0] if sides else 224
