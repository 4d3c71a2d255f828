"""Which ops the converter handles, read from the source of its op modules.

The op modules import TensorFlow at the top (seconds), and `inspect` must stay
fast, so their `@handles(...)` tags are read with `ast` instead of importing
them. Two forms are understood: a decorator with literal arguments, and a
factory whose inner function is decorated with the factory's parameters
(`_binary_handler("Equal", 7, ...)`). The tags feed a real `Registry`, so
lookups follow the converter's own opset rule; a test checks the scan against
the imported registry.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import buildsys.converter
from buildsys.converter.registry import Registry, handles

OPS_DIR = Path(buildsys.converter.__file__).parent / "ops"
DECORATOR = handles.__name__


class _Unresolved(Exception):
    """An argument that is not a literal or a bound factory parameter."""


def converter_registry(ops_dir: Path = OPS_DIR) -> Registry:
    """A Registry answering lookups like the converter's, without importing its op modules."""
    module = ModuleType("buildsys.inspect.scanned")
    for i, (args, kwargs) in enumerate(_tags(ops_dir)):
        module.__dict__[f"handler_{i}"] = handles(*args, **kwargs)(_placeholder())
    return Registry([module])


def _placeholder():
    def handler(ctx: Any, node: Any) -> None:  # never called: inspect only asks whether one exists
        raise NotImplementedError

    return handler


def _tags(ops_dir: Path) -> Iterator[tuple[list, dict]]:
    for family in _families(ops_dir / "__init__.py"):
        yield from scan(ast.parse((ops_dir / f"{family}.py").read_text(encoding="utf-8")))


def _families(init: Path) -> tuple[str, ...]:
    for stmt in ast.parse(init.read_text(encoding="utf-8")).body:
        if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "FAMILIES" for t in stmt.targets):
            return tuple(ast.literal_eval(stmt.value))
    raise LookupError(f"no FAMILIES in {init}")


def scan(tree: ast.Module) -> Iterator[tuple[list, dict]]:
    """(args, kwargs) of every `handles(...)` call the module makes when imported."""
    factories: dict[str, ast.FunctionDef] = {}
    for stmt in tree.body:
        if not isinstance(stmt, ast.FunctionDef):
            continue
        for call in _handles_calls(stmt.decorator_list):
            yield from _resolved(call, {})
        if any(True for _ in _handles_calls(stmt.body)):
            factories[stmt.name] = stmt
    for call in _calls(tree.body):
        factory = factories.get(call.func.id) if isinstance(call.func, ast.Name) else None
        if factory is not None:
            env = _bind(factory, call)
            for inner in _handles_calls(factory.body):
                yield from _resolved(inner, env)


def _calls(nodes: list[ast.stmt]) -> Iterator[ast.Call]:
    for stmt in nodes:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue  # a call inside a body runs later, or never: only import-time calls register
        for node in ast.walk(stmt):
            if isinstance(node, ast.Call):
                yield node


def _handles_calls(nodes: list) -> Iterator[ast.Call]:
    for node in nodes:
        for call in ast.walk(node):
            if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == DECORATOR:
                yield call


def _resolved(call: ast.Call, env: dict[str, Any]) -> Iterator[tuple[list, dict]]:
    try:
        args = [_value(a, env) for a in call.args]
        kwargs = {k.arg: _value(k.value, env) for k in call.keywords if k.arg}
    except _Unresolved:
        return  # the scan-vs-import test names what was missed
    yield args, kwargs


def _value(node: ast.expr, env: dict[str, Any]) -> Any:
    if isinstance(node, ast.Name):
        if node.id in env:
            return env[node.id]
        raise _Unresolved(node.id)
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise _Unresolved(ast.dump(node)) from None


def _bind(fn: ast.FunctionDef, call: ast.Call) -> dict[str, Any]:
    """Literal arguments of a factory call by parameter name (defaults included)."""
    params = [a.arg for a in fn.args.posonlyargs + fn.args.args]
    env: dict[str, Any] = {}
    for name, default in zip(params[len(params) - len(fn.args.defaults) :], fn.args.defaults):
        _try_set(env, name, default)
    for name, kw_default in zip((a.arg for a in fn.args.kwonlyargs), fn.args.kw_defaults):
        if kw_default is not None:
            _try_set(env, name, kw_default)
    for name, arg in zip(params, call.args):
        _try_set(env, name, arg)
    for kw in call.keywords:
        if kw.arg:
            _try_set(env, kw.arg, kw.value)
    return env


def _try_set(env: dict[str, Any], name: str, node: ast.expr) -> None:
    try:
        env[name] = ast.literal_eval(node)
    except ValueError:
        env.pop(name, None)  # not a literal (a TF function): only op names and versions matter
