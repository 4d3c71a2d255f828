"""Check every operator and tensor of an artifact against a device profile.

The result (the compat document) is plain JSON data in a fixed order, so the
same artifact and profile always give the same bytes: it can be cached and
diffed. Placement follows the profile's partition model: per-op (each op the
device cannot run falls back to the CPU alone) or first-unsupported (the Edge
TPU compiler maps everything from the first unsupported op on to the CPU).
"""

from __future__ import annotations

import importlib
from collections import Counter
from pathlib import Path
from types import MappingProxyType

from buildsys.compat.rules import GraphView, OpView, TensorView, check_op, check_tensor, weights_reason
from buildsys.errors import UsageError

NOT_LISTED = "not in the device's operator list (ops)"
# float graph inputs feeding QUANTIZE and outputs made by DEQUANTIZE are the model's IO
# conversion, not activations the device holds: tensors.dtypes does not judge them
QUANTIZE_OPS = frozenset({"QUANTIZE", "QuantizeLinear"})
DEQUANTIZE_OPS = frozenset({"DEQUANTIZE", "DequantizeLinear"})
# integer modes whose artifacts should compute in integers only
INTEGER_MODES = frozenset({"int8", "int16x8"})


def _readers() -> MappingProxyType:
    # module names, imported on use: the ONNX reader pulls in onnx, the TFLite one numpy
    return MappingProxyType({"tflite": "buildsys.compat.tflite_ops", "onnx": "buildsys.compat.onnx_ops"})


def _partitions() -> MappingProxyType:
    return MappingProxyType({"per-op": _place_per_op, "first-unsupported": _place_after_first})


def check_artifact(path: Path, fmt: str, profile: dict) -> dict:
    """The compat document of the artifact at `path` ("tflite" or "onnx") against `profile`."""
    readers, partitions = _readers(), _partitions()
    if fmt not in readers:
        raise UsageError(f"cannot check a '{fmt}' artifact", hint=f"the device check reads {', '.join(readers)}")
    partition = profile.get("partition") or "per-op"
    if partition not in partitions:
        raise UsageError(f"unknown partition '{partition}'", hint=f"use one of {', '.join(partitions)}")
    graph = importlib.import_module(readers[fmt]).read_graph(Path(path))
    return _document(graph, fmt, partition, profile)


def render_unsupported(compat: dict, limit: int = 20) -> list[str]:
    """One short line per unsupported op (and per tensor problem no op touches), at most `limit`."""
    lines = [_op_line(op) for op in compat["ops"] if not op["supported"]]
    lines += [f"tensor '{t['name']}': {t['reason']}" for t in compat.get("tensors", []) if not t["ops"]]
    if len(lines) > limit:
        return [*lines[:limit], f"... and {len(lines) - limit} more"]
    return lines


def _op_line(op: dict, shown: int = 3) -> str:
    # the compat document has every reason; a message line stays readable
    where = f" (subgraph {op['subgraph']})" if op["subgraph"] else ""
    reasons = op["reasons"][:shown] + ([f"+{len(op['reasons']) - shown} more"] if len(op["reasons"]) > shown else [])
    return f"#{op['index']}{where} {op['op']} {op_label(op)}: {'; '.join(reasons)}"


def op_label(op: dict) -> str:
    """`op_name` quoted for a message line, saying when it names ONNX nodes."""
    return ("ONNX " if op.get("nodes") else "") + ", ".join(f"'{n}'" for n in op.get("nodes") or [op["name"]])


def op_name(op: dict) -> str:
    """The ONNX node(s) an op came from when known (what replacements select), else its TFLite name."""
    return ", ".join(op.get("nodes") or [op["name"]])


def _document(graph: GraphView, fmt: str, partition: str, profile: dict) -> dict:
    tensor_problems = _tensor_problems(graph, profile.get("tensors"))
    reasons = [_op_reasons(op, profile, tensor_problems) for op in graph.ops]
    # an IO requantize the device cannot run is buildsys's doing, not the user's to fix:
    # it runs on the CPU, and neither counts as unsupported nor starts a CPU partition
    io = _io_requantize(graph)
    moved = {i: why for i, (op, why) in enumerate(zip(graph.ops, reasons)) if why and (op.subgraph, op.index) in io}
    reasons = [[] if i in moved else why for i, why in enumerate(reasons)]
    placements = _partitions()[partition](graph.ops, reasons)
    ops = [
        {
            "index": op.index,
            "subgraph": op.subgraph,
            "op": op.op,
            "name": op.name,
            "supported": not why,
            "placement": placement,
            "reasons": why + ([note] if note else []),
        }
        for op, why, (placement, note) in zip(graph.ops, reasons, placements, strict=True)
    ]
    for i, why in moved.items():
        conversion = io[(graph.ops[i].subgraph, graph.ops[i].index)]
        ops[i].update(placement="cpu", reasons=[_io_note(conversion, why)], io_conversion=conversion)
    doc = {
        "format": fmt,
        "partition": partition,
        "summary": _summary(ops),
        "ops": ops,
        "tensors": _tensor_entries(graph, tensor_problems),
    }
    mode = (profile.get("quantization") or {}).get("mode")
    if fmt == "tflite" and mode in INTEGER_MODES and (floats := _float_ops(graph)):
        doc["float_ops"] = {"mode": mode, "ops": floats}
    return doc


def _float_ops(graph: GraphView) -> list[dict]:
    """Ops of an integer artifact that still compute in float32: TFLite had no kernel of the
    mode's width for them, so they run between DEQUANTIZE and QUANTIZE, on the CPU."""
    skip = QUANTIZE_OPS | DEQUANTIZE_OPS
    return [
        {"index": op.index, "subgraph": op.subgraph, "op": op.op}
        for op in graph.ops
        if op.op not in skip and any(t.dtype == "float32" for t in op.outputs)
    ]


def render_kernel_notes(compat: dict) -> list[str]:
    """Where TFLite has no kernel of an integer artifact's width for a form, in words: one line per
    op type left in float32, and one for fused LSTMs quantized as unrolled cells."""
    lines = _float_lines(compat.get("float_ops"), compat["ops"])
    unrolled = compat.get("unrolled")
    if unrolled:
        nodes = ", ".join(f"'{n}'" for n in unrolled["nodes"])
        lines.append(
            f"LSTM has no {unrolled['mode']} kernel here: {unrolled['directions']} LSTM direction(s) (ONNX {nodes})"
            f" run as unrolled cells (FULLY_CONNECTED, LOGISTIC, TANH, MUL per step), in {unrolled['mode']}"
        )
    return lines


def _float_lines(found: dict | None, all_ops: list[dict]) -> list[str]:
    if not found:
        return []
    ops = {(op["subgraph"], op["index"]): op for op in all_ops}
    by_type: dict[str, list[dict]] = {}
    for entry in found["ops"]:
        by_type.setdefault(entry["op"], []).append(ops.get((entry["subgraph"], entry["index"]), entry))
    lines = []
    for op_type, entries in sorted(by_type.items()):
        names = list(dict.fromkeys(n for e in entries for n in (e.get("nodes") or [e.get("name", "?")])))
        shown = ", ".join(f"'{n}'" for n in names[:3]) + (f" +{len(names) - 3} more" if len(names) > 3 else "")
        count = f"{len(entries)} op{'s' if len(entries) != 1 else ''}"
        lines.append(
            f"{op_type} has no {found['mode']} kernel here: it runs in float32 on the CPU"
            f" ({count}: {shown}), between DEQUANTIZE and QUANTIZE"
        )
    return lines


def _op_reasons(op: OpView, profile: dict, tensor_problems: dict) -> list[str]:
    allowed = profile.get("ops")
    if allowed is not None and op.op not in allowed:
        reasons = [NOT_LISTED]
    else:
        reasons = check_op(op, (allowed or {}).get(op.op))
    per_channel = (profile.get("quantization") or {}).get("per_channel")
    reasons += [r for r in [weights_reason(op, per_channel)] if r]
    for key in dict.fromkeys(t.key for t in (*op.inputs, *op.outputs)):
        reasons += tensor_problems.get(key, [])
    return reasons


def _tensor_problems(graph: GraphView, limits: dict | None) -> dict[tuple[int, int], list[str]]:
    """Tensor key -> reasons, for activation tensors breaking the profile's `tensors` limits."""
    if not limits:
        return {}
    io = _io_conversion(graph)
    problems = {
        t.key: check_tensor(t, limits, skip=("dtypes",) if t.key in io else ())
        for t in graph.tensors
        if not t.is_constant
    }
    return {key: why for key, why in problems.items() if why}


def _io_conversion(graph: GraphView) -> set[tuple[int, int]]:
    """Graph inputs only QUANTIZE reads and graph outputs DEQUANTIZE writes."""
    readers: dict[tuple[int, int], set[str]] = {}
    writers: dict[tuple[int, int], set[str]] = {}
    for op in graph.ops:
        for t in op.inputs:
            readers.setdefault(t.key, set()).add(op.op)
        for t in op.outputs:
            writers.setdefault(t.key, set()).add(op.op)
    ins = {t.key for t in graph.inputs if readers.get(t.key) and readers[t.key] <= QUANTIZE_OPS}
    outs = {t.key for t in graph.outputs if writers.get(t.key) and writers[t.key] <= DEQUANTIZE_OPS}
    return ins | outs


def _io_requantize(graph: GraphView) -> dict[tuple[int, int], str]:
    """(subgraph, op index) -> what it converts, for the QUANTIZE ops at the graph's edges
    that turn a uint8 input into int8 or an int8 result into a uint8 output: the converter
    adds them for devices with uint8 IO (quantization.input_type/output_type)."""
    ins, outs = {t.key for t in graph.inputs}, {t.key for t in graph.outputs}
    found = {}
    for op in graph.ops:
        if op.op not in QUANTIZE_OPS or len(op.inputs) != 1 or len(op.outputs) != 1:
            continue
        src, dst = op.inputs[0], op.outputs[0]
        if src.key in ins and (src.dtype, dst.dtype) == ("uint8", "int8"):
            found[(op.subgraph, op.index)] = f"input '{src.name}' uint8 -> int8"
        elif dst.key in outs and (src.dtype, dst.dtype) == ("int8", "uint8"):
            found[(op.subgraph, op.index)] = f"output '{dst.name}' int8 -> uint8"
    return found


def _io_note(conversion: str, why: list[str]) -> str:
    return (
        f"IO conversion ({conversion}) added by buildsys for the device's uint8 IO; "
        f"runs on the CPU, as the device's rules do not take it ({'; '.join(why)})"
    )


def _tensor_entries(graph: GraphView, problems: dict) -> list[dict]:
    by_key: dict[tuple[int, int], TensorView] = {t.key: t for t in graph.tensors}
    touching: dict[tuple[int, int], list[int]] = {}
    for op in graph.ops:
        for key in dict.fromkeys(t.key for t in (*op.inputs, *op.outputs)):
            touching.setdefault(key, []).append(op.index)
    return [
        {"name": by_key[key].name, "subgraph": key[0], "reason": reason, "ops": touching.get(key, [])}
        for key in sorted(problems)
        for reason in problems[key]
    ]


def _place_per_op(ops: tuple[OpView, ...], reasons: list[list[str]]) -> list[tuple[str, str | None]]:
    return [("cpu" if why else "accelerator", None) for why in reasons]


def _place_after_first(ops: tuple[OpView, ...], reasons: list[list[str]]) -> list[tuple[str, str | None]]:
    """Accelerator up to the first unsupported op (in execution order), CPU from it on."""
    first = next((i for i, why in enumerate(reasons) if why), len(ops))
    if first == len(ops):
        return [("accelerator", None)] * len(ops)
    bad = ops[first]
    note = (
        f"runs on the CPU: after the first unsupported op #{bad.index} ({bad.op}), "
        "the compiler maps the rest of the graph to the CPU"
    )
    return [("accelerator", None)] * first + [("cpu", None if why else note) for why in reasons[first:]]


def _summary(ops: list[dict]) -> dict:
    placed = Counter(op["placement"] for op in ops)
    first = next((op for op in ops if not op["supported"]), None)
    by_op: dict[str, dict[str, int]] = {}
    for op in ops:
        counts = by_op.setdefault(op["op"], {"accelerator": 0, "cpu": 0})
        counts[op["placement"]] += 1
    return {
        "ops": len(ops),
        "accelerator": placed["accelerator"],
        "cpu": placed["cpu"],
        "unsupported": sum(1 for op in ops if not op["supported"]),
        "first_unsupported": {"index": first["index"], "op": first["op"], "name": first["name"]} if first else None,
        "by_op": dict(sorted(by_op.items())),
    }
