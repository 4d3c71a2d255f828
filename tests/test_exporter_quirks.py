"""Exporter quirks from the wild (issue 13.3): dims written as -1/0, close-match hints, cutting a
detector before its data-dependent post-processing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from buildsys.converter.cut import flow_of, suggest_cut
from buildsys.converter.dynamic import DynamicInputs
from buildsys.converter.errors import GROUP_OVER, Rejected, UnsupportedModel, table
from buildsys.converter.prepare import prepare_model
from buildsys.errors import InputError
from buildsys.recipe.closematch import close_matches, did_you_mean
from conftest import build_json, run_cli

CLASSES = 12  # 11 foreground classes, each with NonZero + TopK + If: 33 refused nodes, past GROUP_OVER
ANCHORS = 2


def _conv(nodes, inits, rng, x, cin, cout, name, stride=1, relu=True):
    w = numpy_helper.from_array((rng.standard_normal((cout, cin, 3, 3)) * (2 / (9 * cin)) ** 0.5).astype(np.float32), f"{name}.w")
    b = numpy_helper.from_array((rng.standard_normal(cout) * 0.1).astype(np.float32), f"{name}.b")
    inits += [w, b]
    out = f"{name}.out"
    nodes.append(helper.make_node("Conv", [x, w.name, b.name], [out], name=name, pads=[1, 1, 1, 1], strides=[stride, stride]))
    if not relu:
        return out
    nodes.append(helper.make_node("Relu", [out], [f"{name}.relu"], name=f"{name}.act"))
    return f"{name}.relu"


def _const(inits, name, value, dtype=np.int64):
    inits.append(numpy_helper.from_array(np.asarray(value, dtype), name))
    return name


def _model(nodes, inits, inputs, outputs, value_info=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits, value_info=list(value_info))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="paddle2onnx")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


# -- dims written as -1 / 0 ---------------------------------------------------------------------


def paddle_cnn(batch: int | str = -1, side: int | str = 0) -> onnx.ModelProto:
    """A small CNN as PaddlePaddle writes it: batch -1, image sides 0, the same in value_info, and a
    Reshape whose shape [0, -1] means "copy dim 0, infer the rest" (ONNX semantics, not dynamic).
    onnxruntime takes a 0 side as a fixed 0: its reference runs the same net with named dims."""
    rng = np.random.default_rng(0)
    nodes, inits = [], []
    x = _conv(nodes, inits, rng, "x", 3, 8, "conv0")
    x = _conv(nodes, inits, rng, x, 8, 16, "conv1", stride=2)
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["pool"], name="pool"))
    nodes.append(helper.make_node("Reshape", ["pool", _const(inits, "flat_shape", [0, -1])], ["flat"], name="flatten"))
    w = numpy_helper.from_array((rng.standard_normal((16, 10)) * 0.3).astype(np.float32), "fc.w")
    inits.append(w)
    nodes.append(helper.make_node("MatMul", ["flat", "fc.w"], ["logits"], name="fc"))
    value_info = [
        helper.make_tensor_value_info("conv0.relu", TensorProto.FLOAT, [batch, 8, side, side]),
        helper.make_tensor_value_info("flat", TensorProto.FLOAT, [batch, 16]),
    ]
    x_info = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, side, side])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 10])
    return _model(nodes, inits, [x_info], [logits], value_info)


def test_minus_one_and_zero_dims_are_dynamic_and_the_error_lists_them():
    with pytest.raises(DynamicInputs) as err:
        prepare_model(paddle_cnn(), label="paddle.onnx")
    message = err.value.message
    assert "x: [?, 3, ?, ?]" in message
    assert "shapes:\n  x: [1, 3, 224, 224]  # example sizes for dim 2, dim 3" in message
    assert "-1" not in message and ", 0" not in message


def test_batch_sets_a_minus_one_batch_but_zero_sides_still_need_shapes():
    with pytest.raises(DynamicInputs) as err:
        prepare_model(paddle_cnn(), batch=2, label="paddle.onnx")
    assert "x: [2, 3, ?, ?]" in err.value.message


def test_shapes_set_minus_one_and_zero_dims_and_reshape_keeps_its_meaning():
    prepared = prepare_model(paddle_cnn(), {"x": [2, 3, 20, 24]})
    dims = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in [*prepared.graph.value_info, *prepared.graph.output]}
    assert dims["conv0.relu"] == [2, 8, 20, 24] and dims["flat"] == [2, 16] and dims["logits"] == [2, 10]
    inits = {t.name: numpy_helper.to_array(t).tolist() for t in prepared.graph.initializer}
    reshape = next(n for n in prepared.graph.node if n.op_type == "Reshape")
    assert inits[reshape.input[1]] == [0, -1]
    x = np.random.default_rng(1).standard_normal((2, 3, 20, 24)).astype(np.float32)
    want = ort.InferenceSession(paddle_cnn("N", "S").SerializeToString()).run(None, {"x": x})[0]
    got = ort.InferenceSession(prepared.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_a_fixed_dim_is_still_refused_when_shapes_contradicts_it():
    with pytest.raises(InputError, match="sets dim 1 to 4, but the model fixes it at 3"):
        prepare_model(paddle_cnn(), {"x": [1, 4, 8, 8]})


PADDLE_RECIPE = """\
version: 1
name: paddle
source:
  onnx: paddle.onnx
shapes:
  x: [1, 3, 32, 32]
calibration:
  samples: 8
  inputs:
    x: {npy: calib.npy}
validate:
  samples: 8
  inputs:
    x: {npy: calib.npy}
targets:
  - device: cpu-fp32
"""


def test_paddle_model_builds_with_shapes_and_matches_onnxruntime(tmp_path: Path):
    ws = tmp_path / "ws"
    (ws / "recipes").mkdir(parents=True)
    onnx.save(paddle_cnn(), ws / "recipes/paddle.onnx")
    x = np.random.default_rng(2).standard_normal((8, 3, 32, 32)).astype(np.float32)
    np.save(ws / "recipes/calib.npy", x)
    (ws / "recipes/paddle.yaml").write_text(PADDLE_RECIPE)
    outcomes = build_json(ws)
    assert outcomes["cpu-fp32/validate"] == "ran"
    got = run_tflite(ws / "build/paddle/cpu-fp32/model.tflite", ws / "build/paddle/_common/signature.json", {"x": x[:1]})
    want = ort.InferenceSession(paddle_cnn("N", "S").SerializeToString()).run(None, {"x": x[:1]})
    np.testing.assert_allclose(got[0], want[0], rtol=1e-4, atol=1e-4)


def test_inspect_shows_minus_one_and_zero_as_dynamic_and_suggests_sizes(tmp_path: Path):
    onnx.save(paddle_cnn(), tmp_path / "paddle.onnx")
    out = run_cli(tmp_path, "inspect", "paddle.onnx").stdout
    assert "inputs (1 with dynamic dims):" in out
    assert "x       float32  [?, 3, ?, ?]" in out
    assert "logits  float32  [?, 10]" in out
    assert "  x: [1, 3, 224, 224]" in out
    assert "-1" not in out and ", 0" not in out


def run_tflite(model: Path, signature: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The artifact on the LiteRT interpreter, fed in ONNX layout (the signature's perms)."""
    from ai_edge_litert.interpreter import Interpreter

    sig = json.loads(signature.read_text())
    interp = Interpreter(model_path=str(model))
    interp.allocate_tensors()
    details = interp.get_input_details()
    for i, spec in enumerate(sig["inputs"]):
        interp.set_tensor(details[i]["index"], np.transpose(feeds[spec["name"]], spec["perm"]))
    interp.invoke()
    outs = interp.get_output_details()
    return [np.transpose(interp.get_tensor(outs[i]["index"]), np.argsort(spec["perm"])) for i, spec in enumerate(sig["outputs"])]


# -- close-match hints --------------------------------------------------------------------------


def test_equally_close_names_come_in_natural_order():
    assert close_matches("Conv", ["Conv.10", "Conv.9", "Conv.0"]) == ["Conv.0", "Conv.9", "Conv.10"]
    assert close_matches("layer_x", ["layer_12", "layer_2", "layer_1"]) == ["layer_1", "layer_2", "layer_12"]


@pytest.mark.parametrize(
    ("word", "names", "first"),
    [
        ("Conv_O", ["Conv_1", "Conv_0", "Conv_00"], "Conv_0"),
        ("conv_l", ["conv_7", "conv_12", "conv_1"], "conv_1"),
        ("block_I5", ["block_15", "block_1", "block_16"], "block_15"),
        ("S0ftmax_B", ["Softmax_8", "Softmax_9"], "Softmax_8"),
        ("image", ["lmage_1", "imagE"], "imagE"),
    ],
)
def test_a_look_alike_spelling_is_the_first_suggestion(word, names, first):
    assert close_matches(word, names)[0] == first


def test_no_suggestion_for_a_different_word():
    assert close_matches("scores", ["conv0.w", "pool"]) == []
    assert did_you_mean("zzz", ["Conv"]) is None


def test_prepare_hints_use_the_helper(tmp_path: Path):
    with pytest.raises(InputError) as err:
        prepare_model(paddle_cnn(), {"X": [1, 3, 8, 8]}, label="paddle.onnx")
    assert err.value.hint == "did you mean 'x'?"
    with pytest.raises(InputError) as err:
        prepare_model(paddle_cnn(), {"x": [1, 3, 8, 8]}, outputs=["c0nv1.relu"], outputs_at=lambda i: f"r.yaml:7: outputs[{i}]")
    assert err.value.message == "r.yaml:7: outputs[0]: the model has no tensor named 'c0nv1.relu'"
    assert err.value.hint.startswith("did you mean 'conv1.relu'")


def test_replacement_node_hint_ranks_look_alikes_first():
    from buildsys.recipe.model import Replacement
    from buildsys.errors import UsageError

    edit = Replacement(0, {"node": "conv_l", "attributes": {"strides": [1, 1]}}, 3, {("node",): 3})
    model = paddle_cnn()
    model.graph.node[0].name, model.graph.node[2].name = "conv_7", "conv_1"
    with pytest.raises(UsageError) as err:
        prepare_model(model, {"x": [1, 3, 8, 8]}, replacements=[edit], recipe_file="r.yaml")
    text = str(err.value.problems[0].hint) if hasattr(err.value, "problems") else err.value.hint
    assert text.startswith("closest: conv_1, conv_7")
