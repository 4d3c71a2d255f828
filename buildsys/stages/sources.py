"""Source model files: which files a source is, and cheap checks that need no TensorFlow."""

from __future__ import annotations

import zipfile
from pathlib import Path

from buildsys.errors import InputError
from buildsys.recipe.model import Source

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ZIP_MAGIC = b"PK\x03\x04"
# protobuf writes fields in number order; ModelProto field 1 (ir_version, a varint) comes first
ONNX_FIRST_BYTE = b"\x08"


def source_files(source: Source) -> tuple[Path, ...]:
    """Every file the source consists of (a SavedModel is a directory)."""
    if source.path.is_dir():
        return tuple(sorted(p for p in source.path.rglob("*") if p.is_file()))
    return (source.path,)


def check_exists(source: Source, recipe_file: Path) -> None:
    if not source.path.exists():
        raise InputError(
            f"{recipe_file}: source model not found: {source.path}",
            hint=f"source.{source.format} is '{source.written}', relative to the recipe file",
        )
    if source.format == "saved_model" and not source.path.is_dir():
        raise InputError(
            f"{recipe_file}: source.saved_model must be a SavedModel directory: {source.path}",
            hint="use source.keras for .keras/.h5 files and source.tflite for .tflite files",
        )
    if source.format != "saved_model" and source.path.is_dir():
        raise InputError(
            f"{recipe_file}: source.{source.format} is a directory: {source.path}",
            hint="if it is a TF SavedModel, write it as source.saved_model",
        )


def check_format(source: Source) -> None:
    """Reject files that cannot be the declared format before any heavy loading."""
    path = source.path
    if source.format == "saved_model":
        if not ((path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file()):
            raise _corrupt(path, "no saved_model.pb in the directory")
        return
    head = path.read_bytes()[:8] if path.stat().st_size else b""
    if source.format == "onnx" and head[:1] != ONNX_FIRST_BYTE:
        raise _corrupt(path, "not an ONNX model (it does not start with the ir_version field)")
    if source.format == "tflite" and head[4:8] != b"TFL3":
        raise _corrupt(path, "not a TFLite flatbuffer (no TFL3 identifier)")
    if source.format == "keras":
        expected = HDF5_MAGIC if path.suffix.lower() in (".h5", ".hdf5") else ZIP_MAGIC
        if not head.startswith(expected):
            kind = "an HDF5 (.h5)" if expected == HDF5_MAGIC else "a Keras v3 (.keras zip)"
            raise _corrupt(path, f"not {kind} file")
        why = _hdf5_damage(path) if expected == HDF5_MAGIC else _zip_damage(path)
        if why:
            raise _corrupt(path, why)


def _zip_damage(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
            names = set(zf.namelist())
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        return f"damaged zip archive ({exc}); the file may be truncated"
    if bad:
        return f"damaged zip member {bad}"
    if "config.json" not in names:
        return "no config.json in the archive: not a Keras v3 model"
    return None


def _hdf5_damage(path: Path) -> str | None:
    """A truncated HDF5 file is shorter than the end-of-file address its superblock records."""
    with open(path, "rb") as fh:
        sb = fh.read(128)
    version = sb[8] if len(sb) > 8 else -1
    if version in (0, 1):
        offsets = sb[13]
        start = 24 + (4 if version == 1 else 0) + 2 * offsets  # skip base and free-space addresses
    elif version in (2, 3):
        offsets = sb[9]
        start = 12 + 2 * offsets  # skip base and superblock-extension addresses
    else:
        return None  # unknown superblock: let the loader judge
    if offsets not in (2, 4, 8) or len(sb) < start + offsets:
        return "damaged HDF5 superblock"
    eof = int.from_bytes(sb[start : start + offsets], "little")
    size = path.stat().st_size
    if eof > size:
        return f"truncated: the HDF5 superblock says {eof} bytes, the file has {size}"
    return None


def _corrupt(path: Path, why: str) -> InputError:
    return InputError(
        f"corrupt or wrong model file: {path}: {why}",
        hint="re-export the model, or check that the recipe names the right file and format",
    )
