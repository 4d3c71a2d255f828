"""Source model files: which files a source is, and cheap checks that need no TensorFlow."""

from __future__ import annotations

import zipfile
from pathlib import Path

from buildsys.errors import InputError
from buildsys.limits import MAX_MODEL_BYTES, MAX_MODEL_FILES, file_problem, size_text
from buildsys.recipe.model import Source

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ZIP_MAGIC = b"PK\x03\x04"
# protobuf writes fields in number order; ModelProto field 1 (ir_version, a varint) comes first
ONNX_FIRST_BYTE = b"\x08"


def source_files(source: Source) -> tuple[Path, ...]:
    """Every file the source consists of (a SavedModel is a directory)."""
    if source.path.is_dir():
        return tuple(sorted(p for p in _tree(source.path) if p.is_file()))
    return (source.path,)


def _tree(folder: Path) -> list[Path]:
    """Everything under `folder`, refused past MAX_MODEL_FILES: `saved_model: /` must not walk the disk."""
    found = []
    for path in folder.rglob("*"):
        found.append(path)
        if len(found) > MAX_MODEL_FILES:
            raise InputError(
                f"{folder} holds more than {MAX_MODEL_FILES:,} files and folders: not a SavedModel directory",
                hint="name the folder that holds saved_model.pb and variables/",
            )
    return found


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
    check_size(source, recipe_file)


def check_size(source: Source, recipe_file: Path) -> None:
    """Refuse devices, FIFOs and sockets (reading them never ends or blocks) and files past
    MAX_MODEL_BYTES, before anything hashes or loads them."""
    key = ("source", source.format)
    if source.path.is_dir():
        try:
            size = sum(f.stat().st_size for f in source_files(source))
        except InputError as exc:
            raise InputError(f"{recipe_at(recipe_file, key)}: {exc.message}", hint=exc.hint) from None
        problem = f"holds {size_text(size)}, over the {size_text(MAX_MODEL_BYTES)} limit for models"
        problem = problem if size > MAX_MODEL_BYTES else None
    else:
        problem = file_problem(source.path, MAX_MODEL_BYTES, "models")
    if problem:
        raise InputError(
            f"{recipe_at(recipe_file, key)}: '{source.written}' {problem} ({source.path})",
            hint="name the model file itself (a regular file) in the recipe",
        )


def recipe_at(recipe_file: Path, key: tuple[str, ...]) -> str:
    """`recipes/r.yaml:5: source.onnx`, for a problem found after the recipe loaded (a loaded
    recipe keeps no positions: the file is parsed again, only on the way to an error)."""
    from buildsys.recipe.loader import absolute, parse_file, shown_path
    from buildsys.recipe.yamlmarks import dotted

    shown = shown_path(absolute(recipe_file), absolute(Path.cwd()))
    pos = parse_file(recipe_file, shown).values.get(key)
    return f"{shown}:{pos[0]}: {dotted(key)}" if pos else f"{shown}: {dotted(key)}"


def check_format(source: Source) -> None:
    """Reject files that cannot be the declared format before any heavy loading."""
    path = source.path
    if source.format == "saved_model":
        if not ((path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file()):
            raise _corrupt(path, "no saved_model.pb in the directory")
        return
    with open(path, "rb") as fh:
        head = fh.read(8)  # not read_bytes(): a model may be gigabytes
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
