"""Sample sets from recipe data sources: globbing, seeded sampling, deterministic npz."""

from __future__ import annotations

import ast
import io
import os
import stat
import zipfile
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from buildsys.errors import InputError
from buildsys.globwalk import bounded_glob
from buildsys.limits import (
    MAX_DATA_BYTES,
    MAX_GLOB_ENTRIES,
    MAX_GLOB_MATCHES,
    MAX_IMAGE_BYTES,
    file_problem,
    stat_problem,
)
from buildsys.recipe.model import InputSource
from buildsys.stages.sources import recipe_at

if TYPE_CHECKING:
    import numpy as np

GLOB_CHARS = set("*?[")
# zip entries carry a timestamp; a fixed one keeps the npz bytes a function of the data
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
NPY_MAGIC = b"\x93NUMPY"
NPY_MAX_HEADER = 10_000  # numpy.load's default max_header_size
# bool, signed, unsigned, float: what a model input can be fed (text, records, objects cannot)
NUMERIC_KINDS = "biuf"
_KIND_NAMES = {
    "U": "text",
    "S": "bytes",
    "O": "Python objects",
    "c": "complex numbers",
    "M": "dates",
    "m": "time spans",
}
ARRAY_HINT = "save one (N, ...) array of numbers per model input, e.g. numpy.save(path, samples.astype('float32'))"


def source_files(src: InputSource) -> tuple[Path, ...]:
    if not src.reads_files:
        return ()
    if src.kind != "images":
        return (Path(src.pattern),)
    matches = bounded_glob(src.pattern, MAX_GLOB_MATCHES, MAX_GLOB_ENTRIES)
    return tuple(sorted(Path(m) for m in matches if _image_file(m)))


def _image_file(path: str) -> bool:
    """Folders and broken links a glob matches are skipped; a FIFO or device would hang the decoder: refused."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    if stat.S_ISDIR(st.st_mode):
        return False
    if problem := stat_problem(st, MAX_IMAGE_BYTES, "an image"):
        raise InputError(f"image {path} {problem}", hint="remove it from the data folder or narrow the glob")
    return True


def glob_base(src: InputSource) -> Path | None:
    """The folder image names are taken relative to; None for a single data file."""
    if src.kind != "images":
        return None
    parts = Path(src.pattern).parts
    fixed = []
    for part in parts:
        if GLOB_CHARS & set(part):
            break
        fixed.append(part)
    return Path(*fixed) if len(fixed) < len(parts) else Path(src.pattern).parent


def check_source(src: InputSource, key: tuple[str, ...], recipe_file: Path) -> None:
    """Plan-time: the files exist and a data file holds numbered samples (its header only)."""
    if not src.reads_files:
        return
    try:
        files = source_files(src)
    except InputError as exc:  # a glob past its limits, a FIFO among the images
        raise InputError(f"{recipe_at(recipe_file, key + (src.kind,))}: {exc.message}", hint=exc.hint) from None
    problem = file_problem(files[0], MAX_DATA_BYTES, "a data file") if src.kind != "images" else None
    if problem:
        raise InputError(
            f"{recipe_at(recipe_file, key + (src.kind,))}: '{src.written}' {problem}",
            hint="name a .npy/.npz file written with numpy.save / numpy.savez",
        )
    if not files or not files[0].is_file():
        what = "matches no files" if src.kind == "images" else "not found"
        raise InputError(
            f"{recipe_file}: {'.'.join(key)}.{src.kind}: '{src.written}' {what} ({src.pattern})",
            hint="paths and globs are relative to the recipe file; check the folder and the extension",
        )
    if src.kind != "images":
        descr, shape = data_header(src, recipe_file, key)
        if problem := array_problem(descr, shape):
            raise InputError(f"{recipe_at(recipe_file, key + (src.kind,))}: '{src.written}' {problem}", hint=ARRAY_HINT)


def array_problem(descr: Any, shape: tuple[int, ...]) -> str | None:
    """What makes an array (numpy dtype descr, shape) unusable as samples, or None."""
    if not isinstance(descr, str):
        names = ", ".join(str(f[0]) for f in descr if isinstance(f, (list, tuple)) and f)
        return f"holds records (a structured dtype with fields {names}), not an array of numbers"
    kind = descr.lstrip("<>|=")[:1]
    if kind not in NUMERIC_KINDS:
        return f"holds {_KIND_NAMES.get(kind, 'values that are not numbers')} (dtype {descr}), not numbers"
    if not shape:
        return "holds a single value (shape ()), not an (N, ...) array of samples"
    if shape[0] == 0:
        return f"holds no samples (shape {shape_text(shape)})"
    return None


def shape_text(shape: Any) -> str:
    """(4, 3, 64) as Python writes a shape, (16,) for one dimension; None dims as '?'."""
    dims = ["?" if d is None else str(d) for d in shape]
    return f"({dims[0]},)" if len(dims) == 1 else f"({', '.join(dims)})"


def data_header(src: InputSource, recipe_file: Path, key: tuple[str, ...]) -> tuple[Any, tuple[int, ...]]:
    """The dtype descr and shape of the .npy (or npz member) of the input source at `key`
    (`calibration.inputs.NAME`), from its header, without numpy."""
    path, name = Path(src.pattern), key[-1]
    try:
        if src.kind == "npy":
            with open(path, "rb") as fh:
                return read_npy_header(fh, path.stat().st_size)
        with zipfile.ZipFile(path) as zf:
            member = f"{src.key or name}.npy"
            if member not in zf.namelist():
                found = ", ".join(n.removesuffix(".npy") for n in zf.namelist()) or "none"
                raise InputError(
                    f"{recipe_at(recipe_file, key + ('npz',))}: '{src.written}' has no array '{member[:-4]}' (it has: {found})",
                    hint="set `key:` on this input source to the array's name",
                )
            with zf.open(member) as fh:
                return read_npy_header(fh, zf.getinfo(member).file_size)
    except (OSError, ValueError, SyntaxError, RecursionError, NotImplementedError, zipfile.BadZipFile) as exc:
        raise InputError(
            f"{recipe_at(recipe_file, key + (src.kind,))}: cannot read '{src.written}': {exc}",
            hint="write it with numpy.save / numpy.savez",
        ) from None


def read_npy_header(fh: IO[bytes], file_size: int) -> tuple[Any, tuple[int, ...]]:
    """(descr, shape) of the .npy format's header: a magic string, a length, a dict literal."""
    magic = fh.read(8)
    if magic[:6] != NPY_MAGIC:
        raise ValueError("not a .npy file (no NUMPY header)")
    width = 2 if magic[6] == 1 else 4
    size = int.from_bytes(fh.read(width), "little")
    if size > NPY_MAX_HEADER:  # numpy.load refuses these too; literal_eval must not chew on megabytes
        raise ValueError(f"the .npy header is {size} bytes long (numpy reads at most {NPY_MAX_HEADER})")
    try:
        header = ast.literal_eval(fh.read(size).decode("latin-1"))
    except (ValueError, SyntaxError, RecursionError, MemoryError):
        header = None  # reported below: what matters is that it is not numpy's dict
    shape = header.get("shape") if isinstance(header, dict) else None
    if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise ValueError("damaged .npy header (not numpy's {'descr': ..., 'shape': ...})")
    descr = header.get("descr")
    if not isinstance(descr, (str, list)):
        raise ValueError("damaged .npy header (no dtype)")
    needed = _data_bytes(descr, shape)
    if needed is not None and file_size - (8 + width + size) < needed:
        raise ValueError(f"the file is cut short: shape {shape_text(shape)} needs {needed} bytes of data")
    return descr, shape


def _data_bytes(descr: Any, shape: tuple[int, ...]) -> int | None:
    """Bytes the array's data takes, for plain numeric dtypes ('<f4': 4 per value)."""
    if not isinstance(descr, str) or not descr[2:].isdigit():
        return None
    count = 1
    for dim in shape:
        count *= dim
    return count * int(descr[2:])


def count(src: InputSource, name: str) -> int:
    if src.kind == "images":
        return len(source_files(src))
    return len(_array(src, name, mmap=True))


def choose(available: int, wanted: int, seed: int) -> np.ndarray:
    """Seeded sample indices, ascending, so the same seed picks the same files."""
    import numpy as np

    if available <= wanted:
        return np.arange(available)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(available, size=wanted, replace=False))


def materialise(src: InputSource, name: str, indices: np.ndarray, layout: str = "nhwc") -> np.ndarray:
    import numpy as np

    if src.kind == "images":
        from buildsys.tflow.images import load_images

        files = source_files(src)
        picked = [files[i] for i in indices]
        images = load_images(picked, src.resize, src.color, src.scale, src.mean, src.std)
        return np.ascontiguousarray(images.transpose(0, 3, 1, 2)) if layout == "nchw" else images
    return np.ascontiguousarray(_array(src, name, mmap=True)[indices]).astype(np.float32)


def _array(src: InputSource, name: str, mmap: bool) -> np.ndarray:
    import numpy as np

    path = Path(src.pattern)
    try:
        if src.kind == "npy":
            arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        else:
            with np.load(path, allow_pickle=False) as npz:
                key = src.key or name
                if key not in npz.files:
                    raise InputError(
                        f"{path}: no array '{key}' in the npz (it has: {', '.join(npz.files) or 'none'})",
                        hint="set `key:` on this input source to the array's name",
                    )
                arr = npz[key]
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise InputError(f"cannot read {path}: {exc}", hint="write it with numpy.save / numpy.savez") from None
    if problem := array_problem(arr.dtype.descr if arr.dtype.names else arr.dtype.str, arr.shape):
        raise InputError(f"{path}: {problem}", hint=ARRAY_HINT)
    return arr


def index_doc(sources: dict[str, InputSource], indices: np.ndarray, available: int) -> dict:
    """Which samples a set holds: positions in its sources and, for images, the files."""
    files = {}
    for name, src in sorted(sources.items()):
        if src.kind == "images":
            listed, base = source_files(src), glob_base(src)
            files[name] = [listed[i].relative_to(base).as_posix() for i in indices]
    return {"available": int(available), "indices": [int(i) for i in indices], "files": files}


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    import numpy as np

    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            zf.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_EPOCH), buf.getvalue())


def read_npz(path: Path) -> dict[str, np.ndarray]:
    import numpy as np

    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}
