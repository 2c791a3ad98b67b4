"""Fitting what a checkpoint needs to say when not to trust it, and measuring it.

``fit_trust`` is the one fitter of the temperature, the decision threshold (operating point), the
prediction sets and the OOD detector. It takes answers, not a checkpoint: ``FittingData`` holds the
labels and probabilities (and, where given, raw logits and the detector's inputs) of labelled
images from any source, a split run through the model (``fitting_data``) or the out-of-fold
predictions of a cross-validation (``FittingData.from_scores``), so a model is fitted on as many
labelled images as it allows. The detector learns the inputs of training-like images
(``DetectorData``, e.g. ``detector_data`` of the training splits) and takes its thresholds from
held-out in-distribution images. ``attnmel calibrate`` and ``scripts/ship_model.py`` call it;
nothing else fits these.

Split conformal prediction is the few lines below rather than MAPIE: MAPIE wraps a scikit-learn
estimator and refits or predicts through it, while here the probabilities come from a torch model
already run; the calibration is one quantile per class (Angelopoulos & Bates 2021, "A gentle
introduction to conformal prediction and distribution-free uncertainty quantification", sections 1
and 4.1 on class-conditional coverage).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch

from attnmel.checkpoints.trust import (
    ConformalKind,
    ConformalSets,
    FeatureTransform,
    OodDetector,
    OodInput,
    OodPart,
    ThresholdRule,
    TrustFields,
    transform_features,
)
from attnmel.errors import ConfigError, DataError
from attnmel.evaluation.operating_point import (
    DEFAULT_RULE,
    DEFAULT_TARGET_SENSITIVITY,
    choose_operating_point,
    wilson_interval,
)
from attnmel.evaluation.split_predictions import read_split
from attnmel.inference import (
    DataSplit,
    InferenceSettings,
    LoadedModel,
    Predictions,
    probabilities_from_logits,
)
from attnmel.inference.trust import NO_OOD_CHECK, ModeFields, refer_reasons, trust_signals
from attnmel.metrics.calibration import fit_temperature

DEFAULT_ALPHA = 0.1
#: the largest share of each class of the held-out in-distribution images the OOD thresholds may flag
MAX_FLAGGED = 0.05
#: principal directions kept by each detector part (benchmarks/ood.py chose 16 of 16 and 32)
DEFAULT_COMPONENTS = 16
#: what the detector reads (benchmarks/ood.py chose both on its selection part)
DEFAULT_INPUTS: tuple[OodInput, ...] = ("features", "image-statistics")
#: the least labelled data calibrate fits a temperature, a threshold and sets on: with fewer, a
#: temperature runs to a search bound and a threshold rests on one or two images
MIN_IMAGES = 20
MIN_PER_CLASS = 5

#: what ``fit_trust`` can fit; the others are kept as they were
Fit = Literal["temperature", "threshold", "sets", "detector"]
FITS: tuple[Fit, ...] = get_args(Fit)
_TRANSFORMS: dict[str, FeatureTransform] = {"features": "signed-sqrt", "image-statistics": "none"}


def conformal_quantile(labels: np.ndarray, probabilities: np.ndarray, alpha: float) -> float:
    """The ceil((n+1)(1-alpha))/n empirical quantile of the scores 1 - P(true class) (1.0 when n is too small)."""
    scores = 1.0 - probabilities[np.arange(len(labels)), np.asarray(labels, dtype=int)]
    n = len(scores)
    rank = math.ceil((n + 1) * (1 - alpha))
    return 1.0 if rank > n else float(np.sort(scores)[rank - 1])


def fit_conformal(labels: np.ndarray, probabilities: np.ndarray, class_names: Sequence[str],
                  alpha: float = DEFAULT_ALPHA, data: str = "",
                  kind: ConformalKind = "class-conditional") -> ConformalSets:
    """Split conformal sets: one quantile per class from that class's images (``class-conditional``,
    each class covered at 1 - alpha), or one from all (``marginal``)."""
    labels = np.asarray(labels, dtype=int)
    if kind == "marginal":
        return ConformalSets(alpha, conformal_quantile(labels, probabilities, alpha), len(labels), data)
    per_class = {}
    for index, name in enumerate(class_names):
        mine = labels == index
        if not mine.any():
            raise DataError(data or "the fitting data", f"has no image of the class {name!r}, so its prediction-set "
                            "quantile cannot be fitted.", "fit on labelled images of every class.")
        per_class[name] = (conformal_quantile(labels[mine], probabilities[mine], alpha), int(mine.sum()))
    return ConformalSets(alpha, max(q for q, _ in per_class.values()), len(labels), data, "class-conditional",
                         per_class)


@dataclass(frozen=True)
class DetectorData:
    """What the OOD detector reads of some images: pooled features (N, D), image statistics (N, K),
    their labels (None: unlabelled, one mean per part), and which set each image comes from (``join``
    records it: thresholds hold for each set, not only for the largest)."""

    features: np.ndarray | None
    statistics: np.ndarray | None
    labels: np.ndarray | None
    description: str
    groups: np.ndarray | None = None

    @classmethod
    def of(cls, predictions: Predictions, description: str, labelled: bool = True) -> DetectorData:
        return cls(predictions.features, predictions.image_statistics,
                   predictions.labels if labelled else None, description)

    @classmethod
    def join(cls, parts: Sequence[DetectorData]) -> DetectorData:
        def stack(name: str) -> np.ndarray | None:
            values = [getattr(part, name) for part in parts]
            return None if any(v is None for v in values) else np.concatenate(values)
        groups = np.concatenate([part.groups if part.groups is not None else np.full(len(part), part.description)
                                 for part in parts]) if parts else None
        return cls(stack("features"), stack("statistics"), stack("labels"),
                   " + ".join(part.description for part in parts), groups)

    def values(self, name: OodInput) -> np.ndarray:
        value = self.features if name == "features" else self.statistics
        if value is None:
            raise DataError(self.description, f"carries no {name} for the OOD detector.",
                            "run the model with keep=('features',) over these images.")
        return value

    def __len__(self) -> int:
        return len(self.features if self.features is not None else self.statistics)


def fit_ood_part(name: OodInput, train: DetectorData, held: DetectorData, allowed: float,
                 components: int = DEFAULT_COMPONENTS) -> OodPart:
    """One PPCA part fitted on ``train`` (one mean per class when labelled, the spread around them
    shared), its threshold the smallest score that flags at most ``allowed`` of each class of each set
    of ``held``."""
    x = transform_features(train.values(name), _TRANSFORMS[name])
    groups = [np.ones(len(x), bool)] if train.labels is None else \
        [train.labels == c for c in np.unique(train.labels)]
    means = np.stack([x[g].mean(axis=0) for g in groups])
    centred = np.concatenate([x[g] - m for g, m in zip(groups, means, strict=True)])
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    variances = singular ** 2 / max(len(x) - len(groups), 1)
    k = min(components, len(variances) - 1)
    residual = max(float(variances[k:].sum() / max(x.shape[1] - k, 1)), 1e-12)
    part = OodPart(name, means, vt[:k], np.maximum(variances[:k], 1e-12), residual, 1.0, _TRANSFORMS[name])
    scores = part.score(held.values(name))
    keys = np.array([f"{g}|{y}" for g, y in zip(
        held.groups if held.groups is not None else np.zeros(len(scores)),
        held.labels if held.labels is not None else np.zeros(len(scores)), strict=True)])
    threshold = max(_quantile_threshold(scores[keys == key], allowed) for key in np.unique(keys))
    return OodPart(name, means, vt[:k], part.variances, residual, threshold, _TRANSFORMS[name])


def _quantile_threshold(scores: np.ndarray, allowed: float) -> float:
    """The smallest score that flags (score above it) at most ``allowed`` of ``scores``."""
    ranked = np.sort(scores)
    return float(ranked[len(ranked) - int(math.floor(allowed * len(ranked))) - 1])


def fit_ood(train: DetectorData, held: DetectorData, *, inputs: Sequence[OodInput] = DEFAULT_INPUTS,
            components: int = DEFAULT_COMPONENTS, max_flagged: float = MAX_FLAGGED,
            class_means: bool = False) -> OodDetector:
    """The detector of ``inputs`` learnt from ``train`` (training-like images; with ``class_means`` one
    mean per class of its labels, else one mean: benchmarks/ood.py found no difference and keeps the
    simpler); each part's threshold flags at most ``max_flagged / len(inputs)`` of each class of each
    set of ``held`` (held-out in-distribution images), so together they flag at most about
    ``max_flagged`` of each."""
    if not inputs:
        raise ConfigError("the OOD detector needs at least one input (features, image-statistics).")
    if not class_means:
        train = dataclasses.replace(train, labels=None)
    allowed = max_flagged / len(inputs)
    parts = tuple(fit_ood_part(name, train, held, allowed, components) for name in inputs)
    detector = OodDetector(parts, train.description, held.description, 0.0)
    share = float((detector.score(held.features, held.statistics) > 1.0).mean())
    sets = "each of " if held.groups is not None and len(np.unique(held.groups)) > 1 else ""
    rule = (f"each part flags at most {allowed:.1%} of each class of {sets}{held.description}"
            if held.labels is not None else f"each part flags at most {allowed:.1%} of {sets}{held.description}")
    return OodDetector(parts, train.description, held.description, share, rule)


def refuse_degenerate(labels: np.ndarray, class_names: list[str], source: str) -> None:
    """Data that cannot identify a temperature, a threshold or sets is refused, saying why."""
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=len(class_names))
    problems = []
    if len(labels) < MIN_IMAGES:
        problems.append(f"{len(labels)} images (calibrate needs at least {MIN_IMAGES})")
    short = [f"{name} {count}" for name, count in zip(class_names, counts, strict=True) if count < MIN_PER_CLASS]
    if short:
        problems.append(f"too few images of a class: {', '.join(short)} (each class needs at least {MIN_PER_CLASS}; "
                        "with one class a temperature runs to its bound and no threshold exists)")
    if problems:
        raise DataError(source, "cannot be calibrated on: " + "; ".join(problems) + ".",
                        "calibrate on a labelled split with both classes and more images.")


@dataclass(frozen=True)
class FittingData:
    """Labelled answers to fit on, from any source: a split run through the model, or out-of-fold
    predictions of a cross-validation."""

    labels: np.ndarray
    #: (N, C) the answers' probabilities; at temperature 1 when a temperature is fitted without ``logits``
    probabilities: np.ndarray
    #: what the images are, in words (e.g. ``isic2017 train+val, out of fold``)
    description: str
    #: raw logits (V, N, C) of V views (TTA) when known: the temperature is fitted on them
    logits: np.ndarray | None = None
    #: the detector's inputs of these same images: held-out in-distribution images, for its thresholds
    detector: DetectorData | None = None

    @classmethod
    def from_predictions(cls, predictions: Predictions, description: str) -> FittingData:
        """Answers of a split (``LoadedModel.infer``; logits and features when kept)."""
        detector = DetectorData.of(predictions, description) if predictions.features is not None else None
        return cls(predictions.labels, predictions.probabilities, description, predictions.logits, detector)

    @classmethod
    def from_scores(cls, labels: Sequence[int], scores: Sequence[float], positive_index: int,
                    description: str) -> FittingData:
        """Two-class answers given as P(positive) (e.g. the yardstick's out-of-fold scores, raw)."""
        positive = np.asarray(scores, dtype=np.float64)
        probabilities = np.empty((len(positive), 2))
        probabilities[:, positive_index], probabilities[:, 1 - positive_index] = positive, 1.0 - positive
        return cls(np.asarray(labels, dtype=int), probabilities, description)

    def raw_logits(self) -> np.ndarray:
        """The logits a temperature is fitted on: the raw ones, or the log-probabilities (the same softmax)."""
        if self.logits is not None:
            return self.logits
        return np.log(np.clip(self.probabilities, 1e-12, 1.0))[None]


@dataclass(frozen=True)
class TrustOptions:
    """What ``fit_trust`` fits (by default all but the detector, which needs training-like images) and
    by which rules."""

    fit: tuple[Fit, ...] = ("temperature", "threshold", "sets")
    rule: ThresholdRule = DEFAULT_RULE
    #: the sensitivity the "sensitivity" rule reaches
    target: float = DEFAULT_TARGET_SENSITIVITY
    #: the threshold of the "fixed" rule
    fixed: float = 0.5
    alpha: float = DEFAULT_ALPHA
    sets: ConformalKind = "class-conditional"
    inputs: tuple[OodInput, ...] = DEFAULT_INPUTS
    components: int = DEFAULT_COMPONENTS
    max_flagged: float = MAX_FLAGGED

    def __post_init__(self) -> None:
        unknown = [name for name in self.fit if name not in FITS]
        if unknown or not self.fit:
            raise ConfigError(f"--fit {','.join(self.fit)}: choose among {', '.join(FITS)}.")
        if not 0 < self.alpha < 1:
            raise ConfigError(f"--alpha {self.alpha}: must be strictly between 0 and 1.")
        if not 0 <= self.max_flagged < 1:
            raise ConfigError(f"max_flagged {self.max_flagged}: must be in [0, 1).")


@dataclass
class TrustFit:
    """What ``fit_trust`` returns: the temperature (None: not fitted) and the fields of one mode."""

    temperature: float | None
    fields: TrustFields
    #: the probabilities the threshold and the sets were fitted on (at the fitted temperature)
    probabilities: np.ndarray
    fitted: tuple[Fit, ...]
    notes: list[str] = field(default_factory=list)


def fit_trust(
    data: FittingData,
    class_names: Sequence[str],
    positive_class: str | None = None,
    *,
    options: TrustOptions = TrustOptions(),
    detector_train: DetectorData | None = None,
    current: TrustFields = TrustFields(),
) -> TrustFit:
    """Fit what ``options.fit`` names on ``data``, keeping the rest of ``current``:

    - ``temperature``: on ``data``'s logits (or log-probabilities); the threshold and the sets are then
      fitted on the probabilities at that temperature;
    - ``threshold``: the operating point of a two-class model by ``options.rule``;
    - ``sets``: conformal prediction sets of ``options.sets`` kind at ``options.alpha``;
    - ``detector``: statistics from ``detector_train`` (training-like images), thresholds from
      ``data.detector`` (held-out in-distribution images).
    """
    names = list(class_names)
    labels = np.asarray(data.labels, dtype=int)
    wants = set(options.fit)
    if wants & {"temperature", "threshold", "sets"}:
        refuse_degenerate(labels, names, data.description)
    temperature, probabilities = None, np.asarray(data.probabilities, dtype=np.float64)
    if "temperature" in wants:
        logits = torch.as_tensor(data.raw_logits())
        temperature = fit_temperature(logits, labels)
        probabilities = probabilities_from_logits(logits, temperature).mean(dim=0).double().numpy()
    point = current.operating_point
    if "threshold" in wants and len(names) == 2:
        positive = names.index(positive_class if positive_class is not None else names[1])
        point = choose_operating_point(labels == positive, probabilities[:, positive], rule=options.rule,
                                       target=options.target, fixed=options.fixed, data=data.description)
    sets = current.conformal
    if "sets" in wants:
        sets = fit_conformal(labels, probabilities, names, options.alpha, data.description, options.sets)
    detector = current.ood_detector
    notes = []
    if "detector" in wants:
        if detector_train is None or data.detector is None:
            raise ConfigError("fitting the OOD detector needs training-like images (calibrate --detector-data) and "
                              "the features of the fitting images.")
        detector = fit_ood(detector_train, data.detector, inputs=options.inputs, components=options.components,
                           max_flagged=options.max_flagged)
    elif detector is not None:
        notes.append("the OOD detector (fitted on training-like images) is kept as it was")
    return TrustFit(temperature, TrustFields(point, detector, sets), probabilities, tuple(options.fit), notes)


def split_predictions(loaded: LoadedModel, source: DataSplit, settings: InferenceSettings,
                      keep: Sequence[str] = ("features",)) -> Predictions:
    """Probabilities and what ``keep`` names (features and image statistics, logits) of one split."""
    _, samples = read_split(source, loaded.task)
    return loaded.infer(samples, settings, keep=tuple(keep), desc=f"features {source.split}")


def described(source: DataSplit) -> str:
    return f"{Path(source.data).name} {source.split}"


def detector_data(loaded: LoadedModel, sources: Sequence[DataSplit], settings: InferenceSettings) -> DetectorData:
    """The detector's inputs of every image of ``sources`` (training-like images), with their labels."""
    return DetectorData.join([DetectorData.of(split_predictions(loaded, source, settings), described(source))
                              for source in sources])


@dataclass
class ConformalReport:
    """How prediction sets behaved on labelled data, over all images and per class."""

    alpha: float
    images: int
    coverage: float
    coverage_interval: tuple[float, float]
    uncertain_share: float
    uncertain_interval: tuple[float, float]
    mean_set_size: float
    kind: str = "marginal"
    #: class -> images, coverage with its interval, mean set size, share of empty and of two-class sets
    per_class: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "kind": self.kind, "images": self.images, "coverage": self.coverage,
                "coverage_interval": list(self.coverage_interval), "uncertain_share": self.uncertain_share,
                "uncertain_interval": list(self.uncertain_interval), "mean_set_size": self.mean_set_size,
                "per_class": self.per_class}


def conformal_report(sets: ConformalSets, labels: np.ndarray, probabilities: np.ndarray,
                     class_names: list[str]) -> ConformalReport:
    """Empirical coverage and set sizes, over all images and per class, with 95% Wilson intervals."""
    answer = sets.sets(probabilities, class_names)
    truth = [class_names[int(y)] for y in labels]
    covered = sum(name in s for name, s in zip(truth, answer, strict=True))
    uncertain = sum(len(s) > 1 for s in answer)
    n = len(answer)
    per_class = {}
    for name in class_names:
        mine = [s for t, s in zip(truth, answer, strict=True) if t == name]
        hits = sum(name in s for s in mine)
        per_class[name] = {"images": len(mine), "coverage": hits / max(len(mine), 1),
                           "coverage_interval": list(wilson_interval(hits, len(mine))),
                           "mean_set_size": float(np.mean([len(s) for s in mine])) if mine else 0.0,
                           "empty_share": sum(not s for s in mine) / max(len(mine), 1),
                           "uncertain_share": sum(len(s) > 1 for s in mine) / max(len(mine), 1)}
    return ConformalReport(sets.alpha, n, covered / max(n, 1), wilson_interval(covered, n), uncertain / max(n, 1),
                           wilson_interval(uncertain, n), float(np.mean([len(s) for s in answer])) if n else 0.0,
                           sets.kind, per_class)


@dataclass
class TrustReport:
    """What the trust signals said over a labelled split (``metrics.json`` key ``trust``)."""

    threshold: float | None
    threshold_rule: str
    images: int
    #: None when the checkpoint has no fitted detector for this mode
    ood_flagged: int | None
    ood_interval: tuple[float, float] | None
    attention_warnings: int
    attention_interval: tuple[float, float]
    conformal: ConformalReport | None
    #: one row per image: image, ood_score, out_of_distribution, prediction_set, attention_warning, refer
    rows: list[dict[str, Any]]
    #: the mode the answers were computed in, and what it lacks when nothing was fitted for it
    trust_mode: str = "plain"
    trust_note: str | None = None
    #: answers referred, and those whose predicted class lies outside their set
    referred: int = 0
    outside_set: int = 0
    #: class -> images, flagged out of distribution, share with its interval
    ood_per_class: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        n = max(self.images, 1)
        return {
            "threshold": self.threshold, "threshold_rule": self.threshold_rule,
            "trust_mode": self.trust_mode, "trust_note": self.trust_note,
            "ood": ({"available": False, "note": self.trust_note or NO_OOD_CHECK} if self.ood_flagged is None else
                    {"available": True, "flagged": self.ood_flagged, "flagged_share": self.ood_flagged / n,
                     "flagged_interval": list(self.ood_interval), "per_class": self.ood_per_class}),
            "attention_warnings": {"count": self.attention_warnings, "share": self.attention_warnings / n,
                                   "interval": list(self.attention_interval)},
            "conformal": None if self.conformal is None else self.conformal.to_dict(),
            "referred": {"count": self.referred, "share": self.referred / n,
                         "predicted_class_outside_set": self.outside_set},
        }

    def describe(self) -> str:
        n = max(self.images, 1)
        parts = [f"threshold {self.threshold:.4g} ({self.threshold_rule})" if self.threshold is not None
                 else "arg-max decision"]
        if self.trust_note:
            parts.append(f"trust mode {self.trust_mode}: {self.trust_note}")
        if self.ood_flagged is None:
            parts.append(NO_OOD_CHECK if not self.trust_note else "no out-of-distribution check for this mode")
        else:
            per_class = ", ".join(f"{name} {v['flagged']}/{v['images']} ({v['share']:.1%})"
                                  for name, v in self.ood_per_class.items())
            parts.append(f"out of distribution: {self.ood_flagged}/{self.images} ({self.ood_flagged / n:.1%}, 95% CI "
                         f"{self.ood_interval[0]:.1%}-{self.ood_interval[1]:.1%}); per class: {per_class}")
        parts.append(f"attention warnings: {self.attention_warnings}/{self.images} ({self.attention_warnings / n:.1%})")
        if self.conformal is not None:
            c = self.conformal
            parts.append(f"prediction sets ({c.kind}, alpha {c.alpha:g}): coverage {c.coverage:.3f} "
                         f"[{c.coverage_interval[0]:.2f}, {c.coverage_interval[1]:.2f}], uncertain {c.uncertain_share:.3f} "
                         f"[{c.uncertain_interval[0]:.2f}, {c.uncertain_interval[1]:.2f}], mean size {c.mean_set_size:.2f}")
            for name, v in c.per_class.items():
                low, high = v["coverage_interval"]
                parts.append(f"  {name} ({v['images']} images): coverage {v['coverage']:.3f} [{low:.2f}, {high:.2f}], "
                             f"mean set size {v['mean_set_size']:.2f}, empty {v['empty_share']:.1%}, "
                             f"both classes {v['uncertain_share']:.1%}")
        parts.append(f"referred: {self.referred}/{self.images} ({self.referred / n:.1%}); predicted class outside its "
                     f"set: {self.outside_set} (each of those is referred)")
        return "\n".join(parts)


def trust_report(loaded: LoadedModel, predictions: Predictions, threshold: float | None, rule: str,
                 tta: bool | None = None) -> TrustReport:
    """The trust signals of every image of ``predictions`` (features and maps kept), with the fields
    fitted for this mode of answering (``LoadedModel.trust_mode``), and their summary."""
    mode: ModeFields = loaded.trust_mode(tta)
    names = loaded.class_names
    signals = trust_signals(mode, names, predictions.probabilities, predictions.features,
                            predictions.image_statistics, predictions.attention, loaded.map_kinds)
    n = len(signals)
    fields = mode.usable
    flagged = None if fields.ood_detector is None or signals and signals[0].ood_score is None else \
        sum(bool(s.out_of_distribution) for s in signals)
    warnings = sum(s.attention_warning is not None for s in signals)
    conformal = None if fields.conformal is None else conformal_report(fields.conformal, predictions.labels,
                                                                       predictions.probabilities, names)
    predicted = _decisions(predictions.probabilities, names, loaded.meta.positive_class, threshold)
    reasons = [refer_reasons(p, s.prediction_set, s.out_of_distribution) for p, s in zip(predicted, signals, strict=True)]
    outside = sum(bool(s.prediction_set) and p not in s.prediction_set and not s.out_of_distribution
                  for p, s in zip(predicted, signals, strict=True))
    ood_per_class = {}
    if flagged is not None:
        for index, name in enumerate(names):
            mine = [s for s, y in zip(signals, predictions.labels, strict=True) if int(y) == index]
            hits = sum(bool(s.out_of_distribution) for s in mine)
            ood_per_class[name] = {"images": len(mine), "flagged": hits, "share": hits / max(len(mine), 1),
                                   "interval": list(wilson_interval(hits, len(mine)))}
    rows = [{"image": image, **{k: ("|".join(v) if isinstance(v, list) else v) for k, v in s.to_dict().items()
                                if k not in ("trust_mode", "trust_note")},
             "predicted": p, "refer": bool(r), "refer_reasons": "; ".join(r)}
            for image, s, p, r in zip(predictions.image_ids, signals, predicted, reasons, strict=True)]
    return TrustReport(threshold, rule, n, flagged, None if flagged is None else wilson_interval(flagged, n), warnings,
                       wilson_interval(warnings, n), conformal, rows, mode.shown, mode.note,
                       sum(bool(r) for r in reasons), outside, ood_per_class)


def _decisions(probabilities: np.ndarray, names: list[str], positive_class: str, threshold: float | None) -> list[str]:
    """The class each answer says, as ``LoadedModel.answer`` decides it."""
    if threshold is None or len(names) != 2:
        return [names[int(i)] for i in probabilities.argmax(axis=1)]
    positive = names.index(positive_class)
    return [names[positive] if p > threshold else names[1 - positive] for p in probabilities[:, positive]]
