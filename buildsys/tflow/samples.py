"""Batches of samples fed by input name: checking them and gathering results.

Every runner (source model, TFLite model) takes {input name: array (N, ...)}
and returns {output name: array (N, ...)}, running one sample at a time so that
results never depend on how a batch was split.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from buildsys.errors import InputError
from buildsys.signature import TensorEntry


def check_samples(names: Sequence[str], inputs: Mapping[str, np.ndarray], model: str) -> tuple[dict, int]:
    """Arrays in model input order and the common sample count N."""
    missing = [n for n in names if n not in inputs]
    extra = sorted(set(inputs) - set(names))
    if missing or extra:
        raise InputError(
            f"samples for {model} do not match its inputs"
            + (f"; missing {', '.join(map(repr, missing))}" if missing else "")
            + (f"; unknown {', '.join(map(repr, extra))}" if extra else ""),
            hint=f"the model's inputs are: {', '.join(map(repr, names))}",
            path=model,
        )
    arrays = {n: np.asarray(inputs[n]) for n in names}
    counts = {n: (a.shape[0] if a.ndim else 0) for n, a in arrays.items()}
    if len(set(counts.values())) != 1 or 0 in counts.values():
        raise InputError(
            f"samples for {model} need the same, non-zero number of samples per input; got {counts}",
            path=model,
        )
    return arrays, next(iter(counts.values()))


def check_sample_shape(name: str, array: np.ndarray, declared: Sequence[int | None] | None, model: str) -> None:
    """Each sample must fit the declared input shape after its batch dimension."""
    if declared is None:
        return
    got, want = list(array.shape[1:]), list(declared[1:])
    if len(got) != len(want) or any(w is not None and g != w for g, w in zip(got, want)):
        shown = ", ".join("?" if w is None else str(w) for w in want)
        raise InputError(
            f"samples for input {name!r} of {model} have shape [N, {', '.join(map(str, got))}]"
            f" but the model expects [batch, {shown}]",
            hint="check the preprocessing (resize, color) of these samples",
            path=model,
        )


def source_shape(entry: TensorEntry) -> list[int | None]:
    """A signature input's shape in the source model's layout (the signature stores the permuted one)."""
    stored = _known_rank(entry)
    perm = entry.perm or list(range(len(stored)))
    shape: list[int | None] = [None] * len(perm)
    for stored_axis, source_axis in enumerate(perm):
        shape[source_axis] = stored[stored_axis]
    return shape


def batch_size(entry: TensorEntry) -> int:
    """Samples per invocation: the input's leading dim, 1 for a scalar input."""
    if not entry.shape:
        return 1
    if entry.shape[0] is None:  # never: convert made every input shape static
        raise TypeError(f"signature input {entry.name!r} has a dynamic batch")
    return entry.shape[0]


def _known_rank(entry: TensorEntry) -> list[int | None]:
    # only an output of a TF source can lack a rank; inputs always have one
    if entry.shape is None:
        raise TypeError(f"signature entry {entry.name!r} has no shape")
    return entry.shape


def misfits(inputs: Mapping[str, np.ndarray], entries: Sequence[TensorEntry]) -> list[tuple[str, tuple, list]]:
    """(name, array shape, wanted shape of one sample) of every input whose samples (N, ...,
    source layout) do not fit the signature; checked before a layout permutation or a runtime
    trips over them."""
    out = []
    for entry in entries:
        array = inputs.get(entry.name)
        if array is None:
            continue  # check_samples names missing inputs
        want = source_shape(entry)[1:]
        got = array.shape[1:]
        if len(got) != len(want) or any(w is not None and g != w for g, w in zip(got, want)):
            out.append((entry.name, array.shape, want))
    return out


def gather(per_sample: list[dict[str, np.ndarray]], names: Sequence[str]) -> dict[str, np.ndarray]:
    """Join per-sample results (each with a leading batch of 1) along axis 0."""
    return {n: _join([r[n] for r in per_sample]) for n in names}


def _join(parts: list[np.ndarray]) -> np.ndarray:
    if parts[0].ndim == 0:
        return np.stack(parts)
    return np.concatenate(parts, axis=0)


def to_stored(arrays: dict[str, np.ndarray], entries: Sequence[TensorEntry]) -> dict[str, np.ndarray]:
    """Samples (N, ONNX layout) -> (N, stored layout) per the signature's perms."""
    out = dict(arrays)
    for e in entries:
        perm = e.perm
        if perm and e.name in out and perm != sorted(perm):
            out[e.name] = np.ascontiguousarray(np.transpose(out[e.name], perm))
    return out


def to_onnx_layout(arrays: dict[str, np.ndarray], entries: Sequence[TensorEntry]) -> dict[str, np.ndarray]:
    """Outputs (stored layout) -> ONNX layout, the inverse of `to_stored`."""
    out = dict(arrays)
    for e in entries:
        perm = e.perm
        if perm and e.name in out and perm != sorted(perm):
            out[e.name] = np.transpose(out[e.name], np.argsort(perm))
    return out
