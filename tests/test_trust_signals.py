"""Trust signals that hold where they matter (issue 31): class-conditional prediction sets, answers
that refer when the threshold and the sets disagree, no probability for a flagged image at any door,
fields fitted per mode of answering, one fitter, and an OOD check that catches noise."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from safetensors.torch import load_file, save_file

from attnmel.checkpoints.card import model_card, render_markdown
from attnmel.checkpoints.format import read_metadata, update_metadata
from attnmel.checkpoints.trust import ConformalSets, TrustFields, trust_mode
from attnmel.cli import build_parser, main
from attnmel.errors import ConfigError
from attnmel.evaluation.calibration import CalibrationFit, calibrate_checkpoint
from attnmel.evaluation.evaluate import EvaluationOptions, evaluate_checkpoint
from attnmel.evaluation.operating_point import choose_operating_point
from attnmel.evaluation.split_predictions import read_split
from attnmel.evaluation.trust import (
    DetectorData,
    FittingData,
    TrustOptions,
    conformal_report,
    fit_conformal,
    fit_ood,
    fit_trust,
)
from attnmel.inference import DataSplit, InferenceSettings, load_model
from attnmel.inference.trust import image_statistics, refer_reasons
from attnmel.io import file_sha256
from attnmel.serving import ServedModel, ServiceSettings, create_app
from attnmel.visualize import ImageFigure

from .checkpoint_helpers import make_checkpoint
from .conftest import SAMPLE
from .trust_helpers import flagging_detector

QUIET = InferenceSettings(progress=False, device="cpu")
NAMES = ["other", "melanoma"]
VAL_IMAGES = sorted((SAMPLE / "ISIC-2017_Validation_Data").glob("*.jpg"))


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("signals") / "model.safetensors")


def _copy(model_file, tmp_path, name="model.safetensors"):
    return shutil.copy(model_file, tmp_path / name)


def _dim(path) -> int:
    return load_file(str(path))["classifier.weight"].shape[1]


def _point(threshold: float):
    return choose_operating_point(np.array([0, 1, 1]), np.array([0.1, 0.6, 0.9]), rule="fixed", fixed=threshold,
                                  data="test")


# ---------------------------------------------------------------------------- class-conditional sets


def _simulated(rng, n: int, share: float = 0.2):
    """A rare positive class whose probabilities run lower than the common class's (as melanoma's do)."""
    labels = (rng.random(n) < share).astype(int)
    p = np.clip(np.where(labels == 1, rng.beta(3, 4, n), rng.beta(1.5, 6, n)), 1e-6, 1 - 1e-6)
    return labels, np.stack([1 - p, p], axis=1)


@pytest.mark.parametrize("alpha", [0.1, 0.2])
def test_class_conditional_sets_cover_each_class_where_marginal_sets_miss_the_rare_one(alpha):
    rng = np.random.default_rng(1)
    covered = {"class-conditional": {0: [], 1: []}, "marginal": {0: [], 1: []}}
    for _ in range(200):
        labels, probabilities = _simulated(rng, 1400)
        for kind in covered:
            sets = fit_conformal(labels[:400], probabilities[:400], NAMES, alpha, "sim", kind)
            report = conformal_report(sets, labels[400:], probabilities[400:], NAMES)
            for c, name in enumerate(NAMES):
                covered[kind][c].append(report.per_class[name]["coverage"])
    for c in (0, 1):  # each class at 1 - alpha (finite-sample slack below 0.05)
        assert abs(np.mean(covered["class-conditional"][c]) - (1 - alpha)) < 0.03
    assert np.mean(covered["marginal"][1]) < 1 - alpha - 0.05  # the rare class is what marginal sets miss


def test_per_class_quantiles_are_stored_validated_and_read_back(model_file, tmp_path):
    path = _copy(model_file, tmp_path)
    rng = np.random.default_rng(0)
    labels, probabilities = _simulated(rng, 300)
    sets = fit_conformal(labels, probabilities, NAMES, 0.1, "sim")
    update_metadata(path, conformal=sets)
    back = read_metadata(path).conformal
    assert back.kind == "class-conditional" and set(back.per_class) == set(NAMES)
    assert back.per_class["melanoma"][1] == int(labels.sum())
    assert back.sets(probabilities, NAMES) == sets.sets(probabilities, NAMES)
    assert "each class covered at 90%" in back.describe()


def test_an_older_checkpoint_with_marginal_sets_and_a_one_part_detector_loads_and_says_so(model_file, tmp_path):
    path = _copy(model_file, tmp_path)
    dim = _dim(path)
    rng = np.random.default_rng(0)
    payload = read_metadata(path).to_dict()
    payload["conformal"] = {"alpha": 0.1, "quantile": 0.6, "images": 150, "data": "isic2017 val"}  # no kind
    payload["ood_detector"] = {  # the format before parts: one mean, a raw-scale threshold
        "method": "ppca-mahalanobis", "mean": rng.normal(size=dim).tolist(),
        "components": rng.normal(size=(3, dim)).tolist(), "variances": [3.0, 2.0, 1.0], "residual_variance": 1.0,
        "threshold": 1e9, "fitted_on": "old train", "threshold_on": "old val", "flagged_share": 0.05,
        "transform": "signed-sqrt"}
    save_file(load_file(str(path)), str(path), metadata={"attnmel": json.dumps(payload)})
    meta = read_metadata(path)
    assert meta.conformal.kind == "marginal" and meta.conformal.per_class is None
    assert len(meta.ood_detector.parts) == 1 and meta.ood_detector.parts[0].threshold == 1e9
    answer = load_model(path).predict(VAL_IMAGES[0])
    assert answer.out_of_distribution is False and answer.ood_score < 1
    assert answer.prediction_set == [n for n in NAMES if 1 - answer.probabilities[n] <= 0.6 + 1e-12]
    card = render_markdown(model_card(meta))
    assert "marginal split conformal sets" in card and "These sets are marginal" in card


# ---------------------------------------------------------------------------------------- refer


def test_refer_reasons_cover_each_disagreement():
    assert refer_reasons("other", ["other"], False) == []
    assert "outside the prediction set" in refer_reasons("melanoma", ["other"], False)[0]
    assert "uncertain" in refer_reasons("other", ["other", "melanoma"], False)[0]
    assert "empty" in refer_reasons("other", [], False)[0]
    assert refer_reasons("other", ["other"], True) == ["out of distribution"]
    assert refer_reasons("other", None, None) == []


def test_an_answer_whose_class_is_outside_its_set_refers_at_every_door(model_file, tmp_path, capsys):
    """Threshold 0 says melanoma for every image; sets that hold only "other" make every answer disagree."""
    path = _copy(model_file, tmp_path)
    only_other = ConformalSets(0.1, 1.0, 20, "test", "class-conditional", {"other": (1.0, 10), "melanoma": (0.0, 10)})
    update_metadata(path, operating_point=_point(0.0), conformal=only_other)
    answer = load_model(path).predict(VAL_IMAGES[0])
    assert answer.predicted_class == "melanoma" and answer.prediction_set == ["other"]
    assert answer.refer and "outside the prediction set" in answer.refer_reasons[0]
    body = answer.to_dict()
    assert body["refer"] is True and "threshold and the sets disagree" in body["refer_reasons"][0]

    with TestClient(create_app(ServedModel(load_model(path), str(path)), ServiceSettings()),
                    base_url="http://localhost") as client:
        served = client.post("/predict?images=false", files={"file": ("a.jpg", VAL_IMAGES[0].read_bytes(), "image/jpeg")})
    assert served.json()["refer"] is True and served.json()["refer_reasons"] == body["refer_reasons"]

    folder = tmp_path / "images"
    folder.mkdir()
    shutil.copy(VAL_IMAGES[0], folder)
    assert main(["predict", str(folder), "--checkpoint", str(path), "--output", str(tmp_path / "p"), "--no-figures"]) == 0
    assert "[refer: the predicted class melanoma" in capsys.readouterr().out
    frame = pd.read_csv(tmp_path / "p" / "predictions.csv")
    assert frame["refer"].tolist() == [True] and "outside the prediction set" in frame["refer_reasons"][0]
    assert "refer: the predicted class melanoma" in (tmp_path / "p" / "report.html").read_text()

    result = evaluate_checkpoint(path, DataSplit(SAMPLE, "val"), tmp_path / "e", EvaluationOptions(intervals=None), QUIET)
    trust = result.trust.to_dict()
    assert trust["referred"]["count"] == result.images == trust["referred"]["predicted_class_outside_set"]


# --------------------------------------------------------------------- a flagged answer shows no probability


@pytest.fixture(scope="module")
def flagging_file(model_file, tmp_path_factory):
    path = _copy(model_file, tmp_path_factory.mktemp("flagging"), "flagging.safetensors")
    update_metadata(path, ood_detector=flagging_detector(_dim(path)), operating_point=_point(0.3))
    return path


def test_a_flagged_answer_has_no_probability_in_the_library_json_and_figure(flagging_file):
    answer = load_model(flagging_file).predict(VAL_IMAGES[0])
    assert answer.out_of_distribution and answer.refer and answer.withheld
    body = answer.to_dict()
    assert body["probabilities"] is None and body["predicted_class"] is None and body["prediction_set"] is None
    assert "no probability" in body["withheld"] and body["refer_reasons"] == ["out of distribution"]
    figure = ImageFigure.of(answer)
    assert figure.probability is None and "P(" not in figure.title and "not answered" in figure.title
    figure.draw()  # draws without a probability


def test_a_flagged_answer_has_no_probability_over_http(flagging_file):
    with TestClient(create_app(ServedModel(load_model(flagging_file), str(flagging_file)), ServiceSettings()),
                    base_url="http://localhost") as client:
        body = client.post("/predict?figure=true", files={"file": ("a.jpg", VAL_IMAGES[0].read_bytes(),
                                                                    "image/jpeg")}).json()
    assert body["out_of_distribution"] is True and body["probabilities"] is None and body["predicted_class"] is None
    assert body["withheld"] and body["figure_png"].startswith("data:image/png")


def test_a_flagged_answer_has_no_probability_in_predict_cli_csv_and_report(flagging_file, tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    for image in VAL_IMAGES[:2]:
        shutil.copy(image, folder)
    assert main(["predict", str(folder), "--checkpoint", str(flagging_file), "--output", str(tmp_path / "p")]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith(VAL_IMAGES[0].stem)]
    assert lines and all("not answered" in line and "melanoma 0." not in line and "other 0." not in line
                         for line in lines)
    frame = pd.read_csv(tmp_path / "p" / "predictions.csv")
    assert frame[NAMES].isna().all().all() and frame["predicted"].isna().all() and frame["withheld"].notna().all()
    report = (tmp_path / "p" / "report.html").read_text()
    assert "not answered" in report and "OUT OF DISTRIBUTION" in report


# ------------------------------------------------------------------------- fields per mode of answering


def test_tta_and_ensemble_answers_never_borrow_the_plain_fields(model_file, tmp_path):
    path = _copy(model_file, tmp_path)
    other = make_checkpoint(tmp_path / "other.safetensors", seed=1)
    update_metadata(path, operating_point=_point(0.0), ood_detector=flagging_detector(_dim(path)),
                    conformal=ConformalSets(0.1, 1.0, 20, "test", "class-conditional", {n: (1.0, 10) for n in NAMES}))
    model = load_model(path)
    plain = model.predict(VAL_IMAGES[0])
    assert plain.trust_mode == "plain" and plain.trust_note is None and plain.threshold == 0.0
    assert plain.out_of_distribution and plain.prediction_set == NAMES
    tta = model.predict(VAL_IMAGES[0], tta=True)
    assert tta.trust_mode == "tta" and "no trust fields fitted for tta answers" in tta.trust_note
    assert tta.threshold == 0.5 and "no operating point fitted for tta" in tta.threshold_rule
    assert tta.ood_score is None and tta.prediction_set is None and not tta.refer
    assert tta.to_dict()["probabilities"] is not None and tta.to_dict()["trust_note"] == tta.trust_note
    ensemble = load_model([path, other]).predict(VAL_IMAGES[0])
    assert ensemble.trust_mode == "ensemble of 2" and ensemble.trust_note and ensemble.ood_score is None

    # fields fitted for this very ensemble (keyed by the other member's sha256) are used by it alone
    key = trust_mode(False, [file_sha256(other)])
    dim = _dim(path) + _dim(other)  # the members' features side by side
    meta = read_metadata(path).with_trust(key, TrustFields(_point(1.0), flagging_detector(dim), None))
    update_metadata(path, trust_modes=meta.trust_modes)
    ensemble = load_model([path, other]).predict(VAL_IMAGES[0])
    assert ensemble.trust_note is None and ensemble.threshold == 1.0 and ensemble.out_of_distribution
    assert load_model([path, make_checkpoint(tmp_path / "third.safetensors", seed=2)]).predict(VAL_IMAGES[0]).trust_note
    assert load_model(path).predict(VAL_IMAGES[0]).threshold == 0.0  # plain answers keep their own


def test_calibrate_tta_fits_the_tta_mode_and_leaves_plain_fields(model_file, tmp_path):
    path = _copy(model_file, tmp_path)
    update_metadata(path, operating_point=_point(0.25))
    fit = CalibrationFit(fit=("threshold", "sets"))
    result = calibrate_checkpoint(path, DataSplit(SAMPLE, "train"), fit, QUIET.replace(tta=True),
                                  output=tmp_path / "tta.safetensors")
    assert result.mode == "tta" and result.fitted == ("threshold", "sets")
    meta = read_metadata(tmp_path / "tta.safetensors")
    assert meta.operating_point.threshold == 0.25 and meta.conformal is None  # plain: as it was
    assert meta.trust_modes["tta"].conformal.kind == "class-conditional"
    model = load_model(tmp_path / "tta.safetensors")
    assert model.predict(VAL_IMAGES[0], tta=True).threshold == meta.trust_modes["tta"].operating_point.threshold
    assert model.predict(VAL_IMAGES[0]).threshold == 0.25


def test_a_new_temperature_drops_the_other_modes_thresholds_and_sets(model_file, tmp_path):
    path = _copy(model_file, tmp_path)
    update_metadata(path, operating_point=_point(0.25))
    result = calibrate_checkpoint(path, DataSplit(SAMPLE, "train"), CalibrationFit(), QUIET.replace(tta=True),
                                  output=tmp_path / "tta.safetensors")
    meta = read_metadata(tmp_path / "tta.safetensors")
    assert meta.operating_point is None and meta.trust_modes["tta"].operating_point is not None
    assert any("no longer hold" in note for note in result.notes)


# -------------------------------------------------------------------------------------- one fitter


def test_fit_trust_takes_out_of_fold_scores_from_any_source():
    rng = np.random.default_rng(3)
    labels, probabilities = _simulated(rng, 600)
    data = FittingData.from_scores(labels, probabilities[:, 1], 1, "out of fold")
    fitted = fit_trust(data, NAMES, "melanoma")
    assert fitted.temperature is not None and fitted.fields.operating_point.data == "out of fold"
    assert fitted.fields.operating_point.images == 600 and fitted.fields.conformal.per_class["melanoma"][1] == labels.sum()
    assert fitted.fields.ood_detector is None  # no detector asked for without its images
    only_sets = fit_trust(data, NAMES, "melanoma", options=TrustOptions(fit=("sets",)),
                          current=TrustFields(_point(0.4)))
    assert only_sets.temperature is None and only_sets.fields.operating_point.threshold == 0.4
    with pytest.raises(ConfigError, match="--fit"):
        TrustOptions(fit=("colour",))


def test_calibrate_refits_the_detector_from_training_like_images_given_with_an_option(model_file, tmp_path, capsys):
    path = _copy(model_file, tmp_path)
    assert main(["calibrate", "--checkpoint", str(path), "--data", str(SAMPLE), "--fit", "detector",
                 "--output", str(tmp_path / "x.safetensors")]) == 2
    assert "--detector-data" in capsys.readouterr().err
    assert main(["calibrate", "--checkpoint", str(path), "--data", str(SAMPLE), "--split", "val", "--fit", "detector",
                 "--detector-data", str(SAMPLE), "--output", str(tmp_path / "d.safetensors")]) == 0
    out = capsys.readouterr().out
    assert "OOD detector fitted on" in out and "refitted for plain answers: detector" in out
    meta = read_metadata(tmp_path / "d.safetensors")
    assert {part.input for part in meta.ood_detector.parts} == {"features", "image-statistics"}
    assert meta.temperature is None and meta.conformal is None  # nothing else refitted
    answer = load_model(tmp_path / "d.safetensors").predict(VAL_IMAGES[0])
    assert answer.ood_score is not None


def test_help_no_longer_says_calibrate_stores_only_a_temperature(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "calibrate refit temperature, threshold, prediction sets and OOD detector" in text
    assert "softmax temperature on validation and store it in the checkpoint" not in text


# ---------------------------------------------------------------------------- evaluate and the card


def test_evaluate_reports_coverage_and_set_size_per_class_with_intervals(model_file, tmp_path):
    path = _copy(model_file, tmp_path)
    calibrate_checkpoint(path, DataSplit(SAMPLE, "train"), CalibrationFit(fit=("sets",)), QUIET,
                         output=tmp_path / "sets.safetensors")
    result = evaluate_checkpoint(tmp_path / "sets.safetensors", DataSplit(SAMPLE, "val"), tmp_path / "e",
                                 EvaluationOptions(intervals=None), QUIET)
    conformal = json.loads((tmp_path / "e" / "metrics.json").read_text())["trust"]["conformal"]
    assert conformal["kind"] == "class-conditional"
    for name in NAMES:
        entry = conformal["per_class"][name]
        low, high = entry["coverage_interval"]
        assert low <= entry["coverage"] <= high and entry["images"] > 0 and 0 <= entry["mean_set_size"] <= 2
    assert "melanoma (" in result.trust.describe() and "mean set size" in result.trust.describe()


def test_the_card_shows_metrics_at_the_operating_point_and_0_5_only_beside_it(model_file, tmp_path):
    path = _copy(model_file, tmp_path)
    meta = read_metadata(path)
    metrics = {"val": {"melanoma": {"roc_auc": 0.8, "sensitivity": 0.6, "specificity": 0.9, "accuracy": 0.85,
                                    "threshold": 0.5, "n": 150, "n_positive": 30}}}
    point = choose_operating_point(np.r_[np.zeros(120), np.ones(30)].astype(bool),
                                   np.r_[np.linspace(0, 0.6, 120), np.linspace(0.1, 0.9, 30)], data="isic2017 val")
    card = model_card(meta.replace(metrics=metrics, operating_point=point))
    assert card.metrics.at_operating_point["threshold"] == point.threshold
    assert "sensitivity" not in card.metrics.positive_class and card.metrics.at_threshold_half["sensitivity"] == 0.6
    text = render_markdown(card)
    assert f"threshold {point.threshold:.4f}" in text and "which the model does not answer with" in text
    assert text.index("At the operating point") < text.index("Beside it only")
    plain = render_markdown(model_card(meta.replace(metrics=metrics)))  # answers at 0.5: no second table
    assert "the one the model answers with" in plain and "Beside it only" not in plain


# ------------------------------------------------------------------------------ the image statistics


def _noise(kind: str, rng, size=(300, 300)) -> Image.Image:
    width, height = size
    arrays = {
        "uniform": lambda: rng.integers(0, 256, (height, width, 3)),
        "gaussian": lambda: rng.normal(128, 40, (height, width, 3)),
        "grey": lambda: np.repeat(rng.integers(0, 256, (height, width, 1)), 3, axis=2),
        "salt-and-pepper": lambda: np.where(rng.random((height, width, 1)) < 0.1, 255, 128).repeat(3, axis=2),
        "blocks": lambda: np.repeat(np.repeat(rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3)), 8, 0), 8, 1)[
            :height, :width],
    }
    return Image.fromarray(np.clip(arrays[kind](), 0, 255).astype(np.uint8))


def test_the_image_statistics_tell_noise_of_every_kind_from_dermoscopy(model_file):
    """A detector on the image statistics alone, fitted on the sample's training images with its thresholds
    from its validation images, flags every noise image of five kinds at three sizes."""
    model = load_model(model_file, QUIET)
    train = model.infer(read_split(DataSplit(SAMPLE, "train"), model.task)[1], QUIET, keep=("features",))
    val = model.infer(read_split(DataSplit(SAMPLE, "val"), model.task)[1], QUIET, keep=("features",))
    detector = fit_ood(DetectorData.of(train, "train"), DetectorData.of(val, "val"), inputs=("image-statistics",),
                       components=8)
    assert detector.flagged_share <= 0.1
    rng = np.random.default_rng(0)
    images = [_noise(kind, rng, size) for kind in ("uniform", "gaussian", "grey", "salt-and-pepper", "blocks")
              for size in ((96, 96), (300, 300), (640, 480))]
    batch = np.stack([np.asarray(model.preprocessing(image)) for image in images])
    mean, std = (np.array(v).reshape(1, 3, 1, 1) for v in (model.preprocessing.mean, model.preprocessing.std))
    statistics = image_statistics(torch.from_numpy(batch * std + mean))
    assert (detector.score(None, statistics) > 1).all()
