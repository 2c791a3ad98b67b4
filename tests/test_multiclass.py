"""Multi-class tasks: metrics equal to the official ISIC 2018/2019 scorer, and one short 7-class
train + evaluate through the command line."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from attnmel.cli import main
from attnmel.data.records import TASKS
from attnmel.metrics.classification import ClassificationReport, classification_report, top_labels

from .conftest import tiny
from .layouts import make_isic2018, make_isic2019

pytestmark = pytest.mark.filterwarnings("ignore:DataFrame.applymap has been deprecated:FutureWarning")

#: ours -> the scorer's per-category name
PER_CLASS = {"roc_auc": "auc", "average_precision": "ap", "accuracy": "accuracy", "sensitivity": "sensitivity",
             "specificity": "specificity", "precision": "ppv", "npv": "npv"}


def official_score(truth: pd.DataFrame, predicted: pd.DataFrame):
    from isic_challenge_scoring.classification import ClassificationMetric, ClassificationScore

    truth_csv, predicted_csv = (io.StringIO(frame.to_csv(index=False)) for frame in (truth, predicted))
    return ClassificationScore.from_stream(truth_csv, predicted_csv, ClassificationMetric.BALANCED_ACCURACY)


def assert_matches_scorer(report: ClassificationReport, score, class_names) -> None:
    assert report.multiclass.balanced_accuracy == pytest.approx(float(score.aggregate["balanced_accuracy"]), abs=1e-12)
    for name in class_names:
        theirs = score.per_category.loc[name]
        for mine, scorer in PER_CLASS.items():
            value = getattr(report[name], mine)
            if value is None or math.isnan(value):   # undefined (JSON null); the scorer calls it 1, "a freebie"
                continue
            assert value == pytest.approx(float(theirs[scorer]), abs=1e-12), (name, mine)
    assert report.multiclass.macro_roc_auc == pytest.approx(float(score.macro_average["auc"]), abs=1e-12)
    assert report.multiclass.macro_average_precision == pytest.approx(float(score.macro_average["ap"]), abs=1e-12)


def frames(labels, probabilities, class_names) -> tuple[pd.DataFrame, pd.DataFrame]:
    ids = [f"ISIC_{i:07d}" for i in range(len(labels))]
    truth = pd.DataFrame({"image": ids, **{c: (labels == k).astype(float) for k, c in enumerate(class_names)}})
    predicted = pd.DataFrame({"image": ids, **{c: probabilities[:, k] for k, c in enumerate(class_names)}})
    return truth, predicted


@pytest.mark.parametrize("task", ["isic2018-7class", "isic2019-8class"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multiclass_metrics_equal_the_official_scorer(task, seed):
    class_names = TASKS[task].class_names
    rng = np.random.default_rng(seed)
    n, k = 240, len(class_names)
    labels = np.concatenate([np.arange(k), rng.choice(k, n - k, p=np.linspace(2, 0.5, k) / np.linspace(2, 0.5, k).sum())])
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[labels] * rng.uniform(0, 2, (n, 1))
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    # ties for the top probability: the scorer's "undecided", counted wrong
    probabilities[:6, :2] = probabilities[:6, :2].max(axis=1, keepdims=True) + 1.0
    probabilities[:6] /= probabilities[:6].sum(axis=1, keepdims=True)
    assert (top_labels(probabilities) == -1).sum() == 6
    report = classification_report(labels, probabilities, class_names, class_names)
    assert 0.2 < report.multiclass.balanced_accuracy < 0.95
    assert report.multiclass.undecided == 6
    assert_matches_scorer(report, official_score(*frames(labels, probabilities, class_names)), class_names)
    matrix = np.array(report.multiclass.confusion_matrix)
    assert matrix.shape == (k, k)
    assert (matrix.sum(axis=1) + np.bincount(labels[:6], minlength=k) == np.bincount(labels, minlength=k)).all()
    decided = top_labels(probabilities) >= 0
    assert np.trace(matrix) == int(np.sum(top_labels(probabilities)[decided] == labels[decided]))


def test_multiclass_report_round_trips_and_reads_older_records():
    names = TASKS["isic2018-7class"].class_names
    rng = np.random.default_rng(0)
    labels = np.arange(21) % 7
    probabilities = rng.dirichlet(np.ones(7), 21)
    report = classification_report(labels, probabilities, names, names)
    payload = json.loads(json.dumps(report.to_dict()))
    assert ClassificationReport.from_dict(payload).multiclass == report.multiclass
    old = ClassificationReport.from_dict({"melanoma": payload["MEL"], "multiclass": {"accuracy": 0.5, "balanced_accuracy": 0.4}})
    assert (old.multiclass.accuracy, old.multiclass.balanced_accuracy, old.multiclass.confusion_matrix) == (0.5, 0.4, ())
    binary = classification_report(labels == 0, probabilities[:, :2] / probabilities[:, :2].sum(1, keepdims=True),
                                   ("other", "melanoma"), ("melanoma",))
    assert list(binary.to_dict()) == ["melanoma"]            # the two-class record is as before


@pytest.fixture(scope="module")
def isic2018_run(tmp_path_factory):
    """A 7-class AttnMel-CNN with the lesion prior, trained for one short epoch through the CLI."""
    root = tmp_path_factory.mktemp("isic2018")
    classes = TASKS["isic2018-7class"].class_names
    data = root / "data"
    make_isic2018(data, {"Training": [(c, f"HAM_{k:07d}") for k, c in enumerate(classes * 2)],
                         "Validation": [(c, None) for c in classes * 2]})
    run = root / "run"
    overrides = [arg for change in tiny("data.task=isic2018-7class", "train.select_metric=balanced_multiclass_accuracy",
                                        "data.roi=lesion", "data.normalization=imagenet")
                 for arg in ("--set", change)]
    assert main(["train", "--config", "isic2017/attnmel-lesion", "--data", str(data), "--output", str(run),
                 "--no-progress", *overrides]) == 0
    return data, run


@pytest.mark.slow
def test_seven_class_train_and_evaluate_through_the_cli_match_the_scorer(isic2018_run, tmp_path, capsys):
    data, run = isic2018_run
    classes = list(TASKS["isic2018-7class"].class_names)
    meta = json.loads((run / "best.json").read_text())
    assert meta["class_names"] == meta["score_columns"] == classes and meta["architecture"]["num_classes"] == 7
    history = pd.read_csv(run / "metrics.csv")
    assert "val_balanced_multiclass_accuracy" in history.columns
    split = json.loads((run / "split.json").read_text())
    assert split["mode"] == "official" and len(split["train"]) == len(split["val"]) == 14
    out = tmp_path / "eval"
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(run), "--data", str(data), "--split", "val", "--output", str(out),
                 "--masks"]) == 0
    printed = capsys.readouterr().out
    assert "balanced multiclass accuracy" in printed and "stage3" in printed
    predicted = pd.read_csv(out / "predictions.csv")
    assert list(predicted.columns) == ["image", *classes] and len(predicted) == 14
    assert np.allclose(predicted[classes].sum(axis=1), 1, atol=1e-5)
    metrics = json.loads((out / "metrics.json").read_text())
    report = ClassificationReport.from_dict(metrics["classification"])
    truth = pd.read_csv(out / "ground_truth.csv")
    assert_matches_scorer(report, official_score(truth, predicted), classes)
    assert np.array(report.multiclass.confusion_matrix).sum() + report.multiclass.undecided == 14
    assert Image.open(out / "confusion.png").size[0] > 200
    assert metrics["attention_quality"]["images_with_mask"] == 7


@pytest.mark.slow
def test_eight_class_run_leaves_unk_out_of_training_and_evaluation(tmp_path, capsys):
    classes = list(TASKS["isic2019-8class"].class_names)
    make_isic2019(tmp_path / "data", [(c, None) for c in classes * 2 + ["UNK", "UNK"]])
    overrides = [arg for change in tiny("data.task=isic2019-8class", "data.split=fraction", "data.val_fraction=0.5",
                                        "data.normalization=imagenet") for arg in ("--set", change)]
    assert main(["train", "--config", "isic2017/attnmel", "--data", str(tmp_path / "data"), "--output",
                 str(tmp_path / "run"), "--no-progress", *overrides]) == 0
    assert "train: left out of task 'isic2019-8class': UNK 2" in capsys.readouterr().out
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert len(split["train"]) == len(split["val"]) == 8 and split["mode"] == "fraction"
    assert main(["evaluate", "--checkpoint", str(tmp_path / "run"), "--data", str(tmp_path / "data"), "--split", "train",
                 "--output", str(tmp_path / "eval")]) == 0
    assert "2 UNK images left out of the task" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["images"] == 16 and metrics["left_out"] == {"UNK": 2}
    assert list(pd.read_csv(tmp_path / "eval" / "predictions.csv").columns) == ["image", *classes]
