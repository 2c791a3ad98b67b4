"""Legacy pickle checkpoints, read only when the user trusts the file (``--trust-pickle``).

Unpickling can run arbitrary code, so ``attnmel.checkpoints.format`` refuses these files unless
asked. When asked, two kinds are understood:

- attnmel weights written with ``torch.save``: a bare state dict, or a dict holding it under
  ``state_dict`` / ``model`` / ``model_state_dict`` with the attnmel metadata under ``metadata``.
  Without metadata the architecture is recognised from the weights: every registered model is
  built on the meta device (no memory, no init cost) and compared key by key, shape by shape.
- checkpoints of the original IPMI2019-AttnMel code (``{"state_dict": AttnVGG.state_dict(), ...}``,
  keys ``conv_block1..5``, ``attn1/attn2.{W_l,W_g,phi}``, ``classify``; or ``dense`` for its
  no-attention VGG). Its five conv blocks are slices of torchvision's ``vgg16_bn.features`` with the
  max-pools removed, so every tensor maps one to one onto ``attnmel`` (or ``vgg16``); the outputs
  are the same at the original's 224 px input.

What a pickle cannot tell (the attention normalisation, the training statistics, the class
names) is taken from ``LegacyAssumptions`` (the paper's defaults) and recorded in the metadata
under ``legacy``, so the model card says what was assumed.
"""

from __future__ import annotations

import pickle
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from attnmel.checkpoints.format import model_from_state
from attnmel.checkpoints.meta import Architecture, CheckpointMeta, TrainingRecord
from attnmel.data.records import TASKS
from attnmel.data.transforms import Preprocessing, resolve_normalization
from attnmel.errors import CheckpointError

ORIGINAL_CODE = "IPMI2019-AttnMel (github.com/SaoYan/IPMI2019-AttnMel)"

#: conv_blockN -> index of its first layer in torchvision's ``vgg16_bn.features``; attnmel's stages
#: are slices of ``features`` that keep these indices (pool3 = [0, 24), pool4 = [24, 34), pool5 = [34, 44))
_ORIGINAL_BLOCK_OFFSETS = {1: 0, 2: 7, 3: 14, 4: 24, 5: 34}
_ORIGINAL_BLOCK_STAGES = {1: "pool3", 2: "pool3", 3: "pool3", 4: "pool4", 5: "pool5"}
_ORIGINAL_GATES = {"attn1": "pool3", "attn2": "pool4"}
_ORIGINAL_GATE_PARTS = {"W_l": "local_proj", "W_g": "global_proj", "phi": "score"}


@dataclass(frozen=True)
class LegacyAssumptions:
    """What a pickle without attnmel metadata cannot say; the defaults are the paper's."""

    #: attention normalisation (the original code's ``--normalize_attn`` means softmax)
    normalize: str = "sigmoid"
    #: normalisation statistics: a preset of ``attnmel.data.transforms.NORMALIZATION_PRESETS`` or a stats JSON
    normalization: str = "isic2017"
    crop_ratio: float = 0.8
    resize: int = 256
    image_size: int = 224


def read_pickle(path: Path) -> Any:
    """``torch.load`` with the restricted unpickler first, the full one only if the file needs it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        pass  # the user trusts the file (that is why we are here): allow arbitrary objects
    except Exception as exc:  # noqa: BLE001 - truncated zip, not a torch file, ...
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({type(exc).__name__}: {exc}).") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - e.g. a pickled module whose class is not importable
        raise CheckpointError(
            f"{path}: cannot unpickle ({type(exc).__name__}: {exc}); save a state dict "
            "(torch.save(model.state_dict(), ...)) instead of a whole model."
        ) from None


def split_payload(payload: Any, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """(state dict, attnmel metadata or None) from whatever ``torch.save`` stored."""
    metadata = None
    state = payload
    if isinstance(payload, dict):
        if isinstance(payload.get("metadata"), dict):
            metadata = payload["metadata"]
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(payload.get(key), dict):
                state = payload[key]
                break
    if isinstance(state, nn.Module):
        state = state.state_dict()
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(
            f"{path}: found no state dict (a mapping of parameter names to tensors) in this pickle."
        )
    return {str(k).removeprefix("module."): v for k, v in state.items()}, metadata


def is_original_layout(state: dict[str, torch.Tensor]) -> bool:
    return any(key.startswith("conv_block1.") for key in state)


def map_original_state(state: dict[str, torch.Tensor], path: Path) -> tuple[str, dict[str, torch.Tensor]]:
    """Rename an original AttnVGG state dict to ``attnmel`` (vgg16_bn) or, without attention, ``vgg16``."""
    attention = any(key.startswith("attn1.") for key in state)
    mapped: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if match := re.fullmatch(r"conv_block([1-5])\.(\d+)\.(.+)", key):
            block, index, rest = int(match[1]), int(match[2]), match[3]
            prefix = f"backbone.stages.{_ORIGINAL_BLOCK_STAGES[block]}" if attention else "features"
            mapped[f"{prefix}.{_ORIGINAL_BLOCK_OFFSETS[block] + index}.{rest}"] = value
        elif match := re.fullmatch(r"(attn[12])\.(W_l|W_g|phi)\.(.+)", key):
            mapped[f"gates.{_ORIGINAL_GATES[match[1]]}.{_ORIGINAL_GATE_PARTS[match[2]]}.{match[3]}"] = value
        elif match := re.fullmatch(r"dense\.(\d+)\.(.+)", key):
            mapped[f"classifier.{match[1]}.{match[2]}"] = value
        elif match := re.fullmatch(r"classify\.(weight|bias)", key):
            mapped[f"classifier.{match[1]}" if attention else f"classifier.6.{match[1]}"] = value
        else:
            raise CheckpointError(f"{path}: unexpected key {key!r} for a checkpoint of the original AttnMel code.")
    return ("attnmel" if attention else "vgg16"), mapped


def _num_classes(state: dict[str, torch.Tensor], path: Path) -> int:
    for key in ("classifier.weight", "classifier.6.weight"):
        if key in state:
            return int(state[key].shape[0])
    raise CheckpointError(f"{path}: no classifier weights (classifier.weight) in this state dict.")


def infer_architecture(state: dict[str, torch.Tensor], path: Path, normalize: str = "sigmoid") -> Architecture:
    """The registered architecture whose state dict has exactly these keys and shapes."""
    from attnmel.checkpoints.pretrained import create_model
    from attnmel.models import list_models, model_entry

    num_classes = _num_classes(state, path)
    gate_widths = {v.shape[0] for k, v in state.items() if k.endswith(".local_proj.weight")}
    attention = {"normalize": normalize, "attention_channels": gate_widths.pop() if len(gate_widths) == 1 else 256}
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    for name in list_models():
        entry = model_entry(name)
        for backbone in entry.backbones:
            options = {"backbone": backbone, **{k: v for k, v in attention.items() if k in entry.options}}
            with torch.device("meta"):
                candidate = create_model(name, num_classes, **options)
            if {k: tuple(v.shape) for k, v in candidate.state_dict().items()} == shapes:
                return Architecture.of(candidate)
    raise CheckpointError(
        f"{path}: these weights match no attnmel architecture ({len(state)} tensors, first key "
        f"{next(iter(state))!r}); `attnmel info` lists the models."
    )


def legacy_metadata(arch: Architecture, path: Path, origin: str, assumed: LegacyAssumptions) -> CheckpointMeta:
    task = next((t for t in TASKS.values() if t.num_classes == arch.num_classes), None)
    if task is None:
        raise CheckpointError(f"{path}: {arch.num_classes} classes; attnmel's tasks have 2 (melanoma) or 3 (ISIC 2017).")
    mean, std = resolve_normalization(assumed.normalization)
    return CheckpointMeta(
        architecture=arch,
        task=task.name,
        class_names=task.class_names,
        score_columns=task.score_columns,
        preprocessing=Preprocessing(assumed.crop_ratio, assumed.resize, assumed.image_size, mean, std),
        training=TrainingRecord(run=path.stem),
        legacy={"file": str(path), "origin": origin, "assumed": asdict(assumed)},
    )


def load_legacy_checkpoint(
    path: str | Path, device: str | torch.device = "cpu", assumed: LegacyAssumptions | None = None
) -> tuple[nn.Module, CheckpointMeta]:
    """Load a trusted pickle checkpoint as an attnmel model plus metadata (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found.")
    assumed = assumed or LegacyAssumptions()
    state, metadata = split_payload(read_pickle(path), path)
    if metadata is not None:
        if "architecture" not in metadata:
            raise CheckpointError(f"{path}: its 'metadata' has no 'architecture'; is it attnmel metadata?")
        meta = CheckpointMeta.from_dict(metadata, path).replace(
            legacy={"file": str(path), "origin": "attnmel (torch.save)", "assumed": None})
    else:
        if is_original_layout(state):
            name, state = map_original_state(state, path)
            options: dict[str, Any] = {"backbone": "vgg16_bn"}
            if name == "attnmel":
                options.update(normalize=assumed.normalize, attention_channels=256)
            arch = Architecture(name, _num_classes(state, path), options)
            origin = ORIGINAL_CODE
        else:
            arch = infer_architecture(state, path, assumed.normalize)
            origin = "attnmel (torch.save, no metadata)"
        meta = legacy_metadata(arch, path, origin, assumed)
    model = model_from_state(meta, state, path)
    model.to(device).eval()
    return model, meta
