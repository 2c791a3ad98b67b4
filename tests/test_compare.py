"""``attnmel evaluate`` intervals and ``attnmel compare``: paired differences of two models on the same images."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from attnmel.cli import main
from attnmel.metrics.classification import binary_metrics
from attnmel.metrics.intervals import delong_interval
from attnmel.outputs import OutputSet


def _evaluation_folder(folder: Path, images: list[str], melanoma: np.ndarray, scores: np.ndarray,
                       jaccard: dict[str, np.ndarray] | None = None) -> Path:
    """An evaluation folder as ``attnmel evaluate`` writes it (predictions, ground truth, attention CSV)."""
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"image": images, "melanoma": scores}).to_csv(folder / "predictions.csv", index=False)
    pd.DataFrame({"image": images, "melanoma": melanoma.astype(float)}).to_csv(folder / "ground_truth.csv", index=False)
    if jaccard is not None:
        frame = pd.DataFrame({"image": images, "has_mask": ~np.isnan(next(iter(jaccard.values())))})
        for layer, values in jaccard.items():
            frame[f"{layer}_jaccard"], frame[f"{layer}_dice"] = values, 2 * values / (1 + values)
        frame.to_csv(folder / "attention_quality.csv", index=False)
        (folder / "metrics.json").write_text(json.dumps({"split": "val", "backbone": "mobilenet_v2", "image_size": 160,
                                                         "attention_quality": {"threshold": 0.5}}))
    return with_manifest(folder)


def with_manifest(folder: Path) -> Path:
    """The output manifest evaluate writes last, naming the files in ``folder``."""
    outputs = OutputSet(folder, "evaluate", log=None)
    for path in sorted(folder.iterdir()):
        if path.is_file():
            outputs.add(path)
    outputs.commit()
    return folder


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    """150 images (30 melanomas, as ISIC 2017 val): a weak model A and a clearly better model B."""
    root = tmp_path_factory.mktemp("compare")
    rng = np.random.default_rng(0)
    melanoma = np.r_[np.ones(30), np.zeros(120)].astype(int)
    images = [f"ISIC_{i:07d}" for i in rng.permutation(150)]
    weak = 1 / (1 + np.exp(-(rng.normal(size=150) + 0.4 * melanoma - 1.0)))
    strong = 1 / (1 + np.exp(-(rng.normal(size=150) * 0.6 + 2.5 * melanoma - 1.2)))
    masks = rng.random(150) < 0.8
    jaccard_a = np.where(masks, rng.uniform(0.1, 0.4, 150), np.nan)
    jaccard_b = np.where(masks, np.clip(jaccard_a + rng.normal(0.3, 0.05, 150), 0, 1), np.nan)
    a = _evaluation_folder(root / "a" / "eval-val", images, melanoma, weak, {"stage4": jaccard_a})
    b = _evaluation_folder(root / "b" / "eval-val", images, melanoma, strong, {"stage4": jaccard_b, "stage3": jaccard_b})
    return root, a, b, melanoma, weak, strong


def test_compare_prediction_folders_finds_the_better_model(two_models, tmp_path, capsys):
    _, a, b, melanoma, weak, strong = two_models
    out = tmp_path / "cmp"
    assert main(["compare", str(a), str(b), "--output", str(out), "--bootstrap", "1000"]) == 0
    printed = capsys.readouterr().out
    assert "| melanoma | ROC AUC (DeLong) |" in printed and "Significant at 0.05: melanoma ROC AUC (DeLong)" in printed
    result = json.loads((out / "compare.json").read_text())
    assert result["images"] == 150 and result["positives"] == {"melanoma": 30} and result["difference"] == "b - a"
    auc = result["classes"]["melanoma"]["roc_auc"]
    reference = binary_metrics(melanoma, strong).roc_auc - binary_metrics(melanoma, weak).roc_auc
    assert auc["difference"]["estimate"] == pytest.approx(reference, abs=1e-9) and reference > 0.2
    assert auc["test"] == "delong" and auc["p_value"] < 0.001 and auc["difference"]["low"] > 0.1
    assert result["classes"]["melanoma"]["average_precision"]["test"] == "paired bootstrap"
    assert result["mcnemar"]["melanoma"]["test"] == "mcnemar exact binomial"
    # only stage4 is common to both; its Jaccard gain (+0.3 per image) is clear
    assert list(result["attention_quality"]) == ["stage4"]
    jaccard = result["attention_quality"]["stage4"]["jaccard"]
    assert jaccard["difference"]["low"] > 0.25 and jaccard["p_value"] < 0.01
    assert result["attention_images"] == int((~pd.read_csv(a / "attention_quality.csv")["stage4_jaccard"].isna()).sum())
    assert "B: " in (out / "compare.md").read_text() and "(mobilenet_v2, 160 px, split val)" in printed


def test_a_model_against_itself_differs_in_nothing(two_models, capsys):
    _, a, _, _, _, _ = two_models
    assert main(["compare", str(a), str(a / "predictions.csv"), "--json", "--bootstrap", "200"]) == 0
    result = json.loads(capsys.readouterr().out)
    for metric in result["classes"]["melanoma"].values():
        assert metric["difference"]["estimate"] == 0 and metric["p_value"] == 1.0
    assert result["mcnemar"]["melanoma"]["p_value"] == 1.0
    assert result["notes"] == [] or "attention" in result["notes"][0]


def test_layers_can_be_paired_by_name(two_models, capsys):
    _, a, b, *_ = two_models
    assert main(["compare", str(a), str(b), "--layer", "stage4:stage3", "--json", "--bootstrap", "200"]) == 0
    assert list(json.loads(capsys.readouterr().out)["attention_quality"]) == ["stage4 vs stage3"]
    assert main(["compare", str(a), str(b), "--layer", "stage3:stage4"]) == 2
    assert "A has no attention layer 'stage3'" in capsys.readouterr().err
    assert main(["compare", str(a), str(b), "--layer", "stage4"]) == 2
    assert "A_LAYER:B_LAYER" in capsys.readouterr().err


def test_different_images_or_missing_truth_stop_with_one_line(two_models, tmp_path, capsys):
    root, a, _, melanoma, weak, _ = two_models
    images = pd.read_csv(a / "predictions.csv")["image"].tolist()
    fewer = _evaluation_folder(tmp_path / "fewer", images[2:], melanoma[2:], weak[2:])
    assert main(["compare", str(a), str(fewer)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "different images: 150 against 148" in err and images[0] in err
    alone = tmp_path / "alone" / "scores.csv"
    alone.parent.mkdir()
    alone.write_text((a / "predictions.csv").read_text())
    assert main(["compare", str(a), str(alone)]) == 2
    assert "no ground truth" in capsys.readouterr().err
    assert main(["compare", str(a), str(alone), "--truth", str(a / "ground_truth.csv"), "--json",
                 "--bootstrap", "100"]) == 0
    capsys.readouterr()
    assert main(["compare", str(a), str(root / "no-such-run")]) == 2
    assert "give --data" in capsys.readouterr().err
    assert main(["compare", str(a), str(a), "--bootstrap", "10"]) == 2
    assert "--bootstrap" in capsys.readouterr().err


def test_comparing_prediction_csvs_does_not_import_torch(two_models):
    _, a, b, *_ = two_models
    code = "import sys\nfrom attnmel.cli import main\nmain(sys.argv[1:])\nprint('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code, "compare", str(a), str(b), "--bootstrap", "100"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip().splitlines()[-1] == "False", out.stderr


# ---------------------------------------------------------------------- on a real (tiny) checkpoint


def test_evaluate_writes_intervals_and_compare_scores_checkpoints(tiny_checkpoint, tmp_path, capsys):
    data = tiny_checkpoint.parents[1] / "data"
    out = tmp_path / "eval"
    assert main(["evaluate", "--checkpoint", str(tiny_checkpoint), "--data", str(data), "--split", "val",
                 "--output", str(out), "--masks", "--bootstrap", "300", "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    assert "ROC AUC by DeLong" in printed and "300 resamples" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    intervals = metrics["intervals"]
    assert (intervals["resamples"], intervals["seed"], intervals["level"]) == (300, 3, 0.95)
    melanoma = intervals["classification"]["melanoma"]
    assert melanoma["roc_auc"]["estimate"] == pytest.approx(metrics["classification"]["melanoma"]["roc_auc"])
    truth = pd.read_csv(out / "ground_truth.csv")["melanoma"].to_numpy()
    scores = pd.read_csv(out / "predictions.csv")["melanoma"].to_numpy()
    assert melanoma["roc_auc"]["high"] == pytest.approx(delong_interval(truth, scores).high, abs=1e-6)
    assert set(intervals["attention_quality"]) == {"stage3", "stage4"}
    assert intervals["calibration"]["ece"]["estimate"] == pytest.approx(metrics["calibration"]["ece"])
    assert (metrics["backbone"], metrics["image_size"], metrics["train_images"]) == ("mobilenet_v2", 64, 8)

    # the checkpoint, scored again here, against its own evaluation: the same images, no difference
    assert main(["compare", str(tiny_checkpoint), str(out), "--data", str(data), "--masks", "--json",
                 "--bootstrap", "200"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["images"] == 6 and set(result["attention_quality"]) == {"stage3", "stage4"}
    for scores in [*result["classes"]["melanoma"].values(), *result["attention_quality"]["stage4"].values()]:
        assert abs(scores["difference"]["estimate"]) < 1e-6 and scores["p_value"] > 0.5


def test_evaluate_interval_options_are_checked_where_parsed(capsys):
    from attnmel.cli import build_parser, options
    from attnmel.cli.options import interval_settings
    from attnmel.metrics import intervals
    from attnmel.metrics.intervals import IntervalSettings

    assert (options.MIN_RESAMPLES, options.CI_METHODS) == (intervals.MIN_RESAMPLES, intervals.CI_METHODS)

    parse = build_parser("evaluate").parse_args
    assert interval_settings(parse(["evaluate", "--data", ".", "--no-ci"])) is None
    settings = interval_settings(parse(["evaluate", "--data", ".", "--ci-level", "0.9", "--bootstrap", "500",
                                        "--seed", "7", "--ci-method", "bca"]))
    assert settings == IntervalSettings(0.9, 500, 7, "bca")
    assert interval_settings(parse(["evaluate", "--data", "."])) == IntervalSettings()  # the library's defaults
    for option, value in (("--ci-level", "1"), ("--bootstrap", "99"), ("--seed", "-1"), ("--ci-method", "basic")):
        assert main(["evaluate", "--data", ".", option, value]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and option in err
