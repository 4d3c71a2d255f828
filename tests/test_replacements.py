"""`replacements:` applied to real-shaped ONNX models: attribute and input edits typed
against the op schema, layout choices, and every problem reported at once with its line."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import helper
from onnx_harness import check, make_model, random_feeds, run_ort

from buildsys.onnxprep.prepare import prepare_model
from buildsys.onnxprep.replace import ReplacementError, apply_replacements
from buildsys.recipe.model import Replacement


def edit(index: int, line: int, **data) -> Replacement:
    lines = {(key,): line + k for k, key in enumerate(data)}
    return Replacement(index, data, line, lines)


NEAREST = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}


def resize_model(mode: str = "cubic") -> onnx.ModelProto:
    """An upsampler as exported: Resize x2 on [1, 8, 16, 16] with scales, then a 1x1 conv."""
    w = np.random.default_rng(0).normal(size=(4, 8, 1, 1)).astype(np.float32)
    nodes = [
        helper.make_node("Resize", ["x", "", "scales"], ["up"], name="/up/Resize", mode=mode),
        helper.make_node("Conv", ["up", "w"], ["y"], name="/head/Conv"),
    ]
    scales = np.array([1, 1, 2, 2], np.float32)
    return make_model(nodes, {"x": [1, 8, 16, 16]}, ["y"], {"scales": scales, "w": w})


def reshape_model() -> onnx.ModelProto:
    """A flatten exported with a baked-in batch of 4: Reshape(x, [4, -1]) on a batch-1 input."""
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="/act/Relu"),
        helper.make_node("Reshape", ["r", "shape"], ["y"], name="/flatten/Reshape"),
    ]
    model = make_model(nodes, {"x": [1, 8, 4, 4]}, {"y": ([4, 32], np.float32)}, {"shape": np.array([4, -1], np.int64)})
    return model


def test_resize_mode_override_matches_a_nearest_export():
    edited = apply_replacements(
        resize_model("cubic"),
        [edit(0, 10, match={"op_type": "Resize"}, attributes=NEAREST)],
        "r.yaml",
    )
    attrs = {a.name: helper.get_attribute_value(a) for a in edited.graph.node[0].attribute}
    assert attrs == {"mode": b"nearest", "coordinate_transformation_mode": b"asymmetric", "nearest_mode": b"floor"}
    feeds = random_feeds(edited)
    want = np.repeat(np.repeat(feeds["x"], 2, axis=2), 2, axis=3)  # nearest x2, asymmetric/floor: pixel repetition
    np.testing.assert_array_equal(run_ort(_output(edited, "up"), feeds)["up"], want)
    check(edited, feeds)  # and it converts, matching onnxruntime


def _output(model: onnx.ModelProto, name: str) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    out.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return out


def test_reshape_shape_override_fixes_a_baked_in_batch():
    model = reshape_model()
    # onnxruntime runs it, but [4, -1] splits one sample into four rows
    assert run_ort(model, random_feeds(model))["y"].shape == (4, 32)
    edited = apply_replacements(model, [edit(0, 3, node="/flatten/Reshape", inputs={"shape": [1, -1]})], "r.yaml")
    prepared = prepare_model(edited)
    assert [d.dim_value for d in prepared.graph.output[0].type.tensor_type.shape.dim] == [1, 128]
    check(prepared)


def test_input_by_index_and_type_from_the_schema():
    model = reshape_model()
    edited = apply_replacements(model, [edit(0, 3, node="/flatten/Reshape", inputs={"1": [1, 128]})], "r.yaml")
    (new,) = [t for t in edited.graph.initializer if t.name.startswith("/flatten/Reshape/input1")]
    assert new.data_type == onnx.TensorProto.INT64 and list(new.dims) == [2]


def test_every_problem_at_once_with_lines():
    edits = [
        edit(0, 10, node="/up/Resise", attributes={"mode": "nearest"}),  # misspelt node
        edit(1, 13, match={"op_type": "Resize"}, attributes={"mode": 3, "mdoe": "linear"}),  # wrong type, unknown attr
        edit(2, 16, match={"op_type": "HardSwish"}, rewrite="hardswish"),  # selects nothing
        edit(3, 19, match={"op_type": "Conv"}, inputs={"w": [[1.0]]}),  # wrong rank
        edit(4, 22, input="images", keep_layout="nchw"),  # no such graph input
    ]
    with pytest.raises(ReplacementError) as err:
        apply_replacements(resize_model(), edits, "recipes/net.yaml")
    problems = {p.key: p for p in err.value.problems}
    assert err.value.exit_code == 2
    assert set(problems) == {
        "replacements[0].node",
        "replacements[1].attributes.mode",
        "replacements[1].attributes.mdoe",
        "replacements[2].match",
        "replacements[3].inputs.w",
        "replacements[4].input",
    }
    assert problems["replacements[0].node"].line == 10 and "/up/Resize" in problems["replacements[0].node"].hint
    mode = problems["replacements[1].attributes.mode"]
    assert mode.line == 14 and "text in the op schema" in mode.message and "Resize (opset" in mode.message
    assert "did you mean 'mode'" in problems["replacements[1].attributes.mdoe"].hint
    assert "optional: true" in problems["replacements[2].match"].hint
    assert "rank-4" in problems["replacements[3].inputs.w"].message
    assert problems["replacements[4].input"].hint == "graph inputs: x"
    text = err.value.message
    assert "recipes/net.yaml:10" in text and "recipes/net.yaml:22" in text


def test_optional_match_and_an_edit_that_breaks_the_model():
    model = resize_model()
    same = apply_replacements(model, [edit(0, 1, match={"op_type": "Gelu"}, rewrite="gelu", optional=True)], "r.yaml")
    assert same.SerializeToString() == model.SerializeToString()
    with pytest.raises(ReplacementError) as err:
        apply_replacements(
            model, [edit(0, 5, node="/head/Conv", attributes={"pads": [1, 1]})], "r.yaml"
        )  # 2-D conv: 4 pads
    (problem,) = err.value.problems
    assert problem.line == 6 and "not valid ONNX" in problem.message  # the line of `attributes:`


def test_resetting_a_value_keeps_the_bytes():
    model = resize_model("nearest")
    same = apply_replacements(model, [edit(0, 1, node="/up/Resize", attributes={"mode": "nearest"})], "r.yaml")
    assert same.SerializeToString() == model.SerializeToString()


# -- through `buildsys build` --------------------------------------------------------------------

from conftest import build_json, run_cli  # noqa: E402
from test_onnx_build import onnx_workspace  # noqa: E402


def with_replacements(ws, text: str) -> None:
    recipe = ws / "recipes" / "net.yaml"
    recipe.write_text(recipe.read_text().replace("targets:\n", text + "targets:\n"))


def test_build_reports_misspelt_node_wrong_type_and_empty_match_at_once(tmp_path):
    ws = onnx_workspace(tmp_path / "ws")
    with_replacements(
        ws,
        "replacements:\n"
        "  - node: /features/conv9/Conv\n"  # misspelt
        "    attributes: {group: 1}\n"
        "  - match: {op_type: Softmax}\n"
        "    attributes: {axis: last}\n"  # an INT attribute
        "  - match: {op_type: HardSwish}\n"  # nothing matches
        "    rewrite: hardswish\n",
    )
    text = (ws / "recipes" / "net.yaml").read_text().splitlines()
    line = {s.strip(): i + 1 for i, s in enumerate(text)}
    proc = run_cli(ws, "build", check=2)
    err = proc.stderr
    assert "3 problems in the replacements of recipes/net.yaml" in err
    assert f"recipes/net.yaml:{line['- node: /features/conv9/Conv']}" in err and "/features/conv1/Conv" in err
    assert f"recipes/net.yaml:{line['attributes: {axis: last}']}" in err and "an integer in the op schema" in err
    assert f"recipes/net.yaml:{line['- match: {op_type: HardSwish}']}" in err and "selects no node" in err
    assert "Traceback" not in err
    assert not (ws / "build/net/_common/prepared.onnx").exists()


def test_replacement_digest_in_lock_and_early_cutoff(tmp_path):
    ws = onnx_workspace(tmp_path / "ws")
    with_replacements(ws, "replacements:\n  - match: {op_type: Softmax}\n    attributes: {axis: 1}\n")
    build_json(ws)
    lock = (ws / "recipes" / "net.lock").read_text()
    assert "replacements_digest" in lock
    # an extra edit that changes nothing in the model: prepare reruns, nothing after it does
    recipe = ws / "recipes" / "net.yaml"
    extra = "  - match: {op_type: Erf}\n    rewrite: erf-poly\n    approximate: true\n    optional: true\n"
    recipe.write_text(recipe.read_text().replace("    attributes: {axis: 1}\n", "    attributes: {axis: 1}\n" + extra))
    outcomes = build_json(ws)
    assert outcomes["prepare"] == "ran"
    downstream = {k: v for k, v in outcomes.items() if k not in ("fetch", "prepare")}
    assert set(downstream.values()) == {"up-to-date"}, downstream
    assert (ws / "recipes" / "net.lock").read_text() != lock  # the digest and prepare's params changed


def test_keep_layout_and_output_layout_reach_the_signature(tmp_path):
    ws = onnx_workspace(tmp_path / "ws")
    with_replacements(ws, "replacements:\n  - input: image\n    keep_layout: nchw\n")
    build_json(ws)
    signature = json.loads((ws / "build/net/_common/signature.json").read_text())
    assert signature["inputs"][0]["shape"] == [1, 3, 64, 64] and signature["inputs"][0]["perm"] == [0, 1, 2, 3]
    metrics = json.loads((ws / "build/net/fp32/metrics.json").read_text())
    assert metrics["outputs"]["scores"]["max_abs_error"] <= 1e-5


# -- rewrites through the engine ------------------------------------------------------------------


def spp_model() -> onnx.ModelProto:
    """YOLO's SPP: three parallel stride-1 max pools 5/9/13 on one input, concatenated."""
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="/spp/act")]
    for k in (5, 9, 13):
        p = k // 2
        nodes.append(
            helper.make_node("MaxPool", ["r"], [f"p{k}"], name=f"/spp/m{k}", kernel_shape=[k, k], pads=[p] * 4)
        )
    nodes.append(helper.make_node("Concat", ["r", "p5", "p9", "p13"], ["y"], name="/spp/cat", axis=1))
    return make_model(nodes, {"x": [1, 8, 20, 20]}, ["y"])


def test_spp_becomes_sppf_bit_exact_and_converts():
    model = spp_model()
    edited = apply_replacements(model, [edit(0, 1, match={"op_type": "MaxPool"}, rewrite="maxpool-cascade")], "r.yaml")
    pools = [n for n in edited.graph.node if n.op_type == "MaxPool"]
    assert len(pools) == 3
    assert {tuple(helper.get_attribute_value(a)) for n in pools for a in n.attribute if a.name == "kernel_shape"} == {
        (5, 5)
    }
    feeds = random_feeds(model)
    np.testing.assert_array_equal(run_ort(edited, feeds)["y"], run_ort(model, feeds)["y"])
    check(prepare_model(edited), feeds, atol=0, rtol=0)


def test_rewrite_that_does_not_fit_is_a_located_problem():
    model = make_model([helper.make_node("Div", ["x", "y"], ["z"], name="/div")], {"x": [1, 4], "y": [1, 4]}, ["z"])
    with pytest.raises(ReplacementError) as err:
        apply_replacements(model, [edit(0, 7, node="/div", rewrite="div-to-mul")], "r.yaml")
    (problem,) = err.value.problems
    assert problem.line == 8 and "div-to-mul" in problem.message and "constant" in problem.message


def test_recipe_level_problems_need_no_model(tmp_path):
    from buildsys.errors import RecipeError
    from buildsys.recipe.loader import RecipeLoader

    text = (
        "version: 1\nsource: {onnx: m.onnx}\ntargets: [{device: cpu-fp32}]\n"
        "replacements:\n"
        "  - match: {op_type: HardSwish}\n    rewrite: hard-swish\n"  # line 6: unknown rewrite
        "  - match: {op_type: Erf}\n    rewrite: gelu-tanh\n"  # line 8: approximate, not accepted
        "  - node: a\n    keep_layout: nchw\n"  # line 10: wrong pair
        "  - node: b\n    attributes: {x: 1}\n    optional: true\n"  # line 13: optional needs match
        "  - match: {name: '([a-'}\n    attributes: {x: 1}\n"  # line 14: bad regex
        "  - node: c\n"  # line 16: no action
    )
    (tmp_path / "r.yaml").write_text(text)
    with pytest.raises(RecipeError) as err:
        RecipeLoader().load(tmp_path / "r.yaml", tmp_path)
    got = {(p.line, p.key): p for p in err.value.problems}
    assert "did you mean 'hardswish'" in got[(6, "replacements[0].rewrite")].hint
    assert "approximate: true" in got[(8, "replacements[1].rewrite")].hint
    assert "does not go with 'node'" in got[(10, "replacements[2].keep_layout")].message
    assert "only allowed with 'match'" in got[(13, "replacements[3].optional")].message
    assert "regular expression" in got[(14, "replacements[4].match.name")].message
    assert "exactly one of attributes, inputs, rewrite" in got[(16, "replacements[5]")].message


def test_nms_limit_override_then_conversion():
    """An export's NonMaxSuppression with max_output_boxes_per_class = INT64_MAX, capped to 5."""
    from ops.test_detection import INT64_MAX, boxes_and_scores, nms_model

    model = nms_model(1, 3, 40, INT64_MAX)
    edited = apply_replacements(model, [edit(0, 4, node="/nms", inputs={"max_output_boxes_per_class": [5]})], "r.yaml")
    limit = [t for t in edited.graph.initializer if t.name == edited.graph.node[0].input[2]]
    assert onnx.numpy_helper.to_array(limit[0]).tolist() == [5]
    feeds = boxes_and_scores(1, 3, 40)
    assert run_ort(edited, feeds)["selected"].shape == (15, 3)  # 5 per class
    check(prepare_model(edited), feeds)


def test_output_layout_nhwc_through_a_build(tmp_path):
    """A segmentation-style output given channels-last: no transpose back to NCHW at the end."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="/conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["mask"], name="/act"),
    ]
    model = make_model(nodes, {"x": [1, 3, 16, 16]}, ["mask"], {"w": rng.normal(size=(8, 3, 3, 3)).astype(np.float32)})
    root = tmp_path / "ws" / "recipes"
    root.mkdir(parents=True)
    onnx.save(model, str(root / "seg.onnx"))
    (root / "seg.yaml").write_text(
        "version: 1\nsource: {onnx: seg.onnx}\nvalidate: {thresholds: {max_abs_error: 0.00001}}\n"
        "replacements:\n  - output: mask\n    output_layout: nhwc\ntargets: [{device: cpu-fp32}]\n"
    )
    build_json(tmp_path / "ws")
    signature = json.loads((tmp_path / "ws/build/seg/_common/signature.json").read_text())
    assert signature["outputs"][0]["perm"] == [0, 2, 3, 1] and signature["outputs"][0]["shape"] == [1, 16, 16, 8]
    from buildsys.tflow.inspect import op_histogram

    assert "TRANSPOSE" not in op_histogram(tmp_path / "ws/build/seg/cpu-fp32/model.tflite")


def test_replacements_on_a_keras_source_are_refused(tmp_path):
    from buildsys.errors import RecipeError
    from buildsys.recipe.loader import RecipeLoader

    text = "version: 1\nsource: {keras: m.keras}\ntargets: [{device: cpu-fp32}]\nreplacements:\n  - input: x\n    keep_layout: nchw\n"
    (tmp_path / "r.yaml").write_text(text)
    with pytest.raises(RecipeError) as err:
        RecipeLoader().load(tmp_path / "r.yaml", tmp_path)
    (problem,) = err.value.problems
    assert problem.line == 4 and "source is keras" in problem.message
