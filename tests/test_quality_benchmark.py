"""The quality benchmark's table: rows finished for different seeds are compared on the seeds they share."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "quality_isic2017.py"


@pytest.fixture(scope="module")
def benchmark():
    spec = importlib.util.spec_from_file_location("quality_isic2017", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(seed: int, auc: float, jaccard: float, cam: bool = False) -> dict:
    return {"seed": seed, "roc_auc": auc, "average_precision": 0.5, "sensitivity_at_90_specificity": 0.5,
            ("jaccard_cam" if cam else "jaccard_stage4"): jaccard}


def test_checks_pair_rows_by_seed(benchmark):
    results = {
        "gap-mnv2": [_run(0, 0.80, 0.2, cam=True), _run(1, 0.90, 0.2, cam=True)],
        "attnmel-mnv2": [_run(0, 0.80, 0.30), _run(1, 0.84, 0.30)],
        # finished for seed 0 only: compared with seed 0 of the others, not with their two-seed mean
        "attnmel-mnv2-lesion-x10": [_run(0, 0.83, 0.70)],
    }
    table = benchmark.tables(results)
    assert "| attnmel-mnv2-lesion-x10 | 0 | 0.830 ± 0.000 |" in table
    assert "| gap-mnv2 | 0,1 | 0.850 ± 0.071 |" in table
    assert "attnmel-mnv2-lesion-x10 against attnmel-mnv2 (seeds [0]):" in table
    assert "| Jaccard gain, lesion - no prior | +0.400 | >= +0.20 | True |" in table
    assert "| val AUC change, lesion - no prior | +0.030 | >= -0.02 | True |" in table
    assert "- attnmel-mnv2-lesion-x10 (seeds [0]): AUC +0.030 vs gap-mnv2 (target >= +0.02: True)" in table
    assert "- attnmel-mnv2 (seeds [0, 1]): AUC -0.030 vs gap-mnv2 (target >= +0.02: False)" in table


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
    table = benchmark.tables(results)
    assert "- attnmel-mnv2-lesion-x10-tta (seeds [0]): AUC +0.030 vs gap-mnv2-tta (target >= +0.02: True)" in table
