"""End to end through the command line: data check, train, evaluate (vs the official scorer), predict."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from PIL import Image

from attnmel.cli import main

from .conftest import make_isic2017_subset


@pytest.mark.slow
def test_data_check_on_real_isic2017(isic2017, capsys):
    assert main(["data", "check", str(isic2017), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    splits = report["datasets"][0]["splits"]
    train, val = splits["train"], splits["val"]
    assert (train["images"], train["classes"]["melanoma"], train["masks_present"]) == (2000, 374, 1800)
    assert (val["images"], val["classes"]["melanoma"], val["masks_present"]) == (150, 30, 121)
    assert report["counts"]["error"] == 0 and report["ok"]


def test_errors_are_one_line_without_traceback(tmp_path, capsys):
    assert main(["data", "check", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err and str(tmp_path / "nowhere") in err


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    data = make_isic2017_subset(root / "data", n_train=8, n_val=6)
    run = root / "run"
    code = main([
        "train", "--config", "isic2017/attnmel-lesion", "--data", str(data), "--output", str(run), "--no-progress",
        "--set", "model.weights=null", "--set", "data.resize=72", "--set", "data.image_size=64",
        "--set", "train.epochs=1", "--set", "train.batch_size=4", "--set", "data.num_workers=0",
        "--set", "train.passes_per_epoch=1",
    ])
    assert code == 0
    return data, run


def test_train_evaluate_predict(trained_run, tmp_path, capsys):
    data, run = trained_run
    assert (run / "best.safetensors").is_file() and (run / "metrics.csv").is_file()
    out = tmp_path / "eval"
    assert main(["evaluate", "--checkpoint", str(run), "--data", str(data), "--split", "val", "--output", str(out)]) == 0
    predictions = pd.read_csv(out / "predictions.csv")
    assert list(predictions.columns) == ["image", "melanoma"] and len(predictions) == 6
    metrics = json.loads((out / "metrics.json").read_text())["classification"]["melanoma"]
    assert {"roc_auc", "average_precision", "accuracy", "sensitivity", "specificity", "balanced_accuracy",
            "precision", "sensitivity_at_90_specificity"} <= set(metrics)
    for name in ("roc.png", "pr.png"):
        assert Image.open(out / name).size[0] > 100

    predictions = tmp_path / "pred"
    images = data / "ISIC-2017_Validation_Data"
    assert main(["predict", str(images), "--checkpoint", str(run / "best.safetensors"), "--output", str(predictions)]) == 0
    table = pd.read_csv(predictions / "predictions.csv")
    assert len(table) == 6 and ((table["melanoma"] + table["other"]) - 1).abs().max() < 1e-5
    assert sorted(p.stem for p in (predictions / "figures").glob("*.png")) == sorted(table["image"])
    report = (predictions / "report.html").read_text()
    assert all(name in report for name in table["image"])  # every input is listed
    assert "melanoma" in capsys.readouterr().out


def test_evaluate_matches_the_official_isic_scorer(trained_run, tmp_path):
    from isic_challenge_scoring.classification import ClassificationMetric, ClassificationScore

    data, run = trained_run
    out = tmp_path / "eval"
    assert main(["evaluate", "--checkpoint", str(run), "--data", str(data), "--split", "val", "--output", str(out)]) == 0
    ours = json.loads((out / "metrics.json").read_text())["classification"]["melanoma"]
    official = ClassificationScore.from_file(out / "ground_truth.csv", out / "predictions.csv", ClassificationMetric.AUC)
    theirs = official.per_category.loc["melanoma"] if "melanoma" in official.per_category.index else official.per_category.T["melanoma"]
    pairs = {"roc_auc": "auc", "average_precision": "ap", "accuracy": "accuracy", "sensitivity": "sensitivity",
             "specificity": "specificity", "precision": "ppv", "npv": "npv"}
    for mine, scorer in pairs.items():
        if ours[mine] is None:
            continue
        assert ours[mine] == pytest.approx(float(theirs[scorer]), abs=1e-9), mine


def test_data_stats_reproduces_the_per_image_method(tmp_path, capsys):
    """``data stats`` = mean of per-image channel means/stds after the paper's geometry, usable as data.normalization."""
    import numpy as np
    from torchvision import tv_tensors
    from torchvision.transforms.v2 import functional as F

    from attnmel.data.images import read_image
    from attnmel.data.transforms import geometry, resolve_normalization

    data = make_isic2017_subset(tmp_path / "data", n_train=4, n_val=2)
    out = tmp_path / "stats.json"
    assert main(["data", "stats", str(data), "--split", "train", "--output", str(out)]) == 0
    stats = json.loads(out.read_text())
    means, stds = [], []
    for path in sorted((data / "ISIC-2017_Training_Data").glob("*.jpg")):
        x = geometry(256, 0.8)(tv_tensors.Image(F.pil_to_tensor(read_image(path)))).double().flatten(1) / 255
        means.append(x.mean(1).numpy())
        stds.append(x.std(1).numpy())
    assert stats["images"] == 4
    np.testing.assert_allclose(stats["mean"], np.mean(means, 0), atol=1e-4)
    np.testing.assert_allclose(stats["std"], np.mean(stds, 0), atol=1e-4)
    assert resolve_normalization(str(out)) == (tuple(stats["mean"]), tuple(stats["std"]))
    assert len(stats["pooled"]["mean"]) == 3 and all(s > 0 for s in stats["pooled"]["std"])
