"""Darknet layer shapes and the `.weights` binary layout (numpy only).

A `.weights` file is a header (major, minor, revision as int32, then `seen` as
int64 or int32 by version) followed by float32 parameters layer after layer,
with nothing that says where one layer ends: the cfg alone decides, so a cfg
and weights that do not belong together are caught only by counting floats.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from buildsys.darknet.cfg import Section, parse
from buildsys.errors import InputError

Dims = tuple[int, int, int]  # (height, width, channels) of one layer's output
NETWORK_INPUT = -1  # a layer reading this index reads the image


@dataclass(frozen=True)
class Layer:
    section: Section
    inputs: tuple[int, ...]  # layer indexes read, NETWORK_INPUT for the image
    out: Dims


@dataclass(frozen=True)
class Header:
    major: int
    minor: int
    revision: int
    seen: int
    size: int  # bytes, so the floats start at this offset


def input_dims(sections: list[Section]) -> Dims:
    net = sections[0]
    return net.get_int("height", 0), net.get_int("width", 0), net.get_int("channels", 3)


def infer_layers(sections: list[Section]) -> list[Layer]:
    """Each layer's inputs and output shape; InputError where the cfg does not fit together."""
    image = input_dims(sections)
    layers: list[Layer] = []
    for section in sections[1:]:
        inputs = _inputs(section, len(layers))
        dims = [image if i == NETWORK_INPUT else layers[i].out for i in inputs]
        out = _SHAPES[section.type](section, dims)
        if min(out) < 1:
            raise section.error(f"output shape {format_dims(out)} is empty", hint="check size, stride and padding")
        layers.append(Layer(section, tuple(inputs), out))
    if not layers:
        raise sections[0].error("the cfg has no layers after [net]")
    return layers


def format_dims(dims: Dims) -> str:
    return "x".join(map(str, dims))


def _inputs(section: Section, index: int) -> list[int]:
    previous = index - 1 if index > 0 else NETWORK_INPUT
    if section.type == "route":
        return [_absolute(section, "layers", j, index) for j in _required_ints(section, "layers")]
    if section.type == "shortcut":
        sources = _required_ints(section, "from")
        if len(sources) != 1:
            raise section.error("from= lists several layers; only one is supported")
        return [previous, _absolute(section, "from", sources[0], index)]
    return [previous]


def _required_ints(section: Section, key: str) -> list[int]:
    values = section.get_ints(key)
    if not values:
        raise section.error(f"{key}= is missing", hint=f"set {key}= to the layer(s) to read")
    return values


def _absolute(section: Section, key: str, ref: int, index: int) -> int:
    # Darknet: negative counts back from this layer, otherwise an absolute index
    target = index + ref if ref < 0 else ref
    if not 0 <= target < index:
        raise section.error(f"{key}={ref} refers to layer {target}, which is not an earlier layer")
    return target


def conv_geometry(section: Section) -> tuple[int, int, int]:
    """(size, stride, padding on each side) of a [convolutional] section."""
    size = section.get_int("size", 1)
    stride = section.get_int("stride", 1)
    padding = size // 2 if section.get_int("pad", 0) else section.get_int("padding", 0)
    if size < 1 or stride < 1 or padding < 0:
        raise section.error("size and stride must be positive and padding not negative")
    return size, stride, padding


def maxpool_geometry(section: Section) -> tuple[int, int, int]:
    """(size, stride, total padding) of a [maxpool]; Darknet puts padding // 2 before."""
    stride = section.get_int("stride", 1)
    size = section.get_int("size", stride)
    padding = section.get_int("padding", size - 1)
    if size < 1 or stride < 1 or padding < 0:
        raise section.error("size and stride must be positive and padding not negative")
    return size, stride, padding


def route_groups(section: Section) -> tuple[int, int]:
    """(groups, group_id): a route takes slice group_id of groups from each source."""
    groups = section.get_int("groups", 1)
    group_id = section.get_int("group_id", 0)
    if groups < 1 or not 0 <= group_id < groups:
        raise section.error(f"groups={groups}, group_id={group_id}: need groups >= 1 and 0 <= group_id < groups")
    return groups, group_id


def _conv_shape(section: Section, dims: list[Dims]) -> Dims:
    (h, w, c) = dims[0]
    size, stride, padding = conv_geometry(section)
    filters = section.get_int("filters", 1)
    groups = section.get_int("groups", 1)
    if filters < 1 or groups < 1 or c % groups or filters % groups:
        raise section.error(f"filters={filters} and the {c} input channels must both divide into groups={groups}")
    return (h + 2 * padding - size) // stride + 1, (w + 2 * padding - size) // stride + 1, filters


def _maxpool_shape(section: Section, dims: list[Dims]) -> Dims:
    (h, w, c) = dims[0]
    size, stride, padding = maxpool_geometry(section)
    return (h + padding - size) // stride + 1, (w + padding - size) // stride + 1, c


def _route_shape(section: Section, dims: list[Dims]) -> Dims:
    groups, _ = route_groups(section)
    if len({d[:2] for d in dims}) != 1:
        listed = ", ".join(format_dims(d) for d in dims)
        raise section.error(f"routes layers of different sizes ({listed})", hint="route only same-size layers")
    if any(d[2] % groups for d in dims):
        raise section.error(f"groups={groups} does not divide the channels of every routed layer")
    return dims[0][0], dims[0][1], sum(d[2] // groups for d in dims)


def _shortcut_shape(section: Section, dims: list[Dims]) -> Dims:
    if dims[0] != dims[1]:
        raise section.error(
            f"adds layers of different shapes ({format_dims(dims[0])} and {format_dims(dims[1])})",
            hint="only same-shape shortcuts are supported",
        )
    return dims[0]


def _upsample_shape(section: Section, dims: list[Dims]) -> Dims:
    (h, w, c) = dims[0]
    stride = section.get_int("stride", 2)
    if stride < 1:
        raise section.error(f"stride={stride}: only upsampling (stride >= 1) is supported")
    return h * stride, w * stride, c


def _connected_shape(section: Section, dims: list[Dims]) -> Dims:
    output = section.get_int("output", 1)
    if output < 1:
        raise section.error(f"output={output} must be positive")
    return 1, 1, output


def _same_shape(section: Section, dims: list[Dims]) -> Dims:
    return dims[0]


def _global_pool_shape(section: Section, dims: list[Dims]) -> Dims:
    return 1, 1, dims[0][2]


_SHAPES: dict[str, Callable[[Section, list[Dims]], Dims]] = {
    "convolutional": _conv_shape,
    "maxpool": _maxpool_shape,
    "avgpool": _global_pool_shape,
    "route": _route_shape,
    "shortcut": _shortcut_shape,
    "upsample": _upsample_shape,
    "connected": _connected_shape,
    "softmax": _same_shape,
    "dropout": _same_shape,
    "yolo": _same_shape,
}


def first_input_dims(layer: Layer, layers: list[Layer], image: Dims) -> Dims:
    source = layer.inputs[0]
    return image if source == NETWORK_INPUT else layers[source].out


def param_shapes(layer: Layer, in_dims: Dims) -> list[tuple[str, tuple[int, ...]]]:
    """The arrays this layer stores in a .weights file, in file order (Darknet's own layouts)."""
    section = layer.section
    bn = section.get_int("batch_normalize", 0) != 0
    channels = layer.out[2]
    norm = [(name, (channels,)) for name in ("scales", "rolling_mean", "rolling_variance")] if bn else []
    if section.type == "convolutional":
        size = conv_geometry(section)[0]
        kernel = (channels, in_dims[2] // section.get_int("groups", 1), size, size)
        return [("biases", (channels,)), *norm, ("weights", kernel)]
    if section.type == "connected":
        # unlike a convolution, a connected layer stores its batch norm after its weights
        return [("biases", (channels,)), ("weights", (channels, int(np.prod(in_dims)))), *norm]
    return []


def layout(sections: list[Section]) -> list[list[tuple[str, tuple[int, ...]]]]:
    """param_shapes for every layer."""
    layers = infer_layers(sections)
    image = input_dims(sections)
    return [param_shapes(layer, first_input_dims(layer, layers, image)) for layer in layers]


def parameter_count(sections: list[Section]) -> int:
    """Floats the .weights file must hold after its header."""
    return sum(int(np.prod(shape)) for params in layout(sections) for _, shape in params)


def read_header(path: Path) -> Header:
    path = Path(path)
    try:
        with path.open("rb") as stream:
            head = stream.read(20)
        size = path.stat().st_size
    except OSError as exc:
        raise InputError(f"cannot read Darknet weights {path}: {exc.strerror or exc}", path=str(path)) from None
    if len(head) < 16:
        raise _not_weights(path, f"only {size} bytes")
    major, minor, revision = (int(v) for v in np.frombuffer(head[:12], "<i4"))
    if not (0 <= major < 1000 and 0 <= minor < 1000 and revision >= 0):
        raise _not_weights(path, f"its header reads version {major}.{minor}.{revision}")
    wide = major * 10 + minor >= 2
    if wide and len(head) < 20:
        raise _not_weights(path, f"only {size} bytes")
    seen = int(np.frombuffer(head[12:20], "<i8")[0] if wide else np.frombuffer(head[12:16], "<i4")[0])
    return Header(major, minor, revision, seen, 20 if wide else 16)


def _not_weights(path: Path, why: str) -> InputError:
    return InputError(
        f"{path} is not a Darknet .weights file ({why})",
        hint="pass the binary .weights file Darknet saved for this cfg (check the download and its sha256)",
        path=str(path),
    )


def check_files(cfg: Path, weights: Path) -> None:
    """InputError unless `weights` is a Darknet weights file holding exactly what `cfg` needs."""
    _check_count(parse(cfg), Path(cfg), Path(weights))


def _check_count(sections: list[Section], cfg: Path, weights: Path) -> Header:
    needed = parameter_count(sections)
    header = read_header(weights)
    spare = weights.stat().st_size - header.size
    held, odd = divmod(spare, 4)
    if odd:
        raise InputError(
            f"{weights} holds {spare} bytes after its header, not a whole number of float32 values",
            hint="the file is truncated or corrupt; download it again",
            path=str(weights),
        )
    if held < needed:
        raise InputError(
            f"{weights} is truncated: it holds {held} floats after the header, {cfg} needs {needed}",
            hint="download the weights again, or check that they belong to this cfg",
            path=str(weights),
        )
    if held > needed:
        raise InputError(
            f"{weights} is longer than {cfg} needs: it holds {held} floats after the header, the cfg needs {needed}",
            hint="these weights were probably saved for a different cfg (another model size or class count)",
            path=str(weights),
        )
    return header


def load_weights(sections: list[Section], cfg: Path, weights: Path) -> list[dict[str, np.ndarray]]:
    """Every layer's arrays by name (empty for layers without parameters), after check_files' checks."""
    header = _check_count(sections, Path(cfg), Path(weights))
    data = np.fromfile(weights, dtype="<f4", offset=header.size)
    result, start = [], 0
    for params in layout(sections):
        arrays = {}
        for name, shape in params:
            count = int(np.prod(shape))
            arrays[name] = data[start : start + count].reshape(shape)
            start += count
        result.append(arrays)
    return result


def output_layers(layers: list[Layer]) -> list[tuple[str, int]]:
    """(name, layer index) of the model outputs: what enters each [yolo], else the last layer."""
    heads = [(f"yolo_{i}", i) for i, layer in enumerate(layers) if layer.section.type == "yolo"]
    return heads or [("output", len(layers) - 1)]
