"""A model trained with PyTorch quantization-aware training keeps its trained quantization.

Skipped where torch is not installed (it is not a dependency). The model is trained here for
a few steps with torch's fake-quant modules (int8 activations, per-channel symmetric int8
weights, as TFLite takes them) and exported by torch.onnx's TorchScript exporter, which writes
each fake-quant as QuantizeLinear -> DequantizeLinear (weights stay float behind their own pair).
torch's symmetric observers divide by 127.5, so a channel's most negative weight lands on -128.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import make_workspace, run_cli

torch = pytest.importorskip("torch")
tq = torch.ao.quantization
ort = pytest.importorskip("onnxruntime")

SHAPE = (1, 3, 8, 8)
VAL = 8
RECIPE = """\
version: 1
name: qat
source:
  onnx: qat.onnx
validate:
  samples: {val}
  inputs:
    x: {{npy: qat_val.npy}}
targets:
  - device: cpu-int8
    quantization: {{from_model: true}}
"""


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()
        self.conv1, self.relu1 = torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU()
        self.conv2, self.relu2 = torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU()
        self.fc = torch.nn.Linear(128, 10)

    def forward(self, x):
        x = self.relu2(self.conv2(self.relu1(self.conv1(self.quant(x)))))
        x = torch.flatten(torch.nn.functional.max_pool2d(x, 2), 1)
        return self.dequant(self.fc(x))


def trained() -> torch.nn.Module:
    torch.manual_seed(0)
    act = tq.FakeQuantize.with_args(
        observer=tq.MovingAverageMinMaxObserver,
        quant_min=-128,
        quant_max=127,
        dtype=torch.qint8,
        qscheme=torch.per_tensor_affine,
    )
    weight = tq.FakeQuantize.with_args(
        observer=tq.MovingAveragePerChannelMinMaxObserver,
        quant_min=-128,
        quant_max=127,
        dtype=torch.qint8,
        qscheme=torch.per_channel_symmetric,
    )
    model = Net().train()
    model.qconfig = tq.QConfig(activation=act, weight=weight)
    model = tq.prepare_qat(tq.fuse_modules_qat(model, [["conv1", "relu1"], ["conv2", "relu2"]]))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(20):
        loss = ((model(torch.randn(8, *SHAPE[1:])) - torch.randn(8, 10)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval().apply(tq.disable_observer)
    return model


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    ws = make_workspace(tmp_path_factory.mktemp("qat") / "ws")
    root = ws / "recipes"
    model = trained()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            model,
            (torch.randn(*SHAPE),),
            str(root / "qat.onnx"),
            dynamo=False,
            opset_version=13,
            input_names=["x"],
            output_names=["y"],
        )
    np.save(root / "qat_val.npy", np.random.default_rng(7).standard_normal((VAL, *SHAPE[1:])).astype(np.float32))
    (root / "qat.yaml").write_text(RECIPE.format(val=VAL))
    run_cli(ws, "build", "recipes/qat.yaml")
    return ws, model


def interpreter(path: Path):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    return it


def test_weight_scales_are_the_trained_ones(built):
    ws, model = built
    it = interpreter(ws / "build/qat/cpu-int8/model.tflite")
    details = {d["index"]: d for d in it.get_tensor_details()}
    ops = [op for op in it._get_ops_details() if op["op_name"] in ("CONV_2D", "FULLY_CONNECTED")]
    layers = (model.conv1, model.conv2, model.fc)
    assert len(ops) == len(layers)
    minus_128 = 0
    for op, layer in zip(ops, layers):
        want = layer.weight_fake_quant.scale.detach().numpy()
        got = details[op["inputs"][1]]["quantization_parameters"]["scales"]
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)
        q = torch.round(
            layer.weight.detach() / layer.weight_fake_quant.scale.reshape(-1, *[1] * (layer.weight.dim() - 1))
        )
        minus_128 += int((q <= -128).sum())
    assert minus_128 > 0  # the case TFLite would rescale is really in the model


def test_activation_scales_are_the_trained_ones(built):
    ws, model = built
    it = interpreter(ws / "build/qat/cpu-int8/model.tflite")
    weights = {
        op["inputs"][i]
        for op in it._get_ops_details()
        for i in (1, 2)
        if op["op_name"] in ("CONV_2D", "FULLY_CONNECTED")
    }
    got = {
        (
            round(float(d["quantization_parameters"]["scales"][0]), 9),
            int(d["quantization_parameters"]["zero_points"][0]),
        )
        for d in it.get_tensor_details()
        if d["dtype"] == np.int8 and d["index"] not in weights
    }
    fakes = [m for name, m in model.named_modules() if name.endswith("activation_post_process") and hasattr(m, "scale")]
    want = {(round(float(m.scale), 9), int(m.zero_point)) for m in fakes}
    assert got == want


def test_outputs_within_one_step_of_onnxruntime_and_torch(built):
    ws, model = built
    root = ws / "recipes"
    x = np.load(root / "qat_val.npy")
    runner = interpreter(ws / "build/qat/cpu-int8/model.tflite").get_signature_runner()
    scale, zp = runner.get_input_details()["x"]["quantization"]
    oscale, ozp = runner.get_output_details()["y"]["quantization"]
    got = np.concatenate(
        [
            (
                runner(x=np.clip(np.rint(s[None].transpose(0, 2, 3, 1) / scale) + zp, -128, 127).astype(np.int8))[
                    "y"
                ].astype(np.float32)
                - ozp
            )
            * oscale
            for s in x
        ]
    )
    session = ort.InferenceSession(str(root / "qat.onnx"), providers=["CPUExecutionProvider"])
    by_ort = np.concatenate([session.run(["y"], {"x": s[None]})[0] for s in x])
    with torch.no_grad():
        by_torch = model(torch.from_numpy(x)).numpy()
    print(
        f"max error vs onnxruntime {np.abs(got - by_ort).max() / oscale:.3f} steps, "
        f"vs torch {np.abs(got - by_torch).max() / oscale:.3f} steps"
    )
    assert np.abs(got - by_ort).max() <= oscale * 1.0001
    assert np.abs(got - by_torch).max() <= oscale * 1.0001
