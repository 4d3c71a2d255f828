"""Versions of the tools that enter stage keys and lockfiles, found without importing them.

importlib.metadata costs ~0.4 s for a handful of lookups; reading the
`name-version.dist-info` directory names on sys.path costs a few milliseconds,
which keeps the no-op build fast.
"""

from __future__ import annotations

import os
import platform
import re
import sys

import buildsys

# Distributions that provide an import name; the first found wins.
DISTRIBUTIONS = {
    "tensorflow": ("tensorflow", "tensorflow-cpu", "tensorflow-intel", "tf-nightly"),
    "keras": ("keras",),
    "onnx": ("onnx",),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "litert": ("ai-edge-litert", "ai-edge-litert-nightly"),
    "matplotlib": ("matplotlib",),
    "numpy": ("numpy",),
    "torch": ("torch",),
    "onnxscript": ("onnxscript",),
}

LOCKED_TOOLS = ("buildsys", "tensorflow", "onnx", "onnxruntime", "litert", "matplotlib", "numpy", "python")
# tools only some stages use: in their stage keys, not in every lock's tools
STAGE_TOOLS = ("torch", "onnxscript")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def installed_versions() -> dict[str, str]:
    """{normalised distribution name: version} for every dist-info on sys.path."""
    found: dict[str, str] = {}
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in names:
            if name.endswith(".dist-info"):
                dist, _, version = name[: -len(".dist-info")].partition("-")
                found.setdefault(_normalise(dist), version)
    return found


def tool_versions(names: tuple[str, ...] = LOCKED_TOOLS) -> dict[str, str]:
    installed = installed_versions()
    out = {}
    for name in names:
        out[name] = _version_of(name, installed)
    return out


def _version_of(name: str, installed: dict[str, str]) -> str:
    if name == "buildsys":
        return buildsys.__version__
    if name == "python":
        return platform.python_version()
    for dist in DISTRIBUTIONS.get(name, (name,)):
        version = installed.get(_normalise(dist))
        if version:
            return version
    return "not installed"


def pip_requirement(name: str, version: str) -> str:
    """`dist==version` for a locked tool: the distribution installed now, else the usual one."""
    if name == "buildsys":
        return f"buildsys=={version}"
    installed = installed_versions()
    dists = DISTRIBUTIONS.get(name, (name,))
    dist = next((d for d in dists if _normalise(d) in installed), dists[0])
    return f"{dist}=={version}"
