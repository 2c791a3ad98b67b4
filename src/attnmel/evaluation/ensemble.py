"""Loading one checkpoint or an ensemble of them as a ``Predictor``.

An ensemble averages the members' probabilities, so every member must score the same task with
the same class names, and see the same image geometry (crop ratio, resize, input size): these are
checked and a mismatch stops with the checkpoint at fault. Members trained with other
normalisation statistics are fed a re-normalised copy of the batch, so the data are read once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from attnmel.data.records import get_task
from attnmel.errors import CheckpointError
from attnmel.evaluation.inference import Predictor, Preprocessing
from attnmel.models import with_maps
from attnmel.training.checkpoint import checkpoint_temperature, load_model_checkpoint


@dataclass
class LoadedPredictor:
    predictor: Predictor
    checkpoints: list[Path]
    metadata: list[dict[str, Any]]
    #: the first member's; the batch is prepared with it
    preprocessing: Preprocessing

    @property
    def task(self) -> str:
        return self.metadata[0]["task"]

    @property
    def class_names(self) -> list[str]:
        return list(self.metadata[0]["class_names"])

    @property
    def score_columns(self) -> list[str]:
        return list(self.metadata[0]["score_columns"])

    @property
    def attention_layers(self) -> list[str]:
        """Layers whose maps the predictor returns (attention gates, or ``cam`` for GAP models)."""
        return sorted({layer for model in self.predictor.models for layer in getattr(model, "attention_layers", [])})

    def members(self) -> list[dict[str, Any]]:
        """What each member is, for reports (checkpoint, architecture, temperature used)."""
        return [
            {"checkpoint": str(path), "architecture": meta["architecture"], "temperature": temperature}
            for path, meta, temperature in zip(self.checkpoints, self.metadata, self.predictor.temperatures, strict=True)
        ]


def _affine(source: Preprocessing, target: Preprocessing) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``x * scale + shift`` turns a batch normalised with ``source`` into one normalised with ``target``."""
    if (source.mean, source.std) == (target.mean, target.std):
        return None
    mean_s, std_s = torch.tensor(source.mean).view(3, 1, 1), torch.tensor(source.std).view(3, 1, 1)
    mean_t, std_t = torch.tensor(target.mean).view(3, 1, 1), torch.tensor(target.std).view(3, 1, 1)
    return std_s / std_t, (mean_s - mean_t) / std_t


def _check_compatible(path: Path, meta: dict[str, Any], first_path: Path, first: dict[str, Any]) -> None:
    for key in ("class_names", "score_columns", "task"):
        if meta[key] != first[key]:
            raise CheckpointError(
                f"{path}: {key} is {meta[key]!r} but {first_path} has {first[key]!r}; an ensemble averages "
                "probabilities class by class, so its members must be trained for the same task and classes."
            )
    for key in ("crop_ratio", "resize", "image_size"):
        mine, theirs = meta["preprocessing"][key], first["preprocessing"][key]
        if mine != theirs:
            raise CheckpointError(
                f"{path}: preprocessing {key} is {mine} but {first_path} has {theirs}; ensemble members must see "
                "the same image geometry (crop ratio, resize, input size)."
            )


def load_predictor(
    checkpoints: str | Path | Sequence[str | Path],
    device: torch.device | str = "cpu",
    *,
    tta: bool = False,
    use_temperature: bool = True,
    trust_pickle: bool = False,
) -> LoadedPredictor:
    """One checkpoint, or several averaged as an ensemble; each applies its stored temperature unless told not to.

    GAP models are wrapped so that their class activation map of the positive class is returned as
    the attention layer ``cam`` (``attnmel.models.with_maps``): overlays and attention quality read it.
    """
    paths = [Path(checkpoints)] if isinstance(checkpoints, str | Path) else [Path(p) for p in checkpoints]
    if not paths:
        raise CheckpointError("no checkpoint given; pass at least one --checkpoint.")
    models, metadata = [], []
    for path in paths:
        model, meta = load_model_checkpoint(path, device, trust_pickle=trust_pickle)
        if metadata:
            _check_compatible(path, meta, paths[0], metadata[0])
        models.append(with_maps(model, get_task(meta["task"]).positive_index))
        metadata.append(meta)
    preprocessing = [Preprocessing.from_dict(meta["preprocessing"]) for meta in metadata]
    predictor = Predictor(
        models,
        temperatures=[checkpoint_temperature(meta) if use_temperature else 1.0 for meta in metadata],
        tta=tta,
        input_affine=[_affine(preprocessing[0], p) for p in preprocessing],
    )
    return LoadedPredictor(predictor, paths, metadata, preprocessing[0])
