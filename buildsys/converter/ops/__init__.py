"""Op handler modules, one per op family; the registry is built from this list."""

from __future__ import annotations

from buildsys.converter.ops import (
    activation,
    conv,
    elementwise,
    index,
    logic,
    matmul,
    normalization,
    pool,
    quant,
    reduce,
    resize,
    shape,
    tensor,
)

MODULES = (
    activation,
    conv,
    elementwise,
    index,
    logic,
    matmul,
    normalization,
    pool,
    quant,
    reduce,
    resize,
    shape,
    tensor,
)
