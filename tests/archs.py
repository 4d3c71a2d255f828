"""Realistic random-weight ONNX architectures for end-to-end converter tests and benchmarks.

Every builder returns a checked, static-shape opset-17 ModelProto whose
weights come from a fixed seed. Random nets only make meaningful fp32/int8
comparisons if their activations stay O(1) through the depth, so:

- conv/linear weights are He/Kaiming-normal (sqrt(2/fan_in)) before ReLU-like
  activations and LeCun (sqrt(1/fan_in)) before linear outputs;
- BatchNormalization nodes are kept (not folded) and their running mean/var
  are estimated from data (`calibrate_batchnorm`): with gamma ~ 1 each BN
  output is roughly unit-variance, as in a trained network;
- BNs feeding a ReLU-like activation get beta ~ ACT_SHIFT so most units are
  active: otherwise a deep random net is chaotic (see ACT_SHIFT) and its int8
  version cannot match it, whatever the converter does.

Importable from tests (tests/ is on sys.path) and from bench/ (add tests/ to
sys.path). `python tests/archs.py` is a self-test: it builds every model,
runs onnx.checker and onnxruntime, and prints activation statistics.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IMAGE_MEAN = np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 3, 1, 1)
IMAGE_STD = np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 3, 1, 1)
BN_EPS = 1e-5
# BN beta before ReLU-like activations. With beta ~ 0 half the units switch
# off, and since the next BN removes the mean that ReLU creates, a small
# perturbation grows ~1.5x in squared relative size per layer: a random
# 35-layer net becomes chaotic (1% input noise moves its output ~100x more
# than a trained net's) and no int8 model can match it. Mostly-active units
# (beta ~ 1.5: gain ~1.05 per layer) behave like a trained net.
ACT_SHIFT = 1.5


# --------------------------------------------------------------------------- graph builder


class Net:
    """Accumulates nodes and initializers; every method returns the output value name."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: dict[str, np.ndarray] = {}
        self._ids = itertools.count()

    def fresh(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids)}"

    def const(self, array, prefix: str = "c") -> str:
        name = self.fresh(prefix)
        self.inits[name] = np.asarray(array)
        return name

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attrs) -> str:
        name = self.fresh(op_type.lower())
        output = out or f"{name}_y"
        self.nodes.append(helper.make_node(op_type, list(inputs), [output], name=name, **attrs))
        return output

    def normal(self, shape, std: float) -> np.ndarray:
        return (self.rng.standard_normal(shape) * std).astype(np.float32)

    # ---- layers

    def conv(self, x, cin, cout, k, s=1, pad=None, group=1, bias=False, gain=2.0, out=None) -> str:
        """`gain` 2 for ReLU-like followers (He), 1 for linear ones (LeCun)."""
        pad = k // 2 if pad is None else pad
        fan_in = cin // group * k * k
        w = self.const(self.normal((cout, cin // group, k, k), math.sqrt(gain / fan_in)), "w")
        inputs = [x, w]
        if bias:
            inputs.append(self.const(self.normal((cout,), 0.05), "b"))
        return self.op("Conv", *inputs, out=out, kernel_shape=[k, k], strides=[s, s], pads=[pad] * 4, group=group)

    def conv_transpose(self, x, cin, cout, k, s, pad=0) -> str:
        # each output pixel sums cin * (k/s)^2 taps
        fan_in = cin * (k // s) ** 2
        w = self.const(self.normal((cin, cout, k, k), math.sqrt(2.0 / fan_in)), "w")
        return self.op("ConvTranspose", x, w, kernel_shape=[k, k], strides=[s, s], pads=[pad] * 4)

    def bn(self, x, c, gamma_scale: float = 1.0, shift: float = 0.0) -> str:
        """Running stats start at (0, 1); `calibrate_batchnorm` replaces them with data estimates."""
        gamma = self.const((gamma_scale * (1.0 + 0.1 * self.rng.standard_normal(c))).astype(np.float32), "bn_gamma")
        beta = self.const((shift + self.normal((c,), 0.1)).astype(np.float32), "bn_beta")
        mean = self.const(np.zeros(c, np.float32), "bn_mean")
        var = self.const(np.ones(c, np.float32), "bn_var")
        return self.op("BatchNormalization", x, gamma, beta, mean, var, epsilon=BN_EPS, momentum=0.9)

    def relu(self, x) -> str:
        return self.op("Relu", x)

    def relu6(self, x) -> str:
        # opset >= 11 Clip takes min/max as inputs: this is how PyTorch exports ReLU6
        lo = self.const(np.array(0.0, np.float32), "clip_min")
        hi = self.const(np.array(6.0, np.float32), "clip_max")
        return self.op("Clip", x, lo, hi)

    def hardswish(self, x) -> str:
        return self.op("HardSwish", x)

    def hardsigmoid(self, x) -> str:
        # PyTorch's hardsigmoid is relu6(x + 3) / 6, i.e. alpha 1/6 (ONNX's default is 0.2)
        return self.op("HardSigmoid", x, alpha=1.0 / 6.0, beta=0.5)

    def silu(self, x) -> str:
        return self.op("Mul", x, self.op("Sigmoid", x))

    def cba(self, x, cin, cout, k, s=1, group=1, act: Callable | None = None, gamma_scale=1.0) -> str:
        """Conv + BN + activation (None: linear)."""
        conv = self.conv(x, cin, cout, k, s, group=group, gain=2.0 if act else 1.0)
        if not act:
            return self.bn(conv, cout, gamma_scale)
        return act(self.bn(conv, cout, gamma_scale, shift=ACT_SHIFT))

    def gap_classifier(self, x, c, classes, out="logits") -> str:
        pooled = self.op("GlobalAveragePool", x)
        flat = self.op("Flatten", pooled, axis=1)
        return self.gemm(flat, c, classes, out=out)

    def gemm(self, x, cin, cout, out=None) -> str:
        w = self.const(self.normal((cout, cin), math.sqrt(1.0 / cin)), "fc_w")
        b = self.const(self.normal((cout,), 0.05), "fc_b")
        return self.op("Gemm", x, w, b, out=out, transB=1)

    def shape_const(self, dims) -> str:
        return self.const(np.asarray(dims, np.int64), "shape")

    def model(self, inputs: dict[str, list[int]], outputs: list[str], name: str) -> onnx.ModelProto:
        ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()]
        outs = [helper.make_empty_tensor_value_info(n) for n in outputs]
        inits = [numpy_helper.from_array(v, n) for n, v in self.inits.items()]
        graph = helper.make_graph(self.nodes, name, ins, outs, inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="tests.archs")
        model.ir_version = min(model.ir_version, 9)  # onnxruntime's ceiling
        return finish(model)


def finish(model: onnx.ModelProto) -> onnx.ModelProto:
    """Shape-infer, give graph outputs their inferred types, and check."""
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    known = {v.name: v for v in model.graph.value_info}
    for out in model.graph.output:
        if out.name in known:
            out.CopyFrom(known[out.name])
    onnx.checker.check_model(model, full_check=True)
    return model


def make_divisible(v: float, divisor: int = 8) -> int:
    """torchvision's channel rounding: nearest multiple of divisor, never more than 10% below v."""
    out = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * v else out


# --------------------------------------------------------------------------- inputs


def images(n: int, size: int | tuple[int, int], seed: int = 0) -> np.ndarray:
    """(n, 3, H, W) ImageNet-normalized images with [0, 1] pixels.

    Pixel-wise uniform noise averages out in every pooled feature, so all
    samples would look alike to a classifier; a low-frequency field plus
    a little noise varies across samples the way photos do.
    """
    h, w = (size, size) if isinstance(size, int) else size
    rng = np.random.default_rng(seed)
    coarse = rng.random((n, 3, 6, 6)).astype(np.float32)
    smooth = _bilinear(coarse, h, w)
    pixels = np.clip(0.8 * smooth + 0.2 * rng.random((n, 3, h, w)), 0.0, 1.0).astype(np.float32)
    return (pixels - IMAGE_MEAN) / IMAGE_STD


def _bilinear(x: np.ndarray, h: int, w: int) -> np.ndarray:
    ys = np.linspace(0, x.shape[2] - 1, h)
    xs = np.linspace(0, x.shape[3] - 1, w)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, x.shape[2] - 1), np.minimum(x0 + 1, x.shape[3] - 1)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = x[:, :, y0][:, :, :, x0] * (1 - fx) + x[:, :, y0][:, :, :, x1] * fx
    bottom = x[:, :, y1][:, :, :, x0] * (1 - fx) + x[:, :, y1][:, :, :, x1] * fx
    return top * (1 - fy) + bottom * fy


def sample_inputs(model: onnx.ModelProto, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """{input: (n, *per-sample dims)} in ONNX layout; images for rank-4 inputs, N(0, 1) tokens otherwise."""
    out = {}
    for k, v in enumerate(model.graph.input):
        dims = [d.dim_value for d in v.type.tensor_type.shape.dim]
        if len(dims) == 4 and dims[1] == 3:
            out[v.name] = images(n * dims[0], (dims[2], dims[3]), seed + k).reshape(n * dims[0], *dims[1:])
        else:
            rng = np.random.default_rng(seed + k)
            out[v.name] = rng.standard_normal((n * dims[0], *dims[1:])).astype(np.float32)
    return out


def split_samples(arrays: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Batch-1 feeds, one per sample."""
    count = len(next(iter(arrays.values())))
    return [{k: a[i : i + 1] for k, a in arrays.items()} for i in range(count)]


# --------------------------------------------------------------------------- running


def session(model: onnx.ModelProto):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def assert_fp32_matches(name: str, got: dict, ref: dict) -> None:
    """Every output as onnxruntime's: same names and shapes, max abs error within 1e-4 x max(1, |ref|)."""
    assert sorted(got) == sorted(ref)
    for out, want in ref.items():
        have = got[out]
        assert have.shape == want.shape, f"{out}: {have.shape} != {want.shape}"
        err = float(np.abs(have - want).max())
        bound = 1e-4 * max(1.0, float(np.abs(want).max()))
        print(f"{name}/{out}: fp32 max abs error {err:.3g} (bound {bound:.3g})")
        assert err <= bound, f"{name}/{out}: max abs error {err:.3g} > {bound:.3g}"


def run_ort(model: onnx.ModelProto, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """onnxruntime over (N, ...) samples one at a time; outputs stacked along axis 0."""
    sess = session(model)
    names = [o.name for o in sess.get_outputs()]
    runs = [sess.run(names, feed) for feed in split_samples(arrays)]
    return {n: np.concatenate([r[i] for r in runs]) for i, n in enumerate(names)}


def calibrate_batchnorm(model: onnx.ModelProto, arrays: dict[str, np.ndarray]) -> onnx.ModelProto:
    """Set every BN's running mean/var to the statistics of its input over the samples `arrays`.

    One onnxruntime run of a probe in which each BN normalizes with the
    statistics of the whole batch of samples (training-mode BN) and emits
    them: with those as running stats the inference model computes exactly
    what the probe did on these samples, however deep the BN sits.
    """
    count = len(next(iter(arrays.values())))
    probe, stats = _stat_probe(model, count)
    names = [n for pair in stats.values() for n in pair]
    values = dict(zip(names, session(probe).run(names, arrays)))
    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = {t.name: t for t in out.graph.initializer}
    for (mean_name, var_name), (m_out, v_out) in stats.items():
        var = values[v_out].reshape(-1)
        # channels dead on the samples (e.g. all-zero after ReLU6) would turn
        # into huge gains on other data; trained nets never see var ~ 0 either
        var = np.maximum(var, 1e-2 * float(np.median(var)) + BN_EPS)
        inits[mean_name].CopyFrom(numpy_helper.from_array(values[m_out].reshape(-1).astype(np.float32), mean_name))
        inits[var_name].CopyFrom(numpy_helper.from_array(var.astype(np.float32), var_name))
    return out


def _stat_probe(model: onnx.ModelProto, count: int):
    """(probe model over a batch of `count` samples, {(mean init, var init): (mean output, var output)})."""
    nodes, stats = [], {}
    extra = [
        numpy_helper.from_array(np.array(BN_EPS, np.float32), "probe_eps"),
        numpy_helper.from_array(np.array([0, 2, 3], np.int64), "probe_axes"),
    ]
    for node in model.graph.node:
        if node.op_type != "BatchNormalization":
            nodes.append(node)
            continue
        x, gamma, beta, mean, var = node.input
        nodes += _batch_norm_probe(node, x, gamma, beta)
        stats[(mean, var)] = (f"{node.name}_probe_m", f"{node.name}_probe_v")
    wanted = [n for pair in stats.values() for n in pair]
    nodes = _ancestors(nodes, wanted)
    inits = [_batched(t, count, nodes) for t in model.graph.initializer]
    inputs = []
    for v in model.graph.input:
        batched = onnx.ValueInfoProto()
        batched.CopyFrom(v)
        batched.type.tensor_type.shape.dim[0].dim_value = count
        inputs.append(batched)
    graph = helper.make_graph(
        nodes,
        model.graph.name + "_bnprobe",
        inputs,
        [helper.make_empty_tensor_value_info(n) for n in wanted],
        inits + extra,
    )
    probe = helper.make_model(graph, opset_imports=list(model.opset_import))
    probe.ir_version = model.ir_version
    return probe, stats


def _batch_norm_probe(node: onnx.NodeProto, x: str, gamma: str, beta: str) -> list[onnx.NodeProto]:
    c = lambda s: f"{node.name}_probe_{s}"  # noqa: E731 - local naming helper
    return [
        helper.make_node("ReduceMean", [x], [c("m")], axes=[0, 2, 3], keepdims=1),
        helper.make_node("Sub", [x, c("m")], [c("d")]),
        helper.make_node("Mul", [c("d"), c("d")], [c("d2")]),
        helper.make_node("ReduceMean", [c("d2")], [c("v")], axes=[0, 2, 3], keepdims=1),
        helper.make_node("Add", [c("v"), "probe_eps"], [c("ve")]),
        helper.make_node("Sqrt", [c("ve")], [c("s")]),
        helper.make_node("Div", [c("d"), c("s")], [c("n")]),
        helper.make_node("Unsqueeze", [gamma, "probe_axes"], [c("g")]),
        helper.make_node("Unsqueeze", [beta, "probe_axes"], [c("b")]),
        helper.make_node("Mul", [c("n"), c("g")], [c("ng")]),
        helper.make_node("Add", [c("ng"), c("b")], [node.output[0]]),
    ]


def _ancestors(nodes: list[onnx.NodeProto], wanted: list[str]) -> list[onnx.NodeProto]:
    """The nodes `wanted` depends on, in order (drops heads whose Reshapes hard-code batch 1)."""
    needed, keep = set(wanted), []
    for node in reversed(nodes):
        if needed.intersection(node.output):
            keep.append(node)
            needed.update(i for i in node.input if i)
    return keep[::-1]


def _batched(init: onnx.TensorProto, count: int, nodes: list[onnx.NodeProto]) -> onnx.TensorProto:
    """Resize `sizes` name the batch dim: the probe's copy must say `count`, not 1."""
    sizes = {n.input[3] for n in nodes if n.op_type == "Resize" and len(n.input) > 3 and n.input[3]}
    if init.name not in sizes:
        return init
    value = numpy_helper.to_array(init).copy()
    value[0] = count
    return numpy_helper.from_array(value, init.name)


def calibrated(net: Net, inputs: dict[str, list[int]], outputs: list[str], name: str, seed: int) -> onnx.ModelProto:
    model = net.model(inputs, outputs, name)
    if any(n.op_type == "BatchNormalization" for n in model.graph.node):
        # distinct from test data seeds (tests use small seeds), like a training set
        model = calibrate_batchnorm(model, sample_inputs(model, 32, seed=1000 + seed))
    return model


# --------------------------------------------------------------------------- 1. MobileNetV2

MOBILENET_V2_BLOCKS = [  # expansion t, channels c, repeats n, first stride s (Sandler et al. 2018)
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


def mobilenet_v2(size: int = 224, width: float = 0.35, classes: int = 1000, seed: int = 0) -> onnx.ModelProto:
    """17 inverted-residual blocks; Conv+BN+ReLU6 (Clip 0..6), depthwise 3x3, linear bottlenecks."""
    net = Net(seed)
    cin = make_divisible(32 * width)
    x = net.cba("image", 3, cin, 3, 2, act=net.relu6)
    for t, c, n, s in MOBILENET_V2_BLOCKS:
        cout = make_divisible(c * width)
        for i in range(n):
            x = _inverted_residual(net, x, cin, cout, s if i == 0 else 1, t)
            cin = cout
    last = make_divisible(1280 * max(1.0, width))
    x = net.cba(x, cin, last, 1, act=net.relu6)
    logits = net.gap_classifier(x, last, classes)
    return calibrated(net, {"image": [1, 3, size, size]}, [logits], "mobilenet_v2", seed)


def _inverted_residual(net: Net, x, cin, cout, stride, expand) -> str:
    hidden = cin * expand
    y = net.cba(x, cin, hidden, 1, act=net.relu6) if expand != 1 else x
    y = net.cba(y, hidden, hidden, 3, stride, group=hidden, act=net.relu6)
    residual = stride == 1 and cin == cout
    # a smaller gamma on the branch keeps the residual stream from growing block by block
    y = net.cba(y, hidden, cout, 1, gamma_scale=0.5 if residual else 1.0)
    return net.op("Add", x, y) if residual else y


# --------------------------------------------------------------------------- 2. MobileNetV3-small

MOBILENET_V3_SMALL_BLOCKS = [  # kernel, expanded, out, squeeze-excite, hardswish, stride (Howard et al. 2019)
    (3, 16, 16, True, False, 2),
    (3, 72, 24, False, False, 2),
    (3, 88, 24, False, False, 1),
    (5, 96, 40, True, True, 2),
    (5, 240, 40, True, True, 1),
    (5, 240, 40, True, True, 1),
    (5, 120, 48, True, True, 1),
    (5, 144, 48, True, True, 1),
    (5, 288, 96, True, True, 2),
    (5, 576, 96, True, True, 1),
    (5, 576, 96, True, True, 1),
]


def mobilenet_v3_small(size: int = 224, width: float = 1.0, classes: int = 1000, seed: int = 0) -> onnx.ModelProto:
    """HardSwish/ReLU bnecks with squeeze-excite (GAP, 1x1 Conv, Relu, 1x1 Conv, HardSigmoid, Mul)."""
    net = Net(seed)
    cin = make_divisible(16 * width)
    x = net.cba("image", 3, cin, 3, 2, act=net.hardswish)
    for k, exp, out, se, hs, s in MOBILENET_V3_SMALL_BLOCKS:
        hidden, cout = make_divisible(exp * width), make_divisible(out * width)
        x = _bneck(net, x, cin, hidden, cout, k, s, se, net.hardswish if hs else net.relu)
        cin = cout
    last = make_divisible(576 * width)
    x = net.cba(x, cin, last, 1, act=net.hardswish)
    pooled = net.op("GlobalAveragePool", x)
    head = net.hardswish(net.conv(pooled, last, 1024, 1, bias=True))
    flat = net.op("Flatten", head, axis=1)
    logits = net.gemm(flat, 1024, classes, out="logits")
    return calibrated(net, {"image": [1, 3, size, size]}, [logits], "mobilenet_v3_small", seed)


def _bneck(net: Net, x, cin, hidden, cout, k, stride, se, act) -> str:
    y = net.cba(x, cin, hidden, 1, act=act) if hidden != cin else x
    y = net.cba(y, hidden, hidden, k, stride, group=hidden, act=act)
    if se:
        y = _squeeze_excite(net, y, hidden)
    residual = stride == 1 and cin == cout
    y = net.cba(y, hidden, cout, 1, gamma_scale=0.5 if residual else 1.0)
    return net.op("Add", x, y) if residual else y


def _squeeze_excite(net: Net, x, c) -> str:
    squeeze = make_divisible(c // 4)
    s = net.op("GlobalAveragePool", x)
    s = net.relu(net.conv(s, c, squeeze, 1, bias=True))
    # gates spread over (0, 1) rather than saturating: linear init on the excite conv
    s = net.hardsigmoid(net.conv(s, squeeze, c, 1, bias=True, gain=3.0))
    return net.op("Mul", x, s)


# --------------------------------------------------------------------------- 3. ResNet-18


def resnet18(size: int = 224, widths=(16, 32, 64, 128), classes: int = 1000, seed: int = 0) -> onnx.ModelProto:
    """BasicBlocks [2, 2, 2, 2]; 7x7/2 stem + MaxPool 3x3/2 pad 1; 1x1/2 conv+BN shortcuts when downsampling."""
    net = Net(seed)
    x = net.cba("image", 3, widths[0], 7, 2, act=net.relu)
    x = net.op("MaxPool", x, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = widths[0]
    for stage, cout in enumerate(widths):
        for i in range(2):
            stride = 2 if stage > 0 and i == 0 else 1
            x = _basic_block(net, x, cin, cout, stride)
            cin = cout
    logits = net.gap_classifier(x, cin, classes)
    return calibrated(net, {"image": [1, 3, size, size]}, [logits], "resnet18", seed)


def _basic_block(net: Net, x, cin, cout, stride) -> str:
    y = net.cba(x, cin, cout, 3, stride, act=net.relu)
    y = net.cba(y, cout, cout, 3, gamma_scale=0.5)
    shortcut = x if stride == 1 and cin == cout else net.cba(x, cin, cout, 1, stride)
    return net.relu(net.op("Add", y, shortcut))


def regnet_x(
    size: int = 64, widths=(24, 56, 152), depths=(1, 1, 2), group_width: int = 8, classes: int = 10, seed: int = 0
) -> onnx.ModelProto:
    """RegNetX blocks as torchvision exports them: 1x1, grouped 3x3 (8 channels a group), 1x1,
    residual (1x1/2 projection when downsampling), ReLU."""
    net = Net(seed)
    x = net.cba("image", 3, 32, 3, 2, act=net.relu)
    cin = 32
    for cout, depth in zip(widths, depths):
        for i in range(depth):
            x = _x_block(net, x, cin, cout, 2 if i == 0 else 1, cout // group_width)
            cin = cout
    logits = net.gap_classifier(x, cin, classes)
    return calibrated(net, {"image": [1, 3, size, size]}, [logits], "regnet_x", seed)


def _x_block(net: Net, x, cin, cout, stride, groups) -> str:
    y = net.cba(x, cin, cout, 1, act=net.relu)
    y = net.cba(y, cout, cout, 3, stride, group=groups, act=net.relu)
    y = net.cba(y, cout, cout, 1, gamma_scale=0.5)
    shortcut = x if stride == 1 and cin == cout else net.cba(x, cin, cout, 1, stride)
    return net.relu(net.op("Add", y, shortcut))


# --------------------------------------------------------------------------- 4. YOLO-style detector


def yolo(size: int = 160, classes: int = 4, seed: int = 0) -> onnx.ModelProto:
    """YOLOv5-like: Focus stem, Conv+BN+SiLU, C3 blocks, SPP, FPN (Resize nearest x2), two anchor heads.

    Output "detections" [1, 3 * (H4*W4 + H5*W5), 5 + classes]: per head the
    1x1 conv's 3*(5+C) channels are split (anchor, field), moved behind the
    grid, and flattened anchor-major, as YOLOv5's Detect layer exports.
    """
    net = Net(seed)
    silu = net.silu
    x = _focus(net, "image")
    x = net.cba(x, 12, 16, 3, act=silu)
    x = net.cba(x, 16, 32, 3, 2, act=silu)  # /4
    x = _c3(net, x, 32, 32, 1)
    x = net.cba(x, 32, 64, 3, 2, act=silu)  # /8
    x = _c3(net, x, 64, 64, 1)
    x = net.cba(x, 64, 128, 3, 2, act=silu)  # /16
    p4 = _c3(net, x, 128, 128, 1)
    x = net.cba(p4, 128, 256, 3, 2, act=silu)  # /32
    x = _spp(net, x, 256, 256)
    p5 = _c3(net, x, 256, 256, 1, shortcut=False)
    lateral = net.cba(p5, 256, 128, 1, act=silu)
    scales = net.const(np.array([1, 1, 2, 2], np.float32), "scales")
    up = net.op(
        "Resize", lateral, "", scales, mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor"
    )
    merged = net.op("Concat", up, p4, axis=1)
    n4 = _c3(net, merged, 256, 128, 1, shortcut=False)
    s4, s5 = size // 16, size // 32
    heads = [_detect_head(net, n4, 128, classes, s4), _detect_head(net, p5, 256, classes, s5)]
    det = net.op("Concat", *heads, out="detections", axis=1)
    return calibrated(net, {"image": [1, 3, size, size]}, [det], "yolo", seed)


def _focus(net: Net, x) -> str:
    """Space-to-depth by four strided Slices: (even/odd row) x (even/odd column), concatenated on C."""
    big = np.iinfo(np.int64).max  # how PyTorch exports an open-ended slice
    parts = []
    for dy, dx in ((0, 0), (1, 0), (0, 1), (1, 1)):
        starts = net.const(np.array([dy, dx], np.int64), "starts")
        ends = net.const(np.array([big, big], np.int64), "ends")
        axes = net.const(np.array([2, 3], np.int64), "axes")
        steps = net.const(np.array([2, 2], np.int64), "steps")
        parts.append(net.op("Slice", x, starts, ends, axes, steps))
    return net.op("Concat", *parts, axis=1)


def _c3(net: Net, x, cin, cout, n, shortcut=True) -> str:
    hidden = cout // 2
    a = net.cba(x, cin, hidden, 1, act=net.silu)
    for _ in range(n):
        y = net.cba(a, hidden, hidden, 1, act=net.silu)
        y = net.cba(y, hidden, hidden, 3, act=net.silu, gamma_scale=0.5 if shortcut else 1.0)
        a = net.op("Add", a, y) if shortcut else y
    b = net.cba(x, cin, hidden, 1, act=net.silu)
    return net.cba(net.op("Concat", a, b, axis=1), 2 * hidden, cout, 1, act=net.silu)


def _spp(net: Net, x, cin, cout) -> str:
    hidden = cin // 2
    y = net.cba(x, cin, hidden, 1, act=net.silu)
    pools = [net.op("MaxPool", y, kernel_shape=[k, k], strides=[1, 1], pads=[k // 2] * 4) for k in (5, 9, 13)]
    return net.cba(net.op("Concat", y, *pools, axis=1), 4 * hidden, cout, 1, act=net.silu)


def _detect_head(net: Net, x, cin, classes, grid) -> str:
    fields = 5 + classes
    y = net.conv(x, cin, 3 * fields, 1, bias=True, gain=1.0)
    y = net.op("Reshape", y, net.shape_const([1, 3, fields, grid, grid]))
    y = net.op("Transpose", y, perm=[0, 1, 3, 4, 2])
    return net.op("Reshape", y, net.shape_const([1, 3 * grid * grid, fields]))


# --------------------------------------------------------------------------- 5. UNet / DBNet-style segmenter


def segmenter(size: int = 128, seed: int = 0) -> onnx.ModelProto:
    """Stride-2 conv encoder; decoder upsamples by ConvTranspose (k2 s2; k4 s2 pad 1) and by
    linear Resize to explicit sizes (align_corners; half_pixel), with skip Concats; 1x1 conv + Sigmoid."""
    net = Net(seed)
    relu = net.relu
    e1 = net.cba("image", 3, 16, 3, act=relu)  # H
    e2 = net.cba(e1, 16, 32, 3, 2, act=relu)  # H/2
    e3 = net.cba(e2, 32, 64, 3, 2, act=relu)  # H/4
    e4 = net.cba(e3, 64, 96, 3, 2, act=relu)  # H/8
    e5 = net.cba(e4, 96, 128, 3, 2, act=relu)  # H/16
    d4 = relu(net.bn(net.conv_transpose(e5, 128, 96, 2, 2), 96, shift=ACT_SHIFT))
    d4 = net.cba(net.op("Concat", d4, e4, axis=1), 192, 64, 3, act=relu)
    d3 = relu(net.bn(net.conv_transpose(d4, 64, 48, 4, 2, pad=1), 48, shift=ACT_SHIFT))
    d3 = net.cba(net.op("Concat", d3, e3, axis=1), 112, 32, 3, act=relu)
    d2 = _resize_linear(net, d3, [1, 32, size // 2, size // 2], "align_corners")
    d2 = net.cba(net.op("Concat", d2, e2, axis=1), 64, 32, 3, act=relu)
    d1 = _resize_linear(net, d2, [1, 32, size, size], "half_pixel")
    d1 = net.cba(net.op("Concat", d1, e1, axis=1), 48, 16, 3, act=relu)
    # He gain on the last conv spreads logits over a few units, so the probabilities use (0, 1)
    logits = net.conv(d1, 16, 1, 1, bias=True, gain=4.0)
    prob = net.op("Sigmoid", logits, out="prob")
    return calibrated(net, {"image": [1, 3, size, size]}, [prob], "segmenter", seed)


def _resize_linear(net: Net, x, sizes, mode) -> str:
    return net.op(
        "Resize",
        x,
        "",
        "",
        net.const(np.array(sizes, np.int64), "sizes"),
        mode="linear",
        coordinate_transformation_mode=mode,
    )


# --------------------------------------------------------------------------- 6. transformer


def transformer(
    seq: int = 16,
    dim: int = 64,
    heads: int = 4,
    depth: int = 2,
    norm: str = "layernorm",
    scale: str = "div",
    patch_image: int | None = None,
    seed: int = 0,
) -> onnx.ModelProto:
    """Pre-norm encoder blocks on tokens [1, seq, dim] (or on a Conv/16 patch embedding of a
    [1, 3, patch_image, patch_image] image, seq = (patch_image/16)^2).

    norm: "layernorm" (LayerNormalization op) or "decomposed" (ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div);
    scale: attention scores scaled by "div" sqrt(dh) or "mul" 1/sqrt(dh). GELU is the Erf form.
    """
    if norm not in ("layernorm", "decomposed") or scale not in ("div", "mul"):
        raise ValueError(f"unknown variant norm={norm!r} scale={scale!r}")
    net = Net(seed)
    if patch_image:
        x, seq, inputs = _patch_embed(net, patch_image, dim)
    else:
        x, inputs = "tokens", {"tokens": [1, seq, dim]}
    for i in range(depth):
        last = i == depth - 1
        x = _encoder_block(net, x, seq, dim, heads, norm, scale, out="encoded" if last else None)
    return calibrated(net, inputs, [x], "transformer", seed)


def _patch_embed(net: Net, size: int, dim: int) -> tuple[str, int, dict]:
    grid = size // 16
    x = net.conv("image", 3, dim, 16, 16, pad=0, bias=True, gain=1.0)
    x = net.op("Reshape", x, net.shape_const([1, dim, grid * grid]))
    x = net.op("Transpose", x, perm=[0, 2, 1])
    return x, grid * grid, {"image": [1, 3, size, size]}


def _encoder_block(net: Net, x, seq, dim, heads, norm, scale, out=None) -> str:
    h = net.op("Add", x, _attention(net, _norm(net, x, dim, norm), seq, dim, heads, scale))
    return net.op("Add", h, _mlp(net, _norm(net, h, dim, norm), dim), out=out)


def _norm(net: Net, x, dim, kind) -> str:
    gamma = net.const((1.0 + 0.1 * net.rng.standard_normal(dim)).astype(np.float32), "ln_gamma")
    beta = net.const(net.normal((dim,), 0.1), "ln_beta")
    if kind == "layernorm":
        return net.op("LayerNormalization", x, gamma, beta, axis=-1, epsilon=1e-5)
    # what torch.onnx emits for LayerNorm at opsets before 17
    mean = net.op("ReduceMean", x, axes=[-1], keepdims=1)
    d = net.op("Sub", x, mean)
    var = net.op("ReduceMean", net.op("Pow", d, net.const(np.array(2.0, np.float32), "two")), axes=[-1], keepdims=1)
    std = net.op("Sqrt", net.op("Add", var, net.const(np.array(1e-5, np.float32), "eps")))
    return net.op("Add", net.op("Mul", net.op("Div", d, std), gamma), beta)


def _linear(net: Net, x, cin, cout, gain=1.0) -> str:
    w = net.const(net.normal((cin, cout), math.sqrt(gain / cin)), "lin_w")
    b = net.const(net.normal((cout,), 0.02), "lin_b")
    return net.op("Add", net.op("MatMul", x, w), b)


def _attention(net: Net, x, seq, dim, heads, scale) -> str:
    dh = dim // heads
    split = net.shape_const([1, seq, heads, dh])
    q = net.op("Transpose", net.op("Reshape", _linear(net, x, dim, dim), split), perm=[0, 2, 1, 3])
    # K arrives pre-transposed for Q @ K^T, as torch exports k.transpose(-2, -1)
    k = net.op("Transpose", net.op("Reshape", _linear(net, x, dim, dim), split), perm=[0, 2, 3, 1])
    v = net.op("Transpose", net.op("Reshape", _linear(net, x, dim, dim), split), perm=[0, 2, 1, 3])
    scores = net.op("MatMul", q, k)
    if scale == "div":
        scores = net.op("Div", scores, net.const(np.array(math.sqrt(dh), np.float32), "sqrt_dh"))
    else:
        scores = net.op("Mul", scores, net.const(np.array(1.0 / math.sqrt(dh), np.float32), "inv_sqrt_dh"))
    probs = net.op("Softmax", scores, axis=-1)
    ctx = net.op("Transpose", net.op("MatMul", probs, v), perm=[0, 2, 1, 3])
    ctx = net.op("Reshape", ctx, net.shape_const([1, seq, dim]))
    return _linear(net, ctx, dim, dim)


def _mlp(net: Net, x, dim) -> str:
    h = _linear(net, x, dim, 4 * dim, gain=2.0)
    # GELU as torch exports it: x * 0.5 * (1 + erf(x / sqrt(2)))
    erf = net.op("Erf", net.op("Div", h, net.const(np.array(math.sqrt(2.0), np.float32), "sqrt2")))
    one_plus = net.op("Add", erf, net.const(np.array(1.0, np.float32), "one"))
    gelu = net.op("Mul", net.op("Mul", h, one_plus), net.const(np.array(0.5, np.float32), "half"))
    return _linear(net, gelu, 4 * dim, dim)


# --------------------------------------------------------------------------- catalogue and self-test

ARCHITECTURES: dict[str, Callable[[], onnx.ModelProto]] = {
    "mobilenet_v2": lambda: mobilenet_v2(224, 0.35),
    "mobilenet_v3_small": lambda: mobilenet_v3_small(160),
    "resnet18": lambda: resnet18(224),
    "yolo": lambda: yolo(160),
    "segmenter": lambda: segmenter(128),
    "transformer": lambda: transformer(norm="layernorm", scale="div"),
    "transformer_decomposed_patch": lambda: transformer(norm="decomposed", scale="mul", patch_image=64),
}


def activation_stats(model: onnx.ModelProto, arrays: dict[str, np.ndarray]) -> list[tuple[str, str, float, float]]:
    """(node, op, std, max|x|) of every float node output over the samples: for spotting blow-up or collapse."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {o.name for o in probe.graph.output}
    typed = {v.name: v for v in probe.graph.value_info}
    producers = {}
    for node in probe.graph.node:
        for o in node.output:
            if o not in known and o in typed and typed[o].type.tensor_type.elem_type == TensorProto.FLOAT:
                probe.graph.output.append(typed[o])
                producers[o] = node
    outs = run_ort(probe, arrays)
    rows = []
    for name, value in outs.items():
        node = producers.get(name)
        rows.append(
            (
                node.name if node else name,
                node.op_type if node else "output",
                float(value.std()),
                float(np.abs(value).max()),
            )
        )
    return rows


def _self_test() -> None:
    for name, build in ARCHITECTURES.items():
        model = build()
        onnx.checker.check_model(model, full_check=True)
        arrays = sample_inputs(model, 4, seed=0)
        outs = run_ort(model, arrays)
        rows = activation_stats(model, arrays)
        stds = [r[2] for r in rows if r[1] in ("BatchNormalization", "Add", "LayerNormalization")]
        print(
            f"{name}: {len(model.graph.node)} nodes; outputs "
            + ", ".join(f"{k}{list(v.shape)} std {v.std():.3g} max {np.abs(v).max():.3g}" for k, v in outs.items())
            + f"; BN/Add/LN std range [{min(stds):.3g}, {max(stds):.3g}]; max|act| {max(r[3] for r in rows):.3g}"
        )
        for k, v in outs.items():
            assert np.all(np.isfinite(v)), (name, k)
            # outputs must differ between samples, or any comparison is trivially satisfied
            spread = np.std(v, axis=0).mean() / (np.std(v) + 1e-12)
            print(f"   {k}: across-sample / total spread {spread:.3g}")


if __name__ == "__main__":
    _self_test()


# --------------------------------------------------------------------------- 7. ViT and ConvNeXt (issue 13.5)


def vit(
    size: int = 224, dim: int = 192, heads: int = 3, depth: int = 12, classes: int = 1000, seed: int = 0
) -> onnx.ModelProto:
    """ViT-tiny as torch.onnx exports timm's VisionTransformer: Conv 16x16/16 patch embed,
    class token and position embedding, pre-norm blocks with one fused QKV MatMul split into
    heads by a 5-D Transpose (2, 0, 3, 1, 4), K transposed for Q @ K^T, Erf-GELU MLP
    (Div by sqrt(2), `x * (1 + erf)` then `* 0.5`), final LayerNorm, class-token head."""
    net = Net(seed)
    x, seq, inputs = _patch_embed(net, size, dim)
    cls = net.const(net.normal((1, 1, dim), 0.02), "cls_token")
    x = net.op("Concat", cls, x, axis=1)
    seq += 1
    x = net.op("Add", x, net.const(net.normal((1, seq, dim), 0.02), "pos_embed"))
    for _ in range(depth):
        h = net.op("Add", x, _vit_attention(net, _norm(net, x, dim, "layernorm"), seq, dim, heads))
        x = net.op("Add", h, _mlp(net, _norm(net, h, dim, "layernorm"), dim))
    x = _norm(net, x, dim, "layernorm")
    token = net.op("Gather", x, net.const(np.array(0, np.int64), "cls_index"), axis=1)
    w = net.const(net.normal((dim, classes), math.sqrt(1.0 / dim)), "head_w")
    logits = net.op("Add", net.op("MatMul", token, w), net.const(net.normal((classes,), 0.02), "head_b"), out="logits")
    return calibrated(net, inputs, [logits], "vit", seed)


def _vit_attention(net: Net, x, seq, dim, heads) -> str:
    dh = dim // heads
    qkv = net.op("Reshape", _linear(net, x, dim, 3 * dim), net.shape_const([1, seq, 3, heads, dh]))
    qkv = net.op("Transpose", qkv, perm=[2, 0, 3, 1, 4])
    q, k, v = (net.op("Gather", qkv, net.const(np.array(i, np.int64), "qkv_index"), axis=0) for i in range(3))
    scores = net.op("MatMul", q, net.op("Transpose", k, perm=[0, 1, 3, 2]))
    scores = net.op("Mul", scores, net.const(np.array(dh**-0.5, np.float32), "attn_scale"))
    ctx = net.op("MatMul", net.op("Softmax", scores, axis=-1), v)
    ctx = net.op("Reshape", net.op("Transpose", ctx, perm=[0, 2, 1, 3]), net.shape_const([1, seq, dim]))
    return _linear(net, ctx, dim, dim)


def convnext(
    size: int = 224, dims=(40, 80, 160, 320), depths=(2, 2, 6, 2), classes: int = 1000, seed: int = 0
) -> onnx.ModelProto:
    """ConvNeXt (atto widths by default) as torch.onnx exports torchvision's: Conv 4x4/4 stem and
    2x2/2 downsampling, each after a channels-last LayerNorm between two Transposes; blocks of
    depthwise 7x7 conv, Transpose to NHWC, LayerNorm, Linear, Erf-GELU (in the HF operand order:
    `0.5 * x` first, Mul by 1/sqrt(2)), Linear, layer scale, Transpose back, residual Add."""
    net = Net(seed)
    x = net.conv("image", 3, dims[0], 4, 4, pad=0, bias=True, gain=1.0)
    for stage, (dim, depth) in enumerate(zip(dims, depths)):
        if stage:
            x = _norm_2d(net, x, dims[stage - 1])
            x = net.conv(x, dims[stage - 1], dim, 2, 2, pad=0, bias=True, gain=1.0)
        else:
            x = _norm_2d(net, x, dim)
        for _ in range(depth):
            x = _convnext_block(net, x, dim)
    pooled = net.op("ReduceMean", x, axes=[2, 3], keepdims=0)
    pooled = _norm(net, pooled, dims[-1], "layernorm")
    w = net.const(net.normal((dims[-1], classes), math.sqrt(1.0 / dims[-1])), "head_w")
    logits = net.op("Add", net.op("MatMul", pooled, w), net.const(net.normal((classes,), 0.02), "head_b"), out="logits")
    return calibrated(net, {"image": [1, 3, size, size]}, [logits], "convnext", seed)


def _norm_2d(net: Net, x, dim) -> str:
    x = net.op("Transpose", x, perm=[0, 2, 3, 1])
    return net.op("Transpose", _norm(net, x, dim, "layernorm"), perm=[0, 3, 1, 2])


def _convnext_block(net: Net, x, dim) -> str:
    h = net.conv(x, dim, dim, 7, 1, pad=3, group=dim, bias=True, gain=1.0)
    h = _norm(net, net.op("Transpose", h, perm=[0, 2, 3, 1]), dim, "layernorm")
    h = _linear(net, h, dim, 4 * dim, gain=2.0)
    half = net.op("Mul", h, net.const(np.array(0.5, np.float32), "half"))
    erf = net.op("Erf", net.op("Mul", h, net.const(np.array(1.0 / math.sqrt(2.0), np.float32), "inv_sqrt2")))
    h = net.op("Mul", half, net.op("Add", net.const(np.array(1.0, np.float32), "one"), erf))
    h = _linear(net, h, 4 * dim, dim)
    h = net.op("Mul", h, net.const(np.full((dim,), 0.5, np.float32) + net.normal((dim,), 0.05), "layer_scale"))
    return net.op("Add", x, net.op("Transpose", h, perm=[0, 3, 1, 2]))


# --------------------------------------------------------------------------- 8. recurrent: CRNN and a streaming VAD (issue 13.1)
# LSTM weights are Xavier-like (W ~ 1/fan_in over the input, R ~ 1/hidden over the state) with
# the forget-gate bias at +1 as PyTorch users initialise it, so gates sit in their linear range.

CRNN_CLASSES = 37  # CTC blank + 26 letters + 10 digits
CRNN_LOGIT_GAIN = 64.0  # logits std ~2.5 over the LSTM's ~0.3 outputs
# audio is quiet (voiced frames ~0.15 RMS, silence ~0.02): the front end's gain makes voiced
# frames O(1) inside, and the decoder's makes frame scores spread over the sigmoid's range
VAD_FRONT_GAIN, VAD_DECODER_GAIN, VAD_DECODER_BIAS = 2.0 / 0.15**2, 100.0, -1.0
TEXT_SIZE = (32, 128)  # height, width of a gray text line
VAD_WINDOW, VAD_HIDDEN = 512, 64  # 32 ms at 16 kHz, as silero-vad takes it


def lstm(net: Net, x, cin, hidden, direction="forward", initial_h=None, initial_c=None, outputs=("Y",)):
    """One ONNX LSTM node (layout 0: x is [T, batch, cin]); returns its named outputs in order."""
    dirs = 2 if direction == "bidirectional" else 1
    w = net.const(net.normal((dirs, 4 * hidden, cin), math.sqrt(1.0 / cin)), "lstm_w")
    r = net.const(net.normal((dirs, 4 * hidden, hidden), math.sqrt(1.0 / hidden)), "lstm_r")
    bias = net.normal((dirs, 8 * hidden), 0.05)
    bias[:, 2 * hidden : 3 * hidden] += 1.0  # ONNX gate order i, o, f, c: the forget gate's Wb
    inputs = [x, w, r, net.const(bias, "lstm_b"), "", initial_h or "", initial_c or ""]
    while inputs[-1] == "":
        inputs.pop()
    name = net.fresh("lstm")
    outs = [f"{name}_{o}" if o in ("Y", "Y_h", "Y_c") else o for o in outputs]
    net.nodes.append(helper.make_node("LSTM", inputs, outs, name=name, hidden_size=hidden, direction=direction))
    return outs


def _bidirectional_sequence(net: Net, x, cin, hidden, steps) -> str:
    """A bidirectional LSTM as torch.onnx exports nn.LSTM(bidirectional=True): Y [T, 2, 1, H]
    -> Transpose (0, 2, 1, 3) -> Reshape [T, 1, 2H]."""
    (y,) = lstm(net, x, cin, hidden, "bidirectional")
    y = net.op("Transpose", y, perm=[0, 2, 1, 3])
    return net.op("Reshape", y, net.shape_const([steps, 1, 2 * hidden]))


def crnn(hidden: int = 96, classes: int = CRNN_CLASSES, seed: int = 0) -> onnx.ModelProto:
    """CRNN text recognizer (Shi et al. 2015, as crnn.pytorch exports it): 1x1x32x128 gray text
    line, Conv/BN/ReLU stack with 2x2 then 2x1 max pooling down to height 1, squeeze to T=32
    steps of 128 features, two bidirectional LSTMs, a linear layer to 37 classes, per-step
    Softmax; output [T, 1, classes] as CTC decoders take it."""
    net = Net(seed)
    h, w = TEXT_SIZE
    x = net.cba("image", 1, 32, 3, act=net.relu)
    x = net.op("MaxPool", x, kernel_shape=[2, 2], strides=[2, 2])  # 16 x 64
    x = net.cba(x, 32, 64, 3, act=net.relu)
    x = net.op("MaxPool", x, kernel_shape=[2, 2], strides=[2, 2])  # 8 x 32
    x = net.cba(x, 64, 128, 3, act=net.relu)
    x = net.cba(x, 128, 128, 3, act=net.relu)
    x = net.op("MaxPool", x, kernel_shape=[2, 1], strides=[2, 1])  # 4 x 32
    x = net.cba(x, 128, 128, 3, act=net.relu)
    x = net.op("MaxPool", x, kernel_shape=[2, 1], strides=[2, 1])  # 2 x 32
    # the last conv spans the remaining 2 rows (kernel 2x1, no padding): height 1
    wk = net.const(net.normal((128, 128, 2, 1), math.sqrt(2.0 / 256)), "w")
    x = net.relu(net.bn(net.op("Conv", x, wk, kernel_shape=[2, 1], pads=[0, 0, 0, 0]), 128, shift=ACT_SHIFT))
    steps = w // 4
    seq = net.op("Squeeze", x, net.const(np.array([2], np.int64), "axes"))  # [1, 128, T]
    seq = net.op("Transpose", seq, perm=[2, 0, 1])  # [T, 1, 128]
    seq = _bidirectional_sequence(net, seq, 128, hidden, steps)
    seq = _bidirectional_sequence(net, seq, 2 * hidden, hidden, steps)
    # a trained recognizer is confident: logits spread over several units, not a flat softmax
    logits = _linear(net, seq, 2 * hidden, classes, gain=CRNN_LOGIT_GAIN)
    net.op("Softmax", logits, axis=2, out="probs")
    model = net.model({"image": [1, 1, h, w]}, ["probs"], "crnn")
    # BN statistics from text lines (not noise), like the training set the model would have seen
    return calibrate_batchnorm(model, {"image": text_lines(32, seed=1000 + seed)})


def vad(hidden: int = VAD_HIDDEN, seed: int = 0) -> onnx.ModelProto:
    """Streaming voice-activity detector shaped like silero-vad: (audio [1, 512], h, c [1, 1, 64])
    -> (prob [1, 1], h_out, c_out). A strided Conv1d front end (a learned filterbank) with ReLU,
    a second Conv1d, an LSTM over the 16 frames starting from the state inputs and handing its
    final state out, and a per-frame linear decoder (Conv1d 1x1) -> Sigmoid averaged over frames."""
    net = Net(seed)
    x = net.op("Unsqueeze", "audio", net.const(np.array([1], np.int64), "axes"))  # [1, 1, 512]
    x = net.relu(_conv1d(net, x, 1, 48, 32, 16, 8, gain=VAD_FRONT_GAIN))  # 32 frames
    x = net.relu(_conv1d(net, x, 48, hidden, 3, 2, 1))  # 16 frames
    x = net.op("Transpose", x, perm=[2, 0, 1])  # [T, 1, C]
    y, _, _ = lstm(net, x, hidden, hidden, initial_h="h", initial_c="c", outputs=("Y", "h_out", "c_out"))
    y = net.op("Squeeze", y, net.const(np.array([1], np.int64), "axes"))  # [T, 1, H]
    y = net.relu(net.op("Transpose", y, perm=[1, 2, 0]))  # [1, H, T]
    logit = _conv1d(net, y, hidden, 1, 1, 1, 0, gain=VAD_DECODER_GAIN, bias=VAD_DECODER_BIAS)
    score = net.op("Sigmoid", logit)  # [1, 1, T]
    net.op("ReduceMean", score, axes=[2], keepdims=0, out="prob")
    return net.model(
        {"audio": [1, VAD_WINDOW], "h": [1, 1, hidden], "c": [1, 1, hidden]}, ["prob", "h_out", "c_out"], "vad"
    )


def _conv1d(net: Net, x, cin, cout, k, s, pad, gain=2.0, bias=0.0) -> str:
    w = net.const(net.normal((cout, cin, k), math.sqrt(gain / (cin * k))), "w")
    b = net.const(bias + net.normal((cout,), 0.05), "b")
    return net.op("Conv", x, w, b, kernel_shape=[k], strides=[s], pads=[pad, pad])


def text_lines(n: int, seed: int = 0) -> np.ndarray:
    """(n, 1, 32, 128) gray text-line-like images normalized to [-1, 1]: dark strokes (bars and
    blobs of glyph size) on a light, unevenly lit background."""
    h, w = TEXT_SIZE
    rng = np.random.default_rng(seed)
    out = np.empty((n, 1, h, w), np.float32)
    for i in range(n):
        page = 0.85 + 0.1 * _bilinear(rng.random((1, 1, 2, 4)).astype(np.float32), h, w)[0, 0]
        for x0 in range(4, w - 8, 8 + int(rng.integers(0, 4))):
            top, bottom = int(rng.integers(4, 12)), int(rng.integers(20, 28))
            left, width = x0 + int(rng.integers(0, 3)), int(rng.integers(1, 4))
            page[top:bottom, left : left + width] = 0.1 + 0.1 * rng.random()
            if rng.random() < 0.6:  # a cross bar or bowl
                row = int(rng.integers(top, bottom))
                page[row : row + 2, left : left + int(rng.integers(3, 7))] = 0.15
        out[i, 0] = np.clip(page + 0.03 * rng.standard_normal((h, w)), 0, 1)
    return (out - 0.5) / 0.5


def audio_frames(n: int, seed: int = 0) -> np.ndarray:
    """(n, 512) audio at 16 kHz in [-1, 1]: half of the frames voiced (harmonics of a 100-250 Hz
    pitch with formant-like weights), half background noise, at varying levels."""
    rng = np.random.default_rng(seed)
    t = np.arange(VAD_WINDOW) / 16000.0
    out = np.empty((n, VAD_WINDOW), np.float32)
    for i in range(n):
        noise = rng.standard_normal(VAD_WINDOW) * (0.005 + 0.02 * rng.random())
        if i % 2 == 0:
            pitch = 100 + 150 * rng.random()
            voice = sum(np.sin(2 * np.pi * pitch * k * t + rng.random() * 6.3) / k for k in range(1, 12))
            noise = noise + voice * (0.05 + 0.25 * rng.random())
        out[i] = np.clip(noise, -1, 1)
    return out


def recurrent_inputs(name: str, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Realistic samples for RECURRENT_ARCHITECTURES in ONNX layout; VAD state from a few
    earlier frames' range (tanh-bounded h, c of a few units)."""
    if name == "crnn":
        return {"image": text_lines(n, seed)}
    rng = np.random.default_rng(seed + 1)
    return {
        "audio": audio_frames(n, seed),
        "h": np.tanh(rng.standard_normal((n, 1, VAD_HIDDEN))).astype(np.float32) * 0.5,
        "c": rng.standard_normal((n, 1, VAD_HIDDEN)).astype(np.float32),
    }


RECURRENT_ARCHITECTURES: dict[str, Callable[[], onnx.ModelProto]] = {
    "crnn": lambda: crnn(),
    "vad": lambda: vad(),
}
