"""``attnmel report``: our evaluations next to the paper's numbers, and only the paper's numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from attnmel.cli import main
from attnmel.errors import DataError
from attnmel.evaluation.comparison import compare_with_paper, find_evaluations
from attnmel.evaluation.paper import PAPER_NUMBERS, paper_number


def write_evaluation(folder: Path, paper_row: str | None, layout: str = "isic2017", split: str = "val",
                     layers: dict[str, float] | None = None) -> Path:
    metrics = {
        "layout": layout, "split": split, "images": 150, "paper_row": paper_row,
        "classification": {"melanoma": {"roc_auc": 0.8512, "average_precision": 0.61, "sensitivity": 0.7,
                                        "specificity": 0.8}},
    }
    if layers is not None:
        metrics["attention_quality"] = {
            "threshold": 0.5, "images_with_mask": 121, "images_without_mask": 29,
            "layers": {name: {"jaccard": value, "dice": value + 0.1} for name, value in layers.items()},
        }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def test_paper_numbers_are_exactly_the_transcribed_ones():
    assert {(n.dataset, n.row, n.metric, n.layer): n.value for n in PAPER_NUMBERS} == {
        ("isic2017", "AttnMel-CNN", "roc_auc", None): 0.872,
        ("isic2017", "AttnMel-CNN-Lesion", "roc_auc", None): 0.883,
        ("isic2016", "AttnMel-CNN", "roc_auc", None): 0.852,
        ("isic2017", "AttnMel-CNN", "jaccard", "pool3"): 0.31,
        ("isic2017", "AttnMel-CNN", "jaccard", "pool4"): 0.32,
        ("isic2017", "AttnMel-CNN-Lesion", "jaccard", "pool3"): 0.55,
        ("isic2017", "AttnMel-CNN-Lesion", "jaccard", "pool4"): 0.66,
    }
    assert paper_number("isic2016", "AttnMel-CNN-Lesion", "roc_auc") is None


def test_rows_that_were_run_sit_next_to_the_paper(tmp_path):
    write_evaluation(tmp_path / "plain" / "eval-val", "AttnMel-CNN", layers={"pool3": 0.2, "pool4": 0.25})
    write_evaluation(tmp_path / "lesion" / "eval-val", "AttnMel-CNN-Lesion", layers={"pool3": 0.5, "pool4": 0.7})
    write_evaluation(tmp_path / "isic2016-run", "AttnMel-CNN", layout="isic2016", split="test")
    write_evaluation(tmp_path / "dermo" / "eval-val", "AttnMel-CNN-Dermo", layers={"pool3": 0.4, "pool4": 0.5})
    comparison = compare_with_paper(find_evaluations([
        tmp_path / "plain", tmp_path / "lesion" / "eval-val", tmp_path / "isic2016-run" / "metrics.json",
        tmp_path / "dermo",
    ]))
    paper_auc = {row[0]: row[-1] for row in comparison.classification_rows}
    assert paper_auc == {
        "plain/eval-val": "0.872 (isic2017 test)", "lesion/eval-val": "0.883 (isic2017 test)",
        "isic2016-run": "0.852 (isic2016 test)", "dermo/eval-val": "not reported here",
    }
    paper_jaccard = {(row[0], row[3]): (row[4], row[-1]) for row in comparison.attention_rows}
    assert paper_jaccard == {
        ("plain/eval-val", "pool3"): ("0.2000", "0.310 (isic2017 test)"),
        ("plain/eval-val", "pool4"): ("0.2500", "0.320 (isic2017 test)"),
        ("lesion/eval-val", "pool3"): ("0.5000", "0.550 (isic2017 test)"),
        ("lesion/eval-val", "pool4"): ("0.7000", "0.660 (isic2017 test)"),
        ("dermo/eval-val", "pool3"): ("0.4000", "not reported here"),
        ("dermo/eval-val", "pool4"): ("0.5000", "not reported here"),
    }
    assert all(row[6] == "121 (29 without mask)" for row in comparison.attention_rows)
    markdown = comparison.to_markdown()
    assert "| lesion/eval-val | AttnMel-CNN-Lesion | isic2017 | val | 150 | 0.8512 |" in markdown
    assert "a val number is not the paper's test number" in markdown and "IPMI 2019" in markdown


def test_report_without_attention_scores_says_how_to_get_them(tmp_path, capsys):
    write_evaluation(tmp_path / "eval", "AttnMel-CNN")
    assert main(["report", str(tmp_path / "eval"), "--output", str(tmp_path / "r.html")]) == 0
    assert "run `attnmel evaluate ... --masks`" in capsys.readouterr().out
    assert "0.872 (isic2017 test)" in (tmp_path / "r.html").read_text()


def test_missing_or_foreign_evaluations_name_the_path(tmp_path, capsys):
    with pytest.raises(DataError, match="no evaluation here") as caught:
        find_evaluations([tmp_path])
    assert caught.value.path == tmp_path
    (tmp_path / "metrics.json").write_text(json.dumps({"loss": 1.0}))
    assert main(["report", str(tmp_path)]) == 2
    assert "not a metrics.json written by attnmel evaluate" in capsys.readouterr().err
