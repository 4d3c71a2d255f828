"""Run a .tflite model on float samples, fed and read by signature names.

Quantized IO is handled here so callers always speak float32: inputs are
quantized with the input tensor's (scale, zero_point) and outputs dequantized.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from buildsys.errors import InputError, StageError
from buildsys.signature import Signature
from buildsys.tflow.quiet import last_error_line, no_interpreter_warning, quiet
from buildsys.tflow.samples import check_sample_shape, check_samples, gather

TFLITE_MAGIC = b"TFL3"


def load_interpreter(model: bytes | Path):
    """An allocated interpreter; InputError if `model` is not a valid .tflite."""
    content, label = model_content(model)
    if len(content) < 8 or content[4:8] != TFLITE_MAGIC:
        raise InputError(
            f"{label} is not a TFLite model (no TFL3 identifier)", hint="re-export it or check the sha256", path=label
        )
    try:
        with quiet() as log, no_interpreter_warning():
            interpreter = interpreter_class()(model_content=content)
            interpreter.allocate_tensors()
    except Exception as exc:  # noqa: BLE001 - the C++ loader raises ValueError/RuntimeError
        raise InputError(
            f"cannot load {label} as a TFLite model: {last_error_line(exc, log)}; re-export it or check the sha256",
            path=label,
        ) from None
    return interpreter


def model_content(model: bytes | Path) -> tuple[bytes, str]:
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model), "<tflite bytes>"
    path = Path(model)
    try:
        return path.read_bytes(), str(path)
    except OSError as exc:
        raise InputError(f"cannot read TFLite model {path}: {exc.strerror}", path=str(path)) from None


def interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        return tf.lite.Interpreter
    return Interpreter


def tflite_inputs_outputs(model: bytes | Path) -> dict:
    """Signature-like description: names, shapes, dtypes, quantization per tensor."""
    interpreter = load_interpreter(model)
    inputs, outputs = io_details(interpreter)
    return {
        "inputs": [_describe(n, d) for n, d in inputs.items()],
        "outputs": [_describe(n, d) for n, d in outputs.items()],
    }


def tflite_signature(model: bytes | Path) -> Signature:
    """A TFLite source's signature.json: its own IO, as passed through unchanged."""
    # each entry's `quantization` (scale, zero point or None) stays in TensorEntry.extra:
    # only a TFLite source has it, and nothing reads it back
    return Signature.from_dict(tflite_inputs_outputs(model))


def io_details(interpreter) -> tuple[dict, dict]:
    """{name: tensor details} for inputs and outputs, from the signature if there is one."""
    key = _signature_key(interpreter)
    if key is None:
        return (
            {d["name"]: d for d in interpreter.get_input_details()},
            {d["name"]: d for d in interpreter.get_output_details()},
        )
    runner = interpreter.get_signature_runner(key)
    return runner.get_input_details(), runner.get_output_details()


def _signature_key(interpreter) -> str | None:
    keys = list(interpreter.get_signature_list())
    if not keys:
        return None
    return "serving_default" if "serving_default" in keys else keys[0]


def _describe(name: str, details: dict) -> dict:
    scale, zero_point = details.get("quantization", (0.0, 0))
    quant = {"scale": float(scale), "zero_point": int(zero_point)} if scale else None
    return {
        "name": name,
        "shape": [int(d) for d in details["shape"]],
        "dtype": np.dtype(details["dtype"]).name,
        "quantization": quant,
    }


def run_tflite(model: bytes | Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run samples (N, ...) one at a time; float32 outputs by name."""
    interpreter = load_interpreter(model)
    in_details, out_details = io_details(interpreter)
    label = "the TFLite model" if isinstance(model, (bytes, bytearray, memoryview)) else str(model)
    arrays, count = check_samples(list(in_details), inputs, str(label))
    for name, details in in_details.items():
        check_sample_shape(name, arrays[name], _declared_shape(details), str(label))
    invoke = _invoker(interpreter, in_details, out_details)
    results = []
    for i in range(count):
        feed = {n: quantize_input(arrays[n][i : i + 1], in_details[n]) for n in in_details}
        raw = _run(invoke, feed, label, interpreter)
        results.append({n: _dequantize(raw[n], out_details[n]) for n in out_details})
    return gather(results, list(out_details))


def _declared_shape(details: dict) -> list[int | None]:
    shape = details.get("shape_signature", details["shape"])
    return [None if d < 0 else int(d) for d in shape]


def _invoker(interpreter, in_details: dict, out_details: dict):
    """callable({name: array}) -> {name: array}, resizing inputs to the fed shape."""
    key = _signature_key(interpreter)
    if key is not None:
        runner = interpreter.get_signature_runner(key)
        return lambda feed: runner(**feed)

    def invoke(feed: dict) -> dict:
        for name, value in feed.items():
            interpreter.resize_tensor_input(in_details[name]["index"], value.shape, strict=False)
        interpreter.allocate_tensors()
        for name, value in feed.items():
            interpreter.set_tensor(in_details[name]["index"], value)
        interpreter.invoke()
        return {n: interpreter.get_tensor(d["index"]) for n, d in out_details.items()}

    return invoke


def _run(invoke, feed: dict, label, interpreter) -> dict:
    try:
        return invoke(feed)
    except Exception as exc:  # noqa: BLE001 - shape errors surface as RuntimeError/ValueError
        shapes = {n: list(v.shape) for n, v in feed.items()}
        failed = kernel_failure(str(exc), interpreter, label, shapes)
        if failed is not None:
            raise failed from None
        raise StageError(f"running {label} on inputs of shape {shapes} failed: {last_error_line(exc)}") from None


# how the interpreter names the op whose kernel failed: "Node number 8 (DIV) failed to invoke."
_FAILED_NODE = re.compile(r"Node number (\d+) \(([^)]*)\) failed to (?:invoke|prepare)\.?")


class KernelFailure(StageError):
    """A TFLite kernel refused the data at run time: its Eval checks failed (int8 DIV with a
    divisor at its zero point, SQRT of a negative...). `op_index` and `op_type` name the op
    of the main subgraph, `tensors` its output tensors, `reason` the kernel's own words."""

    def __init__(self, label: str, op_index: int, op_type: str, tensors: list[str], reason: str, shapes: dict):
        self.label, self.op_index, self.op_type = label, op_index, op_type
        self.tensors, self.reason, self.shapes = tensors, reason, shapes
        super().__init__(f"running {label} on inputs of shape {shapes} failed: op #{op_index} ({op_type}): {reason}")


def kernel_failure(text: str, interpreter, label, shapes: dict) -> KernelFailure | None:
    """The KernelFailure an interpreter error `text` describes, or None when it names no op.

    In a control-flow body the inner op is named first; the last one named is the op of
    the main subgraph, whose index the op list and the converter's scopes refer to."""
    found = _FAILED_NODE.findall(text)
    if not found:
        return None
    index, op_type = int(found[-1][0]), found[-1][1]
    reason = " ".join(_FAILED_NODE.sub(" ", text).split()) or "the kernel reported no reason"
    return KernelFailure(str(label), index, op_type, _op_outputs(interpreter, index), reason, shapes)


def _op_outputs(interpreter, index: int) -> list[str]:
    """Names of the output tensors of op `index` of the main subgraph ([] if unknown)."""
    try:
        ops = interpreter._get_ops_details()  # noqa: SLF001 - the one API listing ops with their tensors
        names = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
    except Exception:  # noqa: BLE001 - naming the tensors is a courtesy; the failure is reported anyway
        return []
    op = next((o for o in ops if o.get("index") == index), None)
    return [names.get(int(t), "") for t in (op or {}).get("outputs", []) if int(t) >= 0]


def quantize_input(x: np.ndarray, details: dict) -> np.ndarray:
    dtype = np.dtype(details["dtype"])
    scale, zero_point = details.get("quantization", (0.0, 0))
    if dtype.kind not in "iu" or not scale:
        return np.asarray(x, dtype=dtype)
    info = np.iinfo(dtype)
    q = np.round(np.asarray(x, dtype=np.float64) / scale + zero_point)
    return np.clip(q, info.min, info.max).astype(dtype)


def _dequantize(y: np.ndarray, details: dict) -> np.ndarray:
    scale, zero_point = details.get("quantization", (0.0, 0))
    if np.dtype(details["dtype"]).kind not in "iu" or not scale:
        return np.array(y, copy=True)
    return ((y.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)).astype(np.float32)
