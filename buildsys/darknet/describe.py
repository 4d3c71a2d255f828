"""A Darknet cfg as a layer table for `buildsys inspect` (no TensorFlow needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from buildsys.darknet.cfg import Section, default_activation, parse
from buildsys.darknet.weights import (
    NETWORK_INPUT,
    Layer,
    conv_geometry,
    first_input_dims,
    format_dims,
    infer_layers,
    input_dims,
    maxpool_geometry,
    output_layers,
    param_shapes,
    route_groups,
)


def layer_table(cfg: Path) -> list[dict]:
    """One row per layer: index, type, output (HxWxC), shape, params, notes, line, output_name."""
    sections = parse(Path(cfg))
    layers = infer_layers(sections)
    image = input_dims(sections)
    names = {index: name for name, index in output_layers(layers)}
    rows = []
    for index, layer in enumerate(layers):
        shapes = param_shapes(layer, first_input_dims(layer, layers, image))
        rows.append(
            {
                "index": index,
                "type": layer.section.type,
                "output": format_dims(layer.out),
                "shape": layer.out,
                "params": sum(int(np.prod(shape)) for _, shape in shapes),
                "notes": _notes(layer),
                "line": layer.section.line,
                "output_name": names.get(index),
            }
        )
    return rows


def model_outputs(cfg: Path) -> list[dict]:
    """The outputs load_source gives the model: name, layer index and NHWC shape (batch first)."""
    layers = infer_layers(parse(Path(cfg)))
    return [{"name": n, "layer": i, "shape": [None, *layers[i].out]} for n, i in output_layers(layers)]


def _notes(layer: Layer) -> str:
    section = layer.section
    kind = section.type
    if kind == "convolutional":
        size, stride, padding = conv_geometry(section)
        groups = section.get_int("groups", 1)
        shape = [f"{size}x{size}/{stride}", f"pad {padding}", *([f"groups {groups}"] if groups != 1 else [])]
        return ", ".join([*shape, *_norm_and_activation(section)])
    if kind == "connected":
        return ", ".join(_norm_and_activation(section))
    if kind == "maxpool":
        size, stride, padding = maxpool_geometry(section)
        return f"{size}x{size}/{stride}, padding {padding}"
    if kind == "route":
        groups, group_id = route_groups(section)
        split = f", group {group_id} of {groups}" if groups != 1 else ""
        return f"from {_sources(layer)}{split}"
    if kind == "shortcut":
        return f"adds {_sources(layer)}, {_activation(section)}"
    if kind == "upsample":
        return f"x{section.get_int('stride', 2)} nearest"
    if kind == "yolo":
        return "output: the raw tensor entering [yolo] (no decoding)"
    return {"avgpool": "global", "dropout": "identity at inference"}.get(kind, "")


def _norm_and_activation(section: Section) -> list[str]:
    return [*(["bn"] if section.get_int("batch_normalize", 0) else []), _activation(section)]


def _activation(section: Section) -> str:
    return section.get_str("activation", default_activation(section.type))


def _sources(layer: Layer) -> str:
    return ", ".join("input" if i == NETWORK_INPUT else str(i) for i in layer.inputs)
