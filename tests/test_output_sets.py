"""Output sets (issue 20): a command writes its files as one set with a manifest written last;
readers use only what the manifest names; what a re-run did not write is moved aside, said in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from attnmel.cli import main
from attnmel.outputs import MANIFEST, OutputSet, read_manifest


def _data(tiny_checkpoint: Path) -> Path:
    return tiny_checkpoint.parents[1] / "data"


def _evaluate(tiny_checkpoint: Path, out: Path, *extra: str) -> int:
    return main(["evaluate", "--checkpoint", str(tiny_checkpoint), "--data", str(_data(tiny_checkpoint)),
                 "--split", "val", "--output", str(out), "--no-ci", *extra])


def test_a_rerun_without_masks_moves_the_old_attention_scores_aside(tiny_checkpoint, tmp_path, capsys):
    """evaluate --masks, then evaluate into the same folder: compare of the two must not see the old
    attention_quality.csv as the new run's (it reported a 'significant' Jaccard difference)."""
    with_masks, reused = tmp_path / "with-masks", tmp_path / "reused"
    assert _evaluate(tiny_checkpoint, with_masks, "--masks") == 0
    assert _evaluate(tiny_checkpoint, reused, "--masks") == 0
    capsys.readouterr()
    assert _evaluate(tiny_checkpoint, reused) == 0
    printed = capsys.readouterr().out
    moved = [line for line in printed.splitlines() if line.startswith("moved ")]
    assert len(moved) == 1 and "attention_quality.csv" in moved[0]
    assert not (reused / "attention_quality.csv").exists()
    stale = next(reused.glob("stale-*"))
    assert (stale / "attention_quality.csv").is_file()  # moved aside, not lost
    written = read_manifest(reused, ("evaluate",))
    assert "attention_quality.csv" not in written.files and "metrics.json" in written.files
    assert main(["compare", str(with_masks), str(reused), "--json", "--bootstrap", "200"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["attention_quality"] == {}  # B has no attention scores now


def test_readers_use_only_files_the_manifest_names(tmp_path, capsys):
    """A file copied into an evaluation folder after the run is not read as the run's."""
    from tests.test_compare import _evaluation_folder

    rng = np.random.default_rng(1)
    images = [f"ISIC_{i:07d}" for i in range(40)]
    truth = np.r_[np.ones(10), np.zeros(30)]
    a = _evaluation_folder(tmp_path / "a", images, truth, rng.random(40))
    b = _evaluation_folder(tmp_path / "b", images, truth, rng.random(40))
    frame = pd.DataFrame({"image": images, "has_mask": True, "stage4_jaccard": 0.9, "stage4_dice": 0.95})
    frame.to_csv(b / "attention_quality.csv", index=False)  # not written by b's run
    frame.assign(stage4_jaccard=0.1, stage4_dice=0.2).to_csv(a / "attention_quality.csv", index=False)
    assert main(["compare", str(a), str(b), "--json", "--bootstrap", "200"]) == 0
    assert json.loads(capsys.readouterr().out)["attention_quality"] == {}
    (b / "predictions.csv").write_text((b / "predictions.csv").read_text().replace("ISIC_0000001", "ISIC_0000001 "))
    assert main(["compare", str(a), str(b), "--bootstrap", "200"]) == 2  # changed after its run wrote it
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "changed after run" in err and "predictions.csv" in err


def test_an_interrupted_evaluate_leaves_no_set_that_compare_would_read(tiny_checkpoint, tmp_path, capsys, monkeypatch):
    out = tmp_path / "eval"
    assert _evaluate(tiny_checkpoint, out) == 0
    import attnmel.evaluation.evaluate as evaluate

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate, "atomic_write_json", interrupted)  # Ctrl-C after the CSVs, before metrics.json
    capsys.readouterr()
    assert _evaluate(tiny_checkpoint, out, "--split", "train") == 130
    err = capsys.readouterr().err
    assert "resume" not in err and "no output manifest" in err and err.count("\n") == 1
    assert not (out / MANIFEST).exists()
    assert main(["compare", str(out), str(out), "--bootstrap", "200"]) == 2
    assert "no output manifest" in capsys.readouterr().err
    assert main(["report", str(out), "--output", str(tmp_path / "r.html")]) == 2
    assert "no output manifest" in capsys.readouterr().err


def test_ctrl_c_during_predict_does_not_talk_about_resume(tmp_path, capsys, monkeypatch, sample_data):
    import attnmel.predict as predict

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(predict, "load_model", interrupted)
    image = next((sample_data / "ISIC-2017_Validation_Data").glob("*.jpg"))
    assert main(["predict", str(image), "--output", str(tmp_path / "p")]) == 130
    err = capsys.readouterr().err
    assert "resume" not in err and err.startswith("interrupted")


def test_predict_into_a_used_folder_keeps_no_earlier_figures(tiny_checkpoint, sample_data, tmp_path, capsys):
    images = sorted((sample_data / "ISIC-2017_Validation_Data").glob("*.jpg"))
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    for path in images[:3]:
        shutil.copy(path, first)
    shutil.copy(images[3], second)
    out = tmp_path / "out"
    assert main(["predict", str(first), "--checkpoint", str(tiny_checkpoint), "--output", str(out)]) == 0
    assert len(list((out / "figures").glob("*.png"))) == 3
    capsys.readouterr()
    assert main(["predict", str(second), "--checkpoint", str(tiny_checkpoint), "--output", str(out)]) == 0
    moved = [line for line in capsys.readouterr().out.splitlines() if line.startswith("moved ")]
    assert len(moved) == 1 and "moved 3 file(s)" in moved[0]
    assert sorted(p.name for p in (out / "figures").glob("*.png")) == [images[3].stem + ".png"]
    written = read_manifest(out, ("predict",))
    assert sorted(written.files) == sorted(["predictions.csv", "report.html", f"figures/{images[3].stem}.png"])


@pytest.mark.parametrize("command", [
    ["evaluate", "--data", "DATA", "--split", "val"],
    ["predict", "IMAGE"],
    ["compare", "A", "A"],
    ["export", "--format", "safetensors"],
])
def test_an_output_that_is_an_existing_file_is_one_line(command, tiny_checkpoint, sample_data, tmp_path, capsys):
    from tests.test_compare import _evaluation_folder

    blocker = tmp_path / "a-file.txt"
    blocker.write_text("mine\n")
    folder = _evaluation_folder(tmp_path / "eval", ["ISIC_0000001", "ISIC_0000002"], np.array([1, 0]),
                                np.array([0.7, 0.2]))
    image = next((sample_data / "ISIC-2017_Validation_Data").glob("*.jpg"))
    values = {"DATA": str(_data(tiny_checkpoint)), "IMAGE": str(image), "A": str(folder)}
    argv = [values.get(arg, arg) for arg in command]
    if command[0] in ("evaluate", "predict", "export"):
        argv += ["--checkpoint", str(tiny_checkpoint)]
    assert main([*argv, "--output", str(blocker)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is an existing file" in err and str(blocker) in err
    assert blocker.read_text() == "mine\n"


def test_report_and_data_stats_refuse_an_output_that_is_a_folder_or_their_input(tmp_path, capsys):
    from tests.test_paper_comparison import write_evaluation

    folder = write_evaluation(tmp_path / "eval", "AttnMel-CNN")
    assert main(["report", str(folder), "--output", str(tmp_path)]) == 2
    assert "is an existing folder" in capsys.readouterr().err
    assert main(["report", str(folder), "--output", str(folder / "metrics.json")]) == 2
    assert "which it reads" in capsys.readouterr().err
    before = (folder / "metrics.json").read_text()
    assert (folder / "metrics.json").read_text() == before
    assert main(["data", "stats", str(tmp_path), "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is an existing folder" in err


def test_report_names_a_metric_that_is_not_a_number(tmp_path, capsys):
    from tests.test_paper_comparison import write_evaluation

    folder = write_evaluation(tmp_path / "eval", "AttnMel-CNN", layers={"stage4": 0.4})
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics["classification"]["melanoma"]["roc_auc"] = "0.85 (edited)"
    (folder / "metrics.json").write_text(json.dumps(metrics))
    outputs = OutputSet(folder, "evaluate", log=None)
    outputs.add(folder / "metrics.json")
    outputs.commit()
    assert main(["report", str(folder), "--output", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "classification.melanoma.roc_auc is '0.85 (edited)', not a number" in err


def test_compare_names_a_ground_truth_without_a_row_or_the_scored_column(tmp_path, capsys):
    from tests.test_compare import _evaluation_folder

    images = [f"ISIC_{i:07d}" for i in range(20)]
    truth, scores = np.r_[np.ones(5), np.zeros(15)], np.linspace(0.05, 0.95, 20)
    a = _evaluation_folder(tmp_path / "a", images, truth, scores)
    short = tmp_path / "short.csv"
    pd.read_csv(a / "ground_truth.csv").iloc[1:].to_csv(short, index=False)
    assert main(["compare", str(a), str(a / "predictions.csv"), "--truth", str(short), "--bootstrap", "200"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no row for 1 scored image(s): ISIC_0000000" in err
    other = tmp_path / "other.csv"
    pd.read_csv(a / "ground_truth.csv").rename(columns={"melanoma": "nevus"}).to_csv(other, index=False)
    assert main(["compare", str(a), str(a / "predictions.csv"), "--truth", str(other), "--bootstrap", "200"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no column 'melanoma'" in err
