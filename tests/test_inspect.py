"""`buildsys inspect`: model facts, converter support, and recipe snippets that work when pasted."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from conftest import EXAMPLE, run_cli
from onnx import TensorProto, helper, numpy_helper
from rich.console import Console

from buildsys.commands.inspect import show
from buildsys.inspect import inspect_model
from buildsys.inspect.handled import converter_registry
from buildsys.ui import Ui

FP32_RECIPE = """\
version: 1
name: net
source:
  onnx: model.onnx
targets:
  - device: cpu-fp32
"""


def example_workspace(ws: Path) -> Path:
    (ws / "recipes").mkdir(parents=True)
    shutil.copy(EXAMPLE / "model.onnx", ws / "recipes" / "model.onnx")
    (ws / "recipes" / "net.yaml").write_text(FP32_RECIPE)
    return ws


def snippet(stdout: str, key: str) -> str:
    """The printed block that starts with `key:`, up to the next top-level key or blank line."""
    lines = stdout.splitlines()
    start = lines.index(f"{key}:")
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith(" ")), len(lines))
    return "\n".join(lines[start:end]) + "\n"


def applied(ws: Path, model: Path, replacements: str) -> onnx.ModelProto:
    """The model as `prepare` edits it under a recipe holding the pasted `replacements:` snippet."""
    from buildsys.onnxprep.replace import apply_replacements
    from buildsys.recipe import RecipeLoader

    (ws / "recipes" / "net.yaml").write_text(FP32_RECIPE + replacements)
    recipe = RecipeLoader().load(Path("recipes/net.yaml"), ws)
    return apply_replacements(onnx.load(str(model)), recipe.replacements, "recipes/net.yaml")


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def odd_model() -> onnx.ModelProto:
    """Ops the converter lacks: Hardmax and a com.microsoft op; it has HardSwish (opset 14)."""
    w = numpy_helper.from_array(np.full((3, 3, 1, 1), 0.1, np.float32), "w")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c1"], name="conv_a"),
        helper.make_node("HardSwish", ["c1"], ["h"], name="hswish"),
        helper.make_node("Hardmax", ["h"], ["m"], name="hmax", axis=1),
        helper.make_node("FusedGelu", ["m"], ["g"], name="fgelu", domain="com.microsoft"),
        helper.make_node("Conv", ["g", "w"], ["y"], name="conv_b"),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, "H", "W"])
    graph = helper.make_graph(nodes, "odd", [x], [y], [w])
    opsets = [helper.make_opsetid("", 14), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets)


# -- the shapes example: dynamic batch -------------------------------------------------------------


def test_example_shows_inputs_histogram_and_shapes_snippet(tmp_path: Path) -> None:
    ws = example_workspace(tmp_path / "ws")
    out = run_cli(ws, "inspect", "recipes/model.onnx").stdout
    assert "model: recipes/model.onnx" in out and "opsets: ai.onnx 17" in out
    assert "nodes: 15; initializers: 11 (6,134 parameters)" in out
    assert "image   float32  [?batch, 3, 64, 64]" in out
    assert "scores  float32  [?batch, 3]" in out
    # by count, then name: Conv and Relu (3 each) lead, read down the first column
    hist = out[out.index("ops (15 nodes, 11 types):") :].splitlines()
    assert hist[1].split()[:2] == ["Conv", "3"] and hist[2].split()[:2] == ["Relu", "3"]
    assert hist[3].split()[:2] == ["Concat", "1"]
    assert "every op type is handled" in out
    assert snippet(out, "shapes") == "shapes:\n  image: [1, 3, 64, 64]\n"
    assert "replacements:" not in out
    assert max(len(line) for line in out.splitlines()) <= 80


def test_dynamic_dims_are_styled(tmp_path: Path) -> None:
    report = inspect_model(EXAMPLE / "model.onnx")
    ui = Ui()
    ui.out = Console(record=True, force_terminal=True, color_system="standard", width=80)
    show(report, ui)
    styled = ui.out.export_text(styles=True)
    assert "\x1b[1;33m?batch\x1b[0m, 3, 64, 64]" in styled  # bold yellow, fixed dims plain


def test_pasted_shapes_snippet_makes_the_build_pass(tmp_path: Path) -> None:
    ws = example_workspace(tmp_path / "ws")
    failed = run_cli(ws, "build", check=2)
    assert "prepare" in failed.stdout + failed.stderr and "dynamic dims" in failed.stderr
    shapes = snippet(run_cli(ws, "inspect", "recipes/net.yaml").stdout, "shapes")
    recipe = ws / "recipes" / "net.yaml"
    recipe.write_text(recipe.read_text() + shapes)
    run_cli(ws, "build")
    assert (ws / "build/net/_common/prepared.onnx").is_file()
    after = run_cli(ws, "inspect", "recipes/net.yaml").stdout
    assert "shapes:" not in after and "[1, 3, 64, 64]  (recipe; the model has [?batch, 3, 64, 64])" in after


# -- recipes -----------------------------------------------------------------------------------------


def two_input_model() -> onnx.ModelProto:
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="relu"), helper.make_node("Relu", ["z"], ["t"], name="relu2")]
    inputs = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"]),
        helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 4]),
    ]
    outputs = [
        helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, "H", "W"]),
        helper.make_tensor_value_info("t", TensorProto.FLOAT, ["N", 4]),
    ]
    return helper.make_model(
        helper.make_graph(nodes, "two", inputs, outputs), opset_imports=[helper.make_opsetid("", 17)]
    )


@pytest.mark.parametrize(
    ("extra", "still"),
    [
        ("", {"x": [1, 3, 224, 224], "z": [1, 4]}),
        ("shapes: {x: [1, 3, 32, 32]}\n", {"z": [1, 4]}),
        ("batch: 2\n", {"x": [2, 3, 224, 224]}),
        ("shapes: {x: [1, 3, 32, 32]}\nbatch: 1\n", None),
    ],
)
def test_recipe_shapes_and_batch_are_applied(tmp_path: Path, extra: str, still: dict | None) -> None:
    ws = tmp_path / "ws"
    (ws / "recipes").mkdir(parents=True)
    save(two_input_model(), ws / "recipes" / "model.onnx")
    (ws / "recipes" / "net.yaml").write_text(FP32_RECIPE + extra)
    doc = json.loads(run_cli(ws, "inspect", "recipes/net.yaml", "--json").stdout)
    assert doc["file"] == "recipes/model.onnx" and doc["recipe"]["path"].endswith("net.yaml")
    dynamic = {i["name"] for i in doc["inputs"] if i["dynamic"]}
    assert dynamic == set(still or {})
    assert doc["inputs"][0]["dims"] == ["N", 3, "H", "W"]  # as the model declares it
    shapes = doc["snippets"]["shapes"]
    assert (yaml.safe_load(shapes)["shapes"] if shapes else None) == still


def test_recipe_shapes_naming_no_input_is_the_prepare_error(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "recipes").mkdir(parents=True)
    save(two_input_model(), ws / "recipes" / "model.onnx")
    (ws / "recipes" / "net.yaml").write_text(FP32_RECIPE + "shapes: {image: [1, 3, 32, 32]}\n")
    err = run_cli(ws, "inspect", "recipes/net.yaml", check=2).stderr
    assert "'image', which the model does not have" in err and "'x', 'z'" in err and "Traceback" not in err


@pytest.mark.parametrize("source", ["keras: model.keras", "tflite: model.tflite", "saved_model: saved"])
def test_recipe_with_another_source_format_is_refused(tmp_path: Path, source: str) -> None:
    ws = tmp_path / "ws"
    (ws / "recipes").mkdir(parents=True)
    (ws / "recipes" / "net.yaml").write_text(FP32_RECIPE.replace("onnx: model.onnx", source))
    err = run_cli(ws, "inspect", "recipes/net.yaml", check=2).stderr
    assert "inspect reads ONNX models" in err and source.split(":")[0] in err and "Traceback" not in err


# -- converter support and node listing ------------------------------------------------------------------


def test_ops_the_converter_lacks_are_listed(tmp_path: Path) -> None:
    path = save(odd_model(), tmp_path / "odd.onnx")
    out = run_cli(tmp_path, "inspect", "odd.onnx").stdout
    section = out[out.index("not supported by the converter yet:") :]
    assert "Hardmax (opset 14): 1 node: hmax" in section and "no converter for this op" in section
    assert "com.microsoft.FusedGelu (opset 1): 1 node: fgelu" in section and "custom domain 'com.microsoft'" in section
    assert "Conv (" not in section and "HardSwish (" not in section
    report = inspect_model(path, rewrites={})
    assert {u.op: u.count for u in report.unsupported} == {"Hardmax": 1, "com.microsoft.FusedGelu": 1}
    assert dict(report.histogram)["com.microsoft.FusedGelu"] == 1


def test_an_op_handled_only_from_a_later_opset(tmp_path: Path) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    nodes = [helper.make_node("Max", ["x", "x"], [f"m{i}"], name=f"max{i}") for i in range(5)]
    nodes.append(helper.make_node("Sum", [f"m{i}" for i in range(5)], ["y"]))  # unnamed: shown by position
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y]), opset_imports=[helper.make_opsetid("", 6)])
    report = inspect_model(save(model, tmp_path / "old.onnx"), rewrites={})
    (max_, sum_) = report.unsupported
    assert (max_.op, max_.opset, max_.count, max_.nodes) == ("Max", 6, 5, ("max0", "max1", "max2"))
    assert max_.reason == "the converter handles it from opset 8; the model imports opset 6"
    assert sum_.nodes == ("#5",)


def test_op_filter_lists_only_those_nodes(tmp_path: Path) -> None:
    save(odd_model(), tmp_path / "odd.onnx")
    out = run_cli(tmp_path, "inspect", "odd.onnx", "--op", "Conv").stdout
    listed = out[out.index("nodes (Conv): 2") :].split("\n\n")[0].splitlines()[1:]
    assert listed == ["  conv_a  Conv  x, w -> c1", "  conv_b  Conv  g, w -> y"]
    both = json.loads(run_cli(tmp_path, "inspect", "odd.onnx", "--op", "conv", "--op", "FusedGelu", "--json").stdout)
    assert [n["name"] for n in both["nodes"]] == ["conv_a", "fgelu", "conv_b"]
    assert both["nodes"][1]["op"] == "com.microsoft.FusedGelu"


def test_json_round_trips(tmp_path: Path) -> None:
    ws = example_workspace(tmp_path / "ws")
    doc = json.loads(run_cli(ws, "inspect", "recipes/model.onnx", "--json").stdout)
    report = inspect_model(EXAMPLE / "model.onnx", label="recipes/model.onnx")
    assert doc == json.loads(json.dumps(report.to_json()))
    assert doc["inputs"] == [{"name": "image", "dtype": "float32", "dims": ["batch", 3, 64, 64], "dynamic": True}]
    assert doc["opsets"] == {"ai.onnx": 17} and doc["ir_version"] == 8 and doc["size"] > 20_000
    assert doc["histogram"][:2] == [{"op": "Conv", "count": 3}, {"op": "Relu", "count": 3}]
    assert sum(h["count"] for h in doc["histogram"]) == doc["node_count"] == len(doc["nodes"]) == 15
    assert doc["unsupported"] == [] and doc["recipe"] is None
    assert yaml.safe_load(doc["snippets"]["shapes"]) == {"shapes": {"image": [1, 3, 64, 64]}}


@pytest.mark.parametrize("content", [b"", b"not a model at all", b"\x08\x07\x12garbage"])
def test_corrupt_file_is_one_line_naming_it(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "bad.onnx").write_bytes(content)
    proc = run_cli(tmp_path, "inspect", "bad.onnx", check=2)
    first, *rest = proc.stderr.splitlines()
    assert first.startswith("error: ") and "bad.onnx" in first and "Traceback" not in proc.stderr
    assert all(line.startswith("  hint:") for line in rest) and proc.stdout == ""


def test_missing_file_and_other_formats(tmp_path: Path) -> None:
    assert "missing.onnx does not exist" in run_cli(tmp_path, "inspect", "missing.onnx", check=2).stderr
    (tmp_path / "m.tflite").write_bytes(b"TFL3")
    assert "inspect reads ONNX models" in run_cli(tmp_path, "inspect", "m.tflite", check=2).stderr


# -- no TensorFlow -----------------------------------------------------------------------------------------------


def test_inspect_does_not_import_tensorflow(tmp_path: Path) -> None:
    save(odd_model(), tmp_path / "model.onnx")
    edits = "shapes: {x: [1, 3, 8, 8]}\nreplacements:\n  - match: {op_type: HardSwish}\n    rewrite: hardswish\n"
    (tmp_path / "net.yaml").write_text(FP32_RECIPE + edits)
    code = (
        "import sys\nfrom buildsys.cli import main\n"
        "assert main(['inspect', 'model.onnx', '--json']) == 0\n"
        "assert main(['inspect', 'net.yaml', '--op', 'Conv']) == 0\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "applied: shapes for x; 1 replacement" in proc.stdout and "HardSwish" not in proc.stdout.split("ops (")[1]


def test_scanned_handlers_agree_with_the_imported_registry() -> None:
    from buildsys.converter.registry import default_registry  # imports TensorFlow

    real, scanned = default_registry(), converter_registry()
    assert scanned.ops() == real.ops()
    for domain, op, _ in real.ops():
        for opset in range(1, 24):
            assert (scanned.lookup(domain, op, opset) is None) == (real.lookup(domain, op, opset) is None), (op, opset)


def test_scanner_reads_decorators_and_factories(tmp_path: Path) -> None:
    ops = tmp_path / "ops"
    ops.mkdir()
    (ops / "__init__.py").write_text('FAMILIES = ("one",)\n')
    (ops / "one.py").write_text(
        "import tensorflow as tf\n"
        "@handles('Alpha', since=3)\n@handles('Alpha', 9)\ndef alpha(ctx, node): ...\n"
        "def _make(op_type, since=7, fn=None):\n    @handles(op_type, since=since)\n"
        "    def h(ctx, node): ...\n    return h\n"
        "beta = _make('Beta', fn=tf.exp)\ngamma = _make('Gamma', 11, tf.exp)\n"
        "@handles('Delta', domain='com.example')\ndef delta(ctx, node): ...\n"
        "def later():\n    return _make('NotAtImport')\n"
    )
    registry = converter_registry(ops)
    assert registry.ops() == [("", "Alpha", 3), ("", "Beta", 7), ("", "Gamma", 11), ("com.example", "Delta", 1)]
    assert registry.lookup("ai.onnx", "Gamma", 10) is None and registry.lookup("", "Gamma", 13) is not None


# -- replacements snippet ----------------------------------------------------------------------------------------


def rewrite_model() -> onnx.ModelProto:
    """HardSwish, a Div by a constant and one by a tensor, and NMS with no, a huge and a set limit."""
    init = [
        numpy_helper.from_array(np.array([4.0], np.float32), "four"),
        numpy_helper.from_array(np.array([2**63 - 1], np.int64), "huge"),
        numpy_helper.from_array(np.array([5], np.int64), "five"),
    ]
    nodes = [
        helper.make_node("HardSwish", ["x"], ["h"], name="/act/HardSwish"),
        helper.make_node("Div", ["h", "four"], ["d"], name="/scale/Div"),
        helper.make_node("Div", ["d", "x"], ["y"], name="/ratio/Div"),
        helper.make_node("NonMaxSuppression", ["boxes", "scores"], ["s1"], name="nms: no limit"),
        helper.make_node("NonMaxSuppression", ["boxes", "scores", "huge"], ["s2"], name="nms_huge"),
        helper.make_node("NonMaxSuppression", ["boxes", "scores", "five"], ["s3"], name="nms_five"),
    ]
    inputs = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8]),
        helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 6, 4]),
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 1, 6]),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])]
    outputs += [helper.make_tensor_value_info(s, TensorProto.INT64, [None, 3]) for s in ("s1", "s2", "s3")]
    graph = helper.make_graph(nodes, "rw", inputs, outputs, init)
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 14)], ir_version=9
    )  # onnxruntime reads <= 13


def test_nms_without_a_limit_gets_an_inputs_entry(tmp_path: Path) -> None:
    text = inspect_model(save(rewrite_model(), tmp_path / "m.onnx"), rewrites={}).replacements
    assert text == (
        "replacements:\n"
        '  - node: "nms: no limit"\n    inputs: {max_output_boxes_per_class: 100}\n'
        "  - node: nms_huge\n    inputs: {max_output_boxes_per_class: [100]}"
    )


def test_pasted_replacements_snippet_applies(tmp_path: Path) -> None:
    pytest.importorskip("buildsys.rewrites.registry")
    pytest.importorskip("buildsys.onnxprep.replace")
    import onnxruntime as ort

    ws = tmp_path / "ws"
    (ws / "recipes").mkdir(parents=True)
    model = save(rewrite_model(), ws / "recipes" / "model.onnx")
    out = run_cli(ws, "inspect", "recipes/model.onnx").stdout
    text = snippet(out, "replacements")
    # HardSwish: every node fits, by op type; Div: only the constant divisor fits, by name
    assert "  - match: {op_type: HardSwish}   # 1 node; for devices without HardSwish\n    rewrite: hardswish\n" in text
    assert "  # div-to-mul fits 1 of 2 nodes (for devices without Div); not /ratio/Div: " in text
    assert '  - match: {op_type: Div, name: "^(?:/scale/Div)$"}\n    rewrite: div-to-mul\n' in text
    edited = applied(ws, model, text)
    ops = [n.op_type for n in edited.graph.node]
    assert ops.count("Div") == 1 and "HardSwish" not in ops
    # exact rewrites and the limit only NMS sees: the division and activation agree to float rounding
    feeds = {
        "x": np.linspace(-5, 5, 8, dtype=np.float32).reshape(1, 8) + 0.05,
        "boxes": np.random.default_rng(0).random((1, 6, 4), dtype=np.float32),
        "scores": np.random.default_rng(1).random((1, 1, 6), dtype=np.float32),
    }
    run = lambda m: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(["y"], feeds)[0]  # noqa: E731
    np.testing.assert_allclose(run(edited), run(onnx.load(str(model))), rtol=1e-6, atol=1e-6)
    # inspecting the recipe sees the model as prepare edits it: nothing left to suggest
    after = json.loads(run_cli(ws, "inspect", "recipes/net.yaml", "--json").stdout)
    assert after["snippets"]["replacements"] is None and after["recipe"]["replacements"] == 4
    assert "HardSwish" not in {h["op"] for h in after["histogram"]}


def spp_model() -> onnx.ModelProto:
    """SPP (MaxPool 5/9/13 on one tensor), a stride-2 MaxPool no cascade takes, Gelu and an unnamed Erf."""
    pools = [
        helper.make_node("MaxPool", ["x"], [f"p{k}"], name=f"/spp/m{k}", kernel_shape=[k, k], pads=[k // 2] * 4)
        for k in (5, 9, 13)
    ]
    nodes = [
        *pools,
        helper.make_node("MaxPool", ["x"], ["q"], name="/down", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Gelu", ["x"], ["g"], name="/gelu"),
        helper.make_node("Erf", ["x"], ["e"]),
    ]
    full = [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 8, 20, 20]) for n in ("p5", "p9", "p13", "g", "e")
    ]
    half = helper.make_tensor_value_info("q", TensorProto.FLOAT, ["N", 8, 10, 10])
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8, 20, 20])
    graph = helper.make_graph(nodes, "spp", [x], [*full, half])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=9)


def test_group_rewrite_alternatives_and_approximate_rewrites(tmp_path: Path) -> None:
    rewrites = pytest.importorskip("buildsys.rewrites.registry")
    pytest.importorskip("buildsys.onnxprep.replace")
    import onnxruntime as ort

    ws = tmp_path / "ws"
    (ws / "recipes").mkdir(parents=True)
    model = save(spp_model(), ws / "recipes" / "model.onnx")
    text = snippet(run_cli(ws, "inspect", "recipes/model.onnx").stdout, "replacements")
    # one entry for the three SPP pools, so the engine rewrites them as one group (SPPF)
    assert (
        '  - match: {op_type: MaxPool, name: "^(?:/spp/m5|/spp/m9|/spp/m13)$"}\n    rewrite: maxpool-cascade\n' in text
    )
    assert "not /down: " in text
    assert "  - match: {op_type: Gelu}   # 1 node; for devices without Gelu\n    rewrite: gelu\n" in text
    assert "    # or: rewrite: gelu-tanh\n" in text
    assert "  - match: {op_type: Erf}   # 1 node; for devices without Erf\n    rewrite: erf-poly\n" in text
    assert "    approximate: true   # max abs error 8e-07\n" in text
    edited = applied(ws, model, text)
    kernels = [list(n.attribute[0].ints) for n in edited.graph.node if n.op_type == "MaxPool" and n.name != "/down"]
    assert kernels == [[5, 5]] * 3  # SPPF: a chain of three 5x5 pools
    feeds = {"x": np.random.default_rng(0).normal(size=(1, 8, 20, 20)).astype(np.float32)}
    names = ["p5", "p9", "p13", "q", "g", "e"]
    want = ort.InferenceSession(model.read_bytes(), providers=["CPUExecutionProvider"]).run(names, feeds)
    got = ort.InferenceSession(edited.SerializeToString(), providers=["CPUExecutionProvider"]).run(names, feeds)
    # pools are exact; Erf (and the Erf the gelu rewrite emits) goes through erf-poly and its bound;
    # Gelu = x/2 (1 + erf(x/sqrt 2)) scales that error by |x|/2, plus one float32 rounding of x
    bound, top = rewrites.REWRITES["erf-poly"].bound, np.abs(feeds["x"]).max()
    atol = {"e": bound, "g": top / 2 * bound + np.spacing(top)}
    for name, w, g in zip(names, want, got):
        np.testing.assert_allclose(g, w, rtol=0, atol=atol.get(name, 0.0), err_msg=name)
