"""Pre-quantized (QDQ) ONNX models: what quantization they carry, and their activation
Q -> DQ pairs as fake-quant nodes for targets that keep it (`quantization: {from_model: true}`).

Needs onnx and numpy only, no TensorFlow. Weight DequantizeLinear nodes are folded into
float initializers by the prepare stage, so their scales are read from the source model;
activation pairs survive prepare and are read from the prepared model.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# the converter's handler for these nodes lives in converter/ops/quant.py
QAT_DOMAIN = "buildsys.qat"
# op -> axis of the ONNX weight (input 1) that holds output channels, given the node;
# TFLite derives per-channel scales along the output channel only
WEIGHT_AXIS = {
    "Conv": lambda node, rank: 0,
    "ConvTranspose": lambda node, rank: 1,
    "Gemm": lambda node, rank: 0 if _attr(node, "transB", 0) else 1,
    "MatMul": lambda node, rank: rank - 1,
}
# largest |q| of symmetric int8 weights: TFLite's weight scale is max|w| / 127
WEIGHT_QMAX = 127


def _attr(node: onnx.NodeProto, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _label(node: onnx.NodeProto, index: int) -> str:
    return node.name or f"#{index} ({node.op_type})"


def _consts(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    out = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            for a in node.attribute:
                if a.name == "value":
                    out[node.output[0]] = numpy_helper.to_array(a.t)
        # torch's exporter hands some zero points over through an Identity
        elif node.op_type == "Identity" and node.input[0] in out:
            out[node.output[0]] = out[node.input[0]]
    return out


def is_qdq(model: onnx.ModelProto) -> bool:
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)


def _quant_type(consts: dict[str, np.ndarray], node: onnx.NodeProto) -> str:
    zp = node.input[2] if len(node.input) > 2 else ""
    return str(consts[zp].dtype) if zp in consts else "uint8"


def _param(consts: dict[str, np.ndarray], node: onnx.NodeProto, index: int) -> np.ndarray | None:
    name = node.input[index] if len(node.input) > index else ""
    return consts.get(name) if name else None


# -- activations: Q -> DQ pairs in the prepared model --------------------------------
def activation_pairs(model: onnx.ModelProto) -> list[dict]:
    """Each DequantizeLinear fed by a QuantizeLinear with the same scale and zero point."""
    graph = model.graph
    consts = _consts(graph)
    producers = {o: n for n in graph.node for o in n.output if o}
    pairs = []
    for index, dq in enumerate(graph.node):
        q = producers.get(dq.input[0]) if dq.op_type == "DequantizeLinear" else None
        if q is None or q.op_type != "QuantizeLinear" or not _same_grid(consts, q, dq):
            continue
        scale, zero_point = _param(consts, q, 1), _param(consts, q, 2)
        if scale is None:  # never: _same_grid passes constant scales only
            continue
        pairs.append(
            {
                "node": _label(dq, index),
                "tensor": q.input[0],
                "output": dq.output[0],
                "scale": [float(v) for v in np.ravel(scale)],
                "zero_point": [int(v) for v in np.ravel(zero_point)] if zero_point is not None else [0],
                "dtype": _quant_type(consts, q),
            }
        )
    return pairs


def _same_grid(consts: dict[str, np.ndarray], q: onnx.NodeProto, dq: onnx.NodeProto) -> bool:
    for i in (1, 2):
        a, b = _param(consts, q, i), _param(consts, dq, i)
        if (a is None) != (b is None) or (a is not None and b is not None and not np.array_equal(a, b)):
            return False
    # a computed scale cannot become a fake-quant range
    return _param(consts, q, 1) is not None and _attr(q, "axis", 1) == _attr(dq, "axis", 1)


def fake_quant_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose activation Q -> DQ pairs are FakeQuant nodes (domain QAT_DOMAIN); a
    QuantizeLinear whose integer output something else reads is kept for that reader."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    pairs = {p["output"]: p for p in activation_pairs(out)}
    nodes = []
    for node in graph.node:
        pair = pairs.get(node.output[0]) if node.op_type == "DequantizeLinear" else None
        if pair is None:
            nodes.append(node)
            continue
        info = np.iinfo(np.dtype(pair["dtype"]))
        nodes.append(
            helper.make_node(
                "FakeQuant",
                [pair["tensor"], node.input[1], node.input[2] if len(node.input) > 2 else ""],
                [node.output[0]],
                name=node.name,
                domain=QAT_DOMAIN,
                qmin=int(info.min),
                qmax=int(info.max),
            )
        )
    read = {i for n in nodes for i in n.input} | {o.name for o in graph.output}
    # a Q whose every reader became a FakeQuant has nothing left to do
    nodes = [n for n in nodes if n.op_type != "QuantizeLinear" or n.output[0] in read]
    del graph.node[:]
    graph.node.extend(nodes)
    if not any(o.domain == QAT_DOMAIN for o in out.opset_import):
        out.opset_import.append(helper.make_opsetid(QAT_DOMAIN, 1))
    _narrow_channel_weights(graph)
    return out


def _narrow_channel_weights(graph: onnx.GraphProto) -> None:
    """Per-channel weights at -128 steps move to -127, in place.

    Symmetric quantizers over the full int8 range (torch's observers: scale = max|w| / 127.5) put
    a channel's most negative weight at q = -128; TFLite's weights are symmetric in [-127, 127]
    and it derives a channel's scale from its largest |w|, so that one weight would rescale the
    whole channel by 128/127. Moved by one step, the channel keeps the model's scale."""
    inits = {t.name: t for t in graph.initializer}
    consts = _consts(graph)
    for dq in graph.node:
        init = inits.get(dq.input[0]) if dq.op_type == "DequantizeLinear" else None
        scale, zp = _param(consts, dq, 1), _param(consts, dq, 2)
        if (
            init is None
            or scale is None
            or scale.size < 2
            or init.data_type not in (TensorProto.INT8, TensorProto.UINT8)
        ):
            continue
        q = numpy_helper.to_array(init)
        shape = [1] * q.ndim
        shape[int(_attr(dq, "axis", 1)) % q.ndim] = scale.size
        centre = 0 if zp is None else (zp.astype(np.int64).reshape(shape) if zp.size > 1 else int(zp.ravel()[0]))
        low = centre - WEIGHT_QMAX
        if np.any(q < low):
            init.CopyFrom(numpy_helper.from_array(np.maximum(q, low).astype(q.dtype), init.name))


# -- weights: DequantizeLinear of initializers in the source model -------------------
def weights(model: onnx.ModelProto) -> list[dict]:
    """Quantized weights of Conv/ConvTranspose/Gemm/MatMul: the scales TFLite must reproduce."""
    graph = model.graph
    consts = _consts(graph)
    readers: dict[str, list[tuple[int, int, onnx.NodeProto]]] = {}
    for index, node in enumerate(graph.node):
        for slot, name in enumerate(node.input):
            readers.setdefault(name, []).append((slot, index, node))
    found = []
    quantized = {**consts, **_quantized_constants(graph, consts)}
    for dq in graph.node:
        if dq.op_type != "DequantizeLinear" or dq.input[0] not in quantized:
            continue
        q = quantized[dq.input[0]]
        for slot, index, node in readers.get(dq.output[0], []):
            if slot == 1 and node.op_type in WEIGHT_AXIS:
                found.append(_weight(consts, dq, q, node, index))
    return found


def _quantized_constants(graph: onnx.GraphProto, consts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The integer output of each QuantizeLinear of a float constant (torch's QAT export keeps
    float weights behind Q -> DQ instead of storing them quantized)."""
    out = {}
    for q in graph.node:
        if q.op_type != "QuantizeLinear" or q.input[0] not in consts or len(q.input) < 3:
            continue
        w, scale, zp = consts[q.input[0]], _param(consts, q, 1), _param(consts, q, 2)
        if scale is None or zp is None or w.dtype.kind != "f":
            continue
        shape = [1] * w.ndim
        if scale.size > 1:
            shape[int(_attr(q, "axis", 1)) % w.ndim] = scale.size
        info = np.iinfo(zp.dtype)
        steps = np.rint(w / scale.reshape(shape)) + zp.astype(np.int64).reshape(shape if zp.size > 1 else [1] * w.ndim)
        out[q.output[0]] = np.clip(steps, info.min, info.max).astype(zp.dtype)
    return out


def _weight(consts, dq: onnx.NodeProto, q: np.ndarray, node: onnx.NodeProto, index: int) -> dict:
    scale = np.ravel(np.asarray(_param(consts, dq, 1)))  # a computed scale: [None], which float() refuses
    zp = _param(consts, dq, 2)
    zp = np.zeros(scale.shape, np.int64) if zp is None else np.ravel(zp).astype(np.int64)
    axis = int(_attr(dq, "axis", 1)) % max(q.ndim, 1) if scale.size > 1 else None
    # uint8 with zero point 128 is the same grid as int8 with 0
    shift = 128 if q.dtype == np.uint8 else 0
    centred = q.astype(np.int64) - shift
    if axis is None:
        largest = [int(np.max(np.abs(centred - (zp[0] - shift)), initial=0))]
    else:
        moved = np.moveaxis(centred, axis, 0).reshape(q.shape[axis], -1)
        largest = [int(np.max(np.abs(row - (z - shift)), initial=0)) for row, z in zip(moved, zp)]
    return {
        "node": _label(node, index),
        "op": node.op_type,
        "tensor": dq.output[0],
        "dtype": str(q.dtype),
        "scale": [float(v) for v in scale],
        "zero_point": [int(v) - shift for v in zp],
        "axis": axis,
        "channel_axis": WEIGHT_AXIS[node.op_type](node, q.ndim),
        "largest": largest,
    }


def summary(prepared: onnx.ModelProto, source: onnx.ModelProto | None = None) -> dict | None:
    """What the model's own quantization is (None when it has none); weights only with `source`."""
    if not is_qdq(prepared) and (source is None or not is_qdq(source)):
        return None
    out = {"activations": activation_pairs(prepared)}
    if source is not None:
        out["weights"] = weights(source)
    return out


# -- what an int8 TFLite target can keep ------------------------------------------------
def per_tensor_weights(found: dict) -> bool:
    """True when every quantized weight has one scale: the converter must then not split them."""
    ws = found.get("weights", [])
    return bool(ws) and all(len(w["scale"]) == 1 for w in ws)


def forbidden(found: dict, per_channel: bool) -> list[str]:
    """One line per node whose quantization an int8 TFLite target with `per_channel` cannot keep."""
    lines = [line for a in found.get("activations", []) for line in _activation_problems(a)]
    ws = found.get("weights", [])
    mixed = len({len(w["scale"]) == 1 for w in ws}) > 1
    for w in ws:
        lines += _weight_problems(w, per_channel, mixed)
    return lines


def _activation_problems(a: dict) -> list[str]:
    where = f"node {a['node']!r} (activation {a['tensor']!r})"
    if a["dtype"] not in ("int8", "uint8"):
        return [f"{where}: {a['dtype']} activations; the device's activations are int8"]
    if len(a["scale"]) > 1:
        return [f"{where}: per-axis activation scales ({len(a['scale'])}); TFLite keeps one per activation"]
    return []


def _weight_problems(w: dict, per_channel: bool, mixed: bool) -> list[str]:
    where = f"node {w['node']!r} ({w['op']} weights {w['tensor']!r})"
    channels = len(w["scale"]) > 1
    if w["dtype"] not in ("int8", "uint8"):
        return [f"{where}: {w['dtype']} weights; TFLite's int8 weights hold 8 bits"]
    if any(w["zero_point"]):
        return [
            f"{where}: asymmetric {w['dtype']} weights (zero point != 0 as int8); TFLite's int8 weights are symmetric"
        ]
    if channels and not per_channel:
        return [f"{where}: per-channel weight scales ({len(w['scale'])}), and the device takes one scale per tensor"]
    if channels and w["axis"] != w["channel_axis"]:
        return [
            f"{where}: weight scales along axis {w['axis']}; TFLite keeps them per output channel (axis {w['channel_axis']})"
        ]
    if mixed and not channels:
        return [
            f"{where}: per-tensor weights in a model whose other weights are per-channel; TFLite does one or the other"
        ]
    # per-tensor weights get a fake-quant of their own scale (qat.fake_quant_weights);
    # per-channel ones are quantized by TFLite from their values
    # 128: a -128 weight, which _narrow_channel_weights moves to -127 so the scale stays
    off = [(c, m) for c, m in enumerate(w["largest"]) if m not in (0, WEIGHT_QMAX, WEIGHT_QMAX + 1)] if channels else []
    if off:
        c, m = off[0]
        what = f"channel {c}'s" if channels else "the tensor's"
        return [
            f"{where}: {what} largest weight is |q| = {m}; TFLite derives the scale from a largest |q| of 127, so it would change"
        ]
    return []
