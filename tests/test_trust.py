"""Know when not to trust an answer: the stored operating point at every door, calibrate writing a new
file, OOD flags, conformal sets and the attention check (issues 19, 20 and 23)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from fastapi.testclient import TestClient
from safetensors.torch import load_file, save_file

from attnmel.checkpoints.format import read_metadata, update_metadata
from attnmel.checkpoints.pretrained import get_pretrained
from attnmel.checkpoints.trust import OodDetector
from attnmel.cli import main
from attnmel.demo import unseen_data_path
from attnmel.errors import CheckpointError, ConfigError, DataError
from attnmel.evaluation.calibration import calibrate_checkpoint
from attnmel.evaluation.evaluate import EvaluationOptions, evaluate_checkpoint
from attnmel.evaluation.operating_point import choose_operating_point
from attnmel.evaluation.trust import conformal_quantile, fit_conformal
from attnmel.inference import DataSplit, InferenceSettings, load_model
from attnmel.inference.trust import NO_OOD_CHECK, attention_warning
from attnmel.io import file_sha256
from attnmel.serving import ServedModel, ServiceSettings, create_app

from .checkpoint_helpers import make_checkpoint
from .conftest import SAMPLE, benchmark_script, make_isic2017_subset, write_csv
from .trust_helpers import random_detector

QUIET = InferenceSettings(progress=False)

VAL = SAMPLE / "ISIC-2017_Validation_Data"


def _point(threshold: float):
    return choose_operating_point(np.array([0, 1, 1]), np.array([0.1, 0.6, 0.9]), rule="fixed", fixed=threshold,
                                  data="test")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("trust") / "model.safetensors")


# ------------------------------------------------------------------------------------ operating point


def test_threshold_rules_on_simulated_scores():
    rng = np.random.default_rng(0)
    labels = rng.random(400) < 0.25
    scores = np.clip(rng.normal(0.35 + 0.3 * labels, 0.15), 0, 1)
    point = choose_operating_point(labels, scores, rule="sensitivity", target=0.85, data="sim")
    assert point.sensitivity >= 0.85 and point.describe() == "85% sensitivity on sim"
    # the highest such threshold: the next positive above it would drop the sensitivity under the target
    above = np.sort(scores[labels & (scores > point.threshold)])
    assert (labels & (scores > above[0])).sum() / labels.sum() < 0.85
    assert point.sensitivity_interval[0] < point.sensitivity <= point.sensitivity_interval[1]
    youden = choose_operating_point(labels, scores, rule="youden")
    j = lambda t: ((scores > t) & labels).sum() / labels.sum() + ((scores <= t) & ~labels).sum() / (~labels).sum()  # noqa: E731
    assert j(youden.threshold) >= max(j(t) for t in np.linspace(0, 1, 201)) - 1e-9
    assert choose_operating_point(labels, scores, rule="fixed", fixed=0.3).threshold == 0.3
    with pytest.raises(Exception, match="both classes"):
        choose_operating_point(np.zeros(10, bool), scores[:10], rule="youden")


def test_stored_threshold_is_used_by_every_door_and_overridden_by_threshold(model_file, tmp_path, capsys):
    path = shutil.copy(model_file, tmp_path / "model.safetensors")
    update_metadata(path, operating_point=_point(1.0))  # nothing is above 1: every door must say "other"
    images = sorted(VAL.glob("*.jpg"))[:3]

    answers = load_model(path).predict(images)
    assert {a.predicted_class for a in answers} == {"other"} and answers[0].threshold == 1.0
    assert answers[0].threshold_rule == "a fixed value"
    assert {a.predicted_class for a in load_model(path).predict(images, threshold=0.0)} == {"melanoma"}

    folder = tmp_path / "images"
    folder.mkdir()
    for image in images:
        shutil.copy(image, folder)
    assert main(["predict", str(folder), "--checkpoint", str(path), "--output", str(tmp_path / "p1"), "--no-figures"]) == 0
    assert "threshold 1.0 (a fixed value)" in capsys.readouterr().out
    assert set(pd.read_csv(tmp_path / "p1" / "predictions.csv")["predicted"]) == {"other"}
    assert main(["predict", str(folder), "--checkpoint", str(path), "--output", str(tmp_path / "p2"), "--no-figures",
                 "--threshold", "0"]) == 0
    assert set(pd.read_csv(tmp_path / "p2" / "predictions.csv")["predicted"]) == {"melanoma"}

    stored = evaluate_checkpoint(path, DataSplit(SAMPLE, "val"), tmp_path / "e1", EvaluationOptions(intervals=None), QUIET)
    assert stored.threshold == 1.0 and stored.classification["melanoma"].sensitivity == 0.0
    metrics = json.loads((tmp_path / "e1" / "metrics.json").read_text())
    assert metrics["trust"]["threshold_rule"] == "a fixed value"
    assert main(["evaluate", "--checkpoint", str(path), "--data", str(SAMPLE), "--output", str(tmp_path / "e2"),
                 "--threshold", "0", "--no-ci", "--json"]) == 0
    assert json.loads((tmp_path / "e2" / "metrics.json").read_text())["classification"]["melanoma"]["sensitivity"] == 1.0

    served = ServedModel(load_model(path), str(path))
    with TestClient(create_app(served, ServiceSettings()), base_url="http://localhost") as client:
        body = client.post("/predict?images=false", files={"file": (images[0].name, images[0].read_bytes(), "image/jpeg")}).json()
    assert body["predicted_class"] == "other" and body["threshold"] == 1.0 and body["threshold_rule"] == "a fixed value"


def test_threshold_argument_is_validated(model_file):
    with pytest.raises(ConfigError, match="^threshold=nan"):
        load_model(model_file).predict(sorted(VAL.glob("*.jpg"))[0], threshold=float("nan"))


# ------------------------------------------------------------------------------------------ calibrate


def test_calibrate_writes_a_new_file_and_leaves_the_shipped_file_unchanged(tmp_path, monkeypatch, capsys):
    shipped = get_pretrained().path
    before = file_sha256(shipped)
    monkeypatch.chdir(tmp_path)
    assert main(["calibrate", "--checkpoint", get_pretrained().tag, "--data", str(SAMPLE), "--split", "val"]) == 0
    out = capsys.readouterr().out
    assert "wrote the calibrated checkpoint" in out and "85% sensitivity on isic2017 val" in out
    written = tmp_path / f"{shipped.stem}-calibrated.safetensors"
    meta = read_metadata(written)
    assert file_sha256(shipped) == before
    assert meta.operating_point.rule == "sensitivity" and meta.operating_point.images == 20
    assert meta.conformal.images == 20 and meta.temperature is not None
    weights, fresh = load_file(str(shipped)), load_file(str(written))
    assert all(torch.equal(weights[k], fresh[k]) for k in weights)
    for output in (str(shipped), str(shipped.parent / "other.safetensors")):
        assert main(["calibrate", "--data", str(SAMPLE), "--output", output]) == 2
        assert "never" in capsys.readouterr().err
    assert file_sha256(shipped) == before and not (shipped.parent / "other.safetensors").exists()


def test_calibrate_refuses_data_that_cannot_identify_a_fit(model_file, tmp_path, capsys):
    one_class = tmp_path / "one-class"
    shutil.copytree(SAMPLE, one_class)
    truth = one_class / "ISIC-2017_Validation_Part3_GroundTruth.csv"
    frame = pd.read_csv(truth)
    write_csv(truth, list(frame.columns), [[row.image_id, 0.0, 0.0] for row in frame.itertuples()])
    assert main(["calibrate", "--checkpoint", str(model_file), "--data", str(one_class)]) == 2
    err = capsys.readouterr().err
    assert "melanoma 0" in err and "each class needs at least" in err and "Traceback" not in err
    assert main(["calibrate", "--checkpoint", str(model_file), "--data", str(SAMPLE), "--split", "train",
                 "--dry-run"]) == 0  # 40 images, 12 melanoma: enough
    few = make_isic2017_subset(tmp_path / "few", n_train=2, n_val=8, masks=False)
    with pytest.raises(DataError, match="8 images \\(calibrate needs at least 20\\)"):
        calibrate_checkpoint(model_file, DataSplit(few, "val"), settings=QUIET, write=False)
    assert not list(model_file.parent.glob("*calibrated*"))


# ------------------------------------------------------------------------------------ conformal sets


def test_prediction_sets_reach_the_nominal_coverage_on_simulated_scores():
    rng = np.random.default_rng(0)
    alpha, coverage = 0.1, []
    for _ in range(300):
        p = rng.beta(2, 2, 1200)
        labels = (rng.random(1200) < p).astype(int)
        probabilities = np.stack([1 - p, p], axis=1)
        sets = fit_conformal(labels[:200], probabilities[:200], ["other", "melanoma"], alpha, kind="marginal")
        inside = sets.sets(probabilities[200:], ["other", "melanoma"])
        coverage.append(np.mean([["other", "melanoma"][y] in s for y, s in zip(labels[200:], inside, strict=True)]))
    # theory: mean coverage in [1 - alpha, 1 - alpha + 1/(n+1)]; tolerance 0.02
    assert abs(np.mean(coverage) - (1 - alpha)) < 0.02
    assert conformal_quantile(np.array([0, 1]), np.array([[0.9, 0.1], [0.2, 0.8]]), 0.1) == 1.0  # too few: all classes


# -------------------------------------------------------------------------------------- OOD detector


def test_a_checkpoint_without_a_detector_loads_and_says_no_ood_check(model_file, tmp_path):
    answer = load_model(model_file).predict(sorted(VAL.glob("*.jpg"))[0])
    assert answer.ood_score is None and answer.out_of_distribution is None
    result = evaluate_checkpoint(model_file, DataSplit(SAMPLE, "val"), tmp_path / "eval", EvaluationOptions(intervals=None),
                                 QUIET)
    assert result.trust.to_dict()["ood"] == {"available": False, "note": NO_OOD_CHECK}
    assert NO_OOD_CHECK in result.trust.describe()


def _detector(dim: int) -> OodDetector:
    return random_detector(dim)


def _rewrite_header(path, change) -> None:
    tensors = load_file(str(path))
    payload = read_metadata(path).to_dict()
    change(payload)
    save_file(tensors, str(path), metadata={"attnmel": json.dumps(payload)})


@pytest.mark.parametrize("change, message", [
    (lambda p: p["ood_detector"]["parts"][0]["means"][0].__setitem__(0, float("nan")), "means holds NaN"),
    (lambda p: p["ood_detector"]["parts"][0]["components"][0].append(1.0), "components"),
    (lambda p: p["ood_detector"]["parts"][0].__setitem__("variances", [1.0]), "variances"),
    (lambda p: p["ood_detector"]["parts"][0].__setitem__("threshold", float("inf")), "threshold"),
    (lambda p: p["ood_detector"]["parts"][0].__setitem__("input", "pixels"), "input"),
    (lambda p: p["ood_detector"].__setitem__("parts", []), "parts"),
    (lambda p: p["conformal"].__setitem__("alpha", 2.0), "alpha"),
    (lambda p: p["conformal"]["per_class"].pop("melanoma"), "conformal.*quantiles for"),
    (lambda p: p["conformal"].__setitem__("kind", "mondrian"), "kind"),
    (lambda p: p.__setitem__("trust_modes", {"tta": {"conformal": {"alpha": 0.1}}}), "trust_modes"),
    (lambda p: p.__setitem__("trust_modes", {"ensemble:abc": {}}), "trust_modes"),
    (lambda p: p["operating_point"].__setitem__("threshold", float("nan")), "threshold"),
])
def test_tampered_trust_metadata_is_refused_at_load(model_file, tmp_path, change, message):
    path = shutil.copy(model_file, tmp_path / "model.safetensors")
    dim = load_file(str(path))["classifier.weight"].shape[1]
    update_metadata(path, ood_detector=_detector(dim), operating_point=_point(0.5),
                    conformal=fit_conformal(np.array([0, 1] * 10), np.full((20, 2), 0.5), ["other", "melanoma"], 0.1, "x"))
    load_model(path)  # sound before tampering
    _rewrite_header(path, change)
    with pytest.raises(CheckpointError, match=message):
        load_model(path)


def test_a_detector_of_another_feature_size_is_refused(model_file, tmp_path):
    path = shutil.copy(model_file, tmp_path / "model.safetensors")
    update_metadata(path, ood_detector=_detector(7))
    with pytest.raises(CheckpointError, match="ood_detector.*7 features"):
        load_model(path)


@pytest.fixture
def ood_set():
    """``benchmarks/ood_images.py``: the benchmark's stated OOD images, a fixture outside the package."""
    yield from benchmark_script("ood_images")


def test_non_dermoscopy_images_are_flagged_and_dermoscopy_mostly_not(ood_set):
    """The shipped model's own detector (fitted by scripts/ship_model.py through fit_trust) on the demo's unseen ISIC 2016 images
    (never in its training) and on non-dermoscopy images."""
    model = load_model()
    if model.meta.ood_detector is None:
        pytest.skip("the shipped model carries no OOD detector")
    dermoscopy = model.predict(sorted((unseen_data_path() / "ISBI2016_ISIC_Part3_Test_Data").glob("*.jpg"))[:30])
    others = model.predict([image for kind, image in ood_set.ood_images(per_kind=4) if kind != "photo"])
    assert sum(a.out_of_distribution for a in dermoscopy) <= 0.2 * len(dermoscopy)
    assert sum(a.out_of_distribution for a in others) >= 0.8 * len(others)
    assert all(a.ood_score is not None and a.prediction_set for a in dermoscopy)


# ----------------------------------------------------------------------------------- attention check


def test_attention_warning_fires_on_flat_and_border_maps_only():
    rows, cols = np.mgrid[0:20, 0:20]
    centred = np.exp(-((rows - 9.5) ** 2 + (cols - 9.5) ** 2) / 20.0)
    corner = np.exp(-((rows - 0) ** 2 + (cols - 0) ** 2) / 20.0)
    kinds = {"stage3": "probability"}
    assert attention_warning({"stage3": centred}, kinds) is None
    assert "outside" in attention_warning({"stage3": corner}, kinds)
    assert "flat" in attention_warning({"stage3": np.full((20, 20), 0.7)}, kinds)
