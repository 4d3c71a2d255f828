"""Op handler modules, one per op family; the registry is built from this list."""

from __future__ import annotations

from importlib import import_module

FAMILIES = (
    "activation",
    "conv",
    "detection",
    "elementwise",
    "index",
    "logic",
    "matmul",
    "normalization",
    "pool",
    "quant",
    "recurrent",
    "reduce",
    "relayout",
    "resize",
    "shape",
    "tensor",
)

MODULES = tuple(import_module(f"{__name__}.{family}") for family in FAMILIES)
