"""Image files -> a float32 NHWC batch, preprocessed exactly as the recipe says.

Decoding and resizing use TensorFlow's own ops so calibration sees the same
pixels as a TF training pipeline would; the arithmetic after that is numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from buildsys.errors import InputError

CHANNELS = {"rgb": 3, "bgr": 3, "gray": 1}


def load_images(
    files: list[Path],
    resize: tuple[int, int] | None,
    color: str,
    scale: float,
    mean: tuple[float, ...],
    std: tuple[float, ...],
) -> np.ndarray:
    """(N, H, W, C) float32: decode, resize to (h, w), bgr flip, x*scale, (x-mean)/std."""
    if color not in CHANNELS:
        raise ValueError(f"unknown color {color!r}; expected one of {tuple(CHANNELS)}")
    if not files:
        raise InputError("no image files to load", hint="check the calibration file pattern")
    channels = CHANNELS[color]
    size = None if resize is None else _size(resize)
    images = [_decode(Path(f), channels, size) for f in files]
    if resize is None:
        _check_same_size(files, images)
    batch = np.stack(images).astype(np.float32)
    if color == "bgr":
        batch = batch[..., ::-1]
    batch = batch * np.float32(scale)
    batch = (batch - _per_channel(mean, channels, "mean")) / _per_channel(std, channels, "std")
    return np.ascontiguousarray(batch, dtype=np.float32)


def _decode(path: Path, channels: int, resize: tuple[int, int] | None) -> np.ndarray:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read image {path}: {exc.strerror}", path=str(path)) from None
    try:
        # dtype=uint8 puts 16-bit PNGs on the same 0..255 scale as 8-bit ones.
        image = tf.io.decode_image(data, channels=channels, dtype=tf.uint8, expand_animations=False)
        if resize is not None:
            image = tf.image.resize(image, resize, method="bilinear", antialias=False)
        return image.numpy().astype(np.float32)
    except tf.errors.OpError as exc:
        reason = exc.message.splitlines()[0] if exc.message else type(exc).__name__
        raise InputError(
            f"cannot decode image {path}: {reason}", hint="replace or remove the file", path=str(path)
        ) from None


def _size(resize: Sequence[int]) -> tuple[int, int]:
    if len(resize) != 2 or any(int(d) < 1 for d in resize):
        raise InputError(f"resize must be [height, width] with positive sizes, got {list(resize)}")
    return int(resize[0]), int(resize[1])


def _check_same_size(files: list[Path], images: list[np.ndarray]) -> None:
    first = images[0].shape[:2]
    for path, image in zip(files, images):
        if image.shape[:2] != first:
            raise InputError(
                f"image {path} is {image.shape[1]}x{image.shape[0]} (WxH) but {files[0]} is {first[1]}x{first[0]}",
                hint="set `resize:` so all images get the same size",
                path=str(path),
            )


def _per_channel(values: Sequence[float], channels: int, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float32).reshape(-1)
    if arr.size not in (1, channels):
        raise InputError(f"{what} needs 1 or {channels} values for this color mode, got {arr.size}")
    if what == "std" and np.any(arr == 0):
        raise InputError("std must not contain 0")
    return arr
