"""Activation ranges as data: every one-element min/max a calibrated TFLite model records, by
subgraph and tensor index, and the id of the converted model they belong to.

The `ranges` stage lists them in ranges.json (what each int8 target is quantized from, readable
without TensorFlow); calibranges.py writes measured ranges through the same views.
"""

from __future__ import annotations

import hashlib

import numpy as np

# (subgraph, tensor index) -> (tensor name, writable one-element min view, max view)
Views = dict[tuple[int, int], tuple[str, np.ndarray, np.ndarray]]


def model_id(model: bytes) -> str:
    """Names the float model a table was measured on: the converted model before calibration."""
    return hashlib.sha256(model).hexdigest()


def range_views(data: bytearray) -> Views:
    """The min/max slots of every subgraph's tensors that have one-element ranges."""
    from buildsys.tflow.tflschema import schema

    model = schema().Model.GetRootAsModel(data, 0)
    out: Views = {}
    for sub in range(model.SubgraphsLength()):
        graph = model.Subgraphs(sub)
        for index in range(graph.TensorsLength()):
            tensor = graph.Tensors(index)
            quant = tensor.Quantization()
            if quant is not None and quant.MinLength() == 1 and quant.MaxLength() == 1:
                out[(sub, index)] = ((tensor.Name() or b"").decode(), quant.MinAsNumpy(), quant.MaxAsNumpy())
    return out


def read_table(calibrated: bytes) -> list[list]:
    """[subgraph, tensor, name, min, max] for each slot; float32 values kept exactly (as doubles)."""
    views = range_views(bytearray(calibrated))
    return [[s, i, name, float(low[0]), float(high[0])] for (s, i), (name, low, high) in sorted(views.items())]
