"""Which ONNX nodes a TFLite tensor came from, by its name.

The converter runs each ONNX node's TF ops under a name scope and records
scope -> node in signature.json ("nodes"); the float graph keeps the scopes
and TFLite names a tensor after the TF ops fused into it, ';'-joined
("conv1/Relu_5;conv1/BiasAdd_4;conv1/Conv2D_2"). So a report can name the
node a replacement would select, not a TF op.
"""

from __future__ import annotations


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


def op_nodes(name: str, index: int, signature: dict, outputs_by_op: dict[int, str]) -> list[str]:
    """The ONNX nodes behind op `index` of the artifact, whose output tensor is `name`;
    ops making a model output are found by the output instead (see tflow.inspect.output_ops)."""
    found = onnx_nodes(name, signature.get("nodes", {}))
    if not found and index in outputs_by_op:
        node = signature.get("output_nodes", {}).get(outputs_by_op[index])
        found = [node] if node else []
    return found
