"""prepare: static shapes from `shapes`/`batch`, folded shape chains, no Identity, clear errors."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from buildsys.errors import InputError
from buildsys.onnxprep.dynamic import DynamicInputs
from buildsys.onnxprep.prepare import prepare_model


def dynamic_view_model() -> onnx.ModelProto:
    """x.view(x.size(0), -1) on a [N, 3, H, W] input, as torch exports it."""
    nodes = [
        helper.make_node("Identity", ["x"], ["xi"]),
        helper.make_node("Shape", ["xi"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus_one"], ["shape"], axis=0),
        helper.make_node("Reshape", ["xi", "shape"], ["y"]),
    ]
    inits = [
        numpy_helper.from_array(np.array(0, np.int64), "zero"),
        numpy_helper.from_array(np.array([0], np.int64), "axes"),
        numpy_helper.from_array(np.array([-1], np.int64), "minus_one"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", None])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what exporters write; onnxruntime lags the newest IR version
    return model


def test_shapes_fold_the_shape_chain_and_drop_identity():
    prepared = prepare_model(dynamic_view_model(), {"x": [2, 3, 8, 8]})
    assert [n.op_type for n in prepared.graph.node] == ["Reshape"]
    shape = {t.name: numpy_helper.to_array(t) for t in prepared.graph.initializer}[prepared.graph.node[0].input[1]]
    assert shape.tolist() == [2, -1]
    out = prepared.graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in out] == [2, 192]


def test_prepared_bytes_are_deterministic():
    a = prepare_model(dynamic_view_model(), {"x": [1, 3, 4, 4]}).SerializeToString(deterministic=True)
    b = prepare_model(dynamic_view_model(), {"x": [1, 3, 4, 4]}).SerializeToString(deterministic=True)
    assert a == b


def test_dynamic_inputs_fail_with_the_shapes_snippet():
    with pytest.raises(DynamicInputs) as err:
        prepare_model(dynamic_view_model(), label="det.onnx")
    message = err.value.message
    assert "det.onnx" in message and "x: [N, 3, H, W]" in message
    assert "shapes:\n  x: [1, 3, 224, 224]" in message
    assert err.value.exit_code == 2


def test_batch_alone_leaves_spatial_dims_dynamic():
    with pytest.raises(DynamicInputs) as err:
        prepare_model(dynamic_view_model(), batch=1, label="m.onnx")
    assert "x: [1, 3, H, W]" in err.value.message


def test_unknown_input_in_shapes_is_named():
    with pytest.raises(InputError, match="'images'.*does not have") as err:
        prepare_model(dynamic_view_model(), {"images": [1, 3, 8, 8]}, label="m.onnx")
    assert "'x'" in err.value.hint


def test_wrong_rank_and_fixed_dim_conflicts():
    with pytest.raises(InputError, match="has 3 dims but the input has rank 4"):
        prepare_model(dynamic_view_model(), {"x": [1, 3, 8]})
    with pytest.raises(InputError, match="sets dim 1 to 4, but the model fixes it at 3"):
        prepare_model(dynamic_view_model(), {"x": [1, 4, 8, 8]})


def test_invalid_model_is_an_input_error():
    model = dynamic_view_model()
    model.graph.node[1].input[0] = "missing"
    with pytest.raises(InputError, match="not a valid ONNX model"):
        prepare_model(model, {"x": [1, 3, 4, 4]}, label="bad.onnx")


def test_prepared_model_gets_the_lowest_ir_version_for_its_opsets():
    model = dynamic_view_model()
    model.ir_version = 14  # onnx 1.23's default, newer than onnxruntime 1.31 loads
    prepared = prepare_model(model, {"x": [1, 3, 4, 4]})
    assert prepared.ir_version == helper.find_min_ir_version_for(list(model.opset_import))
    import onnxruntime as ort

    ort.InferenceSession(prepared.SerializeToString(), providers=["CPUExecutionProvider"])


def test_identity_feeding_a_graph_output_is_kept():
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Identity", ["r"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    prepared = prepare_model(model)
    assert [o.name for o in prepared.graph.output] == ["y"]
    onnx.checker.check_model(prepared)


def test_dynamic_batch_height_width_model_converts_once_shaped():
    from onnx_harness import check

    # a conv so the channels-last path runs, then the exporter's view(N, -1)
    model = dynamic_view_model()
    conv = helper.make_node("Conv", ["x0", "w"], ["x"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    model.graph.node.insert(0, conv)
    model.graph.input[0].name = "x0"
    model.graph.initializer.append(
        numpy_helper.from_array(np.random.default_rng(0).standard_normal((3, 3, 3, 3)).astype(np.float32), "w")
    )
    with pytest.raises(DynamicInputs):
        prepare_model(model)
    prepared = prepare_model(model, {"x0": [1, 3, 12, 10]})
    check(prepared, atol=1e-5, transposes=1)  # view(N, -1) flattens C*H*W: one NHWC -> NCHW reorder
