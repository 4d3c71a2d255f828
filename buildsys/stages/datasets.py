"""Sample sets from recipe data sources: globbing, seeded sampling, deterministic npz."""

from __future__ import annotations

import io
import os
import stat
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    import numpy as np

GLOB_CHARS = set("*?[")
# zip entries carry a timestamp; a fixed one keeps the npz bytes a function of the data
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def source_files(src: InputSource) -> tuple[Path, ...]:
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


def check_source(src: InputSource, where: str, recipe_file: Path) -> None:
    from buildsys.stages.sources import recipe_at

    try:
        files = source_files(src)
    except InputError as exc:  # a glob past its limits, a FIFO among the images
        raise InputError(f"{recipe_at(recipe_file, (*where.split('.'), src.kind))}: {exc.message}", hint=exc.hint) from None
    problem = file_problem(files[0], MAX_DATA_BYTES, "a data file") if src.kind != "images" else None
    if problem:
        raise InputError(
            f"{recipe_at(recipe_file, (*where.split('.'), src.kind))}: '{src.written}' {problem}",
            hint="name a .npy/.npz file written with numpy.save / numpy.savez",
        )
    if not files or not files[0].is_file():
        what = "matches no files" if src.kind == "images" else "not found"
        raise InputError(
            f"{recipe_file}: {where}.{src.kind}: '{src.written}' {what} ({src.pattern})",
            hint="paths and globs are relative to the recipe file; check the folder and the extension",
        )


def count(src: InputSource, name: str) -> int:
    if src.kind == "images":
        return len(source_files(src))
    return len(_array(src, name, mmap=True))


def choose(available: int, wanted: int, seed: int) -> "np.ndarray":
    """Seeded sample indices, ascending, so the same seed picks the same files."""
    import numpy as np

    if available <= wanted:
        return np.arange(available)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(available, size=wanted, replace=False))


def materialise(src: InputSource, name: str, indices: "np.ndarray", layout: str = "nhwc") -> "np.ndarray":
    import numpy as np

    if src.kind == "images":
        from buildsys.tflow.images import load_images

        files = source_files(src)
        picked = [files[i] for i in indices]
        images = load_images(picked, src.resize, src.color, src.scale, src.mean, src.std)
        return np.ascontiguousarray(images.transpose(0, 3, 1, 2)) if layout == "nchw" else images
    return np.ascontiguousarray(_array(src, name, mmap=True)[indices]).astype(np.float32)


def _array(src: InputSource, name: str, mmap: bool) -> "np.ndarray":
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
    if arr.ndim < 1 or arr.shape[0] == 0:
        raise InputError(f"{path}: expected an (N, ...) array of samples, got shape {arr.shape}")
    return arr


def index_doc(sources: dict[str, InputSource], indices: "np.ndarray", available: int) -> dict:
    """Which samples a set holds: positions in its sources and, for images, the files."""
    files = {}
    for name, src in sorted(sources.items()):
        if src.kind == "images":
            listed, base = source_files(src), glob_base(src)
            files[name] = [listed[i].relative_to(base).as_posix() for i in indices]
    return {"available": int(available), "indices": [int(i) for i in indices], "files": files}


def write_npz(path: Path, arrays: dict[str, "np.ndarray"]) -> None:
    import numpy as np

    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            zf.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_EPOCH), buf.getvalue())


def read_npz(path: Path) -> dict[str, "np.ndarray"]:
    import numpy as np

    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}
