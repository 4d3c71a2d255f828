"""Read a .tflite flatbuffer without running it: op counts and tensor dtypes.

Parsed with the schema module TensorFlow ships, so it works on any valid model
(fp32, fp16, int8, with or without signatures) and allocates nothing.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from tensorflow.lite.python import schema_py_generated as schema

from buildsys.errors import InputError

_HINT = "re-export it or check the sha256"


def op_histogram(model: bytes | Path) -> dict[str, int]:
    """Builtin (or custom) op name -> number of uses over all subgraphs, by name."""
    return _parsed(model, _op_counts)


def tensor_dtypes(model: bytes | Path) -> dict:
    """{"inputs": {name: dtype}, "outputs": {name: dtype}, "tensors": {dtype: count}}.

    Names come from the first signature when there is one (the names callers
    feed by), else from the main subgraph's tensors.
    """
    return _parsed(model, _dtype_summary)


def _op_counts(root) -> dict[str, int]:
    names = [_op_name(root.OperatorCodes(i)) for i in range(root.OperatorCodesLength())]
    counts: Counter[str] = Counter()
    for sg in _subgraphs(root):
        for k in range(sg.OperatorsLength()):
            counts[names[sg.Operators(k).OpcodeIndex()]] += 1
    return dict(sorted(counts.items()))


def _dtype_summary(root) -> dict:
    main, inputs, outputs = _named_io(root)
    counts: Counter[str] = Counter(_dtype(sg.Tensors(t)) for sg in _subgraphs(root) for t in range(sg.TensorsLength()))
    return {
        "inputs": {n: _dtype(main.Tensors(i)) for n, i in inputs},
        "outputs": {n: _dtype(main.Tensors(i)) for n, i in outputs},
        "tensors": dict(sorted(counts.items())),
    }


def _parsed(model: bytes | Path, read):
    """Run `read(root)`; the flatbuffer is parsed lazily, so damage can show up anywhere."""
    data, label = (bytes(model), "<tflite bytes>") if isinstance(model, (bytes, bytearray)) else _read(Path(model))
    if len(data) < 8 or not schema.Model.ModelBufferHasIdentifier(data, 0):
        raise InputError(f"{label} is not a TFLite model (no TFL3 identifier)", hint=_HINT, path=label)
    try:
        root = schema.Model.GetRootAs(data, 0)
        if root.SubgraphsLength() < 1:
            raise ValueError("no subgraphs")
        return read(root)
    except Exception as exc:  # noqa: BLE001 - a damaged flatbuffer fails in struct/index code
        raise InputError(f"{label} is a damaged TFLite model ({exc})", hint=_HINT, path=label) from None


def _read(path: Path) -> tuple[bytes, str]:
    try:
        return path.read_bytes(), str(path)
    except OSError as exc:
        raise InputError(f"cannot read TFLite model {path}: {exc.strerror}", path=str(path)) from None


def _subgraphs(root):
    return [root.Subgraphs(i) for i in range(root.SubgraphsLength())]


def _op_name(code) -> str:
    # Codes above 127 only fit in the newer int32 field; the deprecated int8
    # field then holds the placeholder 127, so the larger value is the real one.
    builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
    if builtin == schema.BuiltinOperator.CUSTOM:
        return (code.CustomCode() or b"CUSTOM").decode("utf-8", errors="replace")
    return _enum_names(schema.BuiltinOperator).get(builtin, f"BUILTIN_{builtin}")


def _dtype(tensor) -> str:
    return _enum_names(schema.TensorType).get(tensor.Type(), f"TYPE_{tensor.Type()}")


def _enum_names(enum_class) -> dict[int, str]:
    return {v: k for k, v in vars(enum_class).items() if not k.startswith("_") and isinstance(v, int)}


def _named_io(root) -> tuple[object, list, list]:
    """The signature's subgraph and [(name, tensor index)] for its inputs and outputs."""
    if root.SignatureDefsLength() > 0:
        sig = root.SignatureDefs(0)
        ins = [sig.Inputs(i) for i in range(sig.InputsLength())]
        outs = [sig.Outputs(i) for i in range(sig.OutputsLength())]
        pairs = [[(t.Name().decode(), t.TensorIndex()) for t in side] for side in (ins, outs)]
        return root.Subgraphs(sig.SubgraphIndex()), pairs[0], pairs[1]
    main = root.Subgraphs(0)
    ins = [main.Inputs(i) for i in range(main.InputsLength())]
    outs = [main.Outputs(i) for i in range(main.OutputsLength())]
    pairs = [[(main.Tensors(i).Name().decode(), i) for i in side] for side in (ins, outs)]
    return main, pairs[0], pairs[1]
