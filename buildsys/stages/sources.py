"""Source model files: which files a source is, and cheap checks that need no TensorFlow."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from buildsys.errors import InputError
from buildsys.limits import MAX_MODEL_BYTES, MAX_MODEL_FILES, file_problem, size_text
from buildsys.recipe.model import Source
from buildsys.stages.base import Input

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ZIP_MAGIC = b"PK\x03\x04"
# protobuf writes fields in number order; ModelProto field 1 (ir_version, a varint) comes first
ONNX_FIRST_BYTE = b"\x08"


def source_files(source: Source) -> tuple[Path, ...]:
    """Every file the source consists of (a SavedModel is a directory, a darknet model a cfg
    and its weights, a checkpoint its .meta, .index and data shards, a PyTorch factory its code)."""
    if source.path.is_dir():
        return tuple(sorted(p for p in _tree(source.path) if p.is_file()))
    if source.format == "tf1" and source.option("form") == "checkpoint":
        from buildsys.tflow.tf1files import checkpoint_files

        return checkpoint_files(source.path)
    main = (source.path,) + tuple(path for _, path in source.parts)
    if source.option("code"):
        return main + python_files(source)
    return main


def model_files(source: Source) -> tuple[Path, ...]:
    """The source's files without a PyTorch model's code: what `sha256:` pins."""
    code = set(python_files(source)) if source.option("code") else set()
    return tuple(f for f in source_files(source) if f not in code)


def source_input(source: Source) -> Input:
    """The source's files as a stage input: one file enters the key by content alone, several
    by their names relative to the folder they share."""
    files = source_files(source)
    if source.path.is_dir():
        return Input("source", files, source.path)
    if len(files) == 1:
        return Input("source", files)
    return Input("source", files, Path(os.path.commonpath([f.parent for f in files])))


def python_files(source: Source) -> tuple[Path, ...]:
    """The code a PyTorch factory or pickled module is built from: the .py files of the factory's
    top-level package (or every package under `code` for a pickled module), so editing it rebuilds."""
    code = Path(source.option("code"))
    factory = source.option("factory")
    top = code / factory.split(":")[0].split(".")[0] if factory else code
    if top.with_suffix(".py").is_file():
        return (top.with_suffix(".py"),)
    if not top.is_dir():
        return ()
    return tuple(sorted(p for p in _tree(top) if p.suffix == ".py" and p.is_file() and "__pycache__" not in p.parts))


def _tree(folder: Path) -> list[Path]:
    """Everything under `folder`, refused past MAX_MODEL_FILES: `saved_model: /` must not walk the disk."""
    found = []
    for path in folder.rglob("*"):
        found.append(path)
        if len(found) > MAX_MODEL_FILES:
            raise InputError(
                f"{folder} holds more than {MAX_MODEL_FILES:,} files and folders: not a model's folder",
                hint="name the folder that holds saved_model.pb and variables/, or a PyTorch model's code",
            )
    return found


def check_exists(source: Source, recipe_file: Path) -> None:
    key = source_key(source)
    for path in source_files(source) if source.format != "saved_model" else (source.path,):
        if not path.exists():
            raise _missing(source, path, recipe_file)
    if source.format == "saved_model" and not source.path.is_dir():
        raise InputError(
            f"{recipe_file}: source.saved_model must be a SavedModel directory: {source.path}",
            hint="use source.keras for .keras/.h5 files and source.tflite for .tflite files",
        )
    if source.format != "saved_model" and source.path.is_dir():
        raise InputError(
            f"{recipe_file}: source.{dotted_key(key)} is a directory: {source.path}",
            hint="if it is a TF SavedModel, write it as source.saved_model",
        )
    check_size(source, recipe_file)


def _missing(source: Source, path: Path, recipe_file: Path) -> InputError:
    part = next((name for name, p in source.parts if p == path), None)
    key = ("source", source.format, part) if part else source_key(source)
    if part or path == source.path:
        hint = f"source.{dotted_key(key)} names it, relative to the recipe file"
    else:  # a checkpoint's .meta/.index/.data shards, a package's module
        hint = f"a {source.format} source '{source.written}' is made of this file too; restore it beside the others"
    return InputError(f"{recipe_at(recipe_file, key)}: source model not found: {path}", hint=hint)


def source_key(source: Source) -> tuple[str, ...]:
    """Where the recipe names the source's main file: ("source", "onnx"), ("source", "darknet", "cfg")."""
    form = source.option("form")
    if source.format == "darknet":
        return ("source", "darknet", "cfg")
    if source.format == "pytorch" and source.option("factory"):
        return ("source", "pytorch", "weights")
    return ("source", source.format, form) if form else ("source", source.format)


def dotted_key(key: tuple[str, ...]) -> str:
    return ".".join(key[1:])


def check_size(source: Source, recipe_file: Path) -> None:
    """Refuse devices, FIFOs and sockets (reading them never ends or blocks) and files past
    MAX_MODEL_BYTES, before anything hashes or loads them."""
    key = source_key(source)
    if source.path.is_dir():
        try:
            size = sum(f.stat().st_size for f in source_files(source))
        except InputError as exc:
            raise InputError(f"{recipe_at(recipe_file, key)}: {exc.message}", hint=exc.hint) from None
        over = f"holds {size_text(size)}, over the {size_text(MAX_MODEL_BYTES)} limit for models"
        problem = over if size > MAX_MODEL_BYTES else None
    else:
        problem = next(filter(None, (file_problem(f, MAX_MODEL_BYTES, "models") for f in source_files(source))), None)
    if problem:
        raise InputError(
            f"{recipe_at(recipe_file, key)}: '{source.written}' {problem} ({source.path})",
            hint="name the model file itself (a regular file) in the recipe",
        )


def recipe_at(recipe_file: Path, key: tuple[str | int, ...]) -> str:
    """`recipes/r.yaml:5: source.onnx`, for a problem found after the recipe loaded (a loaded
    recipe keeps no positions: the file is parsed again, only on the way to an error)."""
    from buildsys.documents.files import absolute, parse_file, shown_path
    from buildsys.documents.yamlmarks import dotted

    shown = shown_path(absolute(recipe_file), absolute(Path.cwd()))
    values = parse_file(recipe_file, shown).values
    # `pytorch: net.pt2` is the short form of `pytorch: {file: net.pt2}`: the nearest key written
    found = next((k for k in (key[:n] for n in range(len(key), 0, -1)) if k in values), key)
    pos = values.get(found)
    return f"{shown}:{pos[0]}: {dotted(found)}" if pos else f"{shown}: {dotted(key)}"


def check_format(source: Source) -> None:
    """Reject files that cannot be the declared format before any heavy loading."""
    FORMAT_CHECKS[source.format](source)


def _saved_model(source: Source) -> None:
    if not ((source.path / "saved_model.pb").is_file() or (source.path / "saved_model.pbtxt").is_file()):
        raise _corrupt(source.path, "no saved_model.pb in the directory")


def _head(path: Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(8)  # not read_bytes(): a model may be gigabytes


def _onnx(source: Source) -> None:
    if _head(source.path)[:1] != ONNX_FIRST_BYTE:
        raise _corrupt(source.path, "not an ONNX model (it does not start with the ir_version field)")


def _tflite(source: Source) -> None:
    if _head(source.path)[4:8] != b"TFL3":
        raise _corrupt(source.path, "not a TFLite flatbuffer (no TFL3 identifier)")


def _keras(source: Source) -> None:
    path = source.path
    expected = HDF5_MAGIC if path.suffix.lower() in (".h5", ".hdf5") else ZIP_MAGIC
    if not _head(path).startswith(expected):
        kind = "an HDF5 (.h5)" if expected == HDF5_MAGIC else "a Keras v3 (.keras zip)"
        raise _corrupt(path, f"not {kind} file")
    why = _hdf5_damage(path) if expected == HDF5_MAGIC else _zip_damage(path)
    if why:
        raise _corrupt(path, why)


def _pytorch(source: Source) -> None:
    from buildsys.torchsrc.files import check_file

    check_file(source.path, source.option("form"))


def _tf1(source: Source) -> None:
    from buildsys.tflow import tf1

    if source.option("form") == "graph":
        tf1.check_graph_file(source.path)
    else:
        tf1.check_checkpoint(source.path)


def _darknet(source: Source) -> None:
    from buildsys.darknet.weights import check_files

    check_files(source.path, source.required_part("weights"))


FORMAT_CHECKS = {
    "onnx": _onnx,
    "pytorch": _pytorch,
    "saved_model": _saved_model,
    "keras": _keras,
    "tf1": _tf1,
    "darknet": _darknet,
    "tflite": _tflite,
}


def _zip_damage(path: Path) -> str | None:
    if why := zip_damage(path):
        return why
    with zipfile.ZipFile(path) as zf:
        if "config.json" not in zf.namelist():
            return "no config.json in the archive: not a Keras v3 model"
    return None


def zip_damage(path: Path) -> str | None:
    """Why a zip archive is unreadable (bad directory, a member failing its CRC), else None."""
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        return f"damaged zip archive ({exc}); the file may be truncated"
    return f"damaged zip member {bad}" if bad else None


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
