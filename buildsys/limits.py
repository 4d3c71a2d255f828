"""Bounds on what a recipe can make buildsys read, walk or allocate.

A recipe path can name an endless device (/dev/zero), a FIFO that blocks on
open, or a file far bigger than any model; a glob can cover the whole disk; a
`batch:` can ask for more memory than the machine has. Each limit here turns
one of those into a usage error (exit 2) before the work starts, instead of a
hang or a crash. The limits are far above what a real model or data set needs.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path

MiB = 1 << 20
GiB = 1 << 30

# ONNX protobufs cap at 2 GiB; external data and SavedModel variables may add some more.
MAX_MODEL_BYTES = 4 * GiB  # a model file, or all files of a SavedModel directory together
MAX_MODEL_FILES = 10_000  # files in a SavedModel directory
MAX_DATA_BYTES = 4 * GiB  # one .npy / .npz data file or labels file
MAX_IMAGE_BYTES = 256 * MiB  # one image file
MAX_TEXT_BYTES = 4 * MiB  # a recipe or a device profile
MAX_GLOB_MATCHES = 100_000  # files one `images:` glob may match
MAX_GLOB_ENTRIES = 1_000_000  # directory entries one glob may look at to find them
# An op holds its input and output, and a skip connection keeps a third tensor alive.
ACTIVATION_FACTOR = 3
# Keras/SavedModel shapes are known only at the inputs before TensorFlow traces (and
# Grappler crashes on oversized graphs); activations are commonly several times the input.
INPUT_FACTOR = 8

_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def size_text(n: int) -> str:
    """Bytes for humans: `4 GiB`, `1.5 MiB`, `512 bytes`."""
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", 1 << 10)):
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if value == int(value) or value >= 100 else f"{value:.1f} {unit}"
    return f"{n} bytes"


def kind_of(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def file_problem(path: Path | str, limit: int, what: str) -> str | None:
    """Why `path` cannot be read as a `what` file (not regular, too big); None if it can.

    A missing file is the caller's business (it has its own message for that).
    """
    try:
        st = os.stat(path)
    except OSError:
        return None
    return stat_problem(st, limit, what)


def stat_problem(st: os.stat_result, limit: int, what: str) -> str | None:
    """`file_problem` for a file already stat'ed."""
    if not stat.S_ISREG(st.st_mode):
        return f"is {kind_of(st.st_mode)}, not a regular file"
    if st.st_size > limit:
        return f"is {size_text(st.st_size)}, over the {size_text(limit)} limit for {what}"
    return None


def read_regular(path: Path, limit: int, what: str) -> bytes:
    """The bytes of a small regular file; ValueError (with the reason) for anything else.

    O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever;
    fstat after open judges the file actually opened, not one swapped in after a stat.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"it is {kind_of(st.st_mode)}, not a regular file")
        if st.st_size > limit:
            raise ValueError(f"it is {size_text(st.st_size)}, over the {size_text(limit)} limit for {what}")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:  # grew since fstat
        raise ValueError(f"it is over the {size_text(limit)} limit for {what}")
    return data


def physical_memory() -> int | None:
    """Total physical memory in bytes, or None where the system does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def itemsize(dtype: str) -> int:
    """Bytes per element of a numpy/TensorFlow dtype name; 4 for names numpy does not know."""
    import numpy as np

    try:
        return np.dtype(dtype).itemsize or 4
    except TypeError:
        return 4


def tensor_bytes(shape: Sequence[int], itemsize: int) -> int:
    n = itemsize
    for d in shape:
        n *= max(int(d), 0)
    return n


def memory_problem(tensors: Iterable[tuple[str, Sequence[int], int]], factor: int) -> str | None:
    """`needs about ... of memory ...` when `factor` x the largest of `tensors` (name, shape,
    itemsize) exceeds the machine's memory; None when it fits (or the memory is unknown).

    Past that point TensorFlow and the converters do not fail cleanly: they are
    killed by the kernel or crash with SIGSEGV after minutes of swapping.
    """
    memory = physical_memory()
    sized = [(tensor_bytes(shape, size), name, list(shape)) for name, shape, size in tensors]
    if not memory or not sized:
        return None
    biggest, name, shape = max(sized, key=lambda s: s[0])
    estimate = factor * biggest
    if estimate <= memory:
        return None
    return (
        f"needs about {size_text(estimate)} of memory ({factor} x its largest tensor "
        f"'{name}' {shape}, {size_text(biggest)}); this machine has {size_text(memory)}"
    )
