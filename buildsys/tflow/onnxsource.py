"""ONNX sources: the converter's TF function as a float model, and onnxruntime as reference.

The float model's signature records, per input and output, the permutation
from ONNX layout to the stored layout (`perm`), so sample data kept in ONNX
layout can be fed to the TFLite model and its outputs read back.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import numpy as np
import onnx

from buildsys.converter.convert import Converter
from buildsys.converter.errors import HandlerBug
from buildsys.errors import BuildsysError, InputError, StageError
from buildsys.onnxprep.prepare import load_onnx
from buildsys.signature import Signature, TensorEntry
from buildsys.tflow.frozen import freeze, write_float
from buildsys.tflow.quiet import last_error_line, quiet
from buildsys.tflow.samples import check_samples


def export_onnx(
    src: Path | onnx.ModelProto,
    out: Path,
    keep_layout: Collection[str] = (),
    nhwc_outputs: Collection[str] = (),
    label: str | None = None,
) -> Signature:
    """Convert a prepared (static-shape) ONNX model into the float model file at `out`.

    `label` names the model in errors (default: the file it was read from)."""
    model = src if isinstance(src, onnx.ModelProto) else load_onnx(Path(src))
    label = label or ("model" if isinstance(src, onnx.ModelProto) else str(src))
    converter = Converter(model, keep_layout=keep_layout, nhwc_outputs=nhwc_outputs, label=label)
    try:
        with quiet() as log:
            graph_def, outputs = freeze(converter, converter.specs(), autograph=False, keep_scopes=True)
    except (BuildsysError, HandlerBug):
        raise  # a HandlerBug is ours to fix: the stage engine logs it as an internal error
    except Exception as exc:  # noqa: BLE001 - TF tracing errors come in many types
        # tf.function re-raises errors from inside the trace wrapped in its own types
        ours = _ours(exc)
        if ours is not None:
            raise ours from None
        raise StageError(f"cannot convert {label}: {last_error_line(exc, log)}", path=label) from None
    signature = _signature(converter, outputs)
    write_float(Path(out), graph_def, signature)
    return signature


def _ours(exc: BaseException | None) -> BuildsysError | None:
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, BuildsysError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _signature(converter: Converter, outputs) -> Signature:
    inputs = [TensorEntry(s.name, list(s.shape), s.dtype, list(s.perm)) for s in converter.inputs]
    outs = [
        TensorEntry(info.name, t.shape.as_list(), t.dtype.name, list(p))
        for info, t, p in zip(converter.graph.outputs, outputs, converter.output_perms)
    ]
    # TF name scope -> ONNX node: how reports name the node behind a TFLite tensor
    made_by = {o: n.label for n in converter.graph.nodes for o in n.outputs if o}
    return Signature(
        inputs=inputs,
        outputs=outs,
        nodes=dict(sorted(converter.scopes.items())),
        # TFLite names output tensors after the signature, not the op: their nodes by output
        output_nodes={o.name: made_by[o.name] for o in outs if o.name in made_by},
    )


def run_onnx(src: Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """onnxruntime on samples (N, ...) in ONNX layout, one sample per run; outputs by name."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types
        raise InputError(f"onnxruntime cannot load {src}: {exc}", path=str(src)) from None
    names = [i.name for i in session.get_inputs()]
    arrays, count = check_samples(names, inputs, str(src))
    outs = [o.name for o in session.get_outputs()]
    types = {i.name: _np_type(i.type) for i in session.get_inputs()}
    results: dict[str, list[np.ndarray]] = {o: [] for o in outs}
    for k in range(count):
        feed = {n: arrays[n][k : k + 1].astype(types[n]) for n in names}
        for name, value in zip(outs, session.run(outs, feed)):
            results[name].append(value)
    return {n: np.concatenate(v, axis=0) if v[0].ndim else np.stack(v) for n, v in results.items()}


def _np_type(ort_type: str):
    table = {
        "tensor(float)": np.float32,
        "tensor(float16)": np.float16,
        "tensor(double)": np.float64,
        "tensor(int64)": np.int64,
        "tensor(int32)": np.int32,
        "tensor(int8)": np.int8,
        "tensor(uint8)": np.uint8,
        "tensor(bool)": np.bool_,
    }
    return table.get(ort_type, np.float32)
