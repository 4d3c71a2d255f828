"""TFLite's flatbuffer schema classes without importing TensorFlow.

`import tensorflow` costs seconds; the generated schema module TensorFlow ships
only needs the `flatbuffers` package, so it is loaded straight from its file.
When TensorFlow is already imported its own copy is reused, so both paths see
the same classes.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from buildsys.errors import StageError

_TF_NAME = "tensorflow.lite.python.schema_py_generated"
# a private name: registering under TensorFlow's own would make a later
# `import tensorflow` find a half-initialised package path
_OWN_NAME = "buildsys._tflite_schema_py_generated"
_RELATIVE = Path("lite") / "python" / "schema_py_generated.py"


def schema() -> ModuleType:
    """The schema_py_generated module (Model, Tensor, Operator, BuiltinOptions...)."""
    for name in (_TF_NAME, _OWN_NAME):
        if name in sys.modules:
            return sys.modules[name]
    return _load(_schema_file())


def enum_names(enum_class: type) -> dict[int, str]:
    """Value -> name of a generated flatbuffer enum class (BuiltinOperator, TensorType...)."""
    return {v: k for k, v in vars(enum_class).items() if not k.startswith("_") and isinstance(v, int)}


def _schema_file() -> Path:
    spec = importlib.util.find_spec("tensorflow")  # finds the package without running it
    for root in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(root) / _RELATIVE
        if candidate.is_file():
            return candidate
    raise StageError(
        "TensorFlow's TFLite schema (lite/python/schema_py_generated.py) was not found",
        hint="install tensorflow-cpu (pip install tensorflow-cpu) in the environment running buildsys",
    )


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(_OWN_NAME, path)
    if spec is None or spec.loader is None:  # a .py path always has both
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    # registered before running, the way importlib does, so a failed load leaves nothing behind
    sys.modules[_OWN_NAME] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[_OWN_NAME]
        raise
    return module
