"""NonMaxSuppression against onnxruntime: selected (batch, class, box) rows, dynamic count."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from onnx_harness import check, make_model

INT64_MAX = np.iinfo(np.int64).max


def boxes_and_scores(batches: int, classes: int, count: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Overlapping boxes (so IoU suppression happens) with distinct scores (no ties)."""
    rng = np.random.default_rng(seed)
    corner = rng.uniform(0, 0.8, (batches, count, 2)).astype(np.float32)
    size = rng.uniform(0.05, 0.3, (batches, count, 2)).astype(np.float32)
    boxes = np.concatenate([corner, corner + size], axis=-1)
    scores = rng.permutation(batches * classes * count).reshape(batches, classes, count).astype(np.float32)
    return {"boxes": boxes, "scores": scores / scores.max()}


def nms_model(batches: int, classes: int, count: int, limit, iou=0.4, score=0.3, **attrs):
    inits = {"limit": np.array([limit], np.int64), "iou": np.array([iou], np.float32)}
    names = ["boxes", "scores", "limit", "iou"]
    if score is not None:
        inits["score"] = np.array([score], np.float32)
        names.append("score")
    node = helper.make_node("NonMaxSuppression", names, ["selected"], name="/nms", **attrs)
    inputs = {"boxes": [batches, count, 4], "scores": [batches, classes, count]}
    return make_model([node], inputs, ["selected"], inits, opset=13)


# (2, 2, 40): thresholds leave fewer boxes than the limit, so the count is data-dependent
@pytest.mark.parametrize("batches,classes,limit", [(1, 1, 10), (1, 3, 5), (2, 2, 40)])
def test_nms_matches_onnxruntime(batches, classes, limit):
    model = nms_model(batches, classes, 40, limit)
    feeds = boxes_and_scores(batches, classes, 40)
    conv = check(model, feeds)
    assert conv.run(feeds)["selected"].shape[0] < batches * classes * min(limit, 40) or limit < 40
    assert "NON_MAX_SUPPRESSION_V5" in conv.ops or "NON_MAX_SUPPRESSION_V4" in conv.ops


def test_nms_without_score_threshold_and_an_unbounded_limit():
    # exporters write INT64_MAX for "no limit": at most every box per class can be selected
    check(nms_model(1, 2, 30, INT64_MAX, score=None), boxes_and_scores(1, 2, 30, seed=1))


def test_nms_center_point_boxes_and_flipped_corners():
    feeds = boxes_and_scores(1, 2, 30, seed=2)
    flipped = feeds["boxes"][..., [2, 3, 0, 1]]  # the other diagonal: the same boxes
    check(nms_model(1, 2, 30, 8), {**feeds, "boxes": flipped})
    centers = feeds["boxes"].copy()
    centers[..., :2] = (feeds["boxes"][..., :2] + feeds["boxes"][..., 2:]) / 2
    centers[..., 2:] = feeds["boxes"][..., 2:] - feeds["boxes"][..., :2]
    centers = centers[..., [1, 0, 3, 2]]  # [x_center, y_center, width, height]
    check(nms_model(1, 2, 30, 8, center_point_box=1), {**feeds, "boxes": centers}, atol=0, rtol=0)
