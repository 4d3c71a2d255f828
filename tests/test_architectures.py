"""Whole architectures through the converter: fp32 accuracy, int8 fidelity, layout cost.

Builders live in archs.py (random weights with data-estimated BN statistics,
so activations are O(1) and int8 comparisons mean something). For each:
  fp32  - prepared, converted, run in TFLite on 4 seeded inputs and compared
          with onnxruntime: max|err| <= 1e-4 * max(1, max|ref|) (a whole
          network accumulates float rounding over ~50 layers and wide sums);
  int8  - full-integer quantization (per-channel, float I/O) calibrated on 32
          samples, cosine similarity >= 0.98 with onnxruntime on 8 other ones
          (and >= 0.9 for the sample-dependent part, see MIN_CENTERED_COSINE);
  layout- TRANSPOSE ops in the fp32 model: 0 for the CNNs, and for YOLO and the
          transformer only those their data order forces (see TRANSPOSES).
Conversions are shared between tests through a module-scoped cache.
"""

from __future__ import annotations

from pathlib import Path

import archs
import numpy as np
import onnx
import pytest
from onnx_harness import Converted

from buildsys.signature import Signature
from buildsys.tflow.inspect import op_histogram
from buildsys.tflow.onnxsource import export_onnx
from buildsys.tflow.quantize import to_tflite
from buildsys.tflow.samples import to_stored

try:
    from buildsys.onnxprep.prepare import prepare_model
except ImportError:  # written in parallel; the builders already give static shapes
    prepare_model = None

# Minimum TRANSPOSE ops each model needs in a channels-last conversion.
TRANSPOSES = {
    "mobilenet_v2": 0,
    "mobilenet_v3_small": 0,
    "resnet18": 0,
    "segmenter": 0,
    # Per head the conv emits (H, W, anchor, field) in memory; the output lists
    # boxes anchor-major, (anchor, H, W, field): one reorder per head. The heads
    # cannot share it since their grids differ and they are concatenated after.
    "yolo": 2,
    # Per attention block (2 blocks): Q, K and V are split into heads
    # [S, H, dh] -> [H, S, dh] so BATCH_MATMUL can batch over heads (leading
    # dims only; K^T is free via adj_y, not the head move), and the context
    # [H, S, dh] is merged back to [S, H*dh]: 4 per block. The patch embedding
    # (NHWC conv output -> [S, D] tokens) needs none: its reshape is a view.
    "transformer": 8,
    "transformer_decomposed_patch": 8,
}

FP32_SAMPLES = 4
CALIB_SAMPLES = 32
HELD_OUT_SAMPLES = 8
MIN_COSINE = 0.98
# Classifier logits are mostly a part shared by all inputs, which alone can
# satisfy MIN_COSINE; the part that differs between inputs (what a decision
# depends on) is checked too, centered on the reference mean over samples.
MIN_CENTERED_COSINE = 0.9


class Conversions:
    """Build, prepare and export each architecture once per module, then make its fp32 and int8
    TFLite models from the same float model (the path onnx_harness.convert takes for fp32).
    A failure is cached and re-raised in every test that needs that step."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self._cache: dict[tuple[str, str], object] = {}

    def get(self, name: str, kind: str):
        key = (name, kind)
        if key not in self._cache:
            try:
                self._cache[key] = getattr(self, f"_{kind}")(name)
            except Exception as exc:  # noqa: BLE001 - replayed in every test that needs it
                self._cache[key] = exc
        value = self._cache[key]
        if isinstance(value, Exception):
            raise value
        return value

    def _model(self, name: str) -> onnx.ModelProto:
        model = archs.ARCHITECTURES[name]()
        return prepare_model(model) if prepare_model else model

    def _float(self, name: str) -> tuple[Path, Signature]:
        path = self.workdir / f"{name}.pb"
        return path, export_onnx(self.get(name, "model"), path)

    def _fp32(self, name: str) -> Converted:
        path, signature = self.get(name, "float")
        data = to_tflite(path, signature, "none")
        return Converted(data, signature, op_histogram(data))

    def _int8(self, name: str) -> Converted:
        model = self.get(name, "model")
        path, signature = self.get(name, "float")
        calib = to_stored(archs.sample_inputs(model, CALIB_SAMPLES, seed=100), signature.inputs)
        data = to_tflite(
            path, signature, "int8", calib=calib, per_channel=True, input_type="float32", output_type="float32"
        )
        return Converted(data, signature, op_histogram(data))


@pytest.fixture(scope="module")
def conversions(tmp_path_factory) -> Conversions:
    return Conversions(tmp_path_factory.mktemp("architectures"))


def run_converted(conv: Converted, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    runs = [conv.run(feed) for feed in archs.split_samples(arrays)]
    return {k: np.concatenate([r[k] for r in runs]) for k in runs[0]}


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(-1).astype(np.float64), b.reshape(-1).astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


NAMES = list(archs.ARCHITECTURES)


@pytest.mark.parametrize("name", NAMES)
def test_fp32_matches_onnxruntime(conversions, name):
    model = conversions.get(name, "model")
    arrays = archs.sample_inputs(model, FP32_SAMPLES, seed=0)
    ref = archs.run_ort(model, arrays)
    got = run_converted(conversions.get(name, "fp32"), arrays)
    archs.assert_fp32_matches(name, got, ref)


@pytest.mark.parametrize("name", NAMES)
def test_int8_cosine(conversions, name):
    model = conversions.get(name, "model")
    arrays = archs.sample_inputs(model, HELD_OUT_SAMPLES, seed=200)
    ref = archs.run_ort(model, arrays)
    got = run_converted(conversions.get(name, "int8"), arrays)
    for out, want in ref.items():
        assert got[out].shape == want.shape
        cos = cosine(got[out], want)
        assert cos >= MIN_COSINE, f"{name}/{out}: int8 cosine {cos:.4f} < {MIN_COSINE}"
        mean = want.mean(axis=0)
        centered = cosine(got[out] - mean, want - mean)
        assert centered >= MIN_CENTERED_COSINE, f"{name}/{out}: centered int8 cosine {centered:.4f}"


@pytest.mark.parametrize("name", NAMES)
def test_transpose_count(conversions, name):
    conv = conversions.get(name, "fp32")
    assert conv.transposes == TRANSPOSES[name], f"{name}: {conv.ops}"
