"""validate.labels: class ids for the validation samples, checked and picked.

The file holds one id per sample of the validation *source* (every sorted image
file or array row), not per drawn sample: the user labels their data once, and
buildsys picks the ids of the samples it drew, by the positions val.index.json
records.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from buildsys.errors import InputError

HINT = "save one integer class id per sample of the validation source, in its order: numpy.save(path, ids)"


def picked_labels(path: Path, index_file: Path) -> tuple[Any, int]:
    """The class ids of the drawn validation samples, in val.npz's order, and the
    highest id in the file (which must fit the model, whichever samples were drawn)."""
    import numpy as np

    ids = _read(path)
    index = json.loads(index_file.read_text("utf-8"))
    if len(ids) != index["available"]:
        raise InputError(
            f"{path}: {len(ids)} labels for a validation source of {index['available']} samples",
            hint=HINT,
        )
    return ids[np.asarray(index["indices"], dtype=np.int64)], int(ids.max())


def _read(path: Path) -> Any:
    import numpy as np

    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise InputError(f"cannot read the labels {path}: {exc}", hint=HINT) from None
    if not isinstance(arr, np.ndarray) or arr.ndim not in (1, 2) or (arr.ndim == 2 and arr.shape[1] != 1):
        shape = getattr(arr, "shape", "?")
        raise InputError(f"{path}: labels must be an (N,) array of class ids, got shape {shape}", hint=HINT)
    arr = arr.reshape(-1)
    if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        arr = arr.astype(np.int64)  # ids saved as floats are fine when they are whole
    if arr.dtype.kind not in "iu":
        raise InputError(f"{path}: labels must be integer class ids, got {arr.dtype}", hint=HINT)
    if len(arr) and arr.min() < 0:
        at = int(np.argmax(arr < 0))
        raise InputError(f"{path}: label {at} is {int(arr[at])}; class ids start at 0", hint=HINT)
    return arr.astype(np.int64)
