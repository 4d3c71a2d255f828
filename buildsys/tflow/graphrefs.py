"""Reading GraphDef node references and constants, for the per-target graph rewrites."""

from __future__ import annotations

from typing import Any

import numpy as np


def node_name(ref: str) -> str:
    """'scope/Split_28:1' and '^scope/x' -> the producing node's name."""
    return ref.lstrip("^").split(":")[0]


def port(ref: str) -> int:
    return int(ref.split(":")[1]) if ":" in ref else 0


def same_tensor(a: str, b: str) -> bool:
    return node_name(a) == node_name(b) and port(a) == port(b)


def consumers(graph_def: Any) -> dict[tuple[str, int], list]:
    """(node name, output port) -> the nodes reading it as data (control inputs left out)."""
    out: dict[tuple[str, int], list] = {}
    for node in graph_def.node:
        for ref in node.input:
            if not ref.startswith("^"):
                out.setdefault((node_name(ref), port(ref)), []).append(node)
    return out


def const_value(node: Any, max_size: int | None = None) -> np.ndarray | None:
    """The value of a Const node; None for other nodes or constants over `max_size` elements."""
    if node is None or node.op != "Const":
        return None
    size = int(np.prod([d.size for d in node.attr["value"].tensor.tensor_shape.dim]))
    if max_size is not None and size > max_size:
        return None
    import tensorflow as tf

    return tf.make_ndarray(node.attr["value"].tensor)


def add_const(graph_def: Any, name: str, value: np.ndarray | np.generic) -> str:
    """Appends a Const node holding `value`; returns its name."""
    import tensorflow as tf

    node = graph_def.node.add()
    node.name, node.op = name, "Const"
    node.attr["dtype"].type = tf.as_dtype(value.dtype).as_datatype_enum
    node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
    return name


def set_inputs(node: Any, refs: list[str]) -> None:
    del node.input[:]
    node.input.extend(refs)
