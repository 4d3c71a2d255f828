"""Turn a model's (possibly dynamic) input shapes into the static shapes we export.

TFLite and INT8 calibration need every dimension fixed, and a cache key must not
depend on whatever the tracer would guess, so the user states shapes explicitly
(`shapes:` per input, or `batch:` for the leading dimension) and we check them
against what the model declares.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass

from buildsys.errors import InputError

Shape = list[int | None]


@dataclass(frozen=True)
class TensorInfo:
    """One model input or output as declared by the model (shape None = unknown rank)."""

    name: str
    shape: Shape | None
    dtype: str


def resolve_shapes(
    inputs: Sequence[TensorInfo], shapes: dict[str, list[int]] | None, batch: int | None, model: str
) -> list[list[int]]:
    """Static shape for every input, in model order; InputError if one stays dynamic."""
    shapes = dict(shapes or {})
    names = [t.name for t in inputs]
    unknown = sorted(set(shapes) - set(names))
    if unknown:
        raise InputError(
            f"shapes: names {', '.join(map(repr, unknown))}, but {model} has no such input"
            f" (its inputs: {', '.join(map(repr, names))})",
            hint=f"the model's inputs are: {', '.join(map(repr, names))}",
            path=model,
        )
    return [_resolve_one(t, shapes.get(t.name), batch, model) for t in inputs]


def _resolve_one(info: TensorInfo, override: list[int] | None, batch: int | None, model: str) -> list[int]:
    shape = _apply_override(info, override, model)
    if batch is not None and shape and shape[0] is None:
        shape[0] = _positive(batch, info.name, model)
    static = [d for d in shape if d is not None]
    if len(static) < len(shape):
        raise InputError(
            f"input {info.name!r} of {model} has dynamic shape {_fmt(shape)}",
            hint=f"set `shapes: {{{info.name}: [...]}}` (all dimensions) or `batch:` in the recipe",
            path=model,
        )
    return [int(d) for d in static]


def _apply_override(info: TensorInfo, override: list[int] | None, model: str) -> Shape:
    if override is None:
        if info.shape is None:
            raise InputError(
                f"input {info.name!r} of {model} has unknown rank",
                hint=f"set `shapes: {{{info.name}: [...]}}` in the recipe",
                path=model,
            )
        return list(info.shape)
    wanted = [None if d is None or d == -1 else _positive(d, info.name, model) for d in override]
    if info.shape is not None and not _compatible(wanted, info.shape):
        raise InputError(
            f"shapes: gives {_fmt(wanted)} for input {info.name!r}, but {model} declares {_fmt(info.shape)}",
            hint="use the model's rank and keep its fixed dimensions; only dynamic (None) ones may be set",
            path=model,
        )
    # A dimension left open in the override keeps the model's value.
    declared = info.shape or wanted
    return [w if w is not None else d for w, d in zip(wanted, declared)]


def _compatible(wanted: Shape, declared: Shape) -> bool:
    if len(wanted) != len(declared):
        return False
    return all(w is None or d is None or w == d for w, d in zip(wanted, declared))


def _positive(value: object, name: str, model: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise InputError(
            f"dimension {value!r} for input {name!r} of {model} is not a positive integer",
            path=model,
        )
    return int(value)


def _fmt(shape: Shape) -> str:
    return "[" + ", ".join("None" if d is None else str(d) for d in shape) + "]"
