"""The PyTorch model itself on validation samples: the reference an export bug cannot hide from."""

from __future__ import annotations

import numpy as np

from buildsys.recipe.model import Source
from buildsys.torchsrc.export import flat_outputs, output_names
from buildsys.torchsrc.load import load_model, require_torch


def run_torch(source: Source, inputs: dict[str, np.ndarray], label: str) -> dict[str, np.ndarray]:
    """Outputs by the exported names, one sample per call as onnxruntime runs the ONNX model."""
    from buildsys.tflow.samples import check_samples, gather

    torch = require_torch()
    model = load_model(source)
    arrays, count = check_samples(model.inputs, inputs, label)
    results = []
    for k in range(count):
        args = tuple(
            torch.from_numpy(np.ascontiguousarray(arrays[n][k : k + 1], dtype=np.float32)) for n in model.inputs
        )
        outs = flat_outputs(model, args)
        names = output_names(len(outs))
        results.append({n: o.detach().numpy() for n, o in zip(names, outs)})
    return gather(results, list(results[0]))
