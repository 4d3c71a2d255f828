"""Validation metrics: values, NaN/Inf handling and the wording of missed thresholds."""

from __future__ import annotations

import numpy as np
import pytest

from buildsys.stages.metrics import SNR_CAP_DB, THRESHOLDS, compare, judge


def test_metrics_of_a_known_error():
    ref = np.array([[3.0, 4.0], [1.0, 0.0]])
    got = ref + np.array([[0.0, 1.0], [0.0, 0.0]])
    m = compare(ref, got)
    assert m["max_abs_error"] == 1.0 and m["mean_abs_error"] == 0.25 and m["rmse"] == 0.5
    assert m["snr_db"] == pytest.approx(10 * np.log10(26 / 1), abs=1e-6)
    assert m["cosine"] == pytest.approx((29 / (5 * np.sqrt(34)) + 1) / 2, abs=1e-8)
    assert m["top1_agreement"] == 1.0 and m["nonfinite"] == 0
    assert compare(ref, ref)["snr_db"] == SNR_CAP_DB


def test_nan_and_inf_are_counted_and_always_fail():
    ref = np.ones((2, 3))
    got = ref.copy()
    got[0, 1], got[1, 2] = np.nan, np.inf
    m = compare(ref, got)
    assert m["nonfinite"] == 2 and np.isfinite(m["cosine"]) and np.isfinite(m["rmse"])
    assert judge(m, {}) == ["2 NaN/Inf values where the reference is finite"]


def test_top5_only_for_classification():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(64, 10))
    got = ref + rng.normal(scale=0.5, size=ref.shape)
    plain, cls = compare(ref, got), compare(ref, got, classification=True)
    assert "top5_agreement" not in plain and cls["top5_agreement"] >= cls["top1_agreement"]
    assert cls["top5_agreement"] > 0.9 and cls["top1_agreement"] < 1.0


def test_missed_thresholds_say_metric_limit_and_margin():
    m = {"cosine": 0.9, "max_abs_error": 0.5, "mean_abs_error": 0.1, "rmse": 0.2, "snr_db": 12.0, "nonfinite": 0}
    lines = judge(m, {"min_cosine": 0.98, "max_abs_error": 0.25, "min_snr_db": 10.0, "min_top1_agreement": 0.9})
    assert lines == [  # by threshold name
        "max_abs_error 0.5 > max_abs_error 0.25 (over by 0.25)",
        "cosine 0.9 < min_cosine 0.98 (short by 0.08)",
        "min_top1_agreement: this output has no top1_agreement (it needs more than one value per sample)",
    ]


def test_every_threshold_is_in_both_schemas():
    from buildsys.schemafiles import load_schema

    recipe = load_schema("recipe.schema.json")["properties"]["validate"]["properties"]["thresholds"]["properties"]
    device = load_schema("device.schema.json")["properties"]["validate"]["properties"]["thresholds"]["properties"]
    assert set(recipe) == set(device) == set(THRESHOLDS)


def test_error_histogram_counts_every_value():
    ref = np.zeros((4, 25))
    got = ref + np.linspace(-1, 1, 100).reshape(4, 25)
    h = compare(ref, got)["error_histogram"]
    assert sum(h["counts"]) == 100 and len(h["edges"]) == len(h["counts"]) + 1 == 31
    assert h["edges"][0] == -1.0 and h["edges"][-1] == 1.0


def test_accuracy_against_labels_of_source_and_artifact():
    from buildsys.stages.metrics import accuracy

    ref = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8], [0.6, 0.3, 0.1]])
    got = ref.copy()
    got[1] = [0.5, 0.4, 0.1]  # the artifact now calls sample 1 class 0
    got[2, 0] = np.nan  # a NaN score must not win
    labels = np.array([0, 1, 2, 1])
    acc = accuracy(ref, got, labels)
    assert acc == {"source_accuracy": 0.75, "accuracy": 0.5, "accuracy_drop": 0.25}
    assert accuracy(ref, got, np.array([0, 1, 2, 3])) is None  # class 3 is not an output of 3 scores
    assert accuracy(ref[:, :1], got[:, :1], np.zeros(4, dtype=int)) is None  # one value per sample


def test_accuracy_thresholds_judge_only_outputs_that_have_accuracy():
    m = {"cosine": 1.0, "nonfinite": 0, "accuracy": 0.5, "accuracy_drop": 0.25, "source_accuracy": 0.75}
    assert judge(m, {"min_accuracy": 0.9, "max_accuracy_drop": 0.01}) == [
        "accuracy_drop 0.25 > max_accuracy_drop 0.01 (over by 0.24)",
        "accuracy 0.5 < min_accuracy 0.9 (short by 0.4)",
    ]
    boxes = {"cosine": 1.0, "nonfinite": 0}  # a second output with no class scores
    assert judge(boxes, {"min_accuracy": 0.9}) == []


def test_a_missed_value_never_reads_as_its_limit():
    near = {"cosine": 0.99999996, "max_abs_error": 0.1000001, "nonfinite": 0}
    assert judge(near, {"min_cosine": 1.0, "max_abs_error": 0.1}) == [
        "max_abs_error 0.100001 > max_abs_error 0.1 (over by 1e-07)",
        "cosine 0.999999 < min_cosine 1 (short by 4e-08)",
    ]
