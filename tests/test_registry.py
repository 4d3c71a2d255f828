"""The op-handler registry: one handler per (domain, op type, since version), or an error that
names both claims (converter/registry.py)."""

from __future__ import annotations

from types import ModuleType

import pytest

from buildsys.converter.registry import Registry, default_registry, handles


def module(name: str, **handlers) -> ModuleType:
    mod = ModuleType(name)
    vars(mod).update(handlers)
    return mod


def test_each_version_of_an_op_goes_to_its_own_handler() -> None:
    old = handles("Relu", since=1)(lambda *a: None)
    new = handles("Relu", since=14)(lambda *a: None)
    registry = Registry([module("a", old=old), module("b", new=new)])
    assert registry.lookup("", "Relu", 13) is old and registry.lookup("ai.onnx", "Relu", 14) is new
    assert registry.lookup("", "Relu", 0) is None and registry.ops() == [("", "Relu", 1)]


def test_two_handlers_of_one_op_version_are_refused_by_name() -> None:
    first = handles("Conv", since=11)(lambda *a: None)
    second = handles("Conv", since=11)(lambda *a: None)
    with pytest.raises(ValueError, match=r"ai.onnx Conv \(since opset 11\) is claimed by both .*<lambda> and"):
        Registry([module("a", conv=first), module("b", conv=second)])


def test_a_handler_imported_into_another_module_is_one_claim() -> None:
    conv = handles("Conv", since=11)(lambda *a: None)
    assert Registry([module("a", conv=conv), module("b", conv=conv)]).lookup("", "Conv", 13) is conv


def test_a_handler_tagged_twice_for_the_same_version_is_refused() -> None:
    with pytest.raises(ValueError, match="tagged twice"):
        handles("Gemm", since=13)(handles("Gemm", since=13)(lambda *a: None))


def test_a_handler_tagged_for_two_versions_of_one_op_is_refused() -> None:
    # the opset-13 tag would change nothing: lookup(13) finds the opset-1 tag's handler anyway
    with pytest.raises(ValueError, match="tagged for MatMul at opsets 1, 13: tag it once, at the lowest"):
        handles("MatMul", since=1)(handles("MatMul", since=13)(lambda *a: None))


def test_one_handler_may_serve_two_ops_or_domains() -> None:
    fn = handles("HardSwish", since=14)(handles("HardSwish", domain="buildsys.fused")(lambda *a: None))
    registry = Registry([module("a", fn=fn)])
    assert registry.lookup("", "HardSwish", 14) is fn and registry.lookup("buildsys.fused", "HardSwish", 1) is fn


def test_the_builtin_handlers_claim_each_op_version_once() -> None:
    assert len(default_registry().ops()) > 100
