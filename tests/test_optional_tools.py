"""CI runs every test: the PyTorch and OpenCV ones must not skip there for want of their packages.

.ci/run sets BUILDSYS_REQUIRE_OPTIONAL; a developer without torch still gets the skips."""

from __future__ import annotations

import importlib.util
import os

import pytest


@pytest.mark.parametrize("package", ["torch", "onnxscript", "cv2"])
def test_ci_has_the_packages_optional_tests_need(package: str) -> None:
    if not os.environ.get("BUILDSYS_REQUIRE_OPTIONAL"):
        pytest.skip("only CI requires them (.ci/run sets BUILDSYS_REQUIRE_OPTIONAL)")
    assert importlib.util.find_spec(package) is not None, f"{package} is not installed: CI would skip its tests"
