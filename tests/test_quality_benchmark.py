"""The quality benchmark's tables and verdicts (never its measurement): rows finished for different
seeds are compared on the seeds they share, and the paired tests say what the val images establish."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from .conftest import benchmark_script
from .test_compare import with_manifest


@pytest.fixture(scope="module")
def benchmark():
    yield from benchmark_script("quality_isic2017")


def _run(seed: int, auc: float, jaccard: float, cam: bool = False, **extra) -> dict:
    return {"seed": seed, "roc_auc": auc, "average_precision": 0.5, "sensitivity_at_90_specificity": 0.5,
            ("jaccard_cam" if cam else "jaccard_stage4"): jaccard, **extra}


def test_checks_pair_rows_by_seed(benchmark):
    results = {
        "gap-mnv2": [_run(0, 0.80, 0.2, cam=True), _run(1, 0.90, 0.2, cam=True)],
        "attnmel-mnv2": [_run(0, 0.80, 0.30), _run(1, 0.84, 0.30)],
        # finished for seed 0 only: compared with seed 0 of the others, not with their two-seed mean
        "attnmel-mnv2-lesion-x10": [_run(0, 0.83, 0.70, roc_auc_low=0.75, roc_auc_high=0.91)],
    }
    summary = benchmark.summarise(results)
    rows = {row.name: row for row in summary.rows}
    assert rows["attnmel-mnv2-lesion-x10"].seeds == [0] and rows["gap-mnv2"].seeds == [0, 1]
    assert rows["gap-mnv2"].metrics["roc_auc"].mean == pytest.approx(0.85)
    assert rows["gap-mnv2"].metrics["roc_auc"].sd == pytest.approx(0.0707, abs=1e-4)
    assert rows["gap-mnv2"].metrics["shallow"] is None and rows["gap-mnv2"].metrics["deep"].mean == pytest.approx(0.2)
    assert [(seed, (i.low, i.high)) for seed, i in rows["attnmel-mnv2-lesion-x10"].auc_intervals] == [(0, (0.75, 0.91))]

    (prior,) = summary.prior_checks
    assert (prior.row, prior.baseline, prior.seeds) == ("attnmel-mnv2-lesion-x10", "attnmel-mnv2", [0])
    gain, level, auc = prior.criteria
    assert (gain.value, gain.met) == (pytest.approx(0.40), True) and (level.value, level.met) == (0.70, True)
    assert (auc.value, auc.met) == (pytest.approx(0.03), True)
    checks = {check.row: check for check in summary.baseline_checks}
    assert checks["attnmel-mnv2-lesion-x10"].seeds == [0]
    assert checks["attnmel-mnv2-lesion-x10"].criteria[0].value == pytest.approx(0.03)
    assert checks["attnmel-mnv2"].seeds == [0, 1] and checks["attnmel-mnv2"].criteria[0].value == pytest.approx(-0.03)
    assert not checks["attnmel-mnv2"].criteria[0].met

    table = benchmark.render(summary)  # the markdown carries the same numbers
    assert "| attnmel-mnv2-lesion-x10 | 0 | 0.830 ± 0.000 |" in table and "| [0.75, 0.91] |" in table
    assert "| Jaccard gain, lesion - no prior | +0.400 | >= +0.20 | True |" in table


def test_evaluation_only_rows_reuse_the_trained_run(benchmark):
    assert benchmark._trained_row("gap-mnv2-tta") == "gap-mnv2"
    assert benchmark._trained_row("attnmel-mnv2-lesion-x10-ema-tta") == "attnmel-mnv2-lesion-x10-ema"
    assert benchmark._trained_row("gap-mnv2") == "gap-mnv2"
    for name, row in benchmark.ROWS.items():
        assert ("evaluates" in row) == name.endswith("-tta") == row.get("tta", False), name


def test_tta_rows_are_compared_with_the_baseline_under_tta(benchmark):
    results = {
        "gap-mnv2": [_run(0, 0.80, 0.2, cam=True)],
        "gap-mnv2-tta": [_run(0, 0.82, 0.2, cam=True)],
        "attnmel-mnv2-lesion-x10-tta": [_run(0, 0.85, 0.7)],
    }
    (check,) = benchmark.summarise(results).baseline_checks
    assert (check.row, check.baseline) == ("attnmel-mnv2-lesion-x10-tta", "gap-mnv2-tta")
    assert check.criteria[0].value == pytest.approx(0.03) and check.criteria[0].met


def _evaluation(folder: Path, melanoma: np.ndarray, scores: np.ndarray, layer: str, jaccard: np.ndarray) -> str:
    folder.mkdir(parents=True)
    images = [f"ISIC_{i:07d}" for i in range(len(melanoma))]
    pd.DataFrame({"image": images, "melanoma": scores}).to_csv(folder / "predictions.csv", index=False)
    pd.DataFrame({"image": images, "melanoma": melanoma.astype(float)}).to_csv(folder / "ground_truth.csv", index=False)
    pd.DataFrame({"image": images, "has_mask": True, f"{layer}_jaccard": jaccard, f"{layer}_dice": jaccard}).to_csv(
        folder / "attention_quality.csv", index=False)
    return str(with_manifest(folder))  # as evaluate writes it


def test_paired_tests_say_what_the_val_images_establish(benchmark, tmp_path):
    """Seed 0: the prior's AUC gain is large (significant), seed 1: none; Jaccard gains clear in both."""
    rng = np.random.default_rng(0)
    melanoma = np.r_[np.ones(30), np.zeros(120)].astype(int)
    noise = rng.normal(size=(2, 150))
    plain_jaccard, prior_jaccard = rng.uniform(0.1, 0.3, 150), rng.uniform(0.6, 0.8, 150)
    results = {"attnmel-mnv2": [], "attnmel-mnv2-lesion-x10": []}
    for seed in (0, 1):
        plain_logit = noise[seed] + 0.8 * melanoma
        # seed 0: far better separated; seed 1: as well separated as the plain model (the same true AUC)
        prior_logit = noise[seed] * 0.5 + 3.0 * melanoma if seed == 0 else rng.normal(size=150) + 0.8 * melanoma
        plain, prior = 1 / (1 + np.exp(-plain_logit)), 1 / (1 + np.exp(-prior_logit))
        results["attnmel-mnv2"].append(_run(seed, 0.7, 0.2, evaluation=_evaluation(
            tmp_path / f"plain{seed}", melanoma, plain, "stage4", plain_jaccard)))
        results["attnmel-mnv2-lesion-x10"].append(_run(seed, 0.8, 0.7, evaluation=_evaluation(
            tmp_path / f"prior{seed}", melanoma, prior, "stage4", prior_jaccard)))
    results["attnmel-mnv2"].append(_run(2, 0.7, 0.2))  # no predictions kept: no paired test, no error
    tests = benchmark.paired_tests(results, benchmark.IntervalSettings(resamples=500))
    found = {(t.seed, t.metric): t for t in tests}
    assert set(found) == {(0, "roc_auc"), (0, "jaccard"), (1, "roc_auc"), (1, "jaccard")}
    assert found[(0, "roc_auc")].significant and found[(0, "roc_auc")].difference.low > 0
    assert not found[(1, "roc_auc")].significant
    assert found[(1, "roc_auc")].difference.low < 0 < found[(1, "roc_auc")].difference.high
    assert found[(0, "jaccard")].layers == ("stage4", "stage4") and found[(1, "jaccard")].significant
    assert found[(0, "jaccard")].difference.estimate == pytest.approx(np.mean(prior_jaccard - plain_jaccard))

    summary = benchmark.summarise(results, tests)
    lines = benchmark.significance(summary)
    auc_line = next(line for line in lines if "val ROC AUC (DeLong)" in line)
    assert auc_line.startswith("- attnmel-mnv2-lesion-x10 - attnmel-mnv2") and "significant in 1 of 2 seeds" in auc_line
    assert "significant in every seed" in next(line for line in lines if "Jaccard stage4 vs stage4" in line)
    assert "not independent evidence" in benchmark.render(summary)
