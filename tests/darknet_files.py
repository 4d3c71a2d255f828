"""Small Darknet cfgs with every structural feature of the real ones, and random weights for them.

The detectors are yolov4-tiny and yolov3-tiny shrunk in width and input size
(non-square inputs, so a swapped height/width cannot pass); the classifiers
cover the remaining sections and activations.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from buildsys.darknet.cfg import parse
from buildsys.darknet.weights import layout

YOLO = """
[yolo]
mask = {mask}
anchors = 10,14,  23,27,  37,58,  81,82,  135,169,  344,319
classes=2
num=6
jitter=.3
ignore_thresh = .7
"""


def _conv(filters: int, size: int, stride: int = 1, activation: str = "leaky", bn: bool = True, extra: str = "") -> str:
    norm = "batch_normalize=1\n" if bn else ""
    shape = f"filters={filters}\nsize={size}\nstride={stride}\npad=1\n"
    return f"\n[convolutional]\n{norm}{shape}activation={activation}\n{extra}"


def _route(layers: str, extra: str = "") -> str:
    return f"\n[route]\nlayers = {layers}\n{extra}"


def _maxpool(size: int, stride: int) -> str:
    return f"\n[maxpool]\nsize={size}\nstride={stride}\n"


def _csp(filters: int) -> str:
    """yolov4-tiny's block: conv, its second half of channels, two convs, concat, 1x1, concat, pool."""
    half = filters // 2
    return (
        _conv(filters, 3)
        + _route("-1", "groups=2\ngroup_id=1\n")
        + _conv(half, 3)
        + _conv(half, 3)
        + _route("-1,-2")
        + _conv(filters, 1)
        + _route("-6,-1")
        + _maxpool(2, 2)
    )


# layer indexes: 0-1 stem, 2-9 and 10-17 CSP blocks (layer 15 is the 1x1 the second head reads)
YOLOV4_TINY = (
    "# yolov4-tiny, shrunk\n[net]\nbatch=1\nwidth=160\nheight=128\nchannels=3\n"
    + _conv(8, 3, 2)
    + _conv(16, 3, 2)
    + _csp(16)
    + _csp(32)
    + _conv(64, 3)
    + _conv(32, 1)
    + _conv(32, 3)
    + _conv(21, 1, activation="linear", bn=False)
    + YOLO.format(mask="3,4,5")
    + _route("-4")
    + _conv(16, 1)
    + "\n[upsample]\nstride=2\n"
    + _route("-1, 15")
    + _conv(32, 3)
    + _conv(21, 1, activation="linear", bn=False)
    + YOLO.format(mask="0,1,2")
)

# layer 8 is the 6x6 conv the second head reads; layer 11 is the stride-1 size-2 maxpool
YOLOV3_TINY = (
    "[net]\n; yolov3-tiny, shrunk\nwidth=128\nheight=96\nchannels=3\n"
    + _conv(4, 3)
    + _maxpool(2, 2)
    + _conv(8, 3)
    + _maxpool(2, 2)
    + _conv(8, 3)
    + _maxpool(2, 2)
    + _conv(16, 3)
    + _maxpool(2, 2)
    + _conv(16, 3)
    + _maxpool(2, 2)
    + _conv(32, 3)
    + _maxpool(2, 1)
    + _conv(32, 3)
    + _conv(16, 1)
    + _conv(32, 3)
    + _conv(21, 1, activation="linear", bn=False)
    + YOLO.format(mask="3,4,5")
    + _route("-4")
    + _conv(8, 1)
    + "\n[upsample]\nstride=2\n"
    + _route("-1, 8")
    + _conv(16, 3)
    + _conv(21, 1, activation="linear", bn=False)
    + YOLO.format(mask="0,1,2")
)

# odd and even sizes after the stride-2 conv (15x14), so the maxpool pads as Darknet does, not as SAME
CLASSIFIER = (
    "[net]\nheight=30\nwidth=28\nchannels=3\n"
    + _conv(8, 3, activation="mish")
    + _conv(8, 3, 2, activation="swish")
    + _conv(8, 1, activation="relu")
    + _conv(8, 3, extra="groups=2\n")
    + "\n[shortcut]\nfrom=-3\nactivation=leaky\n"
    + _conv(16, 3, activation="logistic", extra="groups=8\n")
    + _maxpool(3, 2)
    + "\n[dropout]\nprobability=.5\n"
    + _conv(10, 1, activation="linear", bn=False)
    + "\n[avgpool]\n"
    + "\n[softmax]\ngroups=1\n"
)

# a connected layer on a 3x3x4 map: Darknet flattens it channel-first
MLP = (
    "[net]\nheight=12\nwidth=10\nchannels=2\n"
    + "\n[convolutional]\nbatch_normalize=1\nfilters=4\nsize=3\nstride=2\npad=0\npadding=1\nactivation=leaky\n"
    + _maxpool(2, 2)
    + "\n[connected]\noutput=16\nactivation=leaky\n"
    + "\n[dropout]\nprobability=.5\n"
    + "\n[connected]\noutput=5\nactivation=linear\n"
    + "\n[softmax]\n"
)

CFGS = {"yolov4-tiny": YOLOV4_TINY, "yolov3-tiny": YOLOV3_TINY, "classifier": CLASSIFIER, "mlp": MLP}


def header(major: int = 0, minor: int = 2, revision: int = 5) -> bytes:
    seen = np.array([0], "<i8" if major * 10 + minor >= 2 else "<i4").tobytes()
    return np.array([major, minor, revision], "<i4").tobytes() + seen


def random_params(cfg_path: Path, seed: int) -> np.ndarray:
    """Every float of a .weights file for `cfg_path`, in Darknet's order, keeping activations O(1)."""
    rng = np.random.default_rng(seed)
    draws = {
        "biases": lambda shape: rng.normal(0.0, 0.1, shape),
        "scales": lambda shape: rng.uniform(0.5, 1.5, shape),
        "rolling_mean": lambda shape: rng.normal(0.0, 0.1, shape),
        "rolling_variance": lambda shape: rng.uniform(0.5, 1.5, shape),
        "weights": lambda shape: rng.normal(0.0, 1.0 / np.sqrt(np.prod(shape[1:])), shape),
    }
    parts = [draws[name](shape).ravel() for params in layout(parse(cfg_path)) for name, shape in params]
    return np.concatenate(parts).astype("<f4") if parts else np.zeros(0, "<f4")


def write_weights(cfg_path: Path, weights_path: Path, seed: int = 0) -> None:
    Path(weights_path).write_bytes(header() + random_params(cfg_path, seed).tobytes())


def write_model(directory: Path, name: str, seed: int = 0) -> tuple[Path, Path]:
    """`name`.cfg (from CFGS) and matching random `name`.weights in `directory`."""
    cfg = Path(directory) / f"{name}.cfg"
    cfg.write_text(CFGS[name])
    weights = cfg.with_suffix(".weights")
    write_weights(cfg, weights, seed)
    return cfg, weights
