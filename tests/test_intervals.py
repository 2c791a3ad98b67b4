"""Confidence intervals and paired tests: DeLong against an independent implementation, a quadratic
textbook version and a case worked by hand; vectorised metrics against scikit-learn; coverage of
the true AUC on simulated scores."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from attnmel.errors import ConfigError
from attnmel.metrics.calibration import expected_calibration_error
from attnmel.metrics.classification import binary_metrics
from attnmel.metrics.intervals import (
    BOOTSTRAP_METRICS,
    Interval,
    IntervalSettings,
    batch_roc_auc,
    batch_threshold_rates,
    binary_statistics,
    classification_intervals,
    delong_covariance,
    delong_interval,
    delong_test,
    mean_interval,
    stratified_bootstrap,
)
from attnmel.metrics.paired import bootstrap_p_value, mcnemar_test, paired_differences, paired_mean_difference


def _binormal(rng: np.random.Generator, separation: float, positives: int, negatives: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores N(separation, 1) for positives and N(0, 1) for negatives: the true AUC is Phi(separation / sqrt 2)."""
    labels = np.r_[np.ones(positives, dtype=int), np.zeros(negatives, dtype=int)]
    return labels, np.r_[rng.normal(separation, 1, positives), rng.normal(0, 1, negatives)]


# ---------------------------------------------------------------------- DeLong


def _textbook_delong(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong et al. (1988) as written: the full positives x negatives kernel, O(m n) per model."""
    pos, neg = scores[:, labels == 1], scores[:, labels == 0]
    psi = (pos[:, :, None] > neg[:, None, :]) + 0.5 * (pos[:, :, None] == neg[:, None, :])
    v10, v01 = psi.mean(axis=2), psi.mean(axis=1)
    return psi.mean(axis=(1, 2)), np.cov(v10) / pos.shape[1] + np.cov(v01) / neg.shape[1]


def test_delong_worked_by_hand():
    # Positives score A: 0.8, 0.6, 0.3; negatives 0.5, 0.3 (ties count 1/2).
    #   positives' components V10 = share of negatives below: 1, 1, (0 + 1/2)/2 = 1/4 -> AUC_A = 9/4 / 3 = 3/4
    #   negatives' components V01 = share of positives above: 2/3 (0.5), (1 + 1 + 1/2)/3 = 5/6 (0.3)
    #   var_A = var(V10)/3 + var(V01)/2 = (3/8 / 2)/3 + (2/144)/2 = 1/16 + 1/144 = 5/72
    # Model B: positives 0.7, 0.2, 0.9; negatives 0.4, 0.1.
    #   V10 = 1, 1/2, 1 -> AUC_B = 5/6; V01 = 2/3, 1; var_B = (1/6 / 2)/3 + (1/18)/2 = 1/36 + 1/36 = 1/18
    #   cov = cov(V10_A, V10_B)/3 + cov(V01_A, V01_B)/2 = (-1/8 / 2)/3 + (1/36)/2 = -1/48 + 1/72 = -1/144
    #   var(B - A) = 5/72 + 1/18 + 2/144 = 5/36; z = (5/6 - 3/4) / sqrt(5/36) = 1 / (2 sqrt 5); p = 2 (1 - Phi(z))
    labels = np.array([1, 1, 1, 0, 0])
    a = np.array([0.8, 0.6, 0.3, 0.5, 0.3])
    b = np.array([0.7, 0.2, 0.9, 0.4, 0.1])
    aucs, cov = delong_covariance(labels.astype(bool), np.vstack([a, b]))
    np.testing.assert_allclose(aucs, [3 / 4, 5 / 6], atol=1e-12)
    np.testing.assert_allclose(cov, [[5 / 72, -1 / 144], [-1 / 144, 1 / 18]], atol=1e-12)
    test = delong_test(labels, a, b)
    z = 1 / (2 * math.sqrt(5))
    assert test.z == pytest.approx(z, abs=1e-12)
    assert test.p_value == pytest.approx(2 * norm.sf(z), abs=1e-12) and test.p_value == pytest.approx(0.8230633, abs=1e-6)
    half = norm.ppf(0.975) * math.sqrt(5 / 36)
    assert (test.difference.low, test.difference.high) == pytest.approx((1 / 12 - half, 1 / 12 + half), abs=1e-12)
    single = delong_interval(labels, a)
    assert (single.estimate, single.low, single.high) == pytest.approx(
        (0.75, 0.75 - norm.ppf(0.975) * math.sqrt(5 / 72), 1.0), abs=1e-12)  # clipped at 1


@pytest.mark.parametrize("seed", range(4))
def test_delong_matches_the_textbook_algorithm_and_mlstatkit(seed):
    from MLstatkit import Delong_test

    rng = np.random.default_rng(seed)
    n = 60 + 40 * seed
    labels = (rng.random(n) < 0.3).astype(int)
    a = rng.normal(size=n) + labels
    b = np.round(rng.normal(size=n) + 0.6 * labels, 1)  # many ties
    aucs, cov = delong_covariance(labels.astype(bool), np.vstack([a, b]))
    reference_aucs, reference_cov = _textbook_delong(labels, np.vstack([a, b]))
    np.testing.assert_allclose(aucs, reference_aucs, atol=1e-12)
    np.testing.assert_allclose(cov, reference_cov, atol=1e-12)

    ours = delong_test(labels, a, b)
    z, p, ci_a, ci_b, auc_a, auc_b, info = Delong_test(labels, a, b, alpha=0.95)
    assert info["method"] == "delong"
    assert (ours.auc_a, ours.auc_b) == pytest.approx((auc_a, auc_b), abs=1e-12)
    assert ours.z == pytest.approx(z, abs=1e-9) and ours.p_value == pytest.approx(p, abs=1e-12)
    for score, theirs in ((a, ci_a), (b, ci_b)):
        interval = delong_interval(labels, score)
        assert (interval.low, interval.high) == pytest.approx(theirs, abs=1e-12)


def test_delong_of_identical_models_is_no_difference_and_undefined_without_both_classes():
    rng = np.random.default_rng(0)
    labels, scores = _binormal(rng, 1.0, 20, 40)
    same = delong_test(labels, scores, scores)
    assert same.difference.estimate == 0 and same.p_value == 1.0 and same.z == 0
    assert math.isnan(delong_interval(np.ones(5), np.arange(5.0)).estimate)
    assert math.isnan(delong_interval([1, 0, 0], [0.9, 0.1, 0.2]).low)  # one positive: no variance


def test_delong_interval_covers_the_true_auc_at_the_nominal_rate():
    """400 simulated splits per setting (binormal scores, true AUC = Phi(d / sqrt 2)).

    Tolerance: 400 draws give a binomial standard deviation of about 0.012 on a 95% coverage, so
    the rate must lie in [0.90, 0.99] (-0.05 / +0.04: three standard deviations plus DeLong's known
    small-sample shortfall). With ISIC 2017 val's size (30 positives, 120 negatives) and a true AUC
    of 0.84 DeLong runs liberal (0.92 measured over 5000 draws), so there the floor is 0.88.
    """
    rng = np.random.default_rng(2019)

    def coverage(separation: float, positives: int, negatives: int, level: float) -> float:
        truth = norm.cdf(separation / math.sqrt(2))
        hits = 0
        for _ in range(400):
            labels, scores = _binormal(rng, separation, positives, negatives)
            hits += delong_interval(labels, scores, level).contains(truth)
        return hits / 400

    assert 0.90 <= coverage(0.95, 100, 100, 0.95) <= 0.99
    assert 0.74 <= coverage(0.95, 100, 100, 0.80) <= 0.86  # the level is honoured, not only 95%
    assert 0.88 <= coverage(1.4, 30, 120, 0.95) <= 0.99


def test_stratified_bootstrap_covers_the_true_auc_and_sensitivity():
    """200 simulated ISIC-val-sized splits (30 positives, 120 negatives), 400 resamples each.

    Tolerance: [0.87, 0.99] for 95% intervals, three binomial standard deviations (0.015 each at
    200 draws) around the measured rate of this percentile bootstrap (0.93 for the AUC, 0.94 for
    the sensitivity over 1000 draws).
    """
    rng = np.random.default_rng(7)
    separation, threshold = 1.4, 0.7
    true_auc, true_sensitivity = norm.cdf(separation / math.sqrt(2)), norm.sf(threshold - separation)
    auc_hits = sensitivity_hits = 0
    for draw in range(200):
        labels, scores = _binormal(rng, separation, 30, 120)
        outcome = stratified_bootstrap(labels, lambda index, s=scores, y=labels: np.stack([
            batch_roc_auc(s[index], y[index] == 1), batch_threshold_rates(s[index], y[index] == 1, threshold)[0]
        ]), IntervalSettings(resamples=400, seed=draw))
        auc_hits += outcome.interval(0, 0.95).contains(true_auc)
        sensitivity_hits += outcome.interval(1, 0.95).contains(true_sensitivity)
    assert 0.87 <= auc_hits / 200 <= 0.99
    assert 0.87 <= sensitivity_hits / 200 <= 0.99


# ---------------------------------------------------------------------- vectorised metrics


def test_vectorised_metrics_equal_scikit_learn_row_by_row():
    rng = np.random.default_rng(3)
    rows = []
    for trial in range(120):
        n = int(rng.integers(4, 50))
        labels = rng.integers(0, 2, n)
        labels[:2] = [0, 1]
        scores = np.round(rng.random(n) * 5) / 5 if trial % 2 else rng.random(n)  # ties on odd trials
        rows.append((labels, scores))
        ours = binary_statistics(scores, labels == 1, 0.5, 15)
        reference = binary_metrics(labels, scores, 0.5)
        expected = [reference.roc_auc, reference.average_precision, reference.sensitivity, reference.specificity,
                    reference.balanced_accuracy, reference.sensitivity_at_90_specificity,
                    expected_calibration_error(scores, labels, 15), reference.partial_auc]
        np.testing.assert_allclose(ours, expected, atol=1e-12, err_msg=f"trial {trial}")
    # the same on many rows at once (a resample per row)
    labels = np.stack([np.r_[np.ones(10), np.zeros(30)] for _ in range(25)]).astype(bool)
    scores = np.round(rng.random(labels.shape) * 8) / 8
    together = binary_statistics(scores, labels, 0.4, 10)
    for row in range(25):
        np.testing.assert_allclose(together[:, row], binary_statistics(scores[row], labels[row], 0.4, 10), atol=1e-12)


def test_intervals_of_an_evaluation_are_centred_on_its_metrics():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 150)
    logits = rng.normal(size=(150, 3)) + 1.5 * np.eye(3)[labels]
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    names = ["nevus", "melanoma", "seborrheic_keratosis"]
    found = classification_intervals(labels, probabilities, names, ["melanoma", "seborrheic_keratosis"])
    for column in ("melanoma", "seborrheic_keratosis"):
        index = names.index(column)
        reference = binary_metrics(labels == index, probabilities[:, index])
        for metric in ("roc_auc", "average_precision", "sensitivity", "specificity", "balanced_accuracy",
                       "sensitivity_at_90_specificity"):
            interval = found.classification[column][metric]
            assert interval.estimate == pytest.approx(getattr(reference, metric), abs=1e-12), metric
            assert interval.low <= interval.estimate <= interval.high and interval.width > 0.01, metric
        assert found.classification[column]["roc_auc"].method == "delong"
        assert found.classification[column]["roc_auc_bootstrap"].method == "bootstrap-percentile"
        assert found.class_ece[column].estimate == pytest.approx(
            expected_calibration_error(probabilities[:, index], labels == index), abs=1e-12)
    top = expected_calibration_error(probabilities.max(axis=1), probabilities.argmax(axis=1) == labels)
    assert found.ece.estimate == pytest.approx(top, abs=1e-12)
    payload = found.to_dict()
    assert payload["resamples"] == 2000 and payload["seed"] == 0 and payload["level"] == 0.95
    assert set(payload["classification"]["melanoma"]) == {*BOOTSTRAP_METRICS, "roc_auc_bootstrap"} - {"ece"}
    assert Interval.from_dict(payload["calibration"]["melanoma"]["ece"]) == found.class_ece["melanoma"]


# ---------------------------------------------------------------------- the bootstrap itself


def test_every_resample_keeps_the_class_counts_and_a_seed_repeats_it():
    labels = np.r_[np.zeros(20, dtype=int), np.ones(7, dtype=int), [2]]  # one image of class 2: held fixed
    settings = IntervalSettings(resamples=300, seed=5)

    def counts(index):
        return np.stack([(labels[index] == c).sum(axis=-1) for c in range(3)] + [index.max(axis=-1) * 0 + index.shape[-1]])

    outcome = stratified_bootstrap(labels, counts, settings)
    assert (outcome.distribution == np.array([[20], [7], [1], [28]])).all()
    rng = np.random.default_rng(1)
    scores = rng.random(28)
    statistic = lambda index: batch_roc_auc(scores[index], labels[index] == 1)[None]  # noqa: E731
    first = stratified_bootstrap(labels, statistic, settings)
    again = stratified_bootstrap(labels, statistic, settings)
    other = stratified_bootstrap(labels, statistic, IntervalSettings(resamples=300, seed=6))
    np.testing.assert_array_equal(first.distribution, again.distribution)
    assert not np.array_equal(first.distribution, other.distribution)


def test_bca_runs_and_falls_back_to_the_percentile_interval_where_it_is_undefined():
    labels = np.r_[np.ones(10, dtype=int), np.zeros(30, dtype=int)]
    scores = np.r_[np.linspace(0.6, 0.9, 10), np.linspace(0.05, 0.7, 30)]
    found = classification_intervals(labels, np.c_[1 - scores, scores], ["other", "melanoma"], ["melanoma"],
                                      settings=IntervalSettings(resamples=500, method="bca"))
    melanoma = found.classification["melanoma"]
    assert melanoma["average_precision"].method == "bootstrap-bca"
    # every positive is above 0.5 in every resample: BCa is undefined, the percentile interval is [1, 1]
    assert melanoma["sensitivity"].method == "bootstrap-percentile"
    assert (melanoma["sensitivity"].low, melanoma["sensitivity"].high) == (1.0, 1.0)


def test_mean_interval_leaves_out_images_without_a_mask():
    values = np.r_[np.linspace(0.2, 0.8, 40), [np.nan] * 10]
    interval = mean_interval(values, IntervalSettings(resamples=500))
    assert interval.estimate == pytest.approx(0.5) and interval.low < 0.5 < interval.high
    assert math.isnan(mean_interval([np.nan, 0.3], IntervalSettings()).low)


def test_settings_are_checked_and_intervals_round_trip():
    for bad in ({"level": 1.0}, {"level": 0}, {"resamples": 10}, {"method": "basic"}, {"seed": -1}):
        with pytest.raises(ConfigError):
            IntervalSettings(**bad)
    interval = Interval(0.87123, 0.8012, 0.9311, 0.95, "delong")
    assert interval.format() == "0.8712 [0.80, 0.93]"
    assert Interval(0.016, -0.03, 0.061, 0.95, "delong").format(3, 3, sign=True) == "+0.016 [-0.030, +0.061]"
    assert Interval.from_dict(interval.to_dict()) == interval
    undefined = Interval.from_dict({"estimate": None, "low": None, "high": None, "level": 0.95, "method": "delong"})
    assert math.isnan(undefined.estimate) and undefined.format() == "n/a"


# ---------------------------------------------------------------------- paired comparisons


def test_a_clearly_better_model_is_significant_and_an_identical_one_is_not():
    rng = np.random.default_rng(11)
    labels, weak = _binormal(rng, 0.3, 60, 140)
    strong = weak + 2.5 * labels + rng.normal(0, 0.3, len(labels))
    settings = IntervalSettings(resamples=1000)
    better = paired_differences(labels == 1, weak, strong, threshold=0.5, settings=settings)
    assert better["roc_auc"].test == "delong" and better["roc_auc"].p_value < 1e-6
    assert better["roc_auc"].difference.low > 0.15
    assert better["roc_auc_bootstrap"].p_value == pytest.approx(2 / 1001)  # the smallest it can say
    assert better["roc_auc"].significant() and better["average_precision"].significant()
    reference = binary_metrics(labels, strong).average_precision - binary_metrics(labels, weak).average_precision
    assert better["average_precision"].difference.estimate == pytest.approx(reference, abs=1e-12)

    same = paired_differences(labels == 1, weak, weak.copy(), settings=settings)
    for difference in same.values():
        assert difference.difference.estimate == 0 and difference.p_value == 1.0 and not difference.significant()


def test_bootstrap_p_value_inverts_the_percentile_interval():
    assert bootstrap_p_value(np.zeros(99)) == 1.0
    assert bootstrap_p_value(np.r_[np.full(95, 0.1), np.full(4, -0.1)]) == pytest.approx(2 * 5 / 100)
    assert math.isnan(bootstrap_p_value(np.full(5, np.nan)))


def test_mcnemar_exact_test_worked_by_hand():
    # 30 images both right, 1 only A right, 9 only B right, 10 both wrong. Under H0 each of the 10
    # discordant images is a fair coin: p = 2 P(X <= 1), X ~ Bin(10, 1/2) = 2 (1 + 10) / 1024.
    a = np.r_[np.ones(30), 1, np.zeros(9), np.zeros(10)].astype(bool)
    b = np.r_[np.ones(30), 0, np.ones(9), np.zeros(10)].astype(bool)
    test = mcnemar_test(a, b, 0.5)
    assert (test.both_correct, test.only_a_correct, test.only_b_correct, test.both_wrong) == (30, 1, 9, 10)
    assert test.p_value == pytest.approx(22 / 1024, abs=1e-12)
    assert (test.accuracy_a, test.accuracy_b) == (31 / 50, 39 / 50)
    assert mcnemar_test(a, a).p_value == 1.0


def test_paired_mean_difference_pairs_images():
    rng = np.random.default_rng(2)
    a = rng.random(100)
    b = a + 0.02 + rng.normal(0, 0.01, 100)  # small but consistent per image: clear when paired
    a[:5] = np.nan
    found = paired_mean_difference("jaccard", a, b, IntervalSettings(resamples=1000))
    assert found.difference.estimate == pytest.approx(np.mean((b - a)[5:])) and found.difference.low > 0.015
    assert found.p_value < 0.01 and found.test == "paired bootstrap"


# ---------------------------------------------------------------------- checkpoints and model cards


def test_training_records_the_delong_interval_and_the_card_shows_its_width(tiny_checkpoint):
    from attnmel.checkpoints import read_metadata
    from attnmel.checkpoints.card import model_card, render_markdown

    meta = read_metadata(tiny_checkpoint)
    recorded = meta.metrics["val_intervals"]["melanoma"]["roc_auc"]
    val = meta.metrics["val"]["melanoma"]
    assert recorded["method"] == "delong" and recorded["estimate"] == pytest.approx(val["roc_auc"])
    assert 0 <= recorded["low"] <= recorded["estimate"] <= recorded["high"] <= 1

    # a card with a known interval: the value row and the limitation carry it
    interval = Interval(0.82, 0.73, 0.91, 0.95, "delong").to_dict()
    known = meta.replace(metrics={"val": {"melanoma": {**val, "roc_auc": 0.82, "n": 150, "n_positive": 30}},
                                  "val_intervals": {"melanoma": {"roc_auc": interval}}})
    markdown = render_markdown(model_card(known))
    assert "| roc auc | 0.8200 [0.73, 0.91] (95% delong) |" in markdown
    assert "95% DeLong interval of its ROC AUC is [0.73, 0.91], 0.18 wide" in markdown
    assert "wide confidence intervals" not in markdown
    # an older checkpoint without intervals says so instead of inventing one
    older = meta.replace(metrics={"val": {"melanoma": {**val, "n": 150, "n_positive": 30}}})
    markdown = render_markdown(model_card(older))
    assert "wide confidence intervals (none is recorded in this checkpoint" in markdown
    assert "| roc auc |" in markdown and "(95% delong)" not in markdown
