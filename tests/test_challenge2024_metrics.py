"""The ISIC 2024 metrics against the challenge's own definitions, written out here."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from attnmel.errors import ConfigError
from attnmel.metrics.challenge2024 import (
    batch_partial_auc_above_tpr,
    partial_auc_above_tpr,
    top_k_sensitivity,
)


def reference_p_auc_tpr(v_gt, v_pred, min_tpr):
    """``p_auc_tpr`` of ISIC-Research/Challenge-2024-Metrics (PrimaryMetric-pAUC.py), as published."""
    if len(np.unique(v_gt)) != 2:
        raise ValueError("Only one class present in y_true.")
    v_gt = abs(np.asarray(v_gt) - 1)
    v_pred = abs(np.asarray(v_pred) - 1)
    max_fpr = abs(1 - min_tpr)
    fpr, tpr, _ = skm.roc_curve(v_gt, v_pred)
    if max_fpr is None or max_fpr == 1:
        return skm.auc(fpr, tpr)
    stop = np.searchsorted(fpr, max_fpr, "right")
    x_interp = [fpr[stop - 1], fpr[stop]]
    y_interp = [tpr[stop - 1], tpr[stop]]
    tpr = np.append(tpr[:stop], np.interp(max_fpr, x_interp, y_interp))
    fpr = np.append(fpr[:stop], max_fpr)
    return skm.auc(fpr, tpr)


@pytest.mark.parametrize("min_tpr", [0.8, 0.88, 0.5, 0.0, 0.95])
@pytest.mark.parametrize("seed", range(6))
def test_pauc_equals_the_challenge_definition_on_random_and_tied_scores(seed, min_tpr):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(8, 400))
    labels = rng.random(n) < rng.uniform(0.05, 0.5)
    labels[:2] = [True, False]
    continuous = rng.random(n)
    tied = np.round(rng.random(n) * rng.integers(2, 8)) / 8  # a handful of distinct values
    informative = np.clip(continuous * 0.6 + labels * 0.4, 0, 1)
    for scores in (continuous, tied, informative, np.round(informative, 1)):
        assert partial_auc_above_tpr(labels, scores, min_tpr) == pytest.approx(
            reference_p_auc_tpr(labels, scores, min_tpr), abs=1e-9)


def test_pauc_bounds_batch_rows_and_undefined():
    labels = np.array([0, 0, 1, 1, 0, 1])
    perfect = labels * 0.9 + 0.05
    assert partial_auc_above_tpr(labels, perfect) == pytest.approx(0.2, abs=1e-12)
    assert partial_auc_above_tpr(labels, perfect, 0.88) == pytest.approx(0.12, abs=1e-12)
    assert partial_auc_above_tpr(labels, 1 - perfect) == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(partial_auc_above_tpr([1, 1, 1], [0.2, 0.3, 0.4]))
    rows = np.random.default_rng(0).random((5, 6))
    batch = batch_partial_auc_above_tpr(rows, np.broadcast_to(labels.astype(bool), rows.shape))
    assert batch == pytest.approx([reference_p_auc_tpr(labels, row, 0.8) for row in rows], abs=1e-9)
    with pytest.raises(ConfigError, match="min-tpr"):
        partial_auc_above_tpr(labels, perfect, 1.0)


def test_top15_sensitivity_per_patient():
    # patient A: 20 lesions, 2 positives ranked 1st and 17th -> 1/2; patient B: one positive, found -> 1;
    # patient C: no positive -> not counted
    scores, labels, patients = [], [], []
    for k in range(20):
        scores.append(1 - k / 20)
        labels.append(k in (0, 16))
        patients.append("A")
    scores += [0.1, 0.05]
    labels += [True, False]
    patients += ["B", "B"]
    scores += [0.9]
    labels += [False]
    patients += ["C"]
    assert top_k_sensitivity(labels, scores, patients) == pytest.approx(0.75)
    assert top_k_sensitivity(labels, scores, patients, k=20) == pytest.approx(1.0)
    assert math.isnan(top_k_sensitivity([0, 0], [0.1, 0.2], ["A", "B"]))


def test_pauc_has_a_bootstrap_interval_and_a_paired_difference():
    from attnmel.metrics.classification import classification_report
    from attnmel.metrics.intervals import IntervalSettings, classification_intervals
    from attnmel.metrics.paired import paired_differences

    rng = np.random.default_rng(1)
    labels = (rng.random(200) < 0.3).astype(int)
    weak = np.clip(rng.random(200) * 0.8 + labels * 0.2, 0, 1)
    strong = np.clip(rng.random(200) * 0.3 + labels * 0.7, 0, 1)
    probabilities = np.stack([1 - strong, strong], axis=1)
    settings = IntervalSettings(resamples=200)
    for min_tpr in (0.8, 0.88):
        report = classification_report(labels, probabilities, ["other", "melanoma"], ["melanoma"], min_tpr=min_tpr)
        interval = classification_intervals(labels, probabilities, ["other", "melanoma"], ["melanoma"], settings=settings,
                                            min_tpr=min_tpr).classification["melanoma"]["partial_auc"]
        assert report["melanoma"].partial_auc == interval.estimate == pytest.approx(
            reference_p_auc_tpr(labels, strong, min_tpr), abs=1e-9)
        assert interval.low <= interval.estimate <= interval.high <= 1 - min_tpr
    difference = paired_differences(labels == 1, weak, strong, settings=settings)["partial_auc"]
    assert difference.a == pytest.approx(reference_p_auc_tpr(labels, weak, 0.8), abs=1e-9)
    assert difference.difference.estimate > 0 and difference.p_value < 0.05


def test_compare_reports_the_pauc_difference_at_the_min_tpr_asked(tmp_path, capsys):
    import json

    import pandas as pd

    from attnmel.cli import main

    rng = np.random.default_rng(2)
    labels = (rng.random(120) < 0.3).astype(float)
    images = [f"ISIC_{i:07d}" for i in range(120)]
    scores = {"a": np.clip(rng.random(120) * 0.8 + labels * 0.2, 0, 1), "b": np.clip(rng.random(120) * 0.4 + labels * 0.6, 0, 1)}
    for side, score in scores.items():
        (tmp_path / side).mkdir()
        pd.DataFrame({"image": images, "melanoma": score}).to_csv(tmp_path / side / "predictions.csv", index=False)
        pd.DataFrame({"image": images, "melanoma": labels}).to_csv(tmp_path / side / "ground_truth.csv", index=False)
    assert main(["compare", str(tmp_path / "a" / "predictions.csv"), str(tmp_path / "b" / "predictions.csv"),
                 "--json", "--min-tpr", "0.88", "--bootstrap", "200"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["min_tpr"] == 0.88
    found = result["classes"]["melanoma"]["partial_auc"]
    assert found["a"] == pytest.approx(reference_p_auc_tpr(labels, scores["a"], 0.88), abs=1e-9)
    assert found["b"] == pytest.approx(reference_p_auc_tpr(labels, scores["b"], 0.88), abs=1e-9)
