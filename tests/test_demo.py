"""The demo: the shipped model on bundled images it never saw, and a short training run labelled as such."""

from __future__ import annotations

import json

import pytest

from attnmel.cli import main
from attnmel.demo import DISCLAIMER, unseen_data_path


@pytest.mark.slow
def test_demo_end_to_end(tmp_path, capsys):
    output = tmp_path / "demo"
    output.mkdir()
    (output / ".attnmel-demo").write_text("written by attnmel demo\n")  # a previous demo's folder ...
    (output / "stale.txt").write_text("from the previous demo")  # ... is replaced
    assert main(["demo", "--output", str(output), "--no-progress", "--set", "train.epochs=1"]) == 0
    printed = capsys.readouterr().out
    report = (output / "report.html").read_text()
    assert str((output / "report.html").resolve()) in printed and DISCLAIMER in printed
    images = sorted((unseen_data_path() / "ISBI2016_ISIC_Part3_Test_Data").glob("*.jpg"))
    figures = sorted((output / "shipped-model" / "figures").glob("*.png"))
    assert [f.stem for f in figures] == [i.stem for i in images]  # one figure per unseen image
    assert report.count("<img") == 3 + len(images)  # ROC, PR, reliability, then the figures
    metrics = json.loads((output / "shipped-model" / "metrics.json").read_text())
    assert metrics["images"] == len(images) and 0 <= metrics["classification"]["melanoma"]["roc_auc"] <= 1
    # the terminal gives the headline: the AUC on the unseen images with its interval, and the Jaccard
    auc = metrics["classification"]["melanoma"]["roc_auc"]
    assert f"{len(images)} unseen images" in printed and f"ROC AUC {auc:.3f} [" in printed
    assert f"stage4 {metrics['attention_quality']['layers']['stage4']['jaccard']:.2f}" in printed
    assert set(metrics["attention_quality"]["layers"]) == {"stage3", "stage4"}
    assert "A short training run (not the shipped model)" in report and "its maps are not shown" in report
    assert not (output / "stale.txt").exists()


def test_demo_refuses_foreign_folder(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    assert main(["demo", "--output", str(tmp_path), "--no-progress"]) == 2
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_unseen_images_are_absent_from_isic2017(isic2017, isic2016):
    """The demo's images have no identical or near-identical twin anywhere in the shipped model's data."""
    from attnmel.data.integrity import check_datasets

    report = check_datasets([isic2017, unseen_data_path()], "melanoma", progress=False)
    for finding in report.findings:
        paths = {str(p) for p in finding.paths if p is not None}
        assert not (any(str(unseen_data_path()) in p for p in paths) and any(str(isic2017) in p for p in paths)), \
            finding.message


@pytest.mark.parametrize("command", [["info"], ["--version"]])
def test_info_commands(command, capsys):
    assert main(command) == 0
    assert "attnmel" in capsys.readouterr().out
