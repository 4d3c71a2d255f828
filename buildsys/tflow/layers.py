"""Per-layer error of an integer-quantized .tflite (int8, int16x8) against its float model.

Both sides are TFLite graphs converted from the same float model file, so they
share their structure: the float reference is converted here in mode "none",
and both interpreters run with every intermediate tensor preserved and without
the default (XNNPACK) delegate, which would swallow the ops and their outputs.

Each quantized activation of the artifact (an integer tensor with a scale that
an op produces, or a model input) is paired with a float tensor (see
_MATCHERS), dequantized and compared over all samples. Error is accumulated
as sums per tensor, so memory holds one invocation's tensors whatever the
number of samples. The error is end-to-end: a tensor's error includes what its
inputs brought, so it grows with depth; a layer that does harm shows as a jump.

Ranking (RANKING): `worst` lists tensors by relative RMSE (RMSE / std of the
float tensor over all samples and elements) descending. It is the share of a
tensor's signal that quantization destroyed: unlike RMSE it does not favour
small-valued tensors, unlike rmse_over_scale it flags a tensor whose range is
too wide for its signal (error of a fraction of a step, but the signal lives
in a few steps), and unlike 1 - cosine it is not hidden by a large mean
shared by all elements (a post-activation offset). A tensor whose float
values vary by less than one quantization step has no relative RMSE (None)
and ranks last: it has no signal to lose (see _entry).

An artifact without integer activations (fp32, fp16, dynamic-range) gives
{"quantized": False, ...} with nothing compared, so a caller may run this for
every target and report the ones where it means something.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from buildsys.errors import InputError, StageError
from buildsys.signature import Signature
from buildsys.tflow.quiet import last_error_line, no_interpreter_warning, quiet

# Private helpers of runtime: the same input handling and interpreter choice as
# every other run of a .tflite in buildsys.
from buildsys.tflow.runtime import TFLITE_MAGIC, interpreter_class, io_details, model_content, quantize_input
from buildsys.tflow.samples import batch_size, check_sample_shape, check_samples

RANKING = "relative_rmse descending, then graph position"
INPUT_OP = "INPUT"  # the producer shown for model inputs, which no op produces
_SIGNIFICANT = 6  # digits kept in reported figures: compact, stable JSON
_ROW = 256  # elements per float32 partial dot product (see _dot)
_COMPACT = ("position", "tensor", "op", "relative_rmse", "rmse_over_scale", "cosine")


@dataclass(frozen=True)
class _Activation:
    """One non-constant tensor of the main subgraph: a model input or an op output."""

    index: int
    name: str
    op: str
    position: int  # the producing op's execution index; -1 for model inputs
    shape: tuple[int, ...]
    dtype: np.dtype
    scales: np.ndarray  # empty when not quantized
    zero_points: np.ndarray
    axis: int
    source: tuple[int, str] | None = None  # (index, name) of a QUANTIZE op's input

    @property
    def quantized(self) -> bool:
        return self.dtype.kind in "iu" and self.scales.size > 0 and bool(np.all(self.scales > 0))


@dataclass(frozen=True)
class _Side:
    """An allocated interpreter, its activations in execution order, its inputs by signature name."""

    interpreter: Any  # LiteRT's or TensorFlow's Interpreter, whichever is installed
    activations: tuple[_Activation, ...]
    inputs: dict


def layer_errors(
    float_path: Path,
    signature: Signature,
    artifact: bytes | Path,
    samples: dict[str, np.ndarray],
    limit: int = 10,
) -> dict:
    """Compare every quantized activation of `artifact` with the float model's.

    `samples`: float arrays (N, ...) by input name in the stored layout, fed in
    invocations of the model's batch size. Returns a JSON-able dict:
    quantized, samples (N), ranking (RANKING), tensors_compared, unmatched
    (quantized tensors without a float partner) and unmatched_tensors (their
    names), worst (the `limit` worst full entries) and all (compact rows, graph
    order). Entries: position, tensor, op, shape, dtype, scale, rmse,
    rmse_over_scale (RMSE in quantization steps; 0.29 is rounding alone),
    relative_rmse, cosine (per invocation, averaged), max_abs_error, float_std.
    """
    quant = _side(artifact)
    if not any(a.quantized for a in quant.activations):
        return _result([], [], 0, limit, quantized=False)
    from buildsys.tflow.quantize import to_tflite  # imports TensorFlow

    feeds, count = _feeds(samples, signature)
    ref = _side(to_tflite(Path(float_path), signature, "none"))
    pairs, unmatched = _match(quant.activations, ref.activations)
    sums = _accumulate(quant, ref, pairs, feeds)
    entries = [_entry(q, sums[q.index]) for q, _ in pairs]
    return _result(entries, unmatched, count, limit)


# ---------------------------------------------------------------- loading


def _side(model: bytes | Path) -> _Side:
    interpreter = _interpreter(model)
    inputs, _ = io_details(interpreter)
    return _Side(interpreter, tuple(_activations(interpreter)), inputs)


def _interpreter(model: bytes | Path):
    """An allocated interpreter keeping every tensor; InputError if `model` is not a .tflite."""
    content, label = model_content(model)
    if len(content) < 8 or content[4:8] != TFLITE_MAGIC:
        raise InputError(f"{label} is not a TFLite model (no TFL3 identifier)", hint="re-export it", path=label)
    cls = interpreter_class()
    # tf.lite and ai_edge_litert each define the enum next to their Interpreter.
    resolver = importlib.import_module(cls.__module__).OpResolverType
    try:
        with quiet() as log, no_interpreter_warning():
            interpreter = cls(
                model_content=content,
                experimental_op_resolver_type=resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
                experimental_preserve_all_tensors=True,
            )
            interpreter.allocate_tensors()
    except Exception as exc:  # noqa: BLE001 - the C++ loader raises ValueError/RuntimeError
        raise InputError(
            f"cannot load {label} for layer analysis: {last_error_line(exc, log)}", hint="re-export it", path=label
        ) from None
    return interpreter


def _activations(interpreter) -> Iterator[_Activation]:
    """Model inputs, then op outputs in execution order (a topological order).

    Only the main subgraph: bodies of control-flow ops are not compared.
    """
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    for d in interpreter.get_input_details():
        yield _activation(details[d["index"]], INPUT_OP, -1)
    for op in interpreter._get_ops_details():  # noqa: SLF001 - the interpreter's only op listing
        source = _quantize_source(op, details)
        for out in op["outputs"]:
            if out in details:
                yield _activation(details[out], op["op_name"], int(op["index"]), source)


def _quantize_source(op: dict, details: dict) -> tuple[int, str] | None:
    inputs = [int(i) for i in op["inputs"]]
    if op["op_name"] != "QUANTIZE" or len(inputs) != 1 or inputs[0] not in details:
        return None
    return inputs[0], str(details[inputs[0]]["name"])


def _activation(d: dict, op: str, position: int, source: tuple[int, str] | None = None) -> _Activation:
    params = d["quantization_parameters"]
    return _Activation(
        index=int(d["index"]),
        name=str(d["name"]),
        op=op,
        position=position,
        shape=tuple(int(s) for s in d["shape"]),
        dtype=np.dtype(d["dtype"]),
        scales=np.asarray(params["scales"], np.float64),
        zero_points=np.asarray(params["zero_points"], np.float64),
        axis=int(params["quantized_dimension"]),
        source=source,
    )


# ---------------------------------------------------------------- matching

# (quantized tensors still unmatched, float tensors, matches so far) -> new matches
Matcher = Callable[[list[_Activation], list[_Activation], dict[int, _Activation]], dict[int, _Activation]]


def _by_name(todo: list[_Activation], floats: list[_Activation], found: dict) -> dict[int, _Activation]:
    """TF's converter keeps tensor names between the float and the quantized model."""
    names: dict[str, list[_Activation]] = {}
    for f in floats:
        names.setdefault(f.name, []).append(f)
    unique = {n: fs[0] for n, fs in names.items() if len(fs) == 1}
    return {q.index: unique[q.name] for q in todo if q.name in unique and unique[q.name].shape == q.shape}


def _through_quantize(todo: list[_Activation], floats: list[_Activation], found: dict) -> dict[int, _Activation]:
    """A QUANTIZE output (a float input quantized, an int8 tensor requantized) carries its input's value."""
    by_name = {f.name: f for f in floats}
    out = {}
    for q in todo:
        if q.source is not None:
            index, name = q.source
            partner = found.get(index) or by_name.get(name)
            if partner is not None and partner.shape == q.shape:
                out[q.index] = partner
    return out


def _by_position(todo: list[_Activation], floats: list[_Activation], found: dict) -> dict[int, _Activation]:
    """Names differ: the k-th output of an op type with this shape pairs with the float side's k-th."""
    taken = {f.index for f in found.values()}
    free = _occurrences(f for f in floats if f.index not in taken)
    return {q.index: free[key] for key, q in _occurrences(todo).items() if key in free}


def _occurrences(tensors) -> dict[tuple, _Activation]:
    counts: dict[tuple, int] = {}
    out = {}
    for a in tensors:
        base = (a.op, a.shape)
        counts[base] = counts.get(base, 0) + 1
        out[(*base, counts[base])] = a
    return out


# In order; each matcher only sees what the ones before it left.
_MATCHERS: tuple[Matcher, ...] = (_by_name, _through_quantize, _by_position)


def _match(quant: tuple[_Activation, ...], floats: tuple[_Activation, ...]):
    """([(quantized, float)] in graph order, [names of unmatched quantized tensors])."""
    wanted = [q for q in quant if q.quantized]
    float_side = [f for f in floats if f.dtype.kind == "f"]
    found: dict[int, _Activation] = {}
    for matcher in _MATCHERS:
        todo = [q for q in wanted if q.index not in found]
        if todo:
            found |= matcher(todo, float_side, found)
    pairs = [(q, found[q.index]) for q in wanted if q.index in found]
    return pairs, [q.name for q in wanted if q.index not in found]


# ---------------------------------------------------------------- running


def _feeds(samples: dict[str, np.ndarray], signature: Signature) -> tuple[list[dict[str, np.ndarray]], int]:
    """(float feeds by input name, one per invocation at the model's batch size; sample count)."""
    shapes = {i.name: i.shape for i in signature.inputs}
    arrays, count = check_samples(list(shapes), samples, "layer analysis")
    for name, shape in shapes.items():
        check_sample_shape(name, arrays[name], shape, "layer analysis")
    batch = batch_size(signature.inputs[0])
    if count % batch:
        raise InputError(
            f"layer analysis: {count} samples do not fill whole batches of {batch}",
            hint=f"give a multiple of {batch} samples",
        )
    return [{n: a[s : s + batch] for n, a in arrays.items()} for s in range(0, count, batch)], count


@dataclass
class _Sums:
    """Running sums of one tensor pair over all invocations, in float64."""

    count: int = 0
    invocations: int = 0
    sq_err: float = 0.0
    sq_steps: float = 0.0
    ref_sum: float = 0.0
    ref_sq: float = 0.0
    max_abs: float = 0.0
    cosine: float = 0.0

    def add(self, ref: np.ndarray, got: np.ndarray, scale: np.ndarray) -> None:
        """One invocation's tensors; `got` is overwritten. float32 (what TFLite computed in, and exact
        for dequantized int8/int16) in place and by BLAS dot products, totals in float64: every pass
        over a detector's activations costs about as much as running the model once."""
        shape = got.shape
        ref, got = ref.ravel(), got.ravel()
        self.count += got.size
        self.invocations += 1
        self.ref_sum += float(ref.sum(dtype=np.float64))
        self.ref_sq += (ref_sq := _dot(ref, ref))
        got_sq, cross = _dot(got, got), _dot(ref, got)
        self.cosine += _cosine(ref_sq, got_sq, cross)
        err = np.subtract(got, ref, out=got)
        self.sq_err += (sq_err := _dot(err, err))
        if scale.size == 1:  # per-tensor: the error in steps is the error over one number
            self.sq_steps += sq_err / float(scale) ** 2
        else:  # `scale` broadcasts along its axis
            steps = (err.reshape(shape) / scale).ravel()
            self.sq_steps += _dot(steps, steps)
        self.max_abs = max(self.max_abs, float(err.max(initial=0.0)), -float(err.min(initial=0.0)))


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """a . b of float32 vectors in rows of _ROW summed in float64: one BLAS dot accumulates millions of
    float32 products in float32 (1 - cosine off by 10% near 1), float64 copies cost 10x the time."""
    whole = a.size // _ROW * _ROW
    rows = np.einsum("ij,ij->i", a[:whole].reshape(-1, _ROW), b[:whole].reshape(-1, _ROW)).sum(dtype=np.float64)
    return float(rows) + float(np.dot(a[whole:].astype(np.float64), b[whole:].astype(np.float64)))


def _cosine(a_sq: float, b_sq: float, cross: float) -> float:
    na, nb = math.sqrt(a_sq), math.sqrt(b_sq)
    if na == 0.0 or nb == 0.0:
        # two zero tensors agree; a zero and a non-zero one share no direction
        return 1.0 if na == nb else 0.0
    return cross / (na * nb)


def _accumulate(quant: _Side, ref: _Side, pairs: list, feeds: list[dict]) -> dict[int, _Sums]:
    sums = {q.index: _Sums() for q, _ in pairs}
    for feed in feeds:
        _invoke(ref, {n: quantize_input(v, ref.inputs[n]) for n, v in feed.items()})
        _invoke(quant, {n: quantize_input(v, quant.inputs[n]) for n, v in feed.items()})
        for q, f in pairs:
            got = _dequantize(quant.interpreter.get_tensor(q.index), q)
            sums[q.index].add(
                ref.interpreter.get_tensor(f.index).astype(np.float32, copy=False), got, _per_element(q.scales, q)
            )
    return sums


def _invoke(side: _Side, feed: dict[str, np.ndarray]) -> None:
    try:
        for name, value in feed.items():
            side.interpreter.set_tensor(side.inputs[name]["index"], value)
        side.interpreter.invoke()
    except Exception as exc:  # noqa: BLE001 - shape/type errors surface as ValueError/RuntimeError
        raise StageError(
            f"running a model for layer analysis failed: {last_error_line(exc)}",
            hint="the TFLite runtime cannot run this model op by op (no delegates); please report it",
        ) from None


def _per_element(values: np.ndarray, q: _Activation) -> np.ndarray:
    """Per-tensor parameters as a scalar; per-axis ones shaped to broadcast along their axis."""
    if values.size == 1:
        return values.reshape(())
    shape = [1] * len(q.shape)
    shape[q.axis] = values.size
    return values.reshape(shape)


def _dequantize(raw: np.ndarray, q: _Activation) -> np.ndarray:
    out = raw.astype(np.float32)
    out -= _per_element(q.zero_points, q).astype(np.float32)
    out *= _per_element(q.scales, q).astype(np.float32)
    return out


# ---------------------------------------------------------------- reporting


def _figure(x: float | None) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return float(f"{x:.{_SIGNIFICANT}g}")


def _entry(q: _Activation, s: _Sums) -> dict:
    mean = s.ref_sum / s.count
    std = math.sqrt(max(s.ref_sq / s.count - mean * mean, 0.0))
    rmse = math.sqrt(s.sq_err / s.count)
    # A float tensor varying by less than one step (softmax row sums, all 1.0)
    # carries no signal the format could keep; its error is an offset, which
    # rmse_over_scale shows, and dividing by its std would rank noise first.
    relative = rmse / std if std >= float(q.scales.min()) else None
    scales = [_figure(x) for x in q.scales.tolist()]
    return {
        "position": q.position,
        "tensor": q.name,
        "op": q.op,
        "shape": list(q.shape),
        "dtype": q.dtype.name,
        "scale": scales[0] if len(scales) == 1 else scales,
        "rmse": _figure(rmse),
        "rmse_over_scale": _figure(math.sqrt(s.sq_steps / s.count)),
        "relative_rmse": _figure(relative),
        "cosine": _figure(s.cosine / s.invocations),
        "max_abs_error": _figure(s.max_abs),
        "float_std": _figure(std),
    }


def _rank_key(entry: dict) -> tuple:
    relative = entry["relative_rmse"]
    return (relative is None, -(relative or 0.0), entry["position"], entry["tensor"])


def _result(entries: list[dict], unmatched: list[str], count: int, limit: int, quantized: bool = True) -> dict:
    return {
        "quantized": quantized,
        "samples": count,
        "ranking": RANKING,
        "tensors_compared": len(entries),
        "unmatched": len(unmatched),
        "unmatched_tensors": unmatched,
        "worst": sorted(entries, key=_rank_key)[: max(limit, 0)],
        "all": [{k: e[k] for k in _COMPACT} for e in entries],
    }
