"""int8 ranges as the float model has them (tflow/calibranges.py).

TF's calibrator records the input of an elementwise op that runs in place (MUL, ADD, ...) after
the op has overwritten it, so that input gets its consumer's range. The models here are that
pattern: a tensor read only by a Mul with a constant far from 1. Each test reads the range the
artifact gives the tensor and compares the int8 outputs with onnxruntime.
"""

from __future__ import annotations

import archs
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_fusions import cosine, int8_build, int8_run

N = helper.make_node
ROWS = 300


def model(nodes, inits, out_shape, shape=(1, ROWS, 1)) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "m",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def box_decoding() -> onnx.ModelProto:
    """Faster R-CNN's size decoding: exp(clip(d, max=log(1000/16))) * anchor size, halved, as
    the offsets of a box centre (exp(d) is near 1, the anchor sizes run to 400)."""
    sizes = np.random.default_rng(0).uniform(10, 400, (1, ROWS, 1))
    nodes = [
        N("Clip", ["x", "", "clip_max"], ["d"]),
        N("Exp", ["d"], ["e"]),
        N("Mul", ["e", "sizes"], ["w"]),
        N("Mul", ["w", "half"], ["hw"]),
        N("Sub", ["centre", "hw"], ["x1"]),
        N("Add", ["centre", "hw"], ["x2"]),
        N("Concat", ["x1", "x2"], ["y"], axis=2),
    ]
    inits = {"clip_max": np.log(1000 / 16), "sizes": sizes, "half": 0.5, "centre": sizes * 0.8}
    return model(nodes, inits, [1, ROWS, 2])


def scaled_relu() -> onnx.ModelProto:
    """relu(x) * 10 * 0.5 + 1: the ReLU output is recorded with the product's range, 10x too wide."""
    nodes = [
        N("Relu", ["x"], ["r"]),
        N("Mul", ["r", "ten"], ["m"]),
        N("Mul", ["m", "half"], ["h"]),
        N("Add", ["h", "one"], ["y"]),
    ]
    return model(nodes, {"ten": 10.0, "half": 0.5, "one": 1.0}, [1, ROWS, 1])


def samples(n: int, seed: int, scale: float) -> dict[str, np.ndarray]:
    return {"x": (np.random.default_rng(seed).uniform(-1, 1, (n, ROWS, 1)) * scale).astype(np.float32)}


def tensor_range(data: bytes, op: str) -> float:
    """The real span (255 steps) the artifact gives the output of its only `op`."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=data)
    details = {d["index"]: d for d in it.get_tensor_details()}
    (found,) = [o for o in it._get_ops_details() if o["op_name"] == op]
    return float(details[found["outputs"][0]]["quantization"][0] * 255)


def widths(y: np.ndarray) -> np.ndarray:
    """x2 - x1 of the decoded boxes: what the Exp carries (the centres alone would match anyway)."""
    return (y[..., 1] - y[..., 0]).reshape(-1)


@pytest.mark.parametrize(
    "name,build,op,scale,true_span,measure",
    [
        ("box decoding", box_decoding, "EXP", 0.3, np.exp(0.3), widths),
        ("scaled relu", scaled_relu, "RELU", 1.0, 1.0, lambda y: y.reshape(-1)),
    ],
)
def test_a_tensor_read_in_place_keeps_its_own_range(name, build, op, scale, true_span, measure):
    m = build()
    data, sig = int8_build(m, samples(16, 100, scale))
    span = tensor_range(data, op)
    # int8 ranges take in 0: an EXP output in [0.74, 1.35] is stored as [0, 1.35]
    print(f"{name}: {op} output span {span:.3f} (its values reach {true_span:.3f})")
    assert span < 1.1 * true_span
    feeds = samples(8, 7, scale)
    want = measure(archs.run_ort(m, feeds)["y"])
    got = measure(int8_run(data, sig, feeds)["y"])
    c = cosine(want, got)
    print(f"{name}: int8 cosine to onnxruntime {c:.5f}")
    assert c > 0.999
