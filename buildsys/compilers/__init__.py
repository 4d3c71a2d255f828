"""External compilers a device profile can name in `compile.tool`, by that name.

Each runner answers version() (None when the tool is not installed),
install_hint() and compile(model, workdir, args) -> CompileResult; a missing
tool raises CompilerMissing from compile(), a failed run StageError.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from buildsys.compilers.base import Compiler, CompileResult, CompilerMissing
from buildsys.compilers.edgetpu import EdgeTpuCompiler
from buildsys.compilers.vela import Vela

# keys are the schema's compile.tool enum
COMPILERS: Mapping[str, Compiler] = MappingProxyType({"vela": Vela(), "edgetpu_compiler": EdgeTpuCompiler()})

__all__ = ["COMPILERS", "CompileResult", "Compiler", "CompilerMissing"]
