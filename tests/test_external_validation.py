"""`attnmel evaluate --data A --data B --data C`: one model, several datasets, one table (text, JSON, HTML with
the AUC figure); `attnmel report` puts such tables side by side."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from attnmel.cli import main
from attnmel.errors import DataError
from attnmel.evaluation.evaluate import EvaluationOptions
from attnmel.evaluation.external import evaluate_datasets, named_datasets, read_table
from attnmel.inference import InferenceSettings
from attnmel.metrics.challenge2024 import partial_auc_above_tpr, top_k_sensitivity
from attnmel.metrics.intervals import IntervalSettings
from attnmel.outputs import OutputSet

from .conftest import make_isic2017_subset
from .layouts import make_isic2024, make_ph2

CPU = InferenceSettings(device="cpu", progress=False)


@pytest.fixture(scope="module")
def three_datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("external")
    isic2017 = make_isic2017_subset(root / "isic2017", n_train=2, n_val=6)
    make_ph2(root / "ph2", ["0", "2", "1", "2", "0"])
    make_isic2024(root / "slice3d", [(1, "IP_1", "IL_1", "Malignant::Melanoma Invasive"), (0, "IP_1", None, "Benign"),
                                     (0, "IP_2", None, "Benign"), (1, "IP_2", "IL_2", "Malignant::Melanoma in situ"),
                                     (0, "IP_2", None, "Benign")])
    return [isic2017, root / "ph2", root / "slice3d"]


def test_one_table_over_three_datasets(tiny_checkpoint, three_datasets, tmp_path):
    table = evaluate_datasets(tiny_checkpoint, three_datasets, tmp_path / "ext",
                              EvaluationOptions(intervals=IntervalSettings(resamples=100)), CPU, split="val")
    assert [(r.name, r.layout, r.split, r.images, r.positives) for r in table.rows] == [
        ("isic2017", "isic2017", "val", 6, 2), ("ph2", "ph2", "test", 5, 2), ("slice3d", "isic2024", "train", 5, 2)]
    isic2017, ph2, slice3d = table.rows
    assert isic2017.jaccard and ph2.jaccard and not slice3d.jaccard  # masks where the dataset has them
    assert isic2017.top_k_sensitivity is None and slice3d.top_k_sensitivity is not None
    for row in table.rows:  # each row is the dataset's own evaluation, and its pAUC is the ISIC 2024 one
        metrics = json.loads((tmp_path / "ext" / row.name / "metrics.json").read_text())
        assert row.roc_auc["estimate"] == pytest.approx(metrics["classification"]["melanoma"]["roc_auc"], abs=1e-12)
        assert row.roc_auc["method"] == "delong" and row.partial_auc["method"].startswith("bootstrap")
        scores = pd.read_csv(tmp_path / "ext" / row.name / "predictions.csv")["melanoma"]
        truth = pd.read_csv(tmp_path / "ext" / row.name / "ground_truth.csv")["melanoma"]
        assert row.partial_auc["estimate"] == pytest.approx(partial_auc_above_tpr(truth > 0.5, scores), abs=1e-9)
        assert metrics.get("top_15_sensitivity_per_patient") == row.top_k_sensitivity
    patients = ["IP_1", "IP_1", "IP_2", "IP_2", "IP_2"]  # in the order make_isic2024 wrote the rows (ID order)
    frame = pd.read_csv(tmp_path / "ext" / "slice3d" / "predictions.csv")
    truth = pd.read_csv(tmp_path / "ext" / "slice3d" / "ground_truth.csv")
    assert slice3d.top_k_sensitivity == pytest.approx(
        top_k_sensitivity(truth["melanoma"] > 0.5, frame["melanoma"], patients), abs=1e-12)
    assert {p.name for p in table.files.values()} == {"external_validation.json", "external_validation.md",
                                                       "external_validation_auc.png", "external_validation.html"}
    html = table.files["html"].read_text()
    assert html.count("<tr>") == 4 and "data:image/png;base64," in html and "slice3d" in html
    assert read_table(tmp_path / "ext").to_dict() == table.to_dict()
    with pytest.raises(DataError, match="has no split 'nope'"):
        evaluate_datasets(tiny_checkpoint, three_datasets[:1], tmp_path / "x", settings=CPU, split="nope")


def test_cli_json_and_report_side_by_side(tiny_checkpoint, three_datasets, tmp_path, capsys):
    args = ["evaluate", "--checkpoint", str(tiny_checkpoint), "--split", "val", "--device", "cpu", "--bootstrap", "100"]
    args += ["--data", str(three_datasets[1]), "--data", f"slice3d={three_datasets[2]}"]
    assert main([*args, "--output", str(tmp_path / "a"), "--json", "--min-tpr", "0.88"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((tmp_path / "a" / "external_validation.json").read_text())
    assert printed["min_tpr"] == 0.88 and [d["name"] for d in printed["datasets"]] == ["ph2", "slice3d"]
    assert all(d["partial_auc"]["estimate"] <= 0.12 + 1e-12 for d in printed["datasets"])
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    other = json.loads((tmp_path / "b" / "external_validation.json").read_text()) | {"model": "other-model"}
    (tmp_path / "b" / "external_validation.json").write_text(json.dumps(other))
    assert main(["report", str(tmp_path / "a"), str(tmp_path / "b"), "--output", str(tmp_path / "r.html")]) == 2
    assert "changed after run" in capsys.readouterr().err  # an edited table is not reported as the run's
    recommitted = OutputSet(tmp_path / "b", "evaluate", log=None)  # "another model's run" wrote it
    recommitted.add(tmp_path / "b")
    recommitted.commit()
    assert main(["report", str(tmp_path / "a"), str(tmp_path / "b"), "--output", str(tmp_path / "r.html")]) == 0
    text = capsys.readouterr().out
    assert "other-model: ROC AUC" in text and "| ph2 | 5 | 2 |" in text
    assert (tmp_path / "r.html").read_text().count("<tr>") == 3 and (tmp_path / "r.png").is_file()
    assert main([*args, "--min-tpr", "1.5", "--output", str(tmp_path / "c")]) == 2


def test_datasets_are_named_after_their_folder_or_by_name(tmp_path):
    (tmp_path / "a" / "ph2").mkdir(parents=True)
    (tmp_path / "b" / "ph2").mkdir(parents=True)
    (tmp_path / "m.csv").write_text("image,label\n")
    assert named_datasets([tmp_path / "a" / "ph2", tmp_path / "b" / "ph2", f"clinic={tmp_path / 'm.csv'}",
                           tmp_path / "m.csv"]) == [("ph2", tmp_path / "a" / "ph2"), ("ph2-2", tmp_path / "b" / "ph2"),
                                                    ("clinic", tmp_path / "m.csv"), ("m", tmp_path / "m.csv")]
