"""Exporter quirks from the wild (issue 13.3): dims written as -1/0, close-match hints, cutting a
detector before its data-dependent post-processing."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import build_json, run_cli
from onnx import TensorProto, helper, numpy_helper

from buildsys.converter.cut import flow_of, suggest_cut
from buildsys.converter.errors import GROUP_OVER, Rejected, UnsupportedModel, table
from buildsys.documents.closematch import close_matches, did_you_mean
from buildsys.errors import InputError
from buildsys.onnxprep.dynamic import DynamicInputs
from buildsys.onnxprep.prepare import prepare_model

CLASSES = 12  # 11 foreground classes, each with NonZero + TopK + If: with the guarded NMS 34 refused nodes
ANCHORS = 2


def _conv(nodes, inits, rng, x, cin, cout, name, stride=1, relu=True):
    he = (2 / (9 * cin)) ** 0.5
    w = numpy_helper.from_array((rng.standard_normal((cout, cin, 3, 3)) * he).astype(np.float32), f"{name}.w")
    b = numpy_helper.from_array((rng.standard_normal(cout) * 0.1).astype(np.float32), f"{name}.b")
    inits += [w, b]
    out = f"{name}.out"
    conv = helper.make_node("Conv", [x, w.name, b.name], [out], name=name, pads=[1] * 4, strides=[stride, stride])
    nodes.append(conv)
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
    infos = [*prepared.graph.value_info, *prepared.graph.output]
    dims = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in infos}
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
    got = run_tflite(
        ws / "build/paddle/cpu-fp32/model.tflite", ws / "build/paddle/_common/signature.json", {"x": x[:1]}
    )
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
    back = [np.argsort(spec["perm"]) for spec in sig["outputs"]]
    return [np.transpose(interp.get_tensor(outs[i]["index"]), perm) for i, perm in enumerate(back)]


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
        at = lambda i: f"r.yaml:7: outputs[{i}]"  # noqa: E731
        prepare_model(paddle_cnn(), {"x": [1, 3, 8, 8]}, outputs=["c0nv1.relu"], outputs_at=at)
    assert err.value.message == "r.yaml:7: outputs[0]: the model has no tensor named 'c0nv1.relu'"
    assert err.value.hint.startswith("did you mean 'conv1.relu'")


def test_replacement_node_hint_ranks_look_alikes_first():
    from buildsys.errors import UsageError
    from buildsys.recipe.model import Replacement

    edit = Replacement(0, {"node": "conv_l", "attributes": {"strides": [1, 1]}}, 3, {("node",): 3})
    model = paddle_cnn()
    model.graph.node[0].name, model.graph.node[2].name = "conv_7", "conv_1"
    with pytest.raises(UsageError) as err:
        prepare_model(model, {"x": [1, 3, 8, 8]}, replacements=[edit], recipe_file="r.yaml")
    text = str(err.value.problems[0].hint) if hasattr(err.value, "problems") else err.value.hint
    assert text.startswith("closest: conv_1, conv_7")


# -- cutting a detector before its data-dependent post-processing ------------------------------


def ssd(size: int = 32) -> onnx.ModelProto:
    """An SSD-style export: conv backbone -> box and score heads -> per-class post-processing with
    NonZero, a TopK whose k is a count of the scores, an If around the kept scores, and one
    NonMaxSuppression over all classes, and the same NMS inside an If on the best score (torchvision
    exports skip NMS when nothing scores)."""
    rng = np.random.default_rng(3)
    nodes, inits = [], []
    x = _conv(nodes, inits, rng, "image", 3, 8, "backbone.0", stride=2)
    x = _conv(nodes, inits, rng, x, 8, 16, "backbone.1", stride=2)
    boxes = _head(nodes, inits, rng, x, 4, "box_head", "boxes")
    logits = _head(nodes, inits, rng, x, CLASSES, "cls_head", "logits")
    nodes.append(helper.make_node("Softmax", [logits], ["scores"], name="cls_softmax", axis=-1))
    nodes.append(helper.make_node("Transpose", ["scores"], ["scores_t"], name="nms_scores", perm=[0, 2, 1]))
    limits = [_const(inits, "nms.max", [20])]
    limits += [_const(inits, "nms.iou", [0.5], np.float32), _const(inits, "nms.thr", [0.05], np.float32)]
    nodes.append(helper.make_node("NonMaxSuppression", [boxes, "scores_t", *limits], ["selected"], name="nms"))
    outputs = [helper.make_tensor_value_info("selected", TensorProto.INT64, [None, 3])]
    outputs.append(_guarded_nms(nodes, inits, boxes, limits))
    threshold = _const(inits, "score_thr", 0.1, np.float32)
    for c in range(1, CLASSES):
        outputs.append(_class_post(nodes, inits, c, threshold))
    inputs = [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, size, size])]
    return _model(nodes, inits, inputs, outputs)


def _head(nodes, inits, rng, x, per_anchor, name, out) -> str:
    """(anchors x per_anchor) channels -> [1, cells * anchors, per_anchor], as SSD heads export."""
    conv = _conv(nodes, inits, rng, x, 16, ANCHORS * per_anchor, name, relu=False)
    nodes.append(helper.make_node("Transpose", [conv], [f"{name}.nhwc"], name=f"{name}.perm", perm=[0, 2, 3, 1]))
    shape = _const(inits, f"{name}.shape", [1, -1, per_anchor])
    nodes.append(helper.make_node("Reshape", [f"{name}.nhwc", shape], [out], name=f"{name}.flat"))
    return out


def _guarded_nms(nodes, inits, boxes, limits) -> onnx.ValueInfoProto:
    nodes.append(helper.make_node("ReduceMax", ["scores"], ["best"], name="guard.best", keepdims=0))
    threshold = _const(inits, "guard.thr", 0.2, np.float32)
    nodes.append(helper.make_node("Greater", ["best", threshold], ["guard"], name="guard.gt"))
    kept = helper.make_tensor_value_info("guarded", TensorProto.INT64, [None, 3])
    nms = helper.make_node("NonMaxSuppression", [boxes, "scores_t", *limits], ["guarded"], name="guard.nms")
    then = helper.make_graph([nms], "guard.then", [], [kept])
    empty = numpy_helper.from_array(np.zeros((0, 3), np.int64))
    orelse = helper.make_graph([helper.make_node("Constant", [], ["guarded"], value=empty)], "guard.else", [], [kept])
    nodes.append(
        helper.make_node("If", ["guard"], ["detections"], name="guard.if", then_branch=then, else_branch=orelse)
    )
    return helper.make_tensor_value_info("detections", TensorProto.INT64, [None, 3])


def _class_post(nodes, inits, c, threshold) -> onnx.ValueInfoProto:
    p = f"post.{c}"
    index = _const(inits, f"{p}.index", c)
    steps = [
        helper.make_node("Gather", ["scores", index], [f"{p}.scores"], name=f"{p}.pick", axis=2),
        helper.make_node("Greater", [f"{p}.scores", threshold], [f"{p}.mask"], name=f"{p}.gt"),
        helper.make_node("NonZero", [f"{p}.mask"], [f"{p}.where"], name=f"{p}.nonzero"),
        helper.make_node("Cast", [f"{p}.mask"], [f"{p}.ones"], name=f"{p}.cast", to=TensorProto.INT64),
        helper.make_node("ReduceSum", [f"{p}.ones"], [f"{p}.count"], name=f"{p}.count", keepdims=0),
        helper.make_node("Reshape", [f"{p}.count", _const(inits, f"{p}.k_shape", [1])], [f"{p}.k"], name=f"{p}.k"),
        helper.make_node("TopK", [f"{p}.scores", f"{p}.k"], [f"{p}.top", f"{p}.top_i"], name=f"{p}.topk", axis=1),
        helper.make_node("Greater", [f"{p}.count", _const(inits, f"{p}.zero", 0)], [f"{p}.any"], name=f"{p}.any"),
    ]
    kept = helper.make_tensor_value_info(f"{p}.kept", TensorProto.FLOAT, [1, None])
    then = helper.make_graph([helper.make_node("Identity", [f"{p}.top"], [f"{p}.kept"])], f"{p}.then", [], [kept])
    empty = numpy_helper.from_array(np.zeros((1, 0), np.float32))
    orelse = helper.make_graph([helper.make_node("Constant", [], [f"{p}.kept"], value=empty)], f"{p}.else", [], [kept])
    steps.append(
        helper.make_node("If", [f"{p}.any"], [f"{p}.out"], name=f"{p}.if", then_branch=then, else_branch=orelse)
    )
    steps.append(helper.make_node("Shape", [f"{p}.where"], [f"{p}.found"], name=f"{p}.found"))
    nodes += steps
    return helper.make_tensor_value_info(f"{p}.out", TensorProto.FLOAT, [1, None])


def test_ssd_runs_on_onnxruntime_and_the_suggested_cut_is_boxes_and_scores():
    model = ssd()
    x = np.random.default_rng(4).standard_normal((1, 3, 32, 32)).astype(np.float32)
    ort.InferenceSession(model.SerializeToString()).run(None, {"image": x})  # a valid, runnable export
    suggestion = suggest_cut(flow_of(model.graph))
    assert suggestion is not None
    assert suggestion.tensors == ("boxes", "scores")
    assert dict(suggestion.ops) == {"If": 12, "NonMaxSuppression": 1, "NonZero": 11, "TopK": 11}
    assert suggestion.dropped == 1 + 1 + 3 + 11 * 10  # NMS, its transpose, the guarded NMS, ten nodes per class


def test_the_cut_keeps_only_what_the_outputs_need():
    prepared = prepare_model(ssd(), outputs=["scores", "boxes"])
    assert [o.name for o in prepared.graph.output] == ["scores", "boxes"]
    ops = {n.op_type for n in prepared.graph.node}
    assert ops == {"Conv", "Relu", "Transpose", "Reshape", "Softmax"}
    assert {t.name for t in prepared.graph.initializer} == {
        t.name for t in ssd().graph.initializer if t.name.startswith(("backbone", "box_head", "cls_head"))
    }
    dims = [[d.dim_value for d in o.type.tensor_type.shape.dim] for o in prepared.graph.output]
    assert dims == [[1, 128, CLASSES], [1, 128, 4]]


def test_a_cut_at_an_unknown_tensor_names_the_recipe_line_and_the_near_names():
    with pytest.raises(InputError) as err:
        prepare_model(ssd(), outputs=["boxes", "sc0res"], outputs_at=lambda i: f"ssd.yaml:9: outputs[{i}]")
    assert err.value.message == "ssd.yaml:9: outputs[1]: the model has no tensor named 'sc0res'"
    assert err.value.hint.startswith("did you mean 'scores'")


def test_a_cut_can_keep_a_tensor_read_inside_an_if_branch():
    prepared = prepare_model(ssd(), outputs=["post.1.out"])
    ops = [n.op_type for n in prepared.graph.node]
    assert "If" in ops and "TopK" in ops and "NonMaxSuppression" not in ops
    assert "post.2.pick" not in {n.name for n in prepared.graph.node}


def test_many_refused_rows_are_grouped_by_op_type():
    why = "NonZero of a computed tensor has a data-dependent shape"
    rows = [Rejected("NonZero", "", 17, f"post.{i}.nonzero", why) for i in range(15)]
    rows += [Rejected("If", "", 17, f"post.{i}.if", "no converter for this op") for i in range(15)]
    rows += [Rejected("TopK", "", 17, "post.0.topk", "k must be a constant")]
    rows += [Rejected("TopK", "", 17, "post.1.topk", "k is odd")]
    text = table(rows)
    lines = text.splitlines()
    assert len(rows) > GROUP_OVER and len(lines) == 2 + 3
    assert lines[0].split() == ["op", "type", "domain", "opset", "nodes", "examples", "reason"]
    assert lines[2].split()[:5] == ["If", "ai.onnx", "17", "15", "post.0.if,"]
    assert re.search(r"post\.0\.if, post\.1\.if, post\.2\.if, \.\.\. +no converter for this op$", lines[2])
    assert lines[4].endswith("k must be a constant (and 1 other reason)")  # a tie: the first seen
    assert len(table(rows[:GROUP_OVER]).splitlines()) == 2 + GROUP_OVER  # few rows: one per node


def test_a_refusal_of_data_dependent_ops_points_at_the_cut():
    rows = [Rejected("NonZero", "", 17, "post.1.nonzero", "data-dependent shape")]
    cut = suggest_cut(flow_of(ssd().graph))
    hint = UnsupportedModel("ssd.onnx", rows, cut=cut).hint
    assert hint.endswith(
        "add to the recipe:\n" + "outputs:   # cut before the data-dependent post-processing "
        "(If, NonMaxSuppression, NonZero, TopK); the application runs it\n  - boxes\n  - scores"
    )
    other = UnsupportedModel("ssd.onnx", [Rejected("Foo", "x.y", 1, "foo", "custom domain")], cut=cut).hint
    assert "replacements:" in other and "outputs:" not in other


SSD_RECIPE = """\
version: 1
name: ssd
source:
  onnx: ssd.onnx
{cut}calibration:
  samples: 16
  inputs:
    image: {{npy: calib.npy}}
validate:
  samples: 8
  inputs:
    image: {{npy: calib.npy}}
targets:
  - device: cpu-fp32
  - device: cpu-int8
"""


def ssd_workspace(ws: Path, cut: str = "") -> Path:
    (ws / "recipes").mkdir(parents=True)
    onnx.save(ssd(), ws / "recipes/ssd.onnx")
    np.save(ws / "recipes/calib.npy", np.random.default_rng(5).standard_normal((16, 3, 32, 32)).astype(np.float32))
    (ws / "recipes/ssd.yaml").write_text(SSD_RECIPE.format(cut=cut))
    return ws


def test_ssd_build_without_the_cut_fails_with_the_grouped_table_and_the_cut(tmp_path: Path):
    ws = ssd_workspace(tmp_path / "ws")
    err = run_cli(ws, "build", check=1).stderr
    assert "34 nodes cannot be converted" in err
    assert "Traceback" not in err
    table_rows = [line.split() for line in err.splitlines() if re.match(r"  (If|NonZero|TopK) ", line)]
    assert sorted(row[0] for row in table_rows) == ["If", "NonZero", "TopK"]  # one row per op type
    assert [row[3] for row in table_rows] == ["12", "11", "11"]
    assert "outputs:   # cut before" in err and "  - boxes\n" in err and "  - scores" in err
    inspect = run_cli(ws, "inspect", "recipes/ssd.yaml").stdout
    assert (
        "data-dependent post-processing: 115 nodes from If x12, NonMaxSuppression x1, NonZero x11, TopK x11" in inspect
    )
    assert "outputs:   # cut before" in inspect and inspect.rstrip().endswith("  - boxes\n  - scores")


def test_ssd_with_the_cut_builds_fp32_and_int8_and_matches_onnxruntime(tmp_path: Path):
    ws = ssd_workspace(tmp_path / "ws", cut="outputs: [boxes, scores]\n")
    outcomes = build_json(ws)
    assert outcomes["cpu-int8/validate"] == "ran" and outcomes["cpu-fp32/validate"] == "ran"
    x = np.load(ws / "recipes/calib.npy")[:1]
    reference = onnx.utils.Extractor(onnx.shape_inference.infer_shapes(ssd())).extract_model(
        ["image"], ["boxes", "scores"]
    )
    want = ort.InferenceSession(reference.SerializeToString()).run(None, {"image": x})
    signature = ws / "build/ssd/_common/signature.json"
    got = run_tflite(ws / "build/ssd/cpu-fp32/model.tflite", signature, {"image": x})
    assert [g.shape for g in got] == [(1, 128, 4), (1, 128, CLASSES)]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
    int8 = json.loads((ws / "build/ssd/cpu-int8/metrics.json").read_text())
    assert int8["outputs"]["scores"]["cosine"] > 0.99 and int8["outputs"]["boxes"]["cosine"] > 0.95
    inspect = run_cli(ws, "inspect", "recipes/ssd.yaml").stdout
    assert "applied: cut at 2 outputs" in inspect and "data-dependent" not in inspect


def test_outputs_on_a_keras_source_is_a_recipe_problem(workspace: Path):
    recipe = workspace / "recipes/shapes.yaml"
    recipe.write_text(recipe.read_text().replace("batch: 1\n", "batch: 1\noutputs: [dense]\n"))
    err = run_cli(workspace, "check", check=2).stderr
    assert "shapes.yaml:7" in err and "`outputs:` cuts ONNX models, and this recipe's source is keras" in err


def test_outputs_must_be_a_list_of_unique_names(workspace: Path):
    recipe = workspace / "recipes/shapes.yaml"
    recipe.write_text(recipe.read_text().replace("batch: 1\n", "batch: 1\noutputs: [a, a]\n"))
    err = run_cli(workspace, "check", check=2).stderr
    assert "shapes.yaml:7:10  outputs  ['a', 'a'] has non-unique elements" in err


def test_inspect_and_build_refuse_an_unknown_cut_tensor_with_its_recipe_line(tmp_path: Path):
    ws = ssd_workspace(tmp_path / "ws", cut="outputs:\n  - boxes\n  - SC0RES\n")
    for args in (("inspect", "recipes/ssd.yaml"), ("build",)):
        err = run_cli(ws, *args, check=2).stderr
        assert "recipes/ssd.yaml:7: outputs[1]: the model has no tensor named 'SC0RES'" in err, err
        assert "hint: did you mean 'scores', 'scores_t', 'post.1.scores'?\n" in err and "Traceback" not in err
    report = json.loads(run_cli(ws, "inspect", "recipes/ssd.onnx", "--json").stdout)
    assert report["cut"]["tensors"] == ["boxes", "scores"]
    assert report["snippets"]["outputs"].endswith("  - boxes\n  - scores")


def test_an_if_on_a_shape_is_not_data_dependent_post_processing():
    """`If` on the batch size (exporters write it for dynamic batches) is static control flow."""

    def branch(op, out):
        info = helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", 4])
        return helper.make_graph([helper.make_node(op, ["x"], [out])], out, [], [info])

    then, orelse = branch("Identity", "y_then"), branch("Neg", "y_else")
    inits = []
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", _const(inits, "zero", 0)], ["batch"], axis=0),
        helper.make_node("Equal", ["batch", _const(inits, "one", 1)], ["single"]),
        helper.make_node("If", ["single"], ["y"], then_branch=then, else_branch=orelse),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    model = _model(nodes, inits, [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    assert suggest_cut(flow_of(model.graph)) is None
    nodes[2] = helper.make_node("ReduceMax", ["x"], ["peak"], keepdims=0)
    nodes.insert(3, helper.make_node("Greater", ["peak", _const(inits, "half", 0.5, np.float32)], ["single"]))
    model = _model(nodes, inits, [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    suggestion = suggest_cut(flow_of(model.graph))
    assert suggestion is not None and suggestion.ops == (("If", 1),) and suggestion.tensors == ()


def test_inspect_op_filter_names_the_nearest_op_types(tmp_path: Path):
    onnx.save(ssd(), tmp_path / "ssd.onnx")
    out = run_cli(tmp_path, "inspect", "ssd.onnx", "--op", "C0nv", "--op", "greater", "--op", "Zzz").stdout
    assert "nodes (C0nv, greater, Zzz): 23" in out  # 22 per-class Greater and the guard
    assert "  no C0nv node; did you mean Conv?\n" in out
    assert "  no Zzz node\n" in out and "no greater node" not in out
