"""Models exported by torch.onnx (dynamic batch/height/width), as users bring them.

Skipped where torch is not installed (it is not a dependency; CI runs without
it). Each model is exported with dynamic axes, prepared with `shapes:` and
compared with onnxruntime in fp32, with the TRANSPOSE count asserted.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import pytest
from onnx_harness import check

from buildsys.onnxprep.dynamic import DynamicInputs
from buildsys.onnxprep.prepare import prepare_model

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional


def conv_bn(cin: int, cout: int, k: int = 3, s: int = 1, groups: int = 1, act=nn.Hardswish) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), act())


class SqueezeExcite(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(c, c // 4, 1), nn.Conv2d(c // 4, c, 1)

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        return x * F.hardsigmoid(self.fc2(F.relu(self.fc1(s))))


class MobileNetV3Like(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = conv_bn(3, 16, s=2)
        self.dw = conv_bn(16, 16, s=2, groups=16)
        self.se = SqueezeExcite(16)
        self.pw = conv_bn(16, 32, k=1, act=nn.ReLU)
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        x = self.pw(self.se(self.dw(self.stem(x))))
        return torch.softmax(self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)), dim=1)


class YoloLike(nn.Module):
    def __init__(self, classes: int = 3):
        super().__init__()
        self.classes = classes
        self.stem = conv_bn(12, 16, act=nn.SiLU)
        self.down = conv_bn(16, 32, s=2, act=nn.SiLU)
        self.spp_in = conv_bn(32, 16, k=1, act=nn.SiLU)
        self.spp_out = conv_bn(64, 32, k=1, act=nn.SiLU)
        self.fuse = conv_bn(48, 16, act=nn.SiLU)
        self.head = nn.Conv2d(16, 3 * (5 + classes), 1)

    def forward(self, x):
        x = torch.cat([x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]], 1)
        p3 = self.stem(x)
        p4 = self.spp_in(self.down(p3))
        pools = [p4] + [F.max_pool2d(p4, k, 1, k // 2) for k in (5, 9, 13)]
        p4 = self.spp_out(torch.cat(pools, 1))
        up = F.interpolate(p4, scale_factor=2.0, mode="nearest")
        y = self.head(self.fuse(torch.cat([up, p3], 1)))
        n, _, h, w = y.shape
        y = y.view(n, 3, 5 + self.classes, h, w).permute(0, 1, 3, 4, 2)
        return y.reshape(n, -1, 5 + self.classes)


class UNetLike(nn.Module):
    def __init__(self):
        super().__init__()
        self.e1, self.e2 = conv_bn(3, 8, act=nn.ReLU), conv_bn(8, 16, s=2, act=nn.ReLU)
        self.e3 = conv_bn(16, 32, s=2, act=nn.ReLU)
        self.up1 = nn.ConvTranspose2d(32, 16, 2, 2)
        self.d1 = conv_bn(32, 16, act=nn.ReLU)
        self.out = nn.Conv2d(16, 1, 1)

    def forward(self, x):
        a = self.e1(x)
        b = self.e2(a)
        c = self.e3(b)
        d = self.d1(torch.cat([self.up1(c), b], 1))
        d = F.interpolate(d, size=a.shape[2:], mode="bilinear", align_corners=False)
        return torch.sigmoid(self.out(d))


class TransformerLike(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Conv2d(3, 32, 8, 8)
        self.block = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, activation="gelu", batch_first=True)
        self.norm = nn.LayerNorm(32)

    def forward(self, x):
        tokens = self.embed(x).flatten(2).transpose(1, 2)
        return self.norm(self.block(tokens))


def export(model: nn.Module, shape: list[int], dynamic: dict[int, str]) -> onnx.ModelProto:
    torch.manual_seed(0)
    model.eval()
    with torch.no_grad():
        for m in model.modules():  # non-trivial BN statistics, as a trained model has
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            torch.rand(*shape),
            buf,
            input_names=["image"],
            output_names=["out"],
            dynamic_axes={"image": dynamic, "out": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    return onnx.load_from_string(buf.getvalue())


CASES = {
    # name: (module, shape, dynamic axes, TRANSPOSE ops the model needs)
    "mobilenet_v3_like": (MobileNetV3Like, [1, 3, 64, 64], {0: "batch"}, 0),
    # the head reorders (anchor, H, W) -> (H, W, anchor): one transpose
    "yolo_like": (YoloLike, [1, 3, 64, 64], {0: "batch", 2: "height", 3: "width"}, 1),
    "unet_like": (UNetLike, [1, 3, 32, 32], {0: "batch", 2: "height", 3: "width"}, 0),
    # attention splits and merges heads: 4 of the export's 9 Transposes remain;
    # flatten(2).transpose(1, 2) of the
    # patch embedding is free: it is the NHWC order the conv already produced
    "transformer_like": (TransformerLike, [1, 3, 32, 32], {0: "batch"}, 4),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_torch_export_converts_once_shaped(name: str) -> None:
    cls, shape, dynamic, transposes = CASES[name]
    model = export(cls(), shape, dynamic)
    with pytest.raises(DynamicInputs):
        prepare_model(model, label=f"{name}.onnx")
    prepared = prepare_model(model, {"image": shape}, label=f"{name}.onnx")
    rng = np.random.default_rng(0)
    feeds = {"image": rng.random(shape, dtype=np.float32)}
    conv = check(prepared, feeds, atol=1e-4, rtol=1e-4, transposes=transposes)
    assert conv.signature.inputs[0].shape == [shape[0], shape[2], shape[3], shape[1]]
