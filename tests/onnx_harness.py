"""Build small ONNX models, run them in onnxruntime and as converted fp32 TFLite, compare.

Every converter test goes through `check`: the model is checked by
onnx.checker, converted by buildsys (Converter -> frozen float model -> TFLite
fp32, the same path a build takes), run in the TFLite interpreter with inputs
permuted as the signature says, and compared with onnxruntime at the given
tolerances. It returns the TFLite op histogram so tests can assert how many
TRANSPOSE ops the conversion needed.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from buildsys.signature import Signature
from buildsys.tflow.inspect import op_histogram
from buildsys.tflow.onnxsource import export_onnx
from buildsys.tflow.quantize import to_tflite
from buildsys.tflow.runtime import load_interpreter
from buildsys.tflow.samples import to_onnx_layout, to_stored

OPSET = 17
DTYPES = {
    np.dtype(np.float32): TensorProto.FLOAT,
    np.dtype(np.int64): TensorProto.INT64,
    np.dtype(np.int32): TensorProto.INT32,
    np.dtype(np.bool_): TensorProto.BOOL,
    np.dtype(np.float16): TensorProto.FLOAT16,
    np.dtype(np.uint8): TensorProto.UINT8,
    np.dtype(np.int8): TensorProto.INT8,
    np.dtype(np.float64): TensorProto.DOUBLE,
}


def tensor_type(dtype) -> int:
    return DTYPES[np.dtype(dtype)]


def make_model(
    nodes: list[onnx.NodeProto],
    inputs: dict[str, tuple],
    outputs: list[str] | dict[str, tuple],
    initializers: dict[str, np.ndarray] | None = None,
    opset: int = OPSET,
) -> onnx.ModelProto:
    """inputs: {name: shape} (float32) or {name: (shape, dtype)}; outputs: names (types inferred)."""

    def vi(name, spec):
        shape, dtype = (spec, np.float32) if not _has_dtype(spec) else spec
        return helper.make_tensor_value_info(name, tensor_type(dtype), list(shape))

    ins = [vi(n, s) for n, s in inputs.items()]
    if isinstance(outputs, dict):
        outs = [vi(n, s) for n, s in outputs.items()]
    else:
        outs = [helper.make_empty_tensor_value_info(n) for n in outputs]
    inits = [numpy_helper.from_array(np.asarray(v), n) for n, v in (initializers or {}).items()]
    graph = helper.make_graph(nodes, "test", ins, outs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 9)
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    if not isinstance(outputs, dict):
        _fill_output_types(model)
    onnx.checker.check_model(model, full_check=True)
    return model


def _has_dtype(spec) -> bool:
    return len(spec) == 2 and isinstance(spec[0], (list, tuple)) and not isinstance(spec[1], (int, list, tuple))


def _fill_output_types(model: onnx.ModelProto) -> None:
    known = {v.name: v for v in model.graph.value_info}
    for out in model.graph.output:
        if out.name in known:
            out.CopyFrom(known[out.name])


def random_feeds(model: onnx.ModelProto, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    inits = {t.name for t in model.graph.initializer}
    feeds = {}
    for v in model.graph.input:
        if v.name in inits:
            continue
        t = v.type.tensor_type
        dims = [d.dim_value for d in t.shape.dim]
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type))
        if dtype.kind == "f":
            feeds[v.name] = rng.standard_normal(dims).astype(dtype)
        elif dtype.kind == "b":
            feeds[v.name] = rng.random(dims) > 0.5
        else:
            feeds[v.name] = rng.integers(0, 5, size=dims).astype(dtype)
    return feeds


def run_ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray], optimize: bool = True) -> dict[str, np.ndarray]:
    """optimize=False: onnxruntime without graph fusions, which would otherwise replace
    QDQ float math by integer kernels that round differently (QLinearConv)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


@dataclass
class Converted:
    tflite: bytes
    signature: Signature
    ops: dict[str, int]

    @property
    def transposes(self) -> int:
        return self.ops.get("TRANSPOSE", 0)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run on ONNX-layout feeds (whole arrays, no batching); outputs in ONNX layout."""
        interpreter = load_interpreter(self.tflite)
        runner = interpreter.get_signature_runner("serving_default")
        stored = to_stored(feeds, self.signature.inputs)
        outs = runner(**stored)
        return to_onnx_layout({k: np.asarray(v) for k, v in outs.items()}, self.signature.outputs)


def convert(model: onnx.ModelProto, **options) -> Converted:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "float.pb"
        signature = export_onnx(model, path, **options)
        data = to_tflite(path, signature, "none")
    return Converted(data, signature, op_histogram(data))


def rejection(model: onnx.ModelProto) -> str:
    """The reason the converter gives for refusing the model's first rejected node."""
    import pytest

    from buildsys.converter.convert import Converter, convert_arrays
    from buildsys.converter.errors import UnsupportedModel

    converter = Converter(model)
    feeds = {v.name: np.zeros(v.shape, v.dtype) for v in converter.graph.inputs}
    with pytest.raises(UnsupportedModel) as info:
        convert_arrays(converter, feeds)
    return info.value.rejected[0].reason


def check_ops(model: onnx.ModelProto, feeds=None, transposes: int = 0, absent=(), present=(), **options) -> Converted:
    """`check`, then assert which TFLite ops the conversion must not and must emit."""
    conv = check(model, feeds, transposes=transposes, **options)
    for op in absent:
        assert op not in conv.ops, conv.ops
    for op in present:
        assert op in conv.ops, conv.ops
    return conv


def check(
    model: onnx.ModelProto,
    feeds: dict[str, np.ndarray] | None = None,
    *,
    atol: float = 1e-5,
    rtol: float = 1e-5,
    transposes: int | None = None,
    seed: int = 0,
    ort_optimize: bool = True,
    **options,
) -> Converted:
    """Assert the converted fp32 TFLite matches onnxruntime; returns the conversion."""
    feeds = random_feeds(model, seed) if feeds is None else feeds
    ref = run_ort(model, feeds, optimize=ort_optimize)
    converted = convert(model, **options)
    got = converted.run(feeds)
    assert sorted(got) == sorted(ref), (sorted(got), sorted(ref))
    for name, want in ref.items():
        have = got[name]
        assert have.shape == want.shape, f"{name}: shape {have.shape} != onnxruntime {want.shape}"
        if want.dtype.kind in "biu":
            np.testing.assert_array_equal(have.astype(want.dtype), want, err_msg=name)
        else:
            np.testing.assert_allclose(have, want, atol=atol, rtol=rtol, err_msg=name)
    if transposes is not None:
        assert converted.transposes == transposes, f"TRANSPOSE ops: {converted.ops}"
    return converted
