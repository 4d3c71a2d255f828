"""A loaded PyTorch model -> ONNX: the dynamo exporter where it works, the TorchScript one as the fallback."""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from pathlib import Path
from typing import Any

from buildsys.errors import InputError
from buildsys.torchsrc.load import TorchModel, require_torch

TORCHSCRIPT_OPSET = 17  # the newest opset the TorchScript exporter writes fully
EXAMPLE_SEED = 0


def static_shapes(
    model: TorchModel, shapes: dict[str, list[int]], batch: int | None, label: str
) -> dict[str, list[int]]:
    """Each input's shape: the recipe's, else the .pt2's example input, with `batch:` as its first dim."""
    found = {n: list(shapes.get(n) or model.example_shapes.get(n) or []) for n in model.inputs}
    if batch is not None:
        found = {n: [batch, *dims[1:]] if dims else dims for n, dims in found.items()}
    missing = [n for n, dims in found.items() if not dims]
    unknown = sorted(set(shapes) - set(model.inputs))
    if missing or unknown:
        example = ", ".join(f"{n}: [1, 3, 224, 224]" for n in missing or model.inputs)
        said = f"no shape for {', '.join(missing)}" if missing else f"shapes for unknown inputs {', '.join(unknown)}"
        raise InputError(
            f"{label}: {said} (the model's forward takes {', '.join(model.inputs)})",
            hint=f"a PyTorch model is exported at static shapes: add `shapes: {{{example}}}` to the recipe",
        )
    return found


def example_inputs(shapes: dict[str, list[int]]) -> tuple:
    """Seeded random tensors: zeros can take a data-dependent branch real inputs never take."""
    torch = require_torch()
    generator = torch.Generator().manual_seed(EXAMPLE_SEED)
    return tuple(torch.randn(*dims, generator=generator) for dims in shapes.values())


def output_names(count: int) -> list[str]:
    return ["output"] if count == 1 else [f"output_{i}" for i in range(count)]


def flat_outputs(model: TorchModel, args: tuple) -> list[Any]:
    """The model's outputs flattened as the ONNX exporters flatten them (nested tuples, dicts)."""
    torch = require_torch()
    from torch.utils._pytree import tree_flatten

    with torch.no_grad():
        result = model.module(*args)
    return [t for t in tree_flatten(result)[0] if hasattr(t, "shape")]


def export(model: TorchModel, shapes: dict[str, list[int]], exporter: str, label: str) -> tuple[Any, dict]:
    """(ONNX ModelProto, facts for export.json: the exporter that made it and why another did not)."""
    args = example_inputs(shapes)
    names = output_names(len(flat_outputs(model, args)))
    tried: dict[str, str] = {}
    if exporter == "auto" and model.kind == "torchscript":
        # torch.export cannot trace a ScriptModule: not worth the seconds of trying
        tried["dynamo"] = "a TorchScript module is exported by the TorchScript exporter"
    for name in _order(exporter, model.kind):
        try:
            proto = _EXPORTERS[name](model, args, list(shapes), names)
        except Exception as exc:  # noqa: BLE001 - the exporters raise anything the model's code does
            tried[name] = _first_line(exc)
            continue
        return proto, {"exporter": name, "failed": tried, "inputs": list(shapes), "outputs": names}
    said = "; ".join(f"{k}: {v}" for k, v in tried.items())
    raise InputError(
        f"{label} cannot be exported to ONNX ({said})",
        hint="export it to ONNX by hand and use `source: {onnx: ...}`, or try `exporter: torchscript` / `dynamo`",
    )


def _order(exporter: str, kind: str) -> tuple[str, ...]:
    if exporter != "auto":
        return (exporter,)
    return ("torchscript",) if kind == "torchscript" else ("dynamo", "torchscript")


def _dynamo(model: TorchModel, args: tuple, inputs: list[str], outputs: list[str]) -> Any:
    torch = require_torch()
    with _silenced():
        program = torch.onnx.export(
            model.exportable, args, dynamo=True, input_names=inputs, output_names=outputs, optimize=True, verbose=False
        )
    return program.model_proto


def _torchscript(model: TorchModel, args: tuple, inputs: list[str], outputs: list[str]) -> Any:
    import onnx

    torch = require_torch()
    target = model.module if model.kind == "pt2" else model.exportable
    buf = io.BytesIO()
    with _silenced():
        torch.onnx.export(
            target, args, buf, dynamo=False, input_names=inputs, output_names=outputs, opset_version=TORCHSCRIPT_OPSET
        )
    return onnx.load_from_string(buf.getvalue())


_EXPORTERS = {"dynamo": _dynamo, "torchscript": _torchscript}


@contextlib.contextmanager
def _silenced():
    """The exporters print progress to stdout and warn about the model's code: not the user's terminal."""
    from buildsys.tflow.quiet import quiet

    with quiet(), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _first_line(exc: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()  # torch colours its messages
    line = text.splitlines()[0] if text else type(exc).__name__
    return f"{type(exc).__name__}: {line}"[:300]


def write(proto: Any, out: Path) -> None:
    out.write_bytes(proto.SerializeToString(deterministic=True))
