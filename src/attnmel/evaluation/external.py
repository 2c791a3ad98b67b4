"""External validation in one table: one model scored on several datasets in one run.

``evaluate_datasets`` calls ``evaluate_checkpoint`` once per dataset (each writes its usual folder,
``<output>/<dataset>/``) and gathers one row per dataset: images, melanomas (the task's positive
class), ROC AUC with DeLong's interval, pAUC above the minimum TPR (ISIC 2024) with its bootstrap
interval, sensitivity and specificity at the threshold, top-label ECE, the mean attention Jaccard
per layer where the dataset has lesion masks, and the top-15 retrieval sensitivity per patient
where it has patient ids. The table is written as ``external_validation.json`` (what ``--json``
prints and ``attnmel report`` reads), ``external_validation.md`` and an HTML report with a figure
of each dataset's AUC and interval. ``side_by_side`` puts the tables of several models next to
each other (``attnmel report``). The folder is one output set (``attnmel.outputs``): its manifest
names the table's files and every file of the datasets' folders, so a re-run that fails leaves no
manifest and ``attnmel report`` refuses the earlier table instead of printing it as this run's.
Dataset names become folder names: ``attnmel.arguments.path_name`` refuses ``..`` and the like where
the names are read (``data_sources``), and here names the table's own files would collide with.

Each dataset is scored on ``split`` when it has that split; a dataset with a single split (PH2's
``test``, ISIC 2024's ``train``, a manifest's ``all``) is scored on it; otherwise it is an error that
names the splits there are.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from attnmel.data.readers import read_dataset
from attnmel.data.sources import data_sources
from attnmel.errors import ConfigError, DataError
from attnmel.evaluation.evaluate import EvaluationOptions, EvaluationResult, evaluate_checkpoint
from attnmel.evaluation.report import HtmlReport
from attnmel.inference import DataSplit, InferenceSettings
from attnmel.io import atomic_write_json, atomic_write_text
from attnmel.metrics.challenge2024 import TOP_K, check_min_tpr
from attnmel.metrics.intervals import Interval
from attnmel.outputs import MANIFEST, STALE_PREFIX, OutputSet, check_output_dir, read_manifest

TABLE_JSON = "external_validation.json"
#: the files of the table, beside one folder per dataset
TABLE_FILES = (TABLE_JSON, "external_validation.md", "external_validation_auc.png", "external_validation.html")
COLUMNS = ("dataset", "split", "n", "melanoma", "ROC AUC [95% CI]", "pAUC", "sensitivity", "specificity", "ECE",
           "Jaccard", f"top-{TOP_K} sensitivity")


@dataclass(frozen=True)
class DatasetRow:
    """One dataset's line of the table; intervals as ``Interval.to_dict`` (estimate only when none)."""

    name: str
    data: str
    layout: str
    split: str
    images: int
    positives: int
    roc_auc: dict[str, Any]
    partial_auc: dict[str, Any]
    sensitivity: dict[str, Any]
    specificity: dict[str, Any]
    ece: float
    #: layer -> mean Jaccard over the images with a mask (empty without masks)
    jaccard: dict[str, float] = field(default_factory=dict)
    top_k_sensitivity: float | None = None
    output_dir: str = ""

    def cells(self) -> list[str]:
        def interval(payload: dict[str, Any]) -> str:
            return Interval.from_dict(payload).format(digits=3, bound_digits=2)

        return [self.name, self.split, str(self.images), str(self.positives), interval(self.roc_auc),
                interval(self.partial_auc), interval(self.sensitivity), interval(self.specificity), _number(self.ece),
                ", ".join(f"{layer} {_number(value)}" for layer, value in self.jaccard.items()) or "-",
                _number(self.top_k_sensitivity) if self.top_k_sensitivity is not None else "-"]


@dataclass
class ExternalValidation:
    """The table: one model (or ensemble), several datasets."""

    model: str
    threshold: float
    min_tpr: float
    rows: list[DatasetRow]
    files: dict[str, Path] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "threshold": self.threshold, "min_tpr": self.min_tpr,
                "columns": list(COLUMNS), "datasets": [asdict(row) for row in self.rows]}

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> ExternalValidation:
        return cls(str(payload["model"]), float(payload["threshold"]), float(payload["min_tpr"]),
                   [DatasetRow(**row) for row in payload["datasets"]])

    def note(self) -> str:
        return (f"ROC AUC with DeLong's 95% interval; pAUC above {self.min_tpr:.0%} TPR (ISIC 2024, at most "
                f"{1 - self.min_tpr:.2f}) and sensitivity / specificity at threshold {self.threshold:g} with stratified-"
                f"bootstrap intervals; ECE of the top label; Jaccard of each attention map over the images with a "
                f"lesion mask; top-{TOP_K} sensitivity per patient where the dataset has patient ids.")

    def to_markdown(self) -> str:
        return f"{self.model}\n\n" + _markdown(COLUMNS, [row.cells() for row in self.rows]) + f"\n\n{self.note()}"

    def to_html(self, figure: Path | None = None) -> HtmlReport:
        report = HtmlReport(f"External validation of {self.model}")
        report.table(COLUMNS, [row.cells() for row in self.rows]).paragraph(self.note())
        if figure is not None:
            report.figures([(figure, "ROC AUC per dataset with its 95% interval")], layout="stack")
        return report


def _number(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.3f}"


def _markdown(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _row(name: str, result: EvaluationResult) -> DatasetRow:
    column = next(iter(result.classification.classes))  # the positive class: scored first
    metrics = result.classification.classes[column]
    found = result.intervals.classification[column] if result.intervals is not None else {}

    def interval(key: str) -> dict[str, Any]:
        return found[key].to_dict() if key in found else {"estimate": getattr(metrics, key)}

    quality = result.attention_quality
    return DatasetRow(
        name=name, data=result.data, layout=result.layout, split=result.split, images=result.images,
        positives=metrics.n_positive, roc_auc=interval("roc_auc"), partial_auc=interval("partial_auc"),
        sensitivity=interval("sensitivity"), specificity=interval("specificity"), ece=float(result.calibration.ece),
        jaccard={layer: quality.mean(layer) for layer in quality.layers} if quality is not None else {},
        top_k_sensitivity=result.top_k_sensitivity, output_dir=str(result.output_dir),
    )


def named_datasets(datasets: Sequence[str | Path]) -> list[tuple[str, Path]]:
    """(name, path) per ``--data``, by the rule ``attnmel train`` names them with, numbered when two share a name."""
    return [(source.name, source.path) for source in data_sources(datasets, numbered=True)]


def evaluate_datasets(
    checkpoint: str | Path | None | Sequence[str | Path | None],
    datasets: Sequence[str | Path],
    output_dir: str | Path,
    options: EvaluationOptions = EvaluationOptions(),
    settings: InferenceSettings = InferenceSettings(),
    split: str = "test",
    log: Callable[[str], None] | None = print,
) -> ExternalValidation:
    """Score ``checkpoint`` on each of ``datasets`` (paths, or ``NAME=PATH``) with ``evaluate_checkpoint``,
    each into ``<output_dir>/<name>/``; masks are scored wherever a dataset has them. The folder is one
    output set, committed after the table; ``log`` hears what an earlier run left and was moved aside."""
    check_min_tpr(options.min_tpr)
    if len(datasets) < 1:
        raise ConfigError("give at least one --data.")
    named = named_datasets(datasets)
    for name, data in named:
        if name in (MANIFEST, *TABLE_FILES) or name.startswith(STALE_PREFIX):
            raise ConfigError(f"dataset name {name!r} (of {data}) is a file of the table's folder or a folder of "
                              f"stale files ({STALE_PREFIX}*). Fix: name the dataset with --data NAME=PATH.")
    output_dir = check_output_dir(output_dir)
    scored = []  # every dataset read (and its split chosen) before the folder is touched: a typo costs nothing
    for name, data in named:
        index = read_dataset(data)
        chosen = _split_of(index, data, split)
        scored.append((name, data, chosen, any(s.mask_path is not None for s in index.splits[chosen])))
    outputs = OutputSet(output_dir, "evaluate", known=TABLE_FILES, log=log)
    rows = []
    for name, data, chosen, masks in scored:
        result = evaluate_checkpoint(checkpoint, DataSplit(data, chosen), output_dir / name,
                                     dataclasses.replace(options, masks=masks, figures=False), settings, log=log)
        for written in (*read_manifest(output_dir / name, ("evaluate",)).files, MANIFEST):
            outputs.add(output_dir / name / written)
        rows.append(_row(name, result))
    model = ", ".join(Path(p).name for p in result.checkpoints) or "shipped model"
    table = ExternalValidation(model, float(result.threshold), options.min_tpr, rows)
    write_table(table, output_dir, outputs)
    outputs.commit(datasets=[name for name, _ in named])
    return table


def _split_of(index, data: str | Path, split: str) -> str:
    if split in index.splits:
        return split
    if len(index.splits) == 1:
        return next(iter(index.splits))
    raise DataError(Path(data), f"has no split {split!r} (it has {sorted(index.splits)}).",
                    "choose a split every dataset has with --split, or evaluate this one on its own.")


def write_table(table: ExternalValidation, output_dir: Path, outputs: OutputSet | None = None) -> dict[str, Path]:
    """The table as JSON, Markdown and HTML (with the AUC figure) in ``output_dir``, recorded in ``outputs``
    (the folder's output set) when given."""
    output_dir.mkdir(parents=True, exist_ok=True)
    json_file, markdown, figure, html = (outputs.path(name) if outputs is not None else output_dir / name
                                         for name in TABLE_FILES)
    files = table.files
    files["json"] = json_file
    atomic_write_json(files["json"], table.to_dict())
    files["markdown"] = markdown
    atomic_write_text(files["markdown"], table.to_markdown() + "\n")
    files["figure"] = auc_figure([table], figure)
    files["html"] = table.to_html(files["figure"]).write(html)
    return files


def auc_figure(tables: Sequence[ExternalValidation], path: Path) -> Path:
    """ROC AUC with its interval per dataset, one marker per model (several models side by side)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(row.name for table in tables for row in table.rows))
    fig, ax = plt.subplots(figsize=(max(4.0, 1.3 * len(datasets) + 2), 3.2), dpi=110)
    width = 0.7 / max(1, len(tables))
    for k, table in enumerate(tables):
        found = {row.name: Interval.from_dict(row.roc_auc) for row in table.rows}
        xs = [i + (k - (len(tables) - 1) / 2) * width for i, name in enumerate(datasets) if name in found]
        values = [found[name] for name in datasets if name in found]
        low = [v.estimate - v.low if math.isfinite(v.low) else 0 for v in values]
        high = [v.high - v.estimate if math.isfinite(v.high) else 0 for v in values]
        ax.errorbar(xs, [v.estimate for v in values], yerr=[low, high], fmt="o", capsize=4, label=table.model)
    ax.set_xticks(range(len(datasets)), datasets, rotation=20, ha="right")
    ax.set_ylabel("ROC AUC (95% CI)")
    ax.set_ylim(0, 1.02)
    ax.axhline(0.5, color="#999", lw=0.8, ls="--")
    ax.grid(axis="y", alpha=0.3)
    if len(tables) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------------- report


def is_external_validation(path: str | Path) -> bool:
    path = Path(path)
    return (path / TABLE_JSON).is_file() or (path.is_file() and path.name == TABLE_JSON)


def read_table(path: str | Path) -> ExternalValidation:
    """The table of an external-validation folder (or its JSON), only when the folder's manifest names
    it unchanged: a table a failed or interrupted re-run left behind is refused, not reported."""
    path = Path(path)
    path = path / TABLE_JSON if path.is_dir() else path
    path = read_manifest(path.parent, ("evaluate",)).require(path.name)
    try:
        table = ExternalValidation.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DataError(path, f"not an external-validation table ({exc}).", "re-run attnmel evaluate with several --data.") from None
    table.files["json"] = path
    return table


def side_by_side(tables: Sequence[ExternalValidation]) -> tuple[str, HtmlReport]:
    """Several models' tables in one: rows are datasets, each model adds its ROC AUC and pAUC columns."""
    datasets = list(dict.fromkeys(row.name for table in tables for row in table.rows))
    headers = ["dataset", "n", "melanoma"] + [f"{t.model}: {m}" for t in tables for m in ("ROC AUC", "pAUC")]
    rows = []
    for name in datasets:
        found = [{row.name: row for row in table.rows}.get(name) for table in tables]
        first = next(row for row in found if row is not None)
        cells = [name, str(first.images), str(first.positives)]
        for row in found:
            cells += [row.cells()[4], row.cells()[5]] if row is not None else ["-", "-"]
        rows.append(cells)
    report = HtmlReport("External validation, models side by side").table(headers, rows).paragraph(tables[0].note())
    return _markdown(headers, rows), report
