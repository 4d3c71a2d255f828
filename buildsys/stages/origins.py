"""Which ONNX nodes a TFLite tensor came from, by its name.

The converter runs each ONNX node's TF ops under a name scope and records
scope -> node in signature.json ("nodes"); the float graph keeps the scopes
and TFLite names a tensor after the TF ops fused into it, ';'-joined
("conv1/Relu_5;conv1/BiasAdd_4;conv1/Conv2D_2"). So a report can name the
node a replacement would select, not a TF op.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from buildsys.signature import Signature


def onnx_nodes(tensor: str, scopes: dict[str, str]) -> list[str]:
    """The ONNX nodes behind `tensor`, in the order its name lists them."""
    found = []
    for part in tensor.split(";"):
        pieces = part.split(":")[0].split("/")[:-1]
        # the longest recorded scope: a handler may open scopes of its own inside the node's
        for n in range(len(pieces), 0, -1):
            node = scopes.get("/".join(pieces[:n]))
            if node is not None:
                found.append(node)
                break
    return list(dict.fromkeys(found))


def node_namer(signature: Signature, model: Path) -> Callable[[str, int], list[str]] | None:
    """(tensor name, op index) -> the ONNX nodes behind that op of the artifact `model`;
    None when the source is not ONNX. Ops making a model output are found by the output:
    TFLite names their tensors after the signature, not the op."""
    scopes = signature.nodes
    if not scopes:
        return None
    from buildsys.tflow.inspect import output_ops

    by_output = signature.output_nodes or {}
    outputs = output_ops(model)

    def name(tensor: str, index: int) -> list[str]:
        found = onnx_nodes(tensor, scopes)
        node = by_output.get(outputs.get(index, ""))
        return found or ([node] if node else [])

    return name
