"""Write examples/shapes/model.onnx: the trained shapes CNN as PyTorch would export it.

The weights are those of model.keras (run make_example.py first), so the ONNX
model classifies the same PNGs just as well. The graph is written the way
`torch.onnx.export(..., dynamic_axes={"image": {0: "batch"}})` writes a CNN:
NCHW input with a symbolic batch dim, Conv with explicit pads, Identity nodes,
and `x.view(x.size(0), -1)` as a Shape -> Gather -> Unsqueeze -> Concat ->
Reshape chain, so a build exercises `shapes:`, constant folding and the
layout tracking of the converter.

    python examples/shapes/make_onnx.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).resolve().parent
SIZE = 64


def keras_weights() -> list[np.ndarray]:
    import keras

    model = keras.models.load_model(HERE / "model.keras", compile=False)
    return [w.astype(np.float32) for w in model.get_weights()]


def conv_nodes(i: int, size: int) -> tuple[list[onnx.NodeProto], int]:
    # Keras 'same' with stride 2 pads only at the end when the size is even
    out = -(-size // 2)
    total = max((out - 1) * 2 + 3 - size, 0)
    pads = [total // 2, total // 2, total - total // 2, total - total // 2]
    src = "image" if i == 1 else f"relu{i - 1}"
    nodes = [
        helper.make_node(
            "Conv", [src, f"conv{i}.weight", f"conv{i}.bias"], [f"conv{i}"], name=f"/features/conv{i}/Conv",
            kernel_shape=[3, 3], strides=[2, 2], pads=pads, dilations=[1, 1], group=1,
        ),
        helper.make_node("Relu", [f"conv{i}"], [f"relu{i}"], name=f"/features/relu{i}/Relu"),
    ]
    return nodes, out


def flatten_nodes() -> list[onnx.NodeProto]:
    """x.view(x.size(0), -1), as the exporter writes it."""
    return [
        helper.make_node("Identity", ["pooled"], ["pooled_id"], name="/pool/Identity"),
        helper.make_node("Shape", ["pooled_id"], ["shape"], name="/Shape"),
        helper.make_node("Gather", ["shape", "zero"], ["batch"], name="/Gather", axis=0),
        helper.make_node("Unsqueeze", ["batch", "axes0"], ["batch1"], name="/Unsqueeze"),
        helper.make_node("Concat", ["batch1", "minus_one"], ["flat_shape"], name="/Concat", axis=0),
        helper.make_node("Reshape", ["pooled_id", "flat_shape"], ["flat"], name="/Reshape"),
    ]


def build(weights: list[np.ndarray]) -> onnx.ModelProto:
    inits, nodes, size = {}, [], SIZE
    for i in (1, 2, 3):
        kernel, bias = weights[2 * i - 2], weights[2 * i - 1]
        inits[f"conv{i}.weight"] = kernel.transpose(3, 2, 0, 1)  # HWIO -> OIHW
        inits[f"conv{i}.bias"] = bias
        more, size = conv_nodes(i, size)
        nodes += more
    nodes.append(helper.make_node("GlobalMaxPool", ["relu3"], ["pooled"], name="/pool/GlobalMaxPool"))
    nodes += flatten_nodes()
    inits.update(
        zero=np.array(0, np.int64), axes0=np.array([0], np.int64), minus_one=np.array([-1], np.int64),
        **{"fc.weight": weights[6].T.copy(), "fc.bias": weights[7]},
    )
    nodes.append(helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], name="/fc/Gemm", transB=1))
    nodes.append(helper.make_node("Softmax", ["logits"], ["scores"], name="/Softmax", axis=1))
    graph = helper.make_graph(
        nodes,
        "shapes",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", len(weights[7])])],
        [numpy_helper.from_array(np.asarray(v, order="C"), k) for k, v in sorted(inits.items())],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="buildsys-example")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def check_against_keras(model: onnx.ModelProto) -> float:
    import keras
    import onnxruntime as ort

    probe = np.random.default_rng(0).random((4, SIZE, SIZE, 3), dtype=np.float32)
    want = keras.models.load_model(HERE / "model.keras", compile=False).predict(probe, verbose=0)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": probe.transpose(0, 3, 1, 2)})[0]
    return float(np.abs(got - want).max())


def main() -> None:
    model = build(keras_weights())
    error = check_against_keras(model)
    if error > 1e-5:
        raise RuntimeError(f"the ONNX model differs from model.keras by {error}")
    path = HERE / "model.onnx"
    path.write_bytes(model.SerializeToString(deterministic=True))
    print(f"wrote {path} ({path.stat().st_size} bytes); max |onnx - keras| = {error:.2e}")


if __name__ == "__main__":
    main()
