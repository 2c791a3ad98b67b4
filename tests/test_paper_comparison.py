"""``attnmel report``: our evaluations next to the paper's numbers, and only the paper's numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from attnmel.cli import main
from attnmel.errors import DataError
from attnmel.evaluation.paper import PAPER_NUMBERS, paper_number
from attnmel.evaluation.paper_comparison import compare_with_paper, find_evaluations
from attnmel.outputs import OutputSet


def _interval(estimate: float, half: float = 0.05, method: str = "bootstrap-percentile") -> dict:
    return {"estimate": estimate, "low": estimate - half, "high": estimate + half, "level": 0.95, "method": method}


def write_evaluation(folder: Path, paper_row: str | None, layout: str = "isic2017", split: str = "val",
                     layers: dict[str, float] | None = None, setup: dict | None = None,
                     intervals: bool = False) -> Path:
    metrics = {
        "layout": layout, "split": split, "images": 150, "paper_row": paper_row,
        "classification": {"melanoma": {"roc_auc": 0.8512, "average_precision": 0.61, "sensitivity": 0.7,
                                        "specificity": 0.8}},
        **(setup or {}),
    }
    if layers is not None:
        metrics["attention_quality"] = {
            "threshold": 0.5, "images_with_mask": 121, "images_without_mask": 29,
            "layers": {name: {"jaccard": value, "dice": value + 0.1} for name, value in layers.items()},
        }
    if intervals:
        metrics["intervals"] = {
            "level": 0.95, "resamples": 2000, "seed": 0, "method": "bootstrap-percentile",
            "classification": {"melanoma": {"roc_auc": _interval(0.8512, 0.07, "delong"),
                                            "average_precision": _interval(0.61, 0.1)}},
            "attention_quality": {name: {"jaccard": _interval(value)} for name, value in (layers or {}).items()},
        }
    folder.mkdir(parents=True, exist_ok=True)
    outputs = OutputSet(folder, "evaluate", log=None)  # as evaluate writes it: metrics.json, then the manifest
    outputs.path("metrics.json").write_text(json.dumps(metrics))
    outputs.commit()
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
    # written before evaluate recorded the setup: the row says it is unknown rather than guess
    assert "| lesion/eval-val | AttnMel-CNN-Lesion | isic2017 | val | 150 | ? | ? | ? | 0.8512 |" in markdown
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
    assert main(["report", str(tmp_path)]) == 2  # no manifest: not a complete evaluate run
    assert "no output manifest" in capsys.readouterr().err
    outputs = OutputSet(tmp_path, "evaluate", log=None)
    outputs.add(tmp_path / "metrics.json")
    outputs.commit()
    assert main(["report", str(tmp_path)]) == 2
    assert "not a metrics.json written by attnmel evaluate" in capsys.readouterr().err


def test_rows_say_what_was_evaluated_with_intervals_and_a_figure(tmp_path, capsys):
    from PIL import Image

    tiny = {"backbone": "mobilenet_v2", "image_size": 80, "train_images": 40}
    full = {"backbone": "vgg16_bn", "image_size": 224, "train_images": 2000}
    write_evaluation(tmp_path / "demo" / "eval-val", "AttnMel-CNN-Lesion", layers={"pool3": 0.5, "pool4": 0.6},
                     setup=tiny, intervals=True)
    write_evaluation(tmp_path / "full" / "eval-test", "AttnMel-CNN", split="test", layers={"pool3": 0.3, "pool4": 0.35},
                     setup=full)
    comparison = compare_with_paper(find_evaluations([tmp_path / "demo", tmp_path / "full"]))
    demo, full_row = comparison.classification_rows
    headers = comparison.classification_headers
    assert dict(zip(headers, demo, strict=True)) == {
        "run": "demo/eval-val", "paper row": "AttnMel-CNN-Lesion", "data": "isic2017", "split": "val", "images": "150",
        "backbone": "mobilenet_v2", "input": "80 px", "train images": "40", "ROC AUC (ours)": "0.8512 [0.78, 0.92]",
        "AP (ours)": "0.6100 [0.51, 0.71]", "sensitivity (ours)": "0.7000", "specificity (ours)": "0.8000",
        "ROC AUC (paper)": "0.883 (isic2017 test)",
    }
    assert full_row[3:8] == ["test", "150", "vgg16_bn", "224 px", "2000"] and full_row[8] == "0.8512"
    jaccard = {(row[0], row[3]): row[4] for row in comparison.attention_rows}
    assert jaccard[("demo/eval-val", "pool4")] == "0.6000 [0.55, 0.65]" and jaccard[("full/eval-test", "pool4")] == "0.3500"
    assert all(row[7:10] == ["mobilenet_v2", "80 px", "40"] for row in comparison.attention_rows if row[0] == "demo/eval-val")
    markdown = comparison.to_markdown()
    assert "ROC AUC by DeLong" in markdown and "Without intervals" in markdown and "full/eval-test" in markdown

    rows = comparison.figure_rows
    assert rows[0].roc_auc_interval.low == pytest.approx(0.7812) and rows[0].paper_roc_auc == 0.883
    assert rows[0].jaccard["pool4"][2] == 0.66 and rows[1].jaccard["pool4"][1] is None
    assert "80 px" in rows[0].label and "40 train, val" in rows[0].label

    html = tmp_path / "out" / "report.html"
    html.parent.mkdir()
    assert main(["report", str(tmp_path / "demo"), str(tmp_path / "full"), "--output", str(html)]) == 0
    figure = html.with_suffix(".png")
    assert f"wrote {html} and {figure}" in capsys.readouterr().out
    width, height = Image.open(figure).size
    assert width > 600 and height > 600
    page = html.read_text()
    assert "data:image/png;base64," in page and "0.8512 [0.78, 0.92]" in page and "80 px" in page
