"""Calibration: ECE on hand-made cases, temperature scaling, and the temperature stored in checkpoints."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from attnmel.checkpoints.format import read_metadata, update_metadata
from attnmel.cli import main
from attnmel.evaluation.evaluate import evaluate_checkpoint
from attnmel.inference import DataSplit, InferenceSettings
from attnmel.metrics.calibration import (
    calibration_report,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    reliability_bins,
)
from attnmel.predict import predict_images

from .checkpoint_helpers import make_checkpoint, network_of
from .conftest import SAMPLE, make_isic2017_subset


def test_ece_on_hand_made_cases():
    # one bin at 0.8 confidence, half right: |0.5 - 0.8|
    assert expected_calibration_error([0.8] * 4, [1, 1, 0, 0]) == pytest.approx(0.3)
    # two bins, each 0.1 off, each half the samples
    assert expected_calibration_error([0.1, 0.1, 0.9, 0.9], [0, 0, 1, 1]) == pytest.approx(0.1)
    # 0.25 and 0.35 fall in different bins of 10 but the same single bin
    assert expected_calibration_error([0.25, 0.35], [1, 0], n_bins=10) == pytest.approx((0.75 + 0.35) / 2)
    assert expected_calibration_error([0.25, 0.35], [1, 0], n_bins=1) == pytest.approx(0.2)
    # perfectly confident and right (0 lands in the first bin, 1 in the last)
    assert expected_calibration_error([1.0, 0.0, 1.0], [1, 0, 1]) == 0.0
    bins = reliability_bins([0.5, 0.51], [0, 1], n_bins=2)  # bins are (lo, hi]: 0.5 is in the first
    assert bins.counts.tolist() == [1, 1] and bins.frequency.tolist() == [0.0, 1.0]


def test_calibration_report_top_label_and_per_class():
    probabilities = np.array([[0.3, 0.7], [0.9, 0.1], [0.6, 0.4]])
    labels = np.array([1, 1, 0])
    report = calibration_report(labels, probabilities, ["other", "melanoma"], ["melanoma"], n_bins=10)
    # top label: confidences 0.7 (right), 0.9 (wrong), 0.6 (right), each alone in its bin
    assert report.ece == pytest.approx((0.3 + 0.9 + 0.4) / 3)
    # p(melanoma) 0.7 (melanoma), 0.1 (melanoma), 0.4 (not)
    assert report.class_ece["melanoma"] == pytest.approx((0.3 + 0.9 + 0.4) / 3)
    assert report.nll == pytest.approx(-(math.log(0.7) + math.log(0.1) + math.log(0.6)) / 3)
    assert report.bins == 10
    assert report.to_dict()["melanoma"] == {"ece": report.class_ece["melanoma"]}


def test_temperature_scaling_recovers_the_overconfidence_of_a_synthetic_model():
    rng = np.random.default_rng(0)
    signal = rng.normal(0.0, 2.0, 4000)
    labels = (rng.random(4000) < 1 / (1 + np.exp(-signal))).astype(int)
    logits = torch.tensor(np.stack([np.zeros_like(signal), 5.0 * signal], axis=1))  # 5x too confident
    temperature = fit_temperature(logits, labels)
    assert temperature == pytest.approx(5.0, rel=0.1)

    def probabilities(t):
        return torch.softmax(logits / t, dim=1).numpy()

    assert negative_log_likelihood(labels, probabilities(temperature)) < negative_log_likelihood(labels, probabilities(1.0)) - 0.1
    before = calibration_report(labels, probabilities(1.0), ["other", "melanoma"], ["melanoma"]).ece
    after = calibration_report(labels, probabilities(temperature), ["other", "melanoma"], ["melanoma"]).ece
    assert after < before / 2
    # identical TTA views give the same temperature as one view
    assert fit_temperature(logits.expand(8, -1, -1), labels) == pytest.approx(temperature, rel=1e-4)


def test_temperature_round_trips_through_the_checkpoint(tmp_path):
    path = make_checkpoint(tmp_path / "model.safetensors")
    before = load_file(str(path))
    assert read_metadata(path).softmax_temperature == 1.0
    update_metadata(path, temperature=2.5)
    meta = read_metadata(path)
    assert meta.softmax_temperature == 2.5
    assert json.loads((tmp_path / "model.json").read_text()) == meta.to_dict()  # the sidecar follows
    after = load_file(str(path))
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert network_of(path)[1].temperature == 2.5
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_isic2017_subset(tmp_path_factory.mktemp("calibration") / "data", n_train=3, n_val=12)


def test_calibrate_lowers_nll_of_an_overconfident_model_and_writes_a_new_checkpoint(tmp_path, capsys):
    path = make_checkpoint(tmp_path / "run" / "best.safetensors", logit_scale=20.0)
    weights, original = load_file(str(path)), path.read_bytes()
    assert main(["calibrate", "--checkpoint", str(tmp_path / "run"), "--data", str(SAMPLE), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["previous_temperature"] == 1.0 and result["temperature"] > 1.0 and result["written"]
    assert result["after"]["nll"] < result["before"]["nll"]
    written = tmp_path / "run" / "best-calibrated.safetensors"
    assert result["output"] == str(written) and path.read_bytes() == original  # the input is never written
    meta = read_metadata(written)
    assert meta.temperature == pytest.approx(result["temperature"])
    assert meta.calibration["split"] == "val" and meta.calibration["images"] == 20
    assert meta.operating_point.threshold == pytest.approx(result["operating_point"]["threshold"])
    assert json.loads((tmp_path / "run" / "best-calibrated.json").read_text()) == meta.to_dict()
    assert all(torch.equal(weights[k], v) for k, v in load_file(str(written)).items())

    assert main(["calibrate", "--checkpoint", str(path), "--data", str(SAMPLE), "--dry-run",
                 "--output", str(tmp_path / "dry.safetensors")]) == 0
    out = capsys.readouterr().out
    assert "before (temperature" in out and "after  (temperature" in out and "ECE" in out and "dry run" in out
    assert not (tmp_path / "dry.safetensors").exists()


def test_evaluate_and_predict_apply_the_stored_temperature(data, tmp_path, capsys):
    path = make_checkpoint(tmp_path / "model.safetensors", logit_scale=5.0)
    quiet = InferenceSettings(progress=False)
    raw = evaluate_checkpoint(path, DataSplit(data, "val"), tmp_path / "raw", settings=quiet)
    update_metadata(path, temperature=3.0)
    scaled = evaluate_checkpoint(path, DataSplit(data, "val"), tmp_path / "scaled", settings=quiet)
    ignored = evaluate_checkpoint(path, DataSplit(data, "val"), tmp_path / "ignored",
                                  settings=quiet.replace(use_temperature=False))
    # softmax is shift-invariant, so softmax(log p / T) = softmax(z / T)
    expected = torch.softmax(torch.log(torch.tensor(raw.predictions.probabilities)) / 3.0, dim=1).numpy()
    np.testing.assert_allclose(scaled.predictions.probabilities, expected, atol=1e-6)
    np.testing.assert_allclose(ignored.predictions.probabilities, raw.predictions.probabilities, atol=1e-7)
    assert not np.allclose(scaled.predictions.probabilities, raw.predictions.probabilities, atol=1e-3)
    assert scaled.members[0]["temperature"] == 3.0
    assert scaled.calibration.bins == 15 and "melanoma" in scaled.calibration.class_ece
    assert Image.open(scaled.files["reliability"]).size[0] > 100
    written = pd.read_csv(tmp_path / "scaled" / "predictions.csv")
    np.testing.assert_allclose(written["melanoma"], expected[:, 1], atol=1e-6)

    results = predict_images(path, data / "ISIC-2017_Validation_Data").results
    by_id = dict(zip(scaled.predictions.image_ids, expected[:, 1], strict=True))
    for result in results:
        assert result.probabilities["melanoma"] == pytest.approx(by_id[result.image.stem], abs=1e-5)

    assert main(["evaluate", "--checkpoint", str(path), "--data", str(data), "--output", str(tmp_path / "cli")]) == 0
    out = capsys.readouterr().out
    assert "temperature 3" in out and "ECE" in out and (tmp_path / "cli" / "reliability.png").is_file()
