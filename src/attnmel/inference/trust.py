"""Per-answer trust signals: the OOD score, the conformal prediction set, the attention check, and
whether the answer must be referred.

The OOD score reads what the forward pass already computes: the pooled features each member's
classifier receives (a forward pre-hook on its ``classifier``; averaged over the TTA views, one
member after the other for an ensemble) and simple statistics of the view's pixels
(``image_statistics``), so it costs no second pass. What the thresholds are, and what they were
fitted on, lives in the checkpoint (``attnmel.checkpoints.trust``), per mode of answering (plain,
TTA, an ensemble): an answer uses only the fields fitted for its own mode (``ModeFields``), and
says so where there are none, instead of borrowing another mode's.

An answer is referred (``refer``, with its reasons) when it is out of distribution, when its
prediction set holds more or fewer than one class, or when its predicted class (from the decision
threshold) lies outside its set: the threshold and the sets then disagree, and the answer says so.

The attention check turns the paper's idea into a safeguard with a rule stated in advance (never
tuned on the data it is measured on): an answer carries an ``attention_warning`` when a map is flat
(``attnmel.models.maps.is_flat``) or when more than ``OUTSIDE_SHARE_LIMIT`` of a map's attention (above
its own minimum) lies outside the disc inscribed in the model's view, where image borders, rulers
and dark vignette corners are and a centred dermoscopy lesion mostly is not (a uniform map puts
1 - pi/4, about a fifth, there).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from attnmel.checkpoints.trust import TrustFields
from attnmel.models.maps import MapKind, is_flat

#: the most attention mass a map may put outside the inscribed disc before the answer is flagged
OUTSIDE_SHARE_LIMIT = 0.5
#: what an answer of a checkpoint without a fitted detector says
NO_OOD_CHECK = "no out-of-distribution check: this checkpoint carries no fitted detector"
#: what a flagged answer says instead of its probabilities and class
WITHHELD = ("out of distribution: the image is unlike the images the model was fitted on, so no probability, "
            "class or prediction set is given")
#: the names of ``image_statistics``' columns
IMAGE_STATISTICS = ("mean red", "mean green", "mean blue", "sd red", "sd green", "sd blue", "mean chroma",
                    "sd chroma", "luminance gradient", "gradient at 1/4", "gradient at 1/16", "chroma gradient",
                    "clipped share", "flat share")


def classifier_of(model: nn.Module) -> nn.Module | None:
    """The module whose input is the pooled feature vector (None when a model has none)."""
    for name in ("classifier", "model.classifier"):
        try:
            return model.get_submodule(name)
        except AttributeError:
            continue
    return None


def image_statistics(images: torch.Tensor) -> np.ndarray:
    """(N, 14) statistics of a batch of views (N, 3, H, W) with values in [0, 1], on a log scale: each
    channel's mean and spread, colourfulness, the mean luminance gradient at three scales (pixel noise
    is sharp at the finest one only, a dermoscopy image is smooth there), the colour gradient, and the
    shares of clipped and of exactly flat pixels (screenshots). Dermoscopy photographs occupy a small
    region of this space; what the classifier's features miss (noise the network averages away) shows here."""
    x = images.float().clamp(0, 1)
    luminance = x.mean(dim=1, keepdim=True)
    chroma = x.amax(dim=1) - x.amin(dim=1)

    def gradient(image: torch.Tensor) -> torch.Tensor:
        return ((image[..., 1:] - image[..., :-1]).abs().mean(dim=(1, 2, 3))
                + (image[..., 1:, :] - image[..., :-1, :]).abs().mean(dim=(1, 2, 3)))

    flat = ((luminance[..., 1:] - luminance[..., :-1]).abs() < 0.5 / 255).float().mean(dim=(1, 2, 3))
    columns = [*x.mean(dim=(2, 3)).T, *x.std(dim=(2, 3)).T, chroma.mean(dim=(1, 2)), chroma.std(dim=(1, 2)),
               gradient(luminance), gradient(F.avg_pool2d(luminance, 4)), gradient(F.avg_pool2d(luminance, 16)),
               gradient(x - luminance), ((x < 0.02) | (x > 0.98)).float().mean(dim=(1, 2, 3)), flat]
    return torch.log(torch.stack(columns, dim=1).double() + 1e-3).cpu().numpy()


@dataclass
class Tapped:
    """What one forward pass of a predictor showed besides its answer."""

    #: per classifier call: (member index, its (N, D) input)
    calls: list[tuple[int, torch.Tensor]] = field(default_factory=list)
    #: the first member's input batch (normalised), from its first call
    inputs: list[torch.Tensor] = field(default_factory=list)

    def features(self) -> np.ndarray | None:
        """(N, sum of D): each member's pooled features averaged over its views, members side by side
        (one network without TTA: exactly its classifier's input)."""
        if not self.calls:
            return None
        members = sorted({member for member, _ in self.calls})
        return torch.cat([torch.stack([f for m, f in self.calls if m == member]).mean(dim=0) for member in members],
                         dim=1).cpu().numpy()

    def statistics(self, mean: Sequence[float], std: Sequence[float]) -> np.ndarray | None:
        """``image_statistics`` of the first member's input, its normalisation (``mean``, ``std``) undone."""
        if not self.inputs:
            return None
        x = self.inputs[0].float()
        m = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
        s = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
        return image_statistics(x * s + m)


@contextmanager
def feature_tap(models: Sequence[nn.Module]) -> Iterator[Tapped]:
    """Collects, per forward call of each model, the (N, D) features its classifier receives, and the
    first model's input batch (its first call: the TTA views are turns and flips of it)."""
    tapped = Tapped()
    handles = []
    for member, model in enumerate(models):
        module = classifier_of(model)
        if module is not None:
            handles.append(module.register_forward_pre_hook(
                lambda _, args, member=member: tapped.calls.append((member, args[0].detach().flatten(1).float()))))
    if handles:
        handles.append(models[0].register_forward_pre_hook(
            lambda _, args: None if tapped.inputs else tapped.inputs.append(args[0].detach())))
    try:
        yield tapped
    finally:
        for handle in handles:
            handle.remove()


def outside_share(amap: np.ndarray) -> float:
    """Share of a map's attention above its minimum that lies outside the disc inscribed in the view."""
    height, width = amap.shape
    rows, cols = np.mgrid[0:height, 0:width]
    radius = ((rows + 0.5 - height / 2) / (height / 2)) ** 2 + ((cols + 0.5 - width / 2) / (width / 2)) ** 2
    mass = np.asarray(amap, dtype=np.float64) - float(np.min(amap))
    total = mass.sum()
    return float(mass[radius > 1].sum() / total) if total > 0 else 0.0


def attention_warning(maps: dict[str, np.ndarray], kinds: dict[str, MapKind]) -> str | None:
    """Why the maps of one answer should not be trusted, or None."""
    reasons = []
    for layer, amap in maps.items():
        kind = kinds.get(layer, "probability")
        if is_flat(amap, kind):
            reasons.append(f"{layer} attention is flat")
        elif (share := outside_share(amap)) > OUTSIDE_SHARE_LIMIT:
            reasons.append(f"{layer} puts {share:.0%} of its attention outside the region a lesion could be")
    return "; ".join(reasons) or None


@dataclass
class TrustSignals:
    """The trust part of one answer."""

    ood_score: float | None
    out_of_distribution: bool | None
    prediction_set: list[str] | None
    attention_warning: str | None
    #: how the answer was computed: ``plain``, ``tta``, ``ensemble of N`` (``... with tta``)
    trust_mode: str = "plain"
    #: set when the checkpoint holds no fields fitted for this mode: what the answer lacks, and why
    trust_note: str | None = None

    def to_dict(self) -> dict:
        return {"ood_score": self.ood_score, "out_of_distribution": self.out_of_distribution,
                "prediction_set": self.prediction_set, "attention_warning": self.attention_warning,
                "trust_mode": self.trust_mode, "trust_note": self.trust_note}


@dataclass(frozen=True)
class ModeFields:
    """The trust fields an answer may use: those fitted for its own mode, or none."""

    #: the key the fields are stored under (``attnmel.checkpoints.trust.trust_mode``)
    key: str
    #: the mode in words
    shown: str
    #: None: nothing was fitted for this mode
    fields: TrustFields | None

    @property
    def note(self) -> str | None:
        if self.fields is not None:
            return None
        refit = "attnmel calibrate --tta" if "tta" in self.shown else "attnmel calibrate"
        return (f"no trust fields fitted for {self.shown} answers: no stored decision threshold (0.5 is used), no "
                f"prediction set and no out-of-distribution check; the fields of other modes are not borrowed "
                f"(fit this mode's with `{refit}`{' on the first member, the others given too' if 'ensemble' in self.shown else ''})")

    @property
    def usable(self) -> TrustFields:
        return self.fields if self.fields is not None else TrustFields()


def refer_reasons(predicted_class: str | None, prediction_set: list[str] | None,
                  out_of_distribution: bool | None) -> list[str]:
    """Why an answer must be referred to a person rather than taken as it is (empty: it need not be)."""
    if out_of_distribution:
        return ["out of distribution"]
    reasons = []
    if prediction_set is not None:
        if len(prediction_set) > 1:
            reasons.append(f"uncertain: the prediction set holds {{{', '.join(prediction_set)}}}")
        elif not prediction_set:
            reasons.append("the prediction set is empty: no class reaches the coverage the sets were fitted for")
        if predicted_class is not None and prediction_set and predicted_class not in prediction_set:
            reasons.append(f"the predicted class {predicted_class} (decision threshold) is outside the prediction "
                           f"set {{{', '.join(prediction_set)}}}: the threshold and the sets disagree")
    return reasons


def trust_signals(
    mode: ModeFields,
    class_names: Sequence[str],
    probabilities: np.ndarray,
    features: np.ndarray | None,
    statistics: np.ndarray | None,
    maps: dict[str, np.ndarray],
    kinds: dict[str, MapKind],
) -> list[TrustSignals]:
    """Signals for a batch: probabilities (N, C), pooled features (N, D) and image statistics (N, K) or
    None, maps by layer (N, h, w), with the fields fitted for the batch's mode only."""
    n = len(probabilities)
    fields = mode.usable
    scores = ood_scores(fields, features, statistics, n)
    sets = fields.conformal.sets(probabilities, class_names) if fields.conformal is not None else [None] * n
    return [
        TrustSignals(
            ood_score=None if scores is None else float(scores[i]),
            out_of_distribution=None if scores is None else bool(scores[i] > 1.0),
            prediction_set=sets[i],
            attention_warning=attention_warning({layer: m[i] for layer, m in maps.items()}, kinds),
            trust_mode=mode.shown,
            trust_note=mode.note,
        )
        for i in range(n)
    ]


def ood_scores(fields: TrustFields, features: np.ndarray | None, statistics: np.ndarray | None,
               n: int) -> np.ndarray | None:
    """The detector's relative scores (flagged above 1; None without a detector or its inputs)."""
    detector = fields.ood_detector
    if detector is None or ("features" in detector.inputs and features is None) or \
            ("image-statistics" in detector.inputs and statistics is None):
        return None
    if "features" in detector.inputs and features.shape != (n, detector.feature_dim):
        raise ValueError(f"features of shape {features.shape} do not fit the detector's {detector.feature_dim}")
    return detector.score(features, statistics)
