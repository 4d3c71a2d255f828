"""Build the offline "shapes" example: a tiny CNN classifying circle/square/triangle.

Everything (images, model, calibration data) is generated from fixed seeds so the
example needs no downloads and rerunning the script reproduces the same files.

    python examples/shapes/make_example.py
"""

import os
import time
from pathlib import Path

# Quiet TF's start-up banner; must be set before tensorflow is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

HERE = Path(__file__).resolve().parent
CLASSES = ("circle", "square", "triangle")
SIZE = 64

# Distinct seeds so train, test, calibration and validation images never coincide.
SEED_TRAIN, SEED_TEST, SEED_CALIB, SEED_VAL, SEED_KERAS = 1, 2, 3, 4, 5
N_TRAIN, N_TEST, N_CALIB, N_VAL, N_CALIB_NPY = 5000, 600, 64, 32, 16
EPOCHS, BATCH, LEARNING_RATE = 10, 32, 3e-3

# Noise amplitude in uint8 levels: keeps images from being perfectly flat, as
# real ones never are, yet small enough that the PNGs compress (1.5 MB budget).
NOISE_LEVELS = 2
MIN_CONTRAST = 0.35  # mean |shape - background| per channel, in [0, 1]


# --------------------------------------------------------------------------- images

def _contrasting_colours(rng):
    """Background and shape colours far enough apart that the shape is visible."""
    while True:
        bg, fg = rng.uniform(0.0, 1.0, size=(2, 3))
        if np.abs(bg - fg).mean() >= MIN_CONTRAST:
            return bg, fg


def _pixel_grid():
    # Pixel centres, so shapes are symmetric around their nominal centre.
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64) + 0.5
    return xs, ys


def _circle_mask(xs, ys, cx, cy, size, rng):
    r = size / 2
    return (xs - cx) ** 2 + (ys - cy) ** 2 <= r * r


def _square_mask(xs, ys, cx, cy, size, rng):
    h = size / 2
    return (np.abs(xs - cx) <= h) & (np.abs(ys - cy) <= h)


def _triangle_mask(xs, ys, cx, cy, size, rng):
    # Equilateral triangle inscribed in the circle of diameter `size`, rotated
    # by up to +-30 degrees so it is not always "pointing up".
    angle = -np.pi / 2 + rng.uniform(-np.pi / 6, np.pi / 6)
    corners = angle + np.array([0.0, 2.0, 4.0]) * np.pi / 3
    px = cx + size / 2 * np.cos(corners)
    py = cy + size / 2 * np.sin(corners)
    # Inside iff on the same side of all three edges (sign of the cross products).
    sides = [
        (px[(i + 1) % 3] - px[i]) * (ys - py[i]) - (py[(i + 1) % 3] - py[i]) * (xs - px[i])
        for i in range(3)
    ]
    return np.all([s >= 0 for s in sides], axis=0) | np.all([s <= 0 for s in sides], axis=0)


# Indexed by class. Only the triangle draws from `rng` (its rotation), so the
# random stream, and hence every image, depends on the class sequence.
MASKS = (_circle_mask, _square_mask, _triangle_mask)


def draw_shape(rng, cls):
    """One SIZE x SIZE x 3 uint8 image of class index `cls`."""
    bg, fg = _contrasting_colours(rng)
    size = rng.uniform(15.0, 45.0)
    # Keep the whole shape on the canvas (a square's corners reach size/2 out).
    margin = size / 2 + 1
    cx, cy = rng.uniform(margin, SIZE - margin, size=2)
    xs, ys = _pixel_grid()
    mask = MASKS[cls](xs, ys, cx, cy, size, rng)
    img = np.where(mask[..., None], fg, bg) * 255.0
    img += rng.integers(-NOISE_LEVELS, NOISE_LEVELS + 1, size=img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def make_dataset(seed, n):
    """`n` uint8 images with balanced, shuffled labels, fully determined by `seed`."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(CLASSES))
    images = np.stack([draw_shape(rng, c) for c in labels])
    return images, labels


def to_float(images):
    # The model's contract: float32 NHWC in [0, 1]; scaling is the caller's job.
    return images.astype(np.float32) / 255.0


# --------------------------------------------------------------------------- model

def build_model():
    # Explicit layer names keep the saved files stable no matter how many models
    # this process has built (Keras auto-names are global counters).
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = inputs
    for i, filters in enumerate((8, 16, 32), start=1):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same",
                                activation="relu", name=f"conv{i}")(x)
    # Max rather than average pooling: "is there a corner / straight edge anywhere"
    # is what separates the classes, and averaging dilutes it by shape size and
    # area. With average pooling this net stalled at 75-86% in the same time budget.
    x = keras.layers.GlobalMaxPooling2D(name="pool")(x)
    outputs = keras.layers.Dense(len(CLASSES), activation="softmax", name="scores")(x)
    return keras.Model(inputs, outputs, name="shapes")


def train(model, x, y):
    # Decaying to zero lets the last epochs fine-tune instead of bouncing around,
    # which matters with only a few epochs and no checkpoint selection.
    steps = EPOCHS * -(-len(x) // BATCH)
    schedule = keras.optimizers.schedules.CosineDecay(LEARNING_RATE, steps)
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    start = time.perf_counter()
    model.fit(x, y, epochs=EPOCHS, batch_size=BATCH, shuffle=True, verbose=2)
    return time.perf_counter() - start


def inference_copy(model):
    """Same weights, no optimizer state or compile config: half the file size."""
    clean = build_model()
    clean.set_weights(model.get_weights())
    return clean


def save_and_check(model, x_probe):
    """Save in both formats and make sure each reloads to the same predictions."""
    reference = model.predict(x_probe, verbose=0)
    for name in ("model.keras", "model.h5"):
        path = HERE / name
        model.save(path)
        reloaded = keras.models.load_model(path)
        got = reloaded.predict(x_probe, verbose=0)
        if not np.array_equal(reference, got):
            raise RuntimeError(f"{name}: reloaded predictions differ "
                               f"(max abs diff {np.abs(reference - got).max()})")


# --------------------------------------------------------------------------- files

def write_pngs(directory, images, labels=None):
    directory.mkdir(parents=True, exist_ok=True)
    # Drop stale images from earlier runs with different counts.
    for old in directory.glob("*.png"):
        old.unlink()
    lines = []
    for i, img in enumerate(images):
        name = f"{i:03d}.png"
        tf.io.write_file(str(directory / name), tf.io.encode_png(img))
        if labels is not None:
            lines.append(f"{name} {CLASSES[labels[i]]}\n")
    if labels is not None:
        (directory / "labels.txt").write_text("".join(lines))
        # the class ids in file order, as recipes' `validate.labels` take them
        np.save(directory / "labels.npy", np.asarray(labels, dtype=np.int64))


def write_calib_npy(path, n):
    # Decode the PNGs we just wrote so the npy matches what a PNG-based recipe sees.
    files = sorted((HERE / "calib").glob("*.png"))[:n]
    decoded = [tf.io.decode_png(tf.io.read_file(str(f)), channels=3).numpy() for f in files]
    np.save(path, to_float(np.stack(decoded)))


def print_sizes():
    total = 0
    for path in sorted(p for p in HERE.rglob("*") if p.is_file()):
        size = path.stat().st_size
        total += size
        print(f"{size:>9,d}  {path.relative_to(HERE)}")
    print(f"{total:>9,d}  total")


def main():
    keras.utils.set_random_seed(SEED_KERAS)
    tf.config.experimental.enable_op_determinism()

    x_train, y_train = make_dataset(SEED_TRAIN, N_TRAIN)
    x_test, y_test = make_dataset(SEED_TEST, N_TEST)

    model = build_model()
    seconds = train(model, to_float(x_train), y_train)
    _, accuracy = model.evaluate(to_float(x_test), y_test, verbose=0)
    print(f"train time: {seconds:.1f} s")
    print(f"test accuracy: {accuracy:.4f} ({N_TEST} images)")

    save_and_check(inference_copy(model), to_float(x_test[:8]))

    calib_images, _ = make_dataset(SEED_CALIB, N_CALIB)
    val_images, val_labels = make_dataset(SEED_VAL, N_VAL)
    write_pngs(HERE / "calib", calib_images)
    write_pngs(HERE / "val", val_images, val_labels)
    (HERE / "labels.txt").write_text("".join(f"{c}\n" for c in CLASSES))
    write_calib_npy(HERE / "calib.npy", N_CALIB_NPY)

    print_sizes()


if __name__ == "__main__":
    main()
