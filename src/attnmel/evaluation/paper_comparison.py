"""``attnmel report``: evaluations side by side with the paper's numbers, as markdown, HTML and a figure.

Reads what ``attnmel evaluate`` wrote (``metrics.json``; run with ``--masks`` for the attention
table). A path may be an evaluation folder, its ``metrics.json``, or a run folder, in which case
every ``eval-*/metrics.json`` inside it is used. Paper numbers come from ``attnmel.evaluation.paper``.
Every row says what was evaluated (backbone, input size, training images, split), so a 40-image
80-px run never sits unlabelled beside the paper's test numbers, and carries its confidence
interval where ``metrics.json`` has one. ``Comparison.figure`` draws the paper's Table 2/3 layout
as bars with interval whiskers (ROC AUC per row; Jaccard per attention layer), the paper's numbers
as markers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

from attnmel.errors import DataError
from attnmel.evaluation.paper import CITATION, NOT_REPORTED, paper_number
from attnmel.evaluation.report import HtmlReport
from attnmel.io import atomic_path
from attnmel.metrics.intervals import Interval
from attnmel.outputs import MANIFEST, read_manifest

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

    @property
    def backbone(self) -> str:
        return str(self.metrics.get("backbone") or "?")

    @property
    def input_size(self) -> str:
        size = self.metrics.get("image_size")
        return f"{size} px" if size else "?"

    @property
    def train_images(self) -> str:
        images = self.metrics.get("train_images")
        return str(images) if images is not None else "?"

    def interval(self, *keys: str) -> Interval | None:
        """The interval at ``intervals[keys...]`` in ``metrics.json``, if it was computed."""
        node: Any = self.metrics.get("intervals")
        for key in keys:
            node = node.get(key) if isinstance(node, dict) else None
        return Interval.from_dict(node) if isinstance(node, dict) and "estimate" in node else None

    def cell(self, value: Any, *keys: str) -> str:
        """``value [low, high]`` when ``metrics.json`` has its interval, else the value."""
        interval = self.interval(*keys)
        return interval.format() if interval is not None and _defined(value) else _ours(value)


def find_evaluations(paths: Sequence[str | Path]) -> list[Evaluation]:
    """The evaluations in ``paths`` (evaluation folders, their metrics.json, or run folders with eval-*/):
    only a ``metrics.json`` its folder's output manifest names is read (``attnmel.outputs``)."""
    found: list[Evaluation] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            candidates = [path.parent]
        elif (path / "metrics.json").is_file() or (path / MANIFEST).is_file():
            candidates = [path]
        else:
            candidates = sorted(p.parent for p in path.glob(f"eval-*/{MANIFEST}"))
        if not candidates:
            raise DataError(
                path,
                "no evaluation here (no metrics.json, nor eval-*/ written by attnmel evaluate in a run folder).",
                f"run `attnmel evaluate --checkpoint {path} --data DATA --split val --masks` first.",
            )
        found += [_read(read_manifest(folder, ("evaluate",)).require("metrics.json")) for folder in candidates]
    return found


def _read(path: Path) -> Evaluation:
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(path, f"not a readable metrics JSON ({exc}).", "re-run attnmel evaluate.") from None
    if not isinstance(metrics, dict) or not isinstance(metrics.get("classification"), dict):
        raise DataError(path, "not a metrics.json written by attnmel evaluate.", "point at an evaluation folder.")
    problem = _non_numeric(metrics)
    if problem is not None:
        raise DataError(path, f"{problem[0]} is {problem[1]!r}, not a number (or null).",
                        "re-run attnmel evaluate; do not edit metrics.json by hand.")
    return Evaluation(path, metrics)


#: the numbers ``report`` reads from a metrics.json: per class, per attention layer, in each interval
_CLASS_METRICS = ("roc_auc", "average_precision", "sensitivity", "specificity")
_INTERVAL_NUMBERS = ("estimate", "low", "high", "level")


def _non_numeric(metrics: dict[str, Any]) -> tuple[str, Any] | None:
    """The first (key path, value) the report would read as a number that is not one."""
    checks: list[tuple[str, Any]] = []
    for name, scores in metrics["classification"].items():
        if isinstance(scores, dict):
            checks += [(f"classification.{name}.{m}", scores.get(m)) for m in _CLASS_METRICS]
    quality = metrics.get("attention_quality")
    if isinstance(quality, dict):
        checks += [(f"attention_quality.{k}", quality.get(k)) for k in ("images_with_mask", "images_without_mask")]
        for layer, scores in (quality.get("layers") or {}).items():
            checks += [(f"attention_quality.layers.{layer}.{m}", (scores or {}).get(m)) for m in ("jaccard", "dice")]
    checks += _interval_numbers(metrics.get("intervals"), "intervals")
    for key, value in checks:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            return key, value
    return None


def _interval_numbers(node: Any, prefix: str) -> list[tuple[str, Any]]:
    if not isinstance(node, dict):
        return []
    if "estimate" in node:
        return [(f"{prefix}.{k}", node.get(k)) for k in _INTERVAL_NUMBERS]
    return [item for key, child in node.items() for item in _interval_numbers(child, f"{prefix}.{key}")]


def _defined(value: Any) -> TypeGuard[float]:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _ours(value: Any) -> str:
    return f"{value:.4f}" if _defined(value) else "n/a"


def _paper(dataset: str | None, row: str | None, metric: str, layer: str | None = None) -> str:
    number = paper_number(dataset, row, metric, layer)
    return NOT_REPORTED if number is None else f"{number.value:.3f} ({number.dataset} {number.split})"


@dataclass(frozen=True)
class FigureRow:
    """What the figure draws for one evaluation: ROC AUC and each layer's Jaccard, with intervals."""

    label: str
    roc_auc: float | None
    roc_auc_interval: Interval | None
    paper_roc_auc: float | None
    #: layer -> (Jaccard, its interval, the paper's Jaccard)
    jaccard: dict[str, tuple[float, Interval | None, float | None]]


@dataclass
class Comparison:
    classification_headers: list[str]
    classification_rows: list[list[str]]
    attention_headers: list[str]
    attention_rows: list[list[str]]
    figure_rows: list[FigureRow] = field(default_factory=list)
    #: how the intervals were computed, when any evaluation has them
    interval_note: str | None = None

    def to_markdown(self) -> str:
        parts = ["## Classification (melanoma vs rest)", "", _markdown(self.classification_headers, self.classification_rows)]
        parts += ["", "## Attention quality (Jaccard / Dice vs lesion masks)", ""]
        parts.append(_markdown(self.attention_headers, self.attention_rows) if self.attention_rows else
                     "No attention scores: run `attnmel evaluate ... --masks` to add them.")
        parts += ["", f"Note: {SPLIT_NOTE}", f"Note: {LAYER_NOTE}"]
        if self.interval_note:
            parts.append(f"Note: {self.interval_note}")
        parts.append(f"Paper: {CITATION}")
        return "\n".join(parts)

    def to_html(self, title: str = "attnmel results next to the paper", figure: str | Path | None = None) -> HtmlReport:
        report = HtmlReport(title)
        report.paragraph(SPLIT_NOTE, notice=True)
        if figure is not None:
            report.figures([(figure, "ROC AUC and attention Jaccard per row, with interval whiskers; markers: "
                                     "the paper's numbers (test split)")])
        report.heading("Classification (melanoma vs rest)")
        report.table(self.classification_headers, self.classification_rows)
        report.heading("Attention quality (Jaccard / Dice vs lesion masks)")
        if self.attention_rows:
            report.table(self.attention_headers, self.attention_rows)
        else:
            report.paragraph("No attention scores: run `attnmel evaluate ... --masks` to add them.")
        report.paragraph(LAYER_NOTE)
        if self.interval_note:
            report.paragraph(self.interval_note)
        report.paragraph(f"Paper: {CITATION}")
        return report

    def figure(self, path: str | Path) -> Path:
        """The paper's Table 2/3 layout as a PNG: ROC AUC per row, then Jaccard per attention layer."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = self.figure_rows
        layers = list(dict.fromkeys(layer for row in rows for layer in row.jaccard))
        fig, (auc_ax, jaccard_ax) = plt.subplots(2, 1, figsize=(max(7.0, 1.6 * len(rows) + 2), 8.5))
        x = list(range(len(rows)))
        labels = [row.label for row in rows]
        _bars(auc_ax, x, [(row.roc_auc, row.roc_auc_interval, row.paper_roc_auc) for row in rows], 0.6, "#4c72b0",
              "ours")
        lowest = [row.roc_auc for row in rows if _defined(row.roc_auc)]
        lowest += [row.roc_auc_interval.low for row in rows
                   if row.roc_auc_interval is not None and math.isfinite(row.roc_auc_interval.low)]
        auc_ax.set_ylim(max(0.0, math.floor(10 * min([0.5, *lowest])) / 10), 1.0)  # a weak demo run stays visible
        auc_ax.set_ylabel("ROC AUC (melanoma vs rest)")
        auc_ax.set_title("Classification (the paper's Table 2)")
        palette = ["#55a868", "#c44e52", "#8172b2", "#ccb974", "#64b5cd", "#8c8c8c"]
        width = 0.8 / max([1, *(len(row.jaccard) for row in rows)])
        for position, row in zip(x, rows, strict=True):  # each row's own layers, side by side
            for i, (layer, cell) in enumerate(row.jaccard.items()):
                offset = position + width * (i - (len(row.jaccard) - 1) / 2)
                _bars(jaccard_ax, [offset], [cell], width, palette[layers.index(layer) % len(palette)], layer)
        if not layers:
            jaccard_ax.text(0.5, 0.5, "no attention scores: run `attnmel evaluate ... --masks`", ha="center",
                            va="center", transform=jaccard_ax.transAxes)
        jaccard_ax.set_ylim(0.0, 1.0)
        jaccard_ax.set_ylabel("Jaccard vs lesion mask")
        jaccard_ax.set_title("Attention quality (the paper's Table 3)")
        for ax in (auc_ax, jaccard_ax):
            ax.set_xticks(x, labels, fontsize=8)
            ax.set_xlim(-0.6, len(rows) - 0.4)
            ax.grid(axis="y", alpha=0.3)
            handles, names = ax.get_legend_handles_labels()
            unique = dict(zip(names, handles, strict=True))
            if unique:
                ax.legend(unique.values(), unique.keys(), fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.text(0.01, 0.005, "Whiskers: confidence intervals from each evaluation. Ours: the split named under each\n"
                 "row; the paper: its test split (different images: compare directions and gaps, not digits).",
                 fontsize=7)
        fig.tight_layout(rect=(0, 0.03, 1, 1))
        path = Path(path)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
        plt.close(fig)
        return path


def _bars(ax, positions: list[float], cells: list[tuple[float | None, Interval | None, float | None]], width: float,
          color: str, label: str) -> None:
    """Bars with asymmetric interval whiskers, and the paper's number as a black diamond."""
    for position, (value, interval, paper) in zip(positions, cells, strict=True):
        if _defined(value):
            ax.bar(position, value, width, color=color, label=label)
            if interval is not None and math.isfinite(interval.low) and math.isfinite(interval.high):
                ax.errorbar(position, value, yerr=[[max(0.0, value - interval.low)], [max(0.0, interval.high - value)]],
                            fmt="none", ecolor="black", capsize=3, linewidth=1)
        if paper is not None:
            ax.plot(position, paper, marker="D", color="black", linestyle="none", markersize=6,
                    label="paper (test split)")


def _paper_value(dataset: str | None, row: str | None, metric: str, layer: str | None = None) -> float | None:
    number = paper_number(dataset, row, metric, layer)
    return None if number is None else number.value


def _interval_note(evaluations: Sequence[Evaluation]) -> str | None:
    settings = {(ev.metrics["intervals"].get("level"), ev.metrics["intervals"].get("resamples"),
                 ev.metrics["intervals"].get("method"), ev.metrics["intervals"].get("seed"))
                for ev in evaluations if isinstance(ev.metrics.get("intervals"), dict)}
    if not settings:
        return None
    described = "; ".join(f"{level:.0%}, {resamples} resamples ({method}), seed {seed}"
                          for level, resamples, method, seed in sorted(settings, key=str) if level is not None)
    missing = [ev.name for ev in evaluations if not isinstance(ev.metrics.get("intervals"), dict)]
    return ("[low, high]: confidence intervals from each evaluation: ROC AUC by DeLong, the rest by a bootstrap "
            f"stratified by class ({described}); Jaccard and Dice over the images with a mask."
            + (f" Without intervals (evaluated before they existed or with --no-ci): {', '.join(missing)}."
               if missing else ""))


def compare_with_paper(evaluations: Sequence[Evaluation]) -> Comparison:
    classification_rows, attention_rows, figure_rows = [], [], []
    for ev in evaluations:
        scores = ev.metrics["classification"]
        melanoma: dict[str, Any] = next((scores[name] for name in ("melanoma", "MEL") if name in scores), {})  # MEL: ISIC 2018/2019
        setup = [ev.backbone, ev.input_size, ev.train_images]
        classification_rows.append([
            ev.name, ev.paper_row or "", ev.dataset or "", ev.split, str(ev.metrics.get("images", "")), *setup,
            *(ev.cell(melanoma.get(metric), "classification", "melanoma", metric)
              for metric in ("roc_auc", "average_precision", "sensitivity", "specificity")),
            _paper(ev.dataset, ev.paper_row, "roc_auc"),
        ])
        quality = ev.metrics.get("attention_quality")
        jaccard = {}
        for layer, scores in (quality or {}).get("layers", {}).items():
            attention_rows.append([
                ev.name, ev.paper_row or "", ev.split, layer,
                ev.cell(scores.get("jaccard"), "attention_quality", layer, "jaccard"),
                ev.cell(scores.get("dice"), "attention_quality", layer, "dice"),
                f"{quality['images_with_mask']} ({quality['images_without_mask']} without mask)", *setup,
                _paper(ev.dataset, ev.paper_row, "jaccard", layer),
            ])
            jaccard[layer] = (scores.get("jaccard"), ev.interval("attention_quality", layer, "jaccard"),
                              _paper_value(ev.dataset, ev.paper_row, "jaccard", layer))
        figure_rows.append(FigureRow(
            f"{ev.name}\n{ev.backbone}, {ev.input_size}\n{ev.train_images} train, {ev.split}",
            melanoma.get("roc_auc"), ev.interval("classification", "melanoma", "roc_auc"),
            _paper_value(ev.dataset, ev.paper_row, "roc_auc"), jaccard,
        ))
    setup_headers = ["backbone", "input", "train images"]
    return Comparison(
        ["run", "paper row", "data", "split", "images", *setup_headers, "ROC AUC (ours)", "AP (ours)",
         "sensitivity (ours)", "specificity (ours)", "ROC AUC (paper)"],
        classification_rows,
        ["run", "paper row", "split", "layer", "Jaccard (ours)", "Dice (ours)", "images scored", *setup_headers,
         "Jaccard (paper)"],
        attention_rows,
        figure_rows,
        _interval_note(evaluations),
    )


def _markdown(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)
