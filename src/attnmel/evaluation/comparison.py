"""``attnmel report``: evaluations side by side with the paper's numbers, as markdown and HTML.

Reads what ``attnmel evaluate`` wrote (``metrics.json``; run with ``--masks`` for the attention
table). A path may be an evaluation folder, its ``metrics.json``, or a run folder, in which case
every ``eval-*/metrics.json`` inside it is used. Paper numbers come from ``attnmel.evaluation.paper``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attnmel.errors import DataError
from attnmel.evaluation.paper import CITATION, NOT_REPORTED, paper_number
from attnmel.evaluation.report import HtmlReport

SPLIT_NOTE = (
    "Our numbers are measured on the split named in each row (for ISIC 2017 usually val, 150 images); the "
    "paper's are on the held-out test split. They are different images, so compare directions and gaps, "
    "not digits: a val number is not the paper's test number."
)
LAYER_NOTE = (
    "The paper reports Jaccard for VGG-16 pool-3 and pool-4; other backbones' stages (stage3, stage4) and "
    "CAMs have no paper number here."
)


@dataclass
class Evaluation:
    """One ``metrics.json`` written by ``attnmel evaluate``."""

    path: Path
    metrics: dict[str, Any]

    @property
    def name(self) -> str:
        """The evaluation folder, prefixed by its run folder for the default ``<run>/eval-<split>``."""
        folder = self.path.parent
        return f"{folder.parent.name}/{folder.name}" if folder.name.startswith("eval-") else folder.name

    @property
    def paper_row(self) -> str | None:
        return self.metrics.get("paper_row")

    @property
    def dataset(self) -> str | None:
        return self.metrics.get("layout")

    @property
    def split(self) -> str:
        return str(self.metrics.get("split", "?"))


def find_evaluations(paths: Sequence[str | Path]) -> list[Evaluation]:
    found: list[Evaluation] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            candidates = [path]
        elif (path / "metrics.json").is_file():
            candidates = [path / "metrics.json"]
        else:
            candidates = sorted(path.glob("eval-*/metrics.json"))
        if not candidates:
            raise DataError(
                path,
                "no evaluation here (no metrics.json, nor eval-*/metrics.json in a run folder).",
                f"run `attnmel evaluate --checkpoint {path} --data DATA --split val --masks` first.",
            )
        found += [_read(candidate) for candidate in candidates]
    return found


def _read(path: Path) -> Evaluation:
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(path, f"not a readable metrics JSON ({exc}).", "re-run attnmel evaluate.") from None
    if not isinstance(metrics, dict) or "classification" not in metrics:
        raise DataError(path, "not a metrics.json written by attnmel evaluate.", "point at an evaluation folder.")
    return Evaluation(path, metrics)


def _ours(value: Any) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def _paper(dataset: str | None, row: str | None, metric: str, layer: str | None = None) -> str:
    number = paper_number(dataset, row, metric, layer)
    return NOT_REPORTED if number is None else f"{number.value:.3f} ({number.dataset} {number.split})"


@dataclass
class Comparison:
    classification_headers: list[str]
    classification_rows: list[list[str]]
    attention_headers: list[str]
    attention_rows: list[list[str]]

    def to_markdown(self) -> str:
        parts = ["## Classification (melanoma vs rest)", "", _markdown(self.classification_headers, self.classification_rows)]
        parts += ["", "## Attention quality (Jaccard / Dice vs lesion masks)", ""]
        parts.append(_markdown(self.attention_headers, self.attention_rows) if self.attention_rows else
                     "No attention scores: run `attnmel evaluate ... --masks` to add them.")
        parts += ["", f"Note: {SPLIT_NOTE}", f"Note: {LAYER_NOTE}", f"Paper: {CITATION}"]
        return "\n".join(parts)

    def to_html(self, title: str = "attnmel results next to the paper") -> HtmlReport:
        report = HtmlReport(title)
        report.paragraph(SPLIT_NOTE, notice=True)
        report.heading("Classification (melanoma vs rest)")
        report.table(self.classification_headers, self.classification_rows)
        report.heading("Attention quality (Jaccard / Dice vs lesion masks)")
        if self.attention_rows:
            report.table(self.attention_headers, self.attention_rows)
        else:
            report.paragraph("No attention scores: run `attnmel evaluate ... --masks` to add them.")
        report.paragraph(LAYER_NOTE)
        report.paragraph(f"Paper: {CITATION}")
        return report


def compare_with_paper(evaluations: Sequence[Evaluation]) -> Comparison:
    classification_rows, attention_rows = [], []
    for ev in evaluations:
        scores = ev.metrics["classification"]
        melanoma = next((scores[name] for name in ("melanoma", "MEL") if name in scores), {})  # MEL: ISIC 2018/2019
        classification_rows.append([
            ev.name, ev.paper_row or "", ev.dataset or "", ev.split, str(ev.metrics.get("images", "")),
            _ours(melanoma.get("roc_auc")), _ours(melanoma.get("average_precision")),
            _ours(melanoma.get("sensitivity")), _ours(melanoma.get("specificity")),
            _paper(ev.dataset, ev.paper_row, "roc_auc"),
        ])
        quality = ev.metrics.get("attention_quality")
        for layer, scores in (quality or {}).get("layers", {}).items():
            attention_rows.append([
                ev.name, ev.paper_row or "", ev.split, layer, _ours(scores.get("jaccard")), _ours(scores.get("dice")),
                f"{quality['images_with_mask']} ({quality['images_without_mask']} without mask)",
                _paper(ev.dataset, ev.paper_row, "jaccard", layer),
            ])
    return Comparison(
        ["run", "paper row", "data", "split", "images", "ROC AUC (ours)", "AP (ours)", "sensitivity (ours)",
         "specificity (ours)", "ROC AUC (paper)"],
        classification_rows,
        ["run", "paper row", "split", "layer", "Jaccard (ours)", "Dice (ours)", "images scored", "Jaccard (paper)"],
        attention_rows,
    )


def _markdown(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)
