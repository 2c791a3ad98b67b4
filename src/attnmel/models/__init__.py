"""Models: staged backbones, the attention gate, and the paper's rows behind one registry.

Importing this package registers every model (``networks.py`` decorates its builders); build one with
``attnmel.create_model`` (``create_model`` here is its deprecated, untrained-only predecessor).
"""

from attnmel.models.attention import AttentionGate
from attnmel.models.backbones import BACKBONES, StagedBackbone, create_backbone, list_backbones
from attnmel.models.maps import FLAT_EPSILON, MapKind, is_flat, map_kind, upsample_map
from attnmel.models.networks import (
    AttnMelCNN,
    GapNet,
    LogitsOnly,
    MelCNN,
    ModelOutput,
    VGG16Classifier,
    WithClassActivationMap,
    with_maps,
)
from attnmel.models.registry import Architecture, list_models, model_entry, register_model
from attnmel.models.registry import create_model as create_model  # deprecated: attnmel.create_model

__all__ = [
    "FLAT_EPSILON",
    "MapKind",
    "is_flat",
    "map_kind",
    "Architecture",
    "BACKBONES",
    "AttentionGate",
    "AttnMelCNN",
    "GapNet",
    "LogitsOnly",
    "MelCNN",
    "ModelOutput",
    "StagedBackbone",
    "VGG16Classifier",
    "WithClassActivationMap",
    "create_backbone",
    "list_backbones",
    "list_models",
    "model_entry",
    "register_model",
    "upsample_map",
    "with_maps",
]
