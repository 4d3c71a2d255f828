"""The files of a TF1 checkpoint, found by its prefix without importing TensorFlow (plans list them)."""

from __future__ import annotations

import glob
import re
from pathlib import Path

from buildsys.errors import InputError

SAVER_HINT = "buildsys needs the .meta graph written by tf.compat.v1.train.Saver next to the .index and .data files"
_SHARD = re.compile(r"\.data-(\d{5})-of-(\d{5})$")
_CHECKPOINT_PART = re.compile(r"\.(meta|index|data-\d{5}-of-\d{5})$")


def checkpoint_files(prefix: Path) -> tuple[Path, ...]:
    """The .meta, the .index and every data shard of the checkpoint `prefix`, in that order."""
    prefix = Path(prefix)
    meta, index = beside(prefix, ".meta"), beside(prefix, ".index")
    if not meta.is_file() and _CHECKPOINT_PART.search(prefix.name):
        stem = _CHECKPOINT_PART.sub("", prefix.name)
        raise InputError(
            f"{prefix} is one file of a checkpoint; name the checkpoint by its prefix",
            hint=f"write `checkpoint: {prefix.with_name(stem)}`",
            path=str(prefix),
        )
    if not meta.is_file():
        raise InputError(f"checkpoint {prefix}: {meta.name} is missing", hint=SAVER_HINT, path=str(meta))
    if not index.is_file():
        raise InputError(f"checkpoint {prefix}: {index.name} is missing", hint=SAVER_HINT, path=str(index))
    return (meta, index, *_data_shards(prefix))


def beside(prefix: Path, suffix: str) -> Path:
    return prefix.with_name(prefix.name + suffix)


def _data_shards(prefix: Path) -> list[Path]:
    found = {}
    for path in prefix.parent.glob(glob.escape(prefix.name) + ".data-*-of-*"):
        match = _SHARD.search(path.name)
        if match and path.name[: match.start()] == prefix.name:
            found[(int(match.group(1)), int(match.group(2)))] = path
    totals = sorted({total for _, total in found})
    if not totals:
        raise InputError(
            f"checkpoint {prefix}: no data file ({prefix.name}.data-00000-of-00001) found",
            hint=SAVER_HINT,
            path=str(prefix),
        )
    if len(totals) > 1:
        raise InputError(
            f"checkpoint {prefix}: data shards of two different saves (of {totals[0]} and of {totals[-1]})",
            hint="keep only the shards of the save the .index belongs to",
            path=str(prefix),
        )
    total = totals[0]
    for shard in range(total):
        if (shard, total) not in found:
            name = f"{prefix.name}.data-{shard:05d}-of-{total:05d}"
            raise InputError(
                f"checkpoint {prefix}: data shard {shard + 1} of {total} ({name}) is missing",
                hint="copy every .data-* file of the checkpoint",
                path=str(prefix.with_name(name)),
            )
    return [found[(shard, total)] for shard in range(total)]
