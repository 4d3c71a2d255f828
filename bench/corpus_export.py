"""Export one corpus architecture to ONNX with seeded random weights (runs in the corpus venv).

    bench/.corpus/venv/bin/python bench/corpus_export.py NAME OUT.onnx
    bench/.corpus/venv/bin/python bench/corpus_export.py --list

Prints one JSON line: {"name", "ok", "error", "inputs": {name: shape}, "dynamic": {name: [axes]},
"params", "seconds", "versions"}. Nothing is downloaded: timm and torchvision models are made with
pretrained=False / weights=None, ultralytics models from their yaml. BatchNorm running statistics are
set from a few seeded random batches first (train-mode forward passes), so activations have the
ranges a trained network would, not the identity statistics of a fresh init.
Every export is TorchScript (dynamo=False), opset 17, batch 1; the `dynamic` models get a dynamic
batch (and sequence) axis as users export them, so their recipes need `batch:` / `shapes:`.
"""

from __future__ import annotations

import json
import sys
import time
import traceback

import torch
from torch import nn

OPSET = 17


class CRNN(nn.Module):
    """Text recognizer: conv stack -> 2 bidirectional LSTMs -> linear -> per-step softmax."""

    def __init__(self, classes: int = 37, hidden: int = 64):
        super().__init__()

        def block(cin, cout, pool):
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(pool)]

        self.cnn = nn.Sequential(
            *block(1, 32, (2, 2)), *block(32, 64, (2, 2)), *block(64, 128, (2, 1)), *block(128, 128, (4, 1))
        )
        self.rnn = nn.LSTM(128, hidden, num_layers=2, bidirectional=True, batch_first=False)
        self.fc = nn.Linear(2 * hidden, classes)

    def forward(self, x):
        f = self.cnn(x).squeeze(2).permute(2, 0, 1)  # (W, N, C): time-major, as CRNN exports do
        y, _ = self.rnn(f)
        return self.fc(y).softmax(-1)


class GRUTagger(nn.Module):
    """Sequence model: 2-layer GRU over (N, T, F) features -> per-step logits."""

    def __init__(self, features: int = 40, hidden: int = 96, classes: int = 12):
        super().__init__()
        self.gru = nn.GRU(features, hidden, num_layers=2, batch_first=True)
        self.fc = nn.Linear(hidden, classes)

    def forward(self, x):
        y, _ = self.gru(x)
        return self.fc(y)


class VAD(nn.Module):
    """Streaming voice-activity detector: conv front end -> LSTM with (h, c) in and out -> sigmoid."""

    def __init__(self, hidden: int = 64):
        super().__init__()
        self.front = nn.Sequential(
            nn.Conv1d(1, 32, 64, stride=32), nn.ReLU(), nn.Conv1d(32, 64, 3, padding=1), nn.ReLU()
        )
        self.lstm = nn.LSTM(64, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, audio, h, c):
        f = self.front(audio).transpose(1, 2)
        y, (h2, c2) = self.lstm(f, (h, c))
        return torch.sigmoid(self.head(y[:, -1])), h2, c2


class Encoder(nn.Module):
    """Token classifier on nn.TransformerEncoder (4 heads, d=128, 2 layers, GELU feed-forward)."""

    def __init__(self, vocab_dim: int = 64, dim: int = 128, classes: int = 10):
        super().__init__()
        self.proj = nn.Linear(vocab_dim, dim)
        layer = nn.TransformerEncoderLayer(dim, 4, 256, dropout=0.0, activation="gelu", batch_first=True)
        self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.fc = nn.Linear(dim, classes)

    def forward(self, x):
        return self.fc(self.enc(self.proj(x)).mean(1))


class UNet(nn.Module):
    """Small 4-level UNet: conv-BN-ReLU pairs, max-pool down, ConvTranspose up, skip concats."""

    def __init__(self, classes: int = 3, base: int = 16):
        super().__init__()
        chans = [base, base * 2, base * 4, base * 8]

        def pair(cin, cout):
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1),
                nn.BatchNorm2d(cout),
                nn.ReLU(),
                nn.Conv2d(cout, cout, 3, padding=1),
                nn.BatchNorm2d(cout),
                nn.ReLU(),
            )

        self.down = nn.ModuleList([pair(3 if i == 0 else chans[i - 1], c) for i, c in enumerate(chans)])
        self.up = nn.ModuleList([nn.ConvTranspose2d(c, c // 2, 2, stride=2) for c in chans[:0:-1]])
        self.fuse = nn.ModuleList([pair(c, c // 2) for c in chans[:0:-1]])
        self.out = nn.Conv2d(base, classes, 1)

    def forward(self, x):
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else nn.functional.max_pool2d(x, 2))
            skips.append(x)
        for up, fuse, skip in zip(self.up, self.fuse, skips[-2::-1]):
            x = fuse(torch.cat([up(x), skip], 1))
        return self.out(x)


def timm_model(name: str):
    import timm

    return lambda: timm.create_model(name, pretrained=False)


class Batched(nn.Module):
    """A torchvision detector behind a batched (N, 3, H, W) input, as applications call it.

    The detector itself takes a list of (3, H, W) images, which exports as an input without a batch axis."""

    def __init__(self, detector: nn.Module):
        super().__init__()
        self.detector = detector

    def forward(self, x):
        found = self.detector(list(x))[0]
        return tuple(found.values())


def tv(module: str, name: str, **kw):
    def make():
        import torchvision

        fn = getattr(getattr(torchvision.models, module) if module else torchvision.models, name)
        model = fn(weights=None, weights_backbone=None, **kw)
        return Batched(model) if module == "detection" else model

    return make


def yolo(cfg: str):
    def make():
        from ultralytics import YOLO

        model = YOLO(cfg).model
        for m in model.modules():
            # what ultralytics' own exporter sets: one concatenated (N, 4+classes, anchors) output
            if hasattr(m, "export") and hasattr(m, "format"):
                m.export, m.format = True, "onnx"
        return model

    return make


# name -> (builder, {input: shape}, dynamic axes {input: {axis: label}}, output names, note)
IMG = {"input": [1, 3, 224, 224]}
MODELS = {
    "yolov8n": (yolo("yolov8n.yaml"), {"images": [1, 3, 320, 320]}, {}, ["output0"]),
    "yolo11n": (yolo("yolo11n.yaml"), {"images": [1, 3, 320, 320]}, {}, ["output0"]),
    "resnet18": (timm_model("resnet18"), IMG, {}, ["logits"]),
    "mobilenetv3_large_100": (timm_model("mobilenetv3_large_100"), IMG, {"input": {0: "batch"}}, ["logits"]),
    "efficientnet_b0": (timm_model("efficientnet_b0"), IMG, {}, ["logits"]),
    "convnext_atto": (timm_model("convnext_atto"), IMG, {}, ["logits"]),
    "vit_tiny_patch16_224": (timm_model("vit_tiny_patch16_224"), IMG, {}, ["logits"]),
    "deit_tiny_patch16_224": (timm_model("deit_tiny_patch16_224"), IMG, {}, ["logits"]),
    "mobilevit_xxs": (timm_model("mobilevit_xxs"), {"input": [1, 3, 256, 256]}, {}, ["logits"]),
    "regnetx_002": (timm_model("regnetx_002"), IMG, {}, ["logits"]),
    "ghostnet_100": (timm_model("ghostnet_100"), IMG, {}, ["logits"]),
    "levit_128s": (timm_model("levit_128s"), IMG, {}, ["logits"]),
    "efficientformer_l1": (timm_model("efficientformer_l1"), IMG, {}, ["logits"]),
    "deeplabv3_mobilenet_v3_large": (
        tv("segmentation", "deeplabv3_mobilenet_v3_large", aux_loss=False),
        {"input": [1, 3, 320, 320]},
        {},
        ["out"],
    ),
    "lraspp_mobilenet_v3_large": (
        tv("segmentation", "lraspp_mobilenet_v3_large"),
        {"input": [1, 3, 320, 320]},
        {},
        ["out"],
    ),
    "fcn_resnet50": (tv("segmentation", "fcn_resnet50", aux_loss=False), {"input": [1, 3, 256, 256]}, {}, ["out"]),
    "ssdlite320_mobilenet_v3_large": (
        tv("detection", "ssdlite320_mobilenet_v3_large"),
        {"input": [1, 3, 320, 320]},
        {},
        ["boxes", "scores", "labels"],
    ),
    "crnn": (CRNN, {"input": [1, 1, 32, 128]}, {}, ["probs"]),
    "gru_tagger": (GRUTagger, {"features": [1, 50, 40]}, {"features": {0: "batch"}}, ["logits"]),
    "vad_lstm": (VAD, {"audio": [1, 1, 1024], "h": [1, 1, 64], "c": [1, 1, 64]}, {}, ["prob", "h_out", "c_out"]),
    "transformer_encoder": (Encoder, {"tokens": [1, 64, 64]}, {"tokens": {0: "batch", 1: "sequence"}}, ["logits"]),
    "unet": (UNet, {"input": [1, 3, 128, 128]}, {}, ["mask"]),
    "fasterrcnn_mobilenet_v3_large_320_fpn": (
        tv("detection", "fasterrcnn_mobilenet_v3_large_320_fpn"),
        {"input": [1, 3, 320, 320]},
        {},
        ["boxes", "labels", "scores"],
    ),
    # the same encoder exported under torch.no_grad(): nn.TransformerEncoderLayer's inference fast path
    # (aten::_transformer_encoder_layer_fwd) has no ONNX export, a failure users hit
    "transformer_encoder_no_grad": (
        Encoder,
        {"tokens": [1, 64, 64]},
        {"tokens": {0: "batch", 1: "sequence"}},
        ["logits"],
    ),
}
# detectors compute losses in train mode: only their BatchNorms see the statistics pass
DETECTION = frozenset({"ssdlite320_mobilenet_v3_large", "fasterrcnn_mobilenet_v3_large_320_fpn"})
# exported with autograd on, which keeps nn.TransformerEncoderLayer off its unexportable fast path
WITH_GRAD = frozenset({"transformer_encoder"})


def set_batchnorm_stats(model: nn.Module, example: list[torch.Tensor], seed: int, only_norms: bool = False) -> None:
    """Running mean/var of every BatchNorm from 4 random batches of 4 (train-mode forwards); with
    `only_norms` the rest of the model stays in eval mode (detectors compute losses in train mode)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    gen = torch.Generator().manual_seed(seed)
    model.train(not only_norms)
    for m in norms:
        m.train()
    with torch.no_grad():
        for _ in range(4):
            batch = [torch.randn((4, *t.shape[1:]), generator=gen) for t in example]
            model(*batch)
    model.eval()


def export(name: str, out: str) -> dict:
    build, shapes, dynamic, outputs = MODELS[name]
    torch.manual_seed(0)
    model = build()
    model.eval()
    gen = torch.Generator().manual_seed(1)
    example = [torch.randn(s, generator=gen) for s in shapes.values()]
    # detectors too: ssdlite's init (every conv normal(0, 0.03)) with identity statistics shrinks
    # activations to ~1e-8 by the last blocks, a network no training produces
    set_batchnorm_stats(model, example, seed=2, only_norms=name in DETECTION)
    params = sum(p.numel() for p in model.parameters())
    args = tuple(example)
    with torch.set_grad_enabled(name in WITH_GRAD):
        torch.onnx.export(
            model,
            args,
            out,
            opset_version=OPSET,
            dynamo=False,
            input_names=list(shapes),
            output_names=outputs,
            dynamic_axes=dynamic or None,
        )
    return {"params": params, "inputs": shapes, "dynamic": {k: sorted(v) for k, v in dynamic.items()}}


def versions() -> dict:
    import importlib.metadata as md

    return {p: md.version(p) for p in ("torch", "torchvision", "timm", "ultralytics", "onnx")}


def main() -> None:
    if sys.argv[1:] == ["--list"]:
        print(json.dumps(list(MODELS)))
        return
    name, out = sys.argv[1:3]
    started = time.perf_counter()
    row = {"name": name, "ok": True, "error": None, "versions": versions()}
    try:
        row.update(export(name, out))
    except Exception as exc:  # an export failure is a corpus row, not a crash
        traceback.print_exc()
        row.update(
            ok=False, error=f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        )
    row["seconds"] = round(time.perf_counter() - started, 2)
    print(json.dumps(row))


if __name__ == "__main__":
    main()
