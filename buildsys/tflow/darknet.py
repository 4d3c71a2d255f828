"""A Darknet cfg + weights as a `Source`: plain TF ops on NHWC tensors.

Batch norm is folded into the convolution (or connected) weights at load time,
and every op is one the TFLite converter maps onto an int8 builtin; Darknet's
asymmetric paddings are written out so the result matches Darknet exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import tensorflow as tf

from buildsys.darknet.cfg import Section, default_activation, parse
from buildsys.darknet.weights import (
    NETWORK_INPUT,
    Dims,
    Layer,
    conv_geometry,
    first_input_dims,
    infer_layers,
    input_dims,
    load_weights,
    maxpool_geometry,
    output_layers,
    route_groups,
)
from buildsys.tflow.shapes import TensorInfo
from buildsys.tflow.sources import Source

# Darknet's CPU forward pass divides by sqrt(variance) + .000001
BN_EPSILON = 1e-6
LEAKY_SLOPE = 0.1
Op = Callable[[list[tf.Tensor]], tf.Tensor]


def load_source(cfg: Path, weights: Path) -> Source:
    """The network of `cfg` with the parameters of `weights`; InputError if they do not fit."""
    cfg, weights = Path(cfg), Path(weights)
    sections = parse(cfg)
    layers = infer_layers(sections)
    params = load_weights(sections, cfg, weights)
    image = input_dims(sections)
    ops = [_op(layer, p, first_input_dims(layer, layers, image)) for layer, p in zip(layers, params)]
    outputs = output_layers(layers)
    call = _network(layers, ops, [index for _, index in outputs])
    inputs = [TensorInfo("input", [None, *image], "float32")]
    return Source(cfg, inputs, [name for name, _ in outputs], call, params)


def _network(layers: list[Layer], ops: list[Op], wanted: list[int]) -> Callable[[list[tf.Tensor]], list[tf.Tensor]]:
    last_use = _last_use(layers, wanted)

    def call(xs: list[tf.Tensor]) -> list[tf.Tensor]:
        image = tf.convert_to_tensor(xs[0], tf.float32)
        values: dict[int, tf.Tensor] = {}
        for index, (layer, op) in enumerate(zip(layers, ops)):
            with tf.name_scope(f"layer{index}_{layer.section.type}"):
                values[index] = op([image if i == NETWORK_INPUT else values[i] for i in layer.inputs])
            # eager runs of a large detector would otherwise keep every activation alive
            for done in [i for i in values if last_use[i] <= index]:
                del values[done]
        return [values[i] for i in wanted]

    return call


def _last_use(layers: list[Layer], wanted: list[int]) -> dict[int, int]:
    last = {index: index for index in range(len(layers))}
    for index, layer in enumerate(layers):
        for source in layer.inputs:
            if source != NETWORK_INPUT:
                last[source] = index
    for index in wanted:
        last[index] = len(layers)
    return last


def _op(layer: Layer, params: dict[str, np.ndarray], in_dims: Dims) -> Op:
    builders = {
        "convolutional": _convolutional,
        "maxpool": _maxpool,
        "avgpool": _avgpool,
        "route": _route,
        "shortcut": _shortcut,
        "upsample": _upsample,
        "connected": _connected,
        "softmax": _softmax,
    }
    build = builders.get(layer.section.type)
    if build is None:  # dropout is the identity at inference; yolo only names its input
        return lambda xs: xs[0]
    return build(layer, params, in_dims)


def _activation(section: Section) -> Callable[[tf.Tensor], tf.Tensor]:
    name = section.get_str("activation", default_activation(section.type))
    return {
        "linear": lambda x: x,
        "relu": tf.nn.relu,
        "leaky": lambda x: tf.nn.leaky_relu(x, alpha=LEAKY_SLOPE),
        "logistic": tf.sigmoid,
        "swish": lambda x: x * tf.sigmoid(x),
        "mish": lambda x: x * tf.tanh(_softplus(x)),
    }[name]


def _softplus(x: tf.Tensor) -> tf.Tensor:
    # tf.nn.softplus lowers to log(1 + exp(x)) in TFLite, which overflows for large x;
    # this form never exponentiates a positive number (as the ONNX converter's Mish does)
    positive = tf.nn.relu(x)
    return positive + tf.math.log(1.0 + tf.exp(x - 2.0 * positive))


def _fold(params: dict[str, np.ndarray], axis_last: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Batch norm folded into a kernel whose last axis is the output channel."""
    bias = params["biases"].astype(np.float64)
    if "scales" not in params:
        return axis_last.astype(np.float32), bias.astype(np.float32)
    factor = params["scales"] / (np.sqrt(params["rolling_variance"].astype(np.float64)) + BN_EPSILON)
    kernel = axis_last * factor
    return kernel.astype(np.float32), (bias - params["rolling_mean"] * factor).astype(np.float32)


def _convolutional(layer: Layer, params: dict[str, np.ndarray], in_dims: Dims) -> Op:
    section = layer.section
    size, stride, padding = conv_geometry(section)
    groups = section.get_int("groups", 1)
    # Darknet stores [filters, channels / groups, size, size]; TF wants [size, size, in, out]
    kernel, bias = _fold(params, params["weights"].transpose(2, 3, 1, 0))
    mode, pads = _conv_padding(in_dims, layer.out, size, stride, padding)
    conv = _grouped_conv(kernel, groups, in_dims[2], stride, mode)
    activation = _activation(section)

    def op(xs: list[tf.Tensor]) -> tf.Tensor:
        x = xs[0] if pads is None else tf.pad(xs[0], pads)
        return activation(tf.nn.bias_add(conv(x), bias))

    return op


def _conv_padding(in_dims: Dims, out: Dims, size: int, stride: int, padding: int):
    """("SAME", None) when TF's SAME pads as Darknet does, else ("VALID", explicit pads)."""
    if stride == 1 and 2 * padding == size - 1:
        return "SAME", None
    # Darknet pads `padding` on every side, but the last rows may go unread
    after = [max(0, (o - 1) * stride + size - n - padding) for o, n in zip(out[:2], in_dims[:2])]
    if padding == 0 and not any(after):
        return "VALID", None
    return "VALID", [[0, 0], [padding, after[0]], [padding, after[1]], [0, 0]]


def _grouped_conv(kernel: np.ndarray, groups: int, channels: int, stride: int, mode: str) -> Op:
    strides = [1, stride, stride, 1]
    if groups == 1:
        return lambda x: tf.nn.conv2d(x, kernel, strides, mode)
    if groups == channels:
        # one input channel per group: a depthwise conv whose multiplier is filters / channels
        size = kernel.shape[0]
        depthwise = kernel.reshape(size, size, channels, -1)
        return lambda x: tf.nn.depthwise_conv2d(x, depthwise, strides, mode)
    # split -> conv per group -> concat is the form TFLite consumers take (see tflow/groupedconv.py)
    kernels = np.split(kernel, groups, axis=3)

    def conv(x: tf.Tensor) -> tf.Tensor:
        parts = tf.split(x, groups, axis=-1)
        return tf.concat([tf.nn.conv2d(p, k, strides, mode) for p, k in zip(parts, kernels)], axis=-1)

    return conv


def _maxpool(layer: Layer, params: dict[str, np.ndarray], in_dims: Dims) -> Op:
    size, stride, padding = maxpool_geometry(layer.section)
    ksize, strides = [1, size, size, 1], [1, stride, stride, 1]
    # Darknet's window i starts at i * stride - padding // 2 and skips what lies outside
    before = padding // 2
    after = [max(0, (o - 1) * stride + size - n - before) for o, n in zip(layer.out[:2], in_dims[:2])]
    if _tf_same_pads(in_dims, layer.out, size, stride) == [(before, a) for a in after]:
        return lambda xs: tf.nn.max_pool2d(xs[0], ksize, strides, "SAME")
    pads = [[0, 0], [before, after[0]], [before, after[1]], [0, 0]]
    if max(before, *after) * 2 <= size and max(before, *after) <= min(in_dims[:2]):
        # a mirrored border copies values the same window already holds, so the max is
        # unchanged, and no huge negative pad value spoils the int8 range of the tensor
        return lambda xs: tf.nn.max_pool2d(tf.pad(xs[0], pads, mode="SYMMETRIC"), ksize, strides, "VALID")
    lowest = float(np.finfo(np.float32).min)
    return lambda xs: tf.nn.max_pool2d(tf.pad(xs[0], pads, constant_values=lowest), ksize, strides, "VALID")


def _tf_same_pads(in_dims: Dims, out: Dims, size: int, stride: int) -> list[tuple[int, int]] | None:
    pads = []
    for n, o in zip(in_dims[:2], out[:2]):
        if o != -(-n // stride):
            return None
        total = max(0, (o - 1) * stride + size - n)
        pads.append((total // 2, total - total // 2))
    return pads


def _avgpool(layer: Layer, params: dict[str, np.ndarray], in_dims: Dims) -> Op:
    return lambda xs: tf.reduce_mean(xs[0], axis=[1, 2], keepdims=True)


def _route(layer: Layer, params: dict[str, np.ndarray], in_dims: Dims) -> Op:
    groups, group_id = route_groups(layer.section)

    def part(x: tf.Tensor) -> tf.Tensor:
        if groups == 1:
            return x
        width = x.shape[-1] // groups
        return x[..., group_id * width : (group_id + 1) * width]

    def op(xs: list[tf.Tensor]) -> tf.Tensor:
        parts = [part(x) for x in xs]
        return parts[0] if len(parts) == 1 else tf.concat(parts, axis=-1)

    return op


def _shortcut(layer: Layer, params: dict[str, np.ndarray], in_dims: Dims) -> Op:
    activation = _activation(layer.section)
    return lambda xs: activation(xs[0] + xs[1])


def _upsample(layer: Layer, params: dict[str, np.ndarray], in_dims: Dims) -> Op:
    scale = layer.section.get_float("scale", 1.0)
    size = list(layer.out[:2])

    def op(xs: list[tf.Tensor]) -> tf.Tensor:
        x = xs[0] if size == list(in_dims[:2]) else tf.image.resize(xs[0], size, method="nearest")
        return x if scale == 1.0 else x * scale

    return op


def _connected(layer: Layer, params: dict[str, np.ndarray], in_dims: Dims) -> Op:
    outputs = layer.out[2]
    h, w, c = in_dims
    # Darknet flattens its input in CHW order; reorder the weights' columns to NHWC's HWC
    hwc = params["weights"].reshape(outputs, c, h, w).transpose(0, 2, 3, 1).reshape(outputs, h * w * c)
    kernel, bias = _fold(params, hwc.T)
    activation = _activation(layer.section)

    def op(xs: list[tf.Tensor]) -> tf.Tensor:
        flat = tf.reshape(xs[0], [-1, h * w * c])
        return tf.reshape(activation(tf.matmul(flat, kernel) + bias), [-1, 1, 1, outputs])

    return op


def _softmax(layer: Layer, params: dict[str, np.ndarray], in_dims: Dims) -> Op:
    h, w, c = in_dims
    if h == w == 1:
        return lambda xs: tf.nn.softmax(xs[0], axis=-1)
    # Darknet's softmax (groups=1) runs over the whole output of the layer before

    def op(xs: list[tf.Tensor]) -> tf.Tensor:
        return tf.reshape(tf.nn.softmax(tf.reshape(xs[0], [-1, h * w * c]), axis=-1), [-1, h, w, c])

    return op
