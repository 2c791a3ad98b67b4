"""Model cards (Mitchell et al., 2019) generated from checkpoint metadata.

One typed structure (``ModelCard``), two renderings: ``ModelCard.to_dict`` is JSON-ready data
(``GET /info`` of the service), ``render_markdown`` the file written next to every exported model. Everything comes
from the checkpoint's metadata, so a card cannot drift from the weights it describes. Intervals
come from ``metrics["val_intervals"][class][metric]`` (an ``Interval.to_dict()``; training records
DeLong's interval of the val ROC AUC there) and are shown as ``value [low, high]``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from attnmel.checkpoints.meta import CheckpointMeta, KeptEpoch
from attnmel.io import json_safe
from attnmel.models import Architecture, model_entry, with_maps

INTENDED_USE = (
    "Research on interpretable melanoma recognition from dermoscopy images: comparing models, "
    "studying where a model looks, teaching. Not a medical device and not for diagnosis, triage or "
    "any decision about a patient."
)
OUT_OF_SCOPE = [
    "clinical diagnosis, screening or triage of real patients",
    "clinical (non-dermoscopic) photographs, histopathology or any other modality",
    "lesion segmentation (the attention maps are not segmentations)",
]
NOT_DIAGNOSTIC = "Research use only: this model is not a diagnostic tool."
METHOD_CITATION = "Y. Yan, J. Kawahara, G. Hamarneh. Melanoma Recognition via Visual Attention. IPMI 2019."
DATA_CITATIONS = {
    "isic2017": "N. Codella et al. Skin Lesion Analysis Toward Melanoma Detection (ISIC 2017). arXiv:1710.05006.",
    "isic2016": "D. Gutman et al. Skin Lesion Analysis toward Melanoma Detection (ISIC 2016). arXiv:1605.01397.",
    "ham10000": "P. Tschandl, C. Rosendahl, H. Kittler. The HAM10000 dataset, a large collection of multi-source "
                "dermatoscopic images of common pigmented skin lesions. Sci. Data 5, 180161 (2018).",
}
METRIC_ORDER = ["roc_auc", "average_precision", "accuracy", "balanced_accuracy", "sensitivity", "specificity",
                "precision", "sensitivity_at_90_specificity", "threshold", "n", "n_positive"]
#: metrics that depend on the decision threshold: recorded at 0.5 by training, so shown at the stored
#: operating point when there is one, and at 0.5 only beside it, labelled
THRESHOLD_METRICS = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "precision")


def _positive_metrics(meta: CheckpointMeta) -> dict[str, Any]:
    values = (meta.metrics.get("val") or {}).get(meta.positive_class)
    return {k: values[k] for k in METRIC_ORDER if k in values} if isinstance(values, dict) else {}


#: below this many training images a model is a demonstration of the tool, and its card says so
DEMONSTRATION_IMAGES = 500


def _limitations(meta: CheckpointMeta, metrics: dict[str, Any], layers: list[str]) -> list[str]:
    data = meta.training.data or {}
    notes = []
    trained_on = (data.get("train") or {}).get("images")
    if isinstance(trained_on, int) and trained_on < DEMONSTRATION_IMAGES:
        notes.append(f"Trained on {trained_on} images only: a demonstration of the tool, not a model of melanoma; "
                     "its predictions mean nothing.")
    notes.append("Not validated for clinical use; no regulatory clearance.")
    notes.append("ISIC dermoscopy archives come from a few referral centres and mostly lightly pigmented skin; "
                 "performance on other populations, devices and acquisition protocols is unknown.")
    if metrics:
        if meta.training.kept_epoch == "last":
            notes.append("The run kept its last epoch, so nothing was chosen on the validation split; it is still "
                         "one split of one site: report held-out test metrics (`attnmel evaluate --split test`).")
        else:
            notes.append("Validation metrics come from the split used to pick the best epoch, so they are optimistic; "
                         "report held-out test metrics (`attnmel evaluate --split test`).")
        n = metrics.get("n")
        sentence = _interval_sentence(metrics, _positive_intervals(meta))
        if sentence:
            notes.append(sentence)
        elif isinstance(n, int) and n < 500:
            notes.append(f"The validation split has {n} images ({metrics.get('n_positive')} positive): the metrics "
                         "have wide confidence intervals (none is recorded in this checkpoint; `attnmel evaluate` "
                         "computes them).")
    else:
        notes.append("No validation metrics are recorded in this checkpoint.")
    if not data:
        notes.append("The checkpoint does not record its training data.")
    size = meta.preprocessing.image_size
    if size < 224:
        notes.append(f"Trained at a reduced input size ({size} px; the paper uses 224 px).")
    if layers:
        notes.append("Attention maps show where the model weighted its features; they are neither lesion "
                     "segmentations nor causal explanations.")
    legacy = meta.legacy
    if legacy and legacy.get("assumed"):
        assumed = ", ".join(f"{k}={v}" for k, v in legacy["assumed"].items())
        notes.append(f"Converted from a legacy pickle ({legacy.get('origin')}); not stored in it and assumed: {assumed}.")
    return notes


def _citations(meta: CheckpointMeta) -> list[str]:
    data = meta.training.data or {}
    names = [data.get("layout"), *(data.get("datasets") or {})]
    return [METHOD_CITATION] + [DATA_CITATIONS[name] for name in dict.fromkeys(names) if name in DATA_CITATIONS]


def when_not_to_trust(meta: CheckpointMeta) -> list[str]:
    """The card's "When not to trust it" items: the stored operating point, OOD check and prediction sets,
    the attention check, and the figures measured for them (``release['trust_figures']``)."""
    items = []
    point = meta.operating_point
    if point is not None:
        items.append(f"Decision threshold {point.threshold:.4f}, chosen by {point.describe()}: there sensitivity "
                     f"{point.sensitivity:.3f} [{point.sensitivity_interval[0]:.2f}, {point.sensitivity_interval[1]:.2f}] "
                     f"and specificity {point.specificity:.3f} [{point.specificity_interval[0]:.2f}, "
                     f"{point.specificity_interval[1]:.2f}] (95% Wilson, {point.images} images, {point.positives} "
                     "positive). At another clinic these rates move: refit them on your own labelled images with "
                     "`attnmel calibrate --data MY_SITE`.")
    else:
        items.append("No operating point stored: the decision threshold is 0.5, not chosen for any sensitivity.")
    ood = meta.ood_detector
    if ood is not None:
        items.append(f"Images unlike the fitting images are flagged `out_of_distribution` ({ood.method}; statistics "
                     f"from {ood.fitted_on}; {ood.rule or 'threshold on ' + ood.threshold_on}: it flags "
                     f"{ood.flagged_share:.1%} of {ood.threshold_on}). A flagged answer gives no probability, class or "
                     "prediction set at any door (`withheld` says why).")
    else:
        items.append("No out-of-distribution check: this checkpoint carries no fitted detector, so a photo that is "
                     "not dermoscopy still gets a probability.")
    sets = meta.conformal
    if sets is not None:
        items.append(f"Prediction sets: {sets.describe()}. An answer is referred (`refer`, with its reasons) when its "
                     "set holds both classes or none, or when its predicted class (the decision threshold) lies outside "
                     "it. The coverage guarantee holds for images like the calibration images only.")
        if sets.kind == "marginal":
            items.append("These sets are marginal (fitted before class-conditional sets): a rarer class, melanoma "
                         "above all, may be covered far less than the nominal rate; refit them with `attnmel calibrate "
                         "--fit sets`.")
    modes = ", ".join(_mode_words(mode) for mode in meta.trust_modes)
    items.append("These fields are those of plain answers (one network, one view)"
                 + (f"; fields were also fitted for {modes}." if modes else
                    "; answers computed another way (TTA, an ensemble) have no fitted fields and say so (`trust_note`) "
                    "instead of borrowing these."))
    items.append("An answer carries an `attention_warning` when an attention map is flat or puts most of its "
                 "attention outside the disc inscribed in the model's view (borders, rulers, dark corners).")
    figures = (meta.release or {}).get("trust_figures") or {}
    items += [f"Measured: {key.replace('_', ' ')}: {_release_value(value)}" for key, value in figures.items()]
    return items


def _mode_words(mode: str) -> str:
    if mode == "tta":
        return "TTA answers"
    members = len(mode.split(":", 1)[1].split(",")) + 1
    return f"an ensemble of {members}" + (" with TTA" if mode.startswith("ensemble-tta") else "")


def map_layers(architecture: Architecture) -> list[str]:
    """The maps a model answers with: its attention layers, or ``cam`` for a GAP model."""
    with torch.device("meta"):
        return list(with_maps(architecture.build()).attention_layers)


@dataclass(frozen=True)
class ModelSection:
    name: str
    paper_row: str | None
    description: str
    backbone: str | None
    num_classes: int
    #: the gates' normalisation and width (None for models without gates)
    attention_normalization: str | None
    attention_channels: int | None
    #: the maps the model answers with (``cam`` for a GAP model)
    attention_layers: list[str]
    attnmel_version: str


@dataclass(frozen=True)
class TaskSection:
    name: str
    class_names: list[str]
    score_columns: list[str]


@dataclass(frozen=True)
class IntendedUse:
    primary: str
    out_of_scope: list[str]


@dataclass(frozen=True)
class InputSection:
    #: ``Preprocessing.to_dict()``
    preprocessing: dict[str, Any]
    description: str


@dataclass(frozen=True)
class OutputSection:
    probabilities: str
    attention: str


@dataclass(frozen=True)
class TrainingSection:
    run: str | None
    epoch: int | None
    #: None where the checkpoint does not say
    kept_epoch: KeptEpoch | None
    seed: int | None
    backbone_weights: str | None
    #: {"roi", "weights"} of the Dice attention prior, as the checkpoint records it
    attention_prior: dict[str, Any] | None
    #: the dataset summary the checkpoint records (``TrainingRecord.data``)
    data: dict[str, Any] | None
    #: the trained checkpoint it was fine-tuned from (``TrainingRecord.started_from``)
    started_from: dict[str, Any] | None = None


@dataclass(frozen=True)
class MetricsSection:
    split: str
    epoch: int | None
    #: metric -> value of the positive class, in ``METRIC_ORDER``: those that need no threshold, and the
    #: threshold's ones too when the model answers at the threshold they were recorded at
    positive_class: dict[str, Any]
    #: metric -> recorded interval (``Interval.to_dict()``)
    intervals: dict[str, dict[str, Any]]
    #: the rates at the threshold the model answers with (the stored operating point), on the data it was
    #: chosen on: threshold, rule, data, images, positives, sensitivity, specificity (with intervals),
    #: accuracy, balanced accuracy, precision; None without an operating point
    at_operating_point: dict[str, Any] | None = None
    #: the recorded threshold metrics at 0.5 when the model answers at another threshold: beside the
    #: operating point's only, labelled as not the model's answers
    at_threshold_half: dict[str, Any] | None = None


@dataclass(frozen=True)
class ModelCard:
    title: str
    notice: str
    model: ModelSection
    task: TaskSection
    intended_use: IntendedUse
    input: InputSection
    output: OutputSection
    training: TrainingSection
    metrics: MetricsSection
    limitations: list[str]
    #: what the answers carry to say when not to trust them, and what was measured of it
    when_not_to_trust: list[str]
    citation: list[str]
    #: for models converted from a pickle: where from and what was assumed
    legacy: dict[str, Any] | None = None
    #: for models shipped with attnmel: tag, licence, provenance, how it was chosen
    release: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The card as JSON (strict: no NaN)."""
        out = dataclasses.asdict(self)
        for key in ("legacy", "release"):
            if not out[key]:
                del out[key]
        return json_safe(out)


def model_card(meta: CheckpointMeta) -> ModelCard:
    """The model card of a checkpoint."""
    arch = meta.architecture
    training = meta.training
    entry = model_entry(arch.name)
    layers = map_layers(arch)
    gates = layers if layers != ["cam"] else []
    pre = meta.preprocessing.to_dict()
    metrics = json_safe(_positive_metrics(meta))  # recorded numbers as JSON has them (NaN: None)
    row = training.paper_row or entry.paper_row
    temperature = f" at the calibrated temperature {meta.temperature:.3g}" if meta.temperature else ""
    return ModelCard(
        title=f"{row or arch.name} ({arch.backbone}), task {meta.task}",
        notice=NOT_DIAGNOSTIC,
        model=ModelSection(
            name=arch.name, paper_row=row, description=entry.description, backbone=arch.backbone,
            num_classes=arch.num_classes, attention_normalization=arch.normalize if gates else None,
            attention_channels=arch.options.get("attention_channels") if gates else None,
            attention_layers=layers, attnmel_version=meta.attnmel_version,
        ),
        task=TaskSection(meta.task, list(meta.class_names), list(meta.score_columns)),
        intended_use=IntendedUse(INTENDED_USE, list(OUT_OF_SCOPE)),
        input=InputSection(pre, (
            f"RGB dermoscopy image; centre square of {pre['crop_ratio']} x the short side, resized to "
            f"{pre['resize']} px, centre crop of {pre['image_size']} px, normalised with the mean and std "
            "below (values in [0, 1] before normalisation)."
            + (f" The network first blurs it with a fixed Gaussian of sigma {arch.options['input_blur']:g} px "
               "(model.input_blur)." if arch.options.get("input_blur") else "")
        )),
        output=OutputSection(f"softmax of the logits{temperature}, one per class name",
                             _attention_text(layers, arch.normalize)),
        training=TrainingSection(training.run, training.epoch, training.kept_epoch, training.seed,
                                 training.backbone_weights,
                                 json_safe(training.prior), json_safe(training.data), json_safe(training.started_from)),
        metrics=_metrics_section(meta, metrics),
        limitations=_limitations(meta, metrics, gates),
        when_not_to_trust=when_not_to_trust(meta),
        citation=_citations(meta),
        legacy=json_safe(meta.legacy) or None,
        release=json_safe(meta.release) or None,
    )


def _metrics_section(meta: CheckpointMeta, metrics: dict[str, Any]) -> MetricsSection:
    """The recorded metrics split by what a user reads them as: threshold-free ones, the rates at the
    stored operating point (the answers the model gives), and the recorded 0.5 ones beside it."""
    intervals = json_safe(_positive_intervals(meta))
    point = meta.operating_point
    if point is None:
        return MetricsSection("validation", meta.training.epoch, metrics, intervals)
    free = {k: v for k, v in metrics.items() if k not in (*THRESHOLD_METRICS, "threshold")}
    half = {k: metrics[k] for k in ("threshold", *THRESHOLD_METRICS) if k in metrics}
    return MetricsSection("validation", meta.training.epoch, free, intervals, json_safe(operating_rates(point)),
                          half if len(half) > 1 else None)


def operating_rates(point: Any) -> dict[str, Any]:
    """An ``OperatingPoint``'s rates, and the accuracy, balanced accuracy and precision they imply."""
    positives, negatives = point.positives, point.images - point.positives
    true_pos, true_neg = point.sensitivity * positives, point.specificity * negatives
    called = true_pos + (negatives - true_neg)
    return {"threshold": point.threshold, "rule": point.describe(), "data": point.data, "images": point.images,
            "positives": positives, "sensitivity": point.sensitivity,
            "sensitivity_interval": list(point.sensitivity_interval), "specificity": point.specificity,
            "specificity_interval": list(point.specificity_interval),
            "accuracy": (true_pos + true_neg) / max(point.images, 1),
            "balanced_accuracy": (point.sensitivity + point.specificity) / 2,
            "precision": true_pos / called if called else None}


def _positive_intervals(meta: CheckpointMeta) -> dict[str, dict[str, Any]]:
    """metric -> interval (as ``Interval.to_dict()``) recorded for the positive class, if any."""
    values = (meta.metrics.get("val_intervals") or {}).get(meta.positive_class)
    if not isinstance(values, dict):
        return {}
    return {k: v for k, v in values.items() if isinstance(v, dict) and {"low", "high"} <= set(v)}


def _interval_sentence(metrics: dict[str, Any], intervals: dict[str, dict[str, Any]]) -> str | None:
    auc = intervals.get("roc_auc") or {}
    low, high = auc.get("low"), auc.get("high")
    if not isinstance(low, float | int) or not isinstance(high, float | int):
        return None
    level = auc.get("level") or 0.95
    return (f"The validation split has {metrics.get('n')} images ({metrics.get('n_positive')} positive): the "
            f"{level:.0%} {'DeLong ' if auc.get('method') == 'delong' else ''}interval of its ROC AUC is "
            f"[{low:.2f}, {high:.2f}], {high - low:.2f} wide, so smaller differences between models are not "
            "established by this split (`attnmel compare` tests them).")


def _attention_text(layers: list[str], normalize: str | None) -> str:
    if layers == ["cam"]:
        return "cam: the class activation map of the positive class (unbounded scores; this model has no attention gates)"
    if not layers:
        return "none (this model has no attention gates)"
    scale = "softmax, the map sums to 1" if normalize == "softmax" else "sigmoid, each position independent"
    return f"one map per attention layer: {', '.join(layers)}; values in [0, 1] ({scale})"


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _release_value(value: Any) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{k.replace('_', ' ')}: {_release_value(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_release_value(v) for v in value)
    return _fmt(value)


def _interval_text(interval: dict[str, Any] | None) -> str:
    """`` [low, high] (95% delong)`` for a recorded interval, else nothing."""
    if not interval or not all(isinstance(interval.get(k), float | int) for k in ("low", "high")):
        return ""
    level = interval.get("level") or 0.95
    return f" [{interval['low']:.2f}, {interval['high']:.2f}] ({level:.0%} {interval.get('method', '')})".rstrip()


def render_markdown(card: ModelCard) -> str:
    """The card as a markdown document (written next to exported models)."""
    model, training = card.model, card.training
    lines = [f"# Model card: {card.title}", ""]
    lines += [f"> {card.notice}", "", "## Model", ""]
    for key in ("name", "paper_row", "description", "backbone", "num_classes", "attention_layers",
                "attention_normalization", "attention_channels", "attnmel_version"):
        value = getattr(model, key)
        if value not in (None, []):
            lines.append(f"- **{key.replace('_', ' ')}**: {', '.join(value) if isinstance(value, list) else value}")
    lines += [f"- **classes**: {', '.join(card.task.class_names)} (task `{card.task.name}`)", ""]
    lines += ["## Intended use", "", card.intended_use.primary, "", "Out of scope:", ""]
    lines += [f"- {item}" for item in card.intended_use.out_of_scope] + [""]
    lines += ["## Input and output", "", card.input.description, ""]
    pre = card.input.preprocessing
    if pre:
        lines += [f"- mean: {pre.get('mean')}", f"- std: {pre.get('std')}"]
    lines += [f"- probabilities: {card.output.probabilities}", f"- attention: {card.output.attention}", ""]
    lines += ["## Training data", ""] + _training_data_lines(training.data)
    for key in ("run", "epoch", "kept_epoch", "seed", "backbone_weights"):
        if getattr(training, key) is not None:
            lines.append(f"- {key.replace('_', ' ')}: {getattr(training, key)}")
    start = training.started_from
    if start:
        lines.append(f"- fine-tuned from: {start.get('checkpoint')} (run {start.get('run')}, epoch {start.get('epoch')}, "
                     f"sha256 {str(start.get('sha256'))[:12]}...)")
    prior = training.attention_prior
    if prior:
        lines.append(f"- attention prior: {prior.get('roi')} region, Dice weights {prior.get('weights')}")
    lines += ["", "## Metrics", ""] + _site_lines(card.release or {}) + _metrics_lines(card.metrics)
    if card.release:
        lines += ["", "## Release", ""]
        lines += [f"- **{key.replace('_', ' ')}**: {_release_value(value)}" for key, value in card.release.items()]
    lines += ["", "## When not to trust it", ""] + [f"- {item}" for item in card.when_not_to_trust]
    lines += ["", "## Limitations", ""] + [f"- {item}" for item in card.limitations]
    lines += ["", "## Citation", ""] + [f"- {item}" for item in card.citation]
    return "\n".join(lines) + "\n"


#: release keys of one model's check on images it never trained on -> how the card names the site
SITE_CHECKS = {"held_out_ham10000": "ham10000, held-out lesions", "unseen_isic2016": "isic2016, unseen by ISIC 2017"}


def _site_lines(release: dict[str, Any]) -> list[str]:
    """Several sites before any one split: the recipe's yardstick (``release['yardstick']``, per seed) and
    this very file on images it never trained on; empty for a checkpoint without them."""
    rows = [f"| {site} | {value} | the recipe, {seed}, fold models (`attnmel yardstick`) |"
            for site, seeds in (release.get("yardstick") or {}).get("sites", {}).items() for seed, value in seeds.items()]
    for key, name in SITE_CHECKS.items():
        check = release.get(key)
        if check and check.get("roc_auc_interval"):
            low, high = check["roc_auc_interval"]
            shown = "" if low is None or high is None else f" [{low:.3f}, {high:.3f}]"
            rows.append(f"| {name} ({check['images']} images, {check['melanoma']} melanomas) | ROC AUC "
                        f"{check['roc_auc']:.3f}{shown} | this file |")
    if not rows:
        return []
    return ["Judged on several sites (95% DeLong intervals); the validation split below only stands beside them:", "",
            "| site | ROC AUC [95% CI] | what was scored |", "|---|---|---|", *rows, ""]


def _metrics_lines(section: MetricsSection) -> list[str]:
    """The metrics a reader takes for the model's answers: at the operating point it answers with; the
    recorded 0.5 ones only beside them, labelled."""
    lines = []
    metrics, point = section.positive_class, section.at_operating_point
    if metrics:
        head = (f"Validation split, epoch {section.epoch} (positive class"
                + (", metrics that need no threshold):" if point is not None
                   else f", threshold {_fmt(metrics.get('threshold'))}, the one the model answers with):"))
        lines += [head, "", "| metric | value |", "|---|---|"]
        lines += [f"| {k.replace('_', ' ')} | {_fmt(v)}{_interval_text(section.intervals.get(k))} |"
                  for k, v in metrics.items() if k != "threshold"]
    else:
        lines.append("No validation metrics recorded.")
    if point is not None:
        lines += ["", f"At the operating point the model answers with: threshold {point['threshold']:.4f}, chosen by "
                  f"{point['rule']} ({point['images']} images, {point['positives']} positive; 95% Wilson intervals):",
                  "", "| metric | value |", "|---|---|",
                  f"| sensitivity | {point['sensitivity']:.4f} [{point['sensitivity_interval'][0]:.2f}, "
                  f"{point['sensitivity_interval'][1]:.2f}] |",
                  f"| specificity | {point['specificity']:.4f} [{point['specificity_interval'][0]:.2f}, "
                  f"{point['specificity_interval'][1]:.2f}] |"]
        lines += [f"| {k.replace('_', ' ')} | {_fmt(point.get(k))} |" for k in ("accuracy", "balanced_accuracy", "precision")]
    half = section.at_threshold_half
    if half:
        lines += ["", f"Beside it only: the same validation metrics at threshold {_fmt(half.get('threshold'))}, which the "
                  "model does not answer with: " + ", ".join(f"{k.replace('_', ' ')} {_fmt(v)}" for k, v in half.items()
                                                              if k != "threshold") + "."]
    return lines


def _training_data_lines(data: dict[str, Any] | None) -> list[str]:
    """The dataset summary a checkpoint records: its datasets, each split, and the images kept out."""
    if not data:
        return ["Not recorded in this checkpoint."]

    def counts(part: dict[str, Any]) -> str:
        classes = ", ".join(f"{k} {v}" for k, v in (part.get("classes") or {}).items())
        prior = f"; {part['with_prior']} with an attention-prior region" if "with_prior" in part else ""
        return f"{part.get('images')} images ({classes}){prior}"

    datasets = data.get("datasets") or {}
    layout, task = data.get("layout"), data.get("task")
    if datasets:
        named = ", ".join(f"`{name}`" for name in datasets)
        lines = [f"- datasets: {named}, task `{task}`; validation from `{layout}`"]
    else:
        lines = [f"- dataset: `{layout}` layout, task `{task}`"]
    lines.append(f"- train: {counts(data.get('train') or {})}")
    lines += [f"  - {name}: {counts(entry.get('train') or {})}" for name, entry in datasets.items()]
    lines.append(f"- val: {counts(data.get('val') or {})}")
    if data.get("held_out"):
        lines.append(f"- held out of training (whole lesions): {counts(data['held_out'])}")
    if data.get("dropped"):
        lines.append(f"- left out of training as the same photograph or lesion as an image judged on: {data['dropped']}")
    if data.get("skipped"):
        lines.append(f"- skipped unreadable entries: {data['skipped']}")
    return lines
