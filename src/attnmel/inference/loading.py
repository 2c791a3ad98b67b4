"""From checkpoints to a ready model, ``attnmel.load_model``: the one loader of every door (the
command line, the HTTP service, evaluation, the demo, scripts and benchmarks), and the model that
answers (``LoadedModel``: ``predict`` for images, ``run_batch`` and ``answer`` for the service's
batches, ``infer`` for a list of samples).

An ensemble averages the members' probabilities, so every member must score the same task with
the same class names, and see the same image geometry (crop ratio, resize, input size): these are
checked and a mismatch stops with the checkpoint at fault. Members trained with other
normalisation statistics are fed a re-normalised copy of the batch, so the data are read once.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from attnmel.arguments import check_arguments
from attnmel.checkpoints.legacy import LegacyAssumptions
from attnmel.checkpoints.loader import _load_network
from attnmel.checkpoints.meta import CheckpointMeta
from attnmel.checkpoints.trust import trust_mode
from attnmel.data.masks import RoiSpec
from attnmel.data.records import Sample
from attnmel.data.transforms import Preprocessing, denormalize
from attnmel.devices import resolve_device
from attnmel.errors import CheckpointError, ConfigError
from attnmel.inference.prediction import ImageInput, Prediction, RawAnswer, decode_input, view_box
from attnmel.inference.runner import NonFiniteOutputError, Predictions, Predictor, eval_loader, run_inference
from attnmel.inference.settings import InferenceSettings
from attnmel.inference.trust import ModeFields, feature_tap, refer_reasons, trust_signals
from attnmel.io import file_sha256
from attnmel.models import with_maps
from attnmel.models.maps import MapKind, map_kind

Source = str | Path | None


@dataclass
class LoadedModel:
    """One checkpoint or an ensemble, ready to answer: the predictor, its preprocessing and metadata."""

    predictor: Predictor
    #: the files the members came from
    sources: list[Path]
    metadata: list[CheckpointMeta]
    #: the first member's; the batch is prepared with it
    preprocessing: Preprocessing
    device: torch.device
    #: each member's trained network as its checkpoint builds it (the predictor runs them, GAP models
    #: behind their class activation map)
    networks: list[nn.Module] = field(default_factory=list)
    _hashes: list[str] = field(default_factory=list, repr=False)

    @property
    def network(self) -> nn.Module:
        """The first member's trained network, in eval mode on ``device``: what ``attnmel export`` writes."""
        return self.networks[0]

    @property
    def meta(self) -> CheckpointMeta:
        return self.metadata[0]

    @property
    def task(self) -> str:
        return self.meta.task

    @property
    def class_names(self) -> list[str]:
        return list(self.meta.class_names)

    @property
    def score_columns(self) -> list[str]:
        return list(self.meta.score_columns)

    @property
    def attention_layers(self) -> list[str]:
        """Layers whose maps the predictor returns (attention gates, or ``cam`` for GAP models)."""
        return sorted({layer for model in self.predictor.models for layer in getattr(model, "attention_layers", [])})

    @property
    def map_kinds(self) -> dict[str, MapKind]:
        """What each layer's values are (for drawing and for telling a flat map), from the architecture."""
        return {layer: map_kind(layer, self.meta.architecture.normalize) for layer in self.attention_layers}

    def members(self) -> list[dict[str, Any]]:
        """What each member is, for reports (checkpoint, architecture, temperature used)."""
        return [
            {"checkpoint": str(path), "architecture": meta.architecture.to_dict(), "temperature": temperature}
            for path, meta, temperature in zip(self.sources, self.metadata, self.predictor.temperatures, strict=True)
        ]

    def trust_mode(self, tta: bool | None = None) -> ModeFields:
        """The trust fields fitted for answers computed this way (``tta`` None: the predictor's own
        setting): plain, TTA, or this ensemble (its other members named by sha256), never another mode's."""
        tta = self.predictor.tta if tta is None else tta
        others = self._member_hashes()
        shown = ("tta" if tta else "plain") if not others else \
            f"ensemble of {len(self.sources)}" + (" with tta" if tta else "")
        key = trust_mode(tta, others)
        return ModeFields(key, shown, self.meta.trust_for(key))

    def _member_hashes(self) -> list[str]:
        """The sha256 of every member after the first (read once; none for one network)."""
        if len(self.sources) > 1 and not self._hashes:
            self._hashes = [file_sha256(path) for path in self.sources[1:]]
        return list(self._hashes)

    def decision_threshold(self, override: float | None = None, tta: bool | None = None) -> tuple[float | None, str]:
        """(threshold, the rule that made it): ``override`` when given, else the operating point fitted for
        this mode of answering (``trust_mode``), else 0.5; (None, "arg-max") for more than two classes."""
        if len(self.class_names) != 2:
            return None, "arg-max"
        if override is not None:
            check_arguments(threshold=override)
            return float(override), f"given threshold {override:g}"
        mode = self.trust_mode(tta)
        point = mode.usable.operating_point
        if point is not None:
            return point.threshold, point.describe()
        if mode.fields is None:
            return 0.5, f"default 0.5 (no operating point fitted for {mode.shown} answers)"
        return 0.5, "default 0.5 (no operating point stored in the checkpoint)"

    def predict(
        self,
        inputs: ImageInput | Sequence[ImageInput],
        *,
        tta: bool | None = None,
        threshold: float | None = None,
        batch_size: int = 16,
    ) -> Prediction | list[Prediction]:
        """Answers for ``inputs``: a path, a PIL image, an HxWx3 uint8 array, a 3xHxW uint8 tensor, or a
        list of them (then a list of ``Prediction``, in order). ``tta`` averages the 8 dihedral views;
        ``threshold`` decides the positive class of a two-class model (default: the checkpoint's stored
        operating point, else 0.5). Each answer carries its OOD score and flag, its conformal
        prediction set and its attention warning, as far as the checkpoint has them fitted."""
        check_arguments(threshold=threshold, batch_size=batch_size, tta=tta)
        value, rule = self.decision_threshold(threshold, tta)
        single = not isinstance(inputs, list | tuple)
        items = [inputs] if single else list(inputs)
        results: list[Prediction] = []
        for start in range(0, len(items), batch_size):
            decoded = [decode_input(item, start + i) for i, item in enumerate(items[start:start + batch_size])]
            batch = torch.stack([self.preprocessing(image) for image, _ in decoded]).to(self.device)
            for raw, prepared, (image, source) in zip(self.run_batch(batch, tta), batch, decoded, strict=True):
                results.append(self.answer(raw, prepared, image.size, source, value, rule))
        return results[0] if single else results

    def run_batch(self, batch: torch.Tensor, tta: bool | None = None) -> list[RawAnswer]:
        """The raw answer for each image of a prepared batch (N, 3, S, S): what the HTTP service batches
        across requests. The OOD score reuses the pooled features of this very forward pass; the signals
        are those fitted for this mode (``trust_mode``)."""
        with feature_tap(self.predictor.models) as tapped:
            probabilities, attention = self.predictor(batch, tta)
        probabilities = probabilities.cpu().numpy()
        maps = {name: amap[:, 0].float().cpu().numpy() for name, amap in attention.items()}
        statistics = tapped.statistics(self.preprocessing.mean, self.preprocessing.std)
        signals = trust_signals(self.trust_mode(tta), self.class_names, probabilities, tapped.features(), statistics,
                                maps, self.map_kinds)
        return [(probabilities[i], {name: m[i] for name, m in maps.items()}, signals[i])
                for i in range(len(probabilities))]

    def answer(self, raw: RawAnswer, prepared: torch.Tensor, image_size: tuple[int, int], source: str,
               threshold: float | None = None, threshold_rule: str | None = None) -> Prediction:
        """The ``Prediction`` of one image from its raw answer (``run_batch``), the prepared input
        (3, S, S) and the decoded image's (width, height)."""
        p, maps, signals = raw
        names, positive_class = self.class_names, self.meta.positive_class
        index = int(p.argmax())
        two_classes = len(names) == 2
        if threshold is not None and two_classes:
            positive = names.index(positive_class)
            index = positive if p[positive] > threshold else 1 - positive
        preprocessing = self.preprocessing
        return Prediction(
            source=source,
            probabilities={name: float(v) for name, v in zip(names, p, strict=True)},
            predicted_class=names[index],
            positive_class=positive_class,
            raw_attention=maps,
            view=denormalize(prepared, preprocessing.mean, preprocessing.std),
            view_box=view_box(preprocessing, *image_size),
            image_size=tuple(image_size),
            threshold=threshold if two_classes else None,
            threshold_rule=threshold_rule if two_classes else "arg-max",
            map_kinds=self.map_kinds,
            **(signals.to_dict() if signals is not None else {}),
            refer_reasons=refer_reasons(names[index], signals.prediction_set if signals is not None else None,
                                        signals.out_of_distribution if signals is not None else None),
        )

    def check_answers(self) -> None:
        """One forward pass on a fixed input (the mean colour): a model whose weights make it answer
        NaN is refused at start, instead of failing every request later."""
        size = self.preprocessing.image_size
        try:
            self.predictor(torch.zeros(1, 3, size, size, device=self.device))
        except NonFiniteOutputError:
            raise CheckpointError(
                f"{self.sources[0]}: gives NaN or infinite outputs on a plain test image; its weights are broken. "
                "Use an earlier checkpoint of the run."
            ) from None

    def require_maps(self) -> None:
        """Stop, naming the model, when it has neither attention maps nor a class activation map."""
        if not self.attention_layers:
            names = ", ".join(sorted({m.architecture.name for m in self.metadata}))
            raise ConfigError(
                f"model {names!r} has neither attention maps nor a class activation map to score; "
                "attention quality needs an attnmel, gap or vgg16-gap model."
            )

    def infer(self, samples: Sequence[Sample], settings: InferenceSettings, *, roi: RoiSpec | None = None,
              keep: Sequence[Keep] = (), desc: str = "eval") -> Predictions:
        """Predictions for ``samples``; with ``roi`` also their region masks in the model's view, and what
        ``keep`` names (attention maps, the raw logits, the uint8 views the model saw)."""
        check_arguments(batch_size=settings.batch_size, num_workers=settings.workers)
        loader = eval_loader(samples, self.preprocessing, settings.batch_size, settings.workers, roi)
        return run_inference(
            self.predictor, loader, self.device, keep_attention="attention" in keep, keep_masks=roi is not None,
            keep_logits="logits" in keep, views_of=self.preprocessing if "views" in keep else None,
            progress=settings.progress, desc=desc, keep_features="features" in keep,
            statistics_of=self.preprocessing if "features" in keep else None,
        )


#: what ``LoadedModel.infer`` keeps besides the probabilities
Keep = Literal["attention", "logits", "views", "features"]


def _affine(source: Preprocessing, target: Preprocessing) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``x * scale + shift`` turns a batch normalised with ``source`` into one normalised with ``target``."""
    if (source.mean, source.std) == (target.mean, target.std):
        return None
    mean_s, std_s = torch.tensor(source.mean).view(3, 1, 1), torch.tensor(source.std).view(3, 1, 1)
    mean_t, std_t = torch.tensor(target.mean).view(3, 1, 1), torch.tensor(target.std).view(3, 1, 1)
    return std_s / std_t, (mean_s - mean_t) / std_t


def _check_compatible(path: Path, meta: CheckpointMeta, first_path: Path, first: CheckpointMeta) -> None:
    for key in ("class_names", "score_columns", "task"):
        if getattr(meta, key) != getattr(first, key):
            raise CheckpointError(
                f"{path}: {key} is {getattr(meta, key)!r} but {first_path} has {getattr(first, key)!r}; an ensemble "
                "averages probabilities class by class, so its members must be trained for the same task and classes."
            )
    for key in ("image_size", "resize", "crop_ratio"):
        mine, theirs = getattr(meta.preprocessing, key), getattr(first.preprocessing, key)
        if mine != theirs:
            raise CheckpointError(
                f"{path}: preprocessing {key} is {mine} but {first_path} has {theirs}; ensemble members must see "
                "the same image geometry (crop ratio, resize, input size)."
            )


def load_model(
    source: Source | Sequence[Source] = None,
    settings: InferenceSettings | None = None,
    *,
    legacy: LegacyAssumptions | None = None,
    **changes: Any,
) -> LoadedModel:
    """A ready model: the one shipped with attnmel (``source=None``), a pretrained tag, a run folder or a
    ``.safetensors`` checkpoint, or a list of them averaged as an ensemble; with its preprocessing,
    class names, metadata and ``predict``. The one way every door gets a model.

    ``settings`` (``InferenceSettings``) say how it runs: device, test-time augmentation, whether each
    member applies its calibrated temperature, whether pickles are trusted; a field given by keyword
    (``device="cpu"``) overrides them. ``legacy`` (``LegacyAssumptions``) says what to assume where a
    trusted pickle holds no attnmel metadata.

    >>> model = attnmel.load_model()
    >>> result = model.predict("lesion.jpg")
    >>> result.probability, result.predicted_class, result.attention["stage4"].shape

    GAP models are wrapped so that their class activation map of the positive class is returned as
    the attention layer ``cam`` (``attnmel.models.with_maps``): overlays and attention quality read it.
    """
    settings = _settings(settings, changes)
    sources = list(source) if isinstance(source, list | tuple) else [source]
    if not sources:
        raise CheckpointError("no checkpoint given; pass at least one --checkpoint.")
    device = resolve_device(settings.device)
    networks: list[nn.Module] = []
    metadata: list[CheckpointMeta] = []
    paths: list[Path] = []
    for item in sources:
        network, meta, path = _load_network(item, device, trust_pickle=settings.trust_pickle, legacy=legacy)
        if metadata:
            _check_compatible(path, meta, paths[0], metadata[0])
        networks.append(network)
        metadata.append(meta)
        paths.append(path)
    predictor = Predictor(
        # channels_last: oneDNN (CPU) and cuDNN run these convolutions, depthwise ones above all, much
        # faster in that layout (benchmarks/predict_speed.py); the numbers agree to float rounding
        [with_maps(network, meta.positive_index).to(memory_format=torch.channels_last)
         for network, meta in zip(networks, metadata, strict=True)],
        temperatures=[meta.softmax_temperature if settings.use_temperature else 1.0 for meta in metadata],
        tta=settings.tta,
        input_affine=[_affine(metadata[0].preprocessing, meta.preprocessing) for meta in metadata],
    )
    return LoadedModel(predictor, paths, metadata, metadata[0].preprocessing, device, networks)


def _settings(settings: InferenceSettings | None, changes: dict[str, Any]) -> InferenceSettings:
    """``settings`` (default ``InferenceSettings()``) with the fields named in ``changes`` replaced."""
    settings = settings if settings is not None else InferenceSettings()
    unknown = sorted(set(changes) - set(_SETTINGS_FIELDS))
    if unknown:
        raise TypeError(f"load_model() got the unexpected keyword argument(s) {', '.join(unknown)}; it takes "
                        f"legacy= and the fields of InferenceSettings ({', '.join(_SETTINGS_FIELDS)}).")
    return settings.replace(**changes) if changes else settings


_SETTINGS_FIELDS = [f.name for f in dataclasses.fields(InferenceSettings)]


def load_predictor(
    checkpoints: Source | Sequence[Source],
    device: torch.device | str = "auto",
    *,
    tta: bool = False,
    use_temperature: bool = True,
    trust_pickle: bool = False,
    legacy: LegacyAssumptions | None = None,
) -> LoadedModel:
    """Deprecated (removed in the next release): ``load_model(checkpoints, device=..., tta=...)``."""
    warnings.warn("attnmel.inference.load_predictor is deprecated and goes in the next release; use "
                  "attnmel.load_model(checkpoints, settings) (the same arguments by keyword).",
                  DeprecationWarning, stacklevel=2)
    return load_model(checkpoints, legacy=legacy, device=str(device), tta=tta, use_temperature=use_temperature,
                      trust_pickle=trust_pickle)
