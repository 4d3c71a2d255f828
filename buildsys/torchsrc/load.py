"""The PyTorch model a recipe names, loaded the safe way its form allows.

`.pt2` and TorchScript files need no model code. A state_dict is read with
`weights_only=True` and loaded into the network the recipe's factory builds; only a
file the recipe names as a whole pickled `module` is unpickled in full.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from buildsys.errors import InputError
from buildsys.recipe.model import Source
from buildsys.torchsrc.files import check_file

# where training code keeps the weights inside a checkpoint dict
STATE_KEYS = ("state_dict", "model_state_dict", "model", "net")


@dataclass
class TorchModel:
    kind: str  # pt2 | torchscript | module
    module: Any  # callable in eval mode: the reference for validation
    exportable: Any  # what torch.onnx.export takes: the ExportedProgram or the module
    inputs: list[str]  # forward's tensor arguments, in order
    example_shapes: dict[str, list[int]]  # from a .pt2's example inputs; {} otherwise


def require_torch() -> Any:
    try:
        import torch
    except ImportError:
        raise InputError(
            "this recipe's source is a PyTorch model, and torch is not installed",
            hint="pip install torch (the CPU build is enough: pip install torch --index-url https://download.pytorch.org/whl/cpu)",
        ) from None
    return torch


def load_model(source: Source) -> TorchModel:
    torch = require_torch()
    form = source.option("form")
    kind = check_file(source.path, form)
    if kind == "pt2":
        return _exported_program(torch, source.path)
    if kind == "torchscript":
        return _torchscript(torch, source.path)
    module = _pickled_module(torch, source) if form == "module" else _factory_module(torch, source)
    module.eval()
    return TorchModel("module", module, module, _forward_args(module, source), {})


def _exported_program(torch: Any, path: Path) -> TorchModel:
    program = _loading(path, "an ExportedProgram", lambda: torch.export.load(str(path)))
    names = list(program.graph_signature.user_inputs)
    args = (program.example_inputs or ((), {}))[0]
    shapes = {n: list(a.shape) for n, a in zip(names, args) if hasattr(a, "shape")}
    return TorchModel("pt2", program.module(), program, names, shapes)


def _torchscript(torch: Any, path: Path) -> TorchModel:
    module = _loading(path, "a TorchScript module", lambda: torch.jit.load(str(path), map_location="cpu"))
    module.eval()
    names = [a.name for a in module.forward.schema.arguments[1:]]
    return TorchModel("torchscript", module, module, names, {})


def _factory_module(torch: Any, source: Source) -> Any:
    target = source.option("factory")
    with _code_on_path(source):
        build = _import_factory(target, source)
        try:
            module = build(**source.option("kwargs", {}))
        except Exception as exc:  # noqa: BLE001 - the user's code may raise anything
            said = f"{type(exc).__name__}: {exc}"
            raise InputError(f"the factory {target} raised {said}", hint="call it by hand to debug it") from None
    if not isinstance(module, torch.nn.Module):
        raise InputError(f"the factory {target} returned a {type(module).__name__}, not a torch.nn.Module")
    read = lambda: torch.load(source.path, map_location="cpu", weights_only=True)  # noqa: E731
    state = _loading(source.path, "a state_dict", read)
    _load_state(module, _state_dict(state, source.path), source.path)
    return module


def _pickled_module(torch: Any, source: Source) -> Any:
    with _code_on_path(source):
        # the recipe named this file as a whole pickled module: the one case that unpickles in full
        read = lambda: torch.load(source.path, map_location="cpu", weights_only=False)  # noqa: E731
        module = _loading(source.path, "a pickled module", read)
    if not isinstance(module, torch.nn.Module):
        raise InputError(
            f"{source.path} holds a {type(module).__name__}, not a pickled torch.nn.Module",
            hint="a state_dict needs the code that builds the network: `pytorch: {factory: ..., weights: FILE}`",
            path=str(source.path),
        )
    return module


def _loading(path: Path, what: str, load: Any) -> Any:
    try:
        return load()
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - torch raises anything from zip, pickle and C++
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(
            f"cannot load {path} as {what}: {reason[:300]}",
            hint="save it again, or check the sha256 and that the recipe names the right form",
            path=str(path),
        ) from None


@contextmanager
def _code_on_path(source: Source) -> Iterator[None]:
    """The code folder first on sys.path while the model is built, and its packages imported
    fresh: a long-lived worker may hold an older version of the same package."""
    code = str(source.option("code"))
    for name in [n for n, m in sys.modules.items() if (getattr(m, "__file__", None) or "").startswith(code + "/")]:
        del sys.modules[name]
    sys.path.insert(0, code)
    try:
        yield
    finally:
        sys.path.remove(code)


def _import_factory(target: str, source: Source) -> Any:
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(
            f"cannot import {module_name} for the factory {target}: {exc}",
            hint=f"source.pytorch.code names the folder it is imported from (now {source.option('code')})",
        ) from None
    except Exception as exc:  # noqa: BLE001 - importing user code runs it
        raise InputError(f"importing {module_name} raised {type(exc).__name__}: {exc}") from None
    build = getattr(module, attr, None)
    if not callable(build):
        raise InputError(f"{module_name} has no function {attr} (source.pytorch.factory is {target})")
    return build


def _state_dict(state: Any, path: Path) -> dict:
    """The weights inside what torch.save wrote: the state_dict itself or a training checkpoint."""
    if isinstance(state, dict):
        nested = next((state[k] for k in STATE_KEYS if isinstance(state.get(k), dict)), None)
        state = nested if nested is not None and not _all_tensors(state) else state
    if not isinstance(state, dict) or not _all_tensors(state):
        raise InputError(
            f"{path} holds no state_dict (a mapping of parameter names to tensors)",
            hint="save it with torch.save(model.state_dict(), FILE)",
            path=str(path),
        )
    # nn.DataParallel saves every name under `module.`
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _all_tensors(state: dict) -> bool:
    return all(hasattr(v, "shape") for v in state.values())


def _load_state(module: Any, state: dict, path: Path) -> None:
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        found = [("missing", missing), ("unexpected", unexpected), ("of another shape", wrong)]
        listed = "; ".join(
            f"{label}: {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}" for label, keys in found if keys
        )
        raise InputError(
            f"{path} does not fit the network the factory builds ({listed})",
            hint="check source.pytorch.factory and its kwargs build the network these weights were trained in",
            path=str(path),
        )
    module.load_state_dict(state, strict=True)


def _forward_args(module: Any, source: Source) -> list[str]:
    params = inspect.signature(module.forward).parameters.values()
    names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]
    if not names:
        raise InputError(f"the forward() of {source.written} takes no tensor arguments buildsys can feed")
    return names
