"""Pre-quantized (QDQ) ONNX models keep their own scales: `quantization: {from_model: true}`.

Models are made here and quantized by onnxruntime.quantization.quantize_static in QDQ
format over seeded random data; every recipe of one workspace builds in one `buildsys
build`, and the tests read the artifacts' tensor quantization back.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import make_workspace, run_cli
from onnx import TensorProto, helper, numpy_helper

ort = pytest.importorskip("onnxruntime")
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static  # noqa: E402

SHAPES = {"cnn": [1, 3, 8, 8], "mlp": [1, 16]}
VAL = 8
# (model, per_channel, activation type): the four ways quantize_static is used
CASES = {
    "cnn_pc_s8": ("cnn", True, QuantType.QInt8),
    "cnn_pt_u8": ("cnn", False, QuantType.QUInt8),
    "cnn_pc_u8": ("cnn", True, QuantType.QUInt8),
    "mlp_pt_s8": ("mlp", False, QuantType.QInt8),
    "mlp_pc_u8": ("mlp", True, QuantType.QUInt8),
}


def _init(rng, name: str, shape: list[int], scale: float) -> onnx.TensorProto:
    return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


def cnn() -> onnx.ModelProto:
    """Conv -> Relu -> Conv, an Add skip, MaxPool, Flatten, Gemm."""
    rng = np.random.default_rng(0)
    node = helper.make_node
    nodes = [
        node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        node("Relu", ["c1"], ["r1"], name="relu1"),
        node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
        node("Add", ["c2", "r1"], ["a1"], name="add"),
        node("Relu", ["a1"], ["r2"], name="relu2"),
        node("MaxPool", ["r2"], ["p1"], kernel_shape=[2, 2], strides=[2, 2], name="pool"),
        node("Flatten", ["p1"], ["f1"], name="flat"),
        node("Gemm", ["f1", "wf", "bf"], ["y"], transB=1, name="fc"),
    ]
    inits = [
        _init(rng, "w1", [8, 3, 3, 3], 0.3),
        _init(rng, "b1", [8], 0.1),
        _init(rng, "w2", [8, 8, 3, 3], 0.1),
        _init(rng, "b2", [8], 0.1),
        _init(rng, "wf", [10, 128], 0.1),
        _init(rng, "bf", [10], 0.1),
    ]
    return _model(nodes, inits, "cnn", [10])


def mlp() -> onnx.ModelProto:
    """MatMul + Add + Relu twice, then a MatMul head."""
    rng = np.random.default_rng(1)
    node = helper.make_node
    nodes = [
        node("MatMul", ["x", "w1"], ["m1"], name="fc1"),
        node("Add", ["m1", "b1"], ["a1"], name="bias1"),
        node("Relu", ["a1"], ["r1"], name="relu1"),
        node("MatMul", ["r1", "w2"], ["m2"], name="fc2"),
        node("Add", ["m2", "b2"], ["a2"], name="bias2"),
        node("Relu", ["a2"], ["r2"], name="relu2"),
        node("MatMul", ["r2", "w3"], ["y"], name="head"),
    ]
    inits = [
        _init(rng, "w1", [16, 32], 0.3),
        _init(rng, "b1", [32], 0.1),
        _init(rng, "w2", [32, 24], 0.2),
        _init(rng, "b2", [24], 0.1),
        _init(rng, "w3", [24, 5], 0.2),
    ]
    return _model(nodes, inits, "mlp", [5])


def _model(nodes, inits, name: str, out: list[int]) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPES[name])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, *out])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


class _Reader(CalibrationDataReader):
    def __init__(self, shape: list[int]):
        self._data = iter(
            [{"x": np.random.default_rng(100 + i).standard_normal(shape).astype(np.float32)} for i in range(16)]
        )

    def get_next(self):
        return next(self._data, None)


def quantized(folder: Path, name: str, arch: str, per_channel: bool, activations, weights=QuantType.QInt8) -> Path:
    float_path = folder / f"{arch}.float.onnx"
    onnx.save({"cnn": cnn, "mlp": mlp}[arch](), float_path)
    out = folder / f"{name}.onnx"
    logging.getLogger().setLevel(logging.ERROR)  # quantize_static's advice to pre-process
    quantize_static(
        str(float_path),
        str(out),
        _Reader(SHAPES[arch]),
        quant_format=QuantFormat.QDQ,
        per_channel=per_channel,
        activation_type=activations,
        weight_type=weights,
    )
    return out


RECIPE = """\
version: 1
name: {name}
source:
  onnx: {name}.onnx
{calibration}validate:
  samples: {val}
  inputs:
    x: {{npy: {arch}_val.npy}}
targets:
{targets}"""
FROM_MODEL = "  - device: {device}\n    quantization: {{from_model: true}}\n"


def write_recipe(root: Path, name: str, arch: str, targets: str, calibration: str = "") -> None:
    text = RECIPE.format(name=name, arch=arch, val=VAL, targets=targets, calibration=calibration)
    (root / f"{name}.yaml").write_text(text)


def val_data(root: Path) -> None:
    for arch, shape in SHAPES.items():
        data = np.random.default_rng(7).standard_normal((VAL, *shape[1:])).astype(np.float32)
        np.save(root / f"{arch}_val.npy", data)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """One workspace, every case built for cpu-int8 with from_model (plus cpu-fp32 for one)."""
    ws = tmp_path_factory.mktemp("qdq")
    root = ws / "recipes"
    root.mkdir()
    val_data(root)
    for name, (arch, per_channel, act) in CASES.items():
        quantized(root, name, arch, per_channel, act)
        targets = FROM_MODEL.format(device="cpu-int8")
        if name == "cnn_pc_s8":
            targets += "  - device: cpu-fp32\n    name: fp32\n"
        write_recipe(root, name, arch, targets)
    # the same QDQ model with only an fp32 target: the float model must not depend on from_model
    (root / "plain.onnx").write_bytes((root / "cnn_pc_s8.onnx").read_bytes())
    write_recipe(root, "plain", "cnn", "  - device: cpu-fp32\n    name: fp32\n")
    run_cli(ws, "build")
    return ws


# -- reading the artifact ---------------------------------------------------------------
def interpreter(path: Path):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    return it


def model_scales(path: Path) -> tuple[dict, dict]:
    """The QDQ model's activation {tensor: (scale, zero point as int8)} and weight {node: scales}."""
    model = onnx.load(str(path))
    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    acts, weights = {}, {}
    readers = {i: n for n in model.graph.node for i in n.input}
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear":
            zp = consts[node.input[2]]
            shift = 128 if zp.dtype == np.uint8 else 0
            acts[node.input[0]] = (float(consts[node.input[1]]), int(zp) - shift)
        elif node.op_type == "DequantizeLinear" and node.input[0] in consts:
            q, reader = consts[node.input[0]], readers[node.output[0]]
            if reader.op_type in ("Conv", "Gemm", "MatMul") and q.dtype == np.int8:
                weights[reader.name] = np.ravel(consts[node.input[1]])
            elif q.dtype in (np.int8, np.uint8):  # a constant operand of Add: on a grid like an activation
                zp = consts[node.input[2]]
                acts[node.input[0]] = (float(consts[node.input[1]]), int(zp) - (128 if zp.dtype == np.uint8 else 0))
    return acts, weights


def tflite_params(path: Path) -> tuple[list, dict]:
    """int8 activations' (scale, zero point), and the weights' scales by ONNX node (the TF scope of
    the op that reads them)."""
    it = interpreter(path)
    details = {d["index"]: d for d in it.get_tensor_details()}
    weights = {}
    for op in it._get_ops_details():  # the only way to see which tensor is an op's weight
        if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            scope = details[op["outputs"][0]]["name"].split(";")[0].split("/")[0]
            weights[scope] = details[op["inputs"][1]]["quantization_parameters"]["scales"]
    skip = {
        op["inputs"][i]
        for op in it._get_ops_details()
        if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
        for i in (1, 2)
        if len(op["inputs"]) > i
    }
    acts = [
        (float(d["quantization_parameters"]["scales"][0]), int(d["quantization_parameters"]["zero_points"][0]))
        for i, d in details.items()
        if d["dtype"] == np.int8 and len(d["quantization_parameters"]["scales"]) and i not in skip
    ]
    return acts, weights


def run_tflite(path: Path, x: np.ndarray, arch: str) -> np.ndarray:
    it = interpreter(path)
    runner = it.get_signature_runner()
    detail = runner.get_input_details()["x"]
    scale, zp = detail["quantization"]
    out_detail = runner.get_output_details()["y"]
    oscale, ozp = out_detail["quantization"]
    rows = []
    for sample in x:
        batch = sample[None].transpose(0, 2, 3, 1) if arch == "cnn" else sample[None]
        q = np.clip(np.rint(batch / scale) + zp, -128, 127).astype(np.int8)
        y = runner(x=q)["y"]
        rows.append((y.astype(np.float32) - ozp) * oscale)
    return np.concatenate(rows), oscale


def run_ort(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(["y"], {"x": s[None]})[0] for s in x])


# -- the artifacts keep the model's quantization ----------------------------------------
@pytest.mark.parametrize("name", sorted(CASES))
def test_artifact_has_the_models_scales(built: Path, name: str) -> None:
    root = built / "recipes"
    want_acts, want_weights = model_scales(root / f"{name}.onnx")
    acts, weights = tflite_params(built / f"build/{name}/cpu-int8/model.tflite")
    # every int8 activation of the artifact is on one of the model's grids, and every grid is used
    for scale, zp in acts:
        assert any(np.isclose(scale, s, rtol=1e-6, atol=0) and zp == z for s, z in want_acts.values()), (scale, zp)
    for s, z in want_acts.values():
        assert any(np.isclose(scale, s, rtol=1e-6, atol=0) and zp == z for scale, zp in acts), (s, z)
    assert sorted(weights) == sorted(want_weights)
    for node, scales in want_weights.items():
        if len(scales) > 1:
            assert len(weights[node]) == len(scales), node  # per-channel stays per-channel
        elif node.startswith("conv"):
            assert len(weights[node]) == 1, node
        # else: TF's QAT path writes a per-tensor FULLY_CONNECTED weight as one equal scale per row
        np.testing.assert_allclose(
            weights[node], np.broadcast_to(scales, weights[node].shape), rtol=1e-6, atol=0, err_msg=node
        )


@pytest.mark.parametrize("name", sorted(CASES))
def test_outputs_within_one_step_of_onnxruntime(built: Path, name: str) -> None:
    arch = CASES[name][0]
    root = built / "recipes"
    x = np.load(root / f"{arch}_val.npy")
    want = run_ort(root / f"{name}.onnx", x)
    got, step = run_tflite(built / f"build/{name}/cpu-int8/model.tflite", x, arch)
    assert np.max(np.abs(got - want)) <= step * 1.0001
    metrics = json.loads((built / f"build/{name}/cpu-int8/metrics.json").read_text())
    assert metrics["passed"] and metrics["outputs"]["y"]["cosine"] >= 0.999


def test_no_calibration_stage_data_and_fp32_unchanged(built: Path) -> None:
    common = built / "build/cnn_pc_s8/_common"
    assert not (common / "calib.npz").exists()
    assert (common / "float_qat.pb").is_file() and not (built / "build/plain/_common/float_qat.pb").exists()
    # the float model and the fp32 artifact are the same whether or not a target keeps the QDQ scales
    plain = built / "build/plain"
    assert (common / "float.pb").read_bytes() == (plain / "_common/float.pb").read_bytes()
    assert (built / "build/cnn_pc_s8/fp32/model.tflite").read_bytes() == (plain / "fp32/model.tflite").read_bytes()
    signature = json.loads((common / "signature.json").read_text())
    assert len(signature["quantized"]["activations"]) == 7 and len(signature["quantized"]["weights"]) == 3


# -- what the device cannot keep ----------------------------------------------------------
def _workspace(tmp_path: Path) -> tuple[Path, Path]:
    """(workspace, its recipes folder) holding the validation data."""
    ws = tmp_path / "ws"
    root = ws / "recipes"
    root.mkdir(parents=True)
    val_data(root)
    return ws, root


def _failing(tmp_path: Path, name: str, device_lines: str, **quant) -> str:
    ws, root = _workspace(tmp_path)
    quantized(root, name, "cnn", **quant)
    write_recipe(root, name, "cnn", device_lines)
    proc = run_cli(ws, "build", check=1)
    assert "Traceback" not in proc.stderr
    return proc.stderr


def test_per_channel_weights_on_a_per_tensor_device_name_the_nodes(tmp_path: Path) -> None:
    err = _failing(
        tmp_path, "pc", FROM_MODEL.format(device="axis-artpec8"), per_channel=True, activations=QuantType.QUInt8
    )
    assert "axis-artpec8 cannot keep the quantization of pc.onnx" in err
    assert "'conv1'" in err and "per-channel weight scales (8)" in err and "one scale per tensor" in err
    assert "requantize: true" in err


def test_asymmetric_uint8_weights_are_refused(tmp_path: Path) -> None:
    err = _failing(
        tmp_path,
        "u8w",
        FROM_MODEL.format(device="cpu-int8"),
        per_channel=False,
        activations=QuantType.QUInt8,
        weights=QuantType.QUInt8,
    )
    assert "'conv1'" in err and "asymmetric uint8 weights" in err


def test_int16_activations_on_an_int8_device_are_refused(tmp_path: Path) -> None:
    err = _failing(
        tmp_path, "a16", FROM_MODEL.format(device="cpu-int8"), per_channel=True, activations=QuantType.QInt16
    )
    assert "int16 activations; the device's activations are int8" in err and "x_DequantizeLinear" in err


def test_from_model_on_a_float_device_is_a_recipe_error(tmp_path: Path) -> None:
    ws, root = _workspace(tmp_path)
    quantized(root, "f", "cnn", True, QuantType.QInt8)
    write_recipe(root, "f", "cnn", FROM_MODEL.format(device="cpu-fp32"))
    proc = run_cli(ws, "build", check=2)
    assert "f.yaml:11:19  targets[0].quantization" in proc.stderr and "from_model builds int8 TFLite" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_recalibrating_a_qdq_model_warns_once(tmp_path: Path) -> None:
    ws, root = _workspace(tmp_path)
    quantized(root, "r", "cnn", True, QuantType.QInt8)
    calibration = "calibration:\n  samples: 8\n  inputs:\n    x: {npy: cnn_val.npy}\n"
    write_recipe(root, "r", "cnn", "  - device: cpu-int8\n", calibration)
    err = run_cli(ws, "build").stderr
    assert err.count("pre-quantized (QDQ)") == 1 and "quantization: {from_model: true}" in err
    # the recipe says so: no warning
    write_recipe(root, "r", "cnn", "  - device: cpu-int8\n    quantization: {requantize: true}\n", calibration)
    assert "pre-quantized" not in run_cli(ws, "build").stderr


def test_inspect_says_the_model_is_pre_quantized(built: Path) -> None:
    out = run_cli(built, "inspect", "recipes/cnn_pt_u8.onnx").stdout
    assert "pre-quantized (QDQ): 7 activation Q->DQ pairs (uint8), 3 quantized weights (int8, per-tensor)" in out
    assert "quantization: {from_model: true}" in out
    data = json.loads(run_cli(built, "inspect", "--json", "recipes/cnn_pc_s8.onnx").stdout)
    assert data["quantized"]["per_channel"] is True and data["quantized"]["weights"] == 3
    plain = json.loads(run_cli(built, "inspect", "--json", "recipes/cnn.float.onnx").stdout)
    assert plain["quantized"] is None


def test_a_channel_tflite_would_rescale_is_refused(tmp_path: Path) -> None:
    """TFLite derives per-channel weight scales as max|w| / 127: a trained scale whose
    largest weight is not |q| = 127 cannot be kept, and the build says which channel."""
    ws, root = _workspace(tmp_path)
    path = quantized(root, "odd", "cnn", True, QuantType.QInt8)
    model = onnx.load(str(path))
    inits = {t.name: t for t in model.graph.initializer}
    q, scale = numpy_helper.to_array(inits["w2_quantized"]).copy(), numpy_helper.to_array(inits["w2_scale"]).copy()
    q[3] = np.rint(q[3] / 2).astype(np.int8)  # the same weights on a grid twice as coarse: largest |q| 64
    scale[3] *= 2
    inits["w2_quantized"].CopyFrom(numpy_helper.from_array(q, "w2_quantized"))
    inits["w2_scale"].CopyFrom(numpy_helper.from_array(scale, "w2_scale"))
    onnx.save(model, str(path))
    write_recipe(root, "odd", "cnn", FROM_MODEL.format(device="cpu-int8"))
    err = run_cli(ws, "build", check=1).stderr
    assert "node 'conv2'" in err and "channel 3's largest weight is |q| = 64" in err
    assert "'conv1'" not in err and "Traceback" not in err


def test_a_minus_128_weight_keeps_its_channels_scale(tmp_path: Path) -> None:
    """Quantizers over the full int8 range (torch's: scale = max|w| / 127.5) leave a channel's most
    negative weight at q = -128, which TFLite would answer with a 128/127 larger scale for the whole
    channel; the weight moves one step instead, and the artifact keeps the model's scales."""
    ws, root = _workspace(tmp_path)
    path = quantized(root, "full", "cnn", True, QuantType.QInt8)
    model = onnx.load(str(path))
    inits = {t.name: t for t in model.graph.initializer}
    q = numpy_helper.to_array(inits["w2_quantized"]).copy()
    q[3] = np.clip(q[3], -127, 126)
    q[3].flat[int(np.argmin(q[3]))] = -128  # channel 3: largest |q| 128 (a -128), others within [-127, 126]
    inits["w2_quantized"].CopyFrom(numpy_helper.from_array(q, "w2_quantized"))
    onnx.save(model, str(path))
    write_recipe(root, "full", "cnn", FROM_MODEL.format(device="cpu-int8"))
    run_cli(ws, "build")
    _, want = model_scales(path)
    _, got = tflite_params(ws / "build/full/cpu-int8/model.tflite")
    np.testing.assert_allclose(got["conv2"], want["conv2"], rtol=1e-6, atol=0)
    x = np.load(root / "cnn_val.npy")
    out, step = run_tflite(ws / "build/full/cpu-int8/model.tflite", x, "cnn")
    # one weight moved by one step: still within a step of onnxruntime on the model as given
    assert np.max(np.abs(out - run_ort(path, x))) <= step * 1.0001


def test_from_model_needs_an_onnx_source_and_one_choice(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    recipe = ws / "recipes/shapes.yaml"
    text = recipe.read_text()
    assert text.endswith("  - device: cpu-int8\n  - device: cpu-fp32\n    name: fp32\n")
    recipe.write_text(
        text.replace(
            "  - device: cpu-int8\n",
            "  - device: cpu-int8\n    quantization: {from_model: true}\n"
            "  - {device: cpu-int8, name: both, quantization: {from_model: true, requantize: true}}\n",
        )
    )
    err = run_cli(ws, "check", check=2).stderr
    assert "targets[0].quantization  quantization.from_model reads QDQ scales from an ONNX model" in err
    assert "targets[1].quantization  from_model keeps the model's scales and requantize replaces them" in err


def test_a_tensor_without_qdq_is_refused_naming_the_float_nodes(tmp_path: Path) -> None:
    ws, root = _workspace(tmp_path)
    path = quantized(root, "gap", "cnn", True, QuantType.QInt8)
    model = onnx.load(str(path))
    # conv2's output loses its Q -> DQ pair: conv2 and the Add it feeds have no int8 grid
    nodes = [n for n in model.graph.node if n.name not in ("c2_QuantizeLinear", "c2_DequantizeLinear")]
    for n in nodes:
        n.input[:] = ["c2" if i == "c2_DequantizeLinear_Output" else i for i in n.input]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.save(model, str(path))
    write_recipe(root, "gap", "cnn", FROM_MODEL.format(device="cpu-int8"))
    err = run_cli(ws, "build", check=1).stderr
    assert "gap.onnx leaves tensors without QuantizeLinear -> DequantizeLinear" in err
    assert "add, conv2" in err and "requantize: true" in err and "Traceback" not in err
