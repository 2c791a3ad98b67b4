"""Trained attnmel models that ship inside the package, by tag (torchvision's ``Weights``, timm's
pretrained tags): each entry carries its file and, read from that file's own header, its
validated metadata (``CheckpointMeta``: architecture, preprocessing, class names, metrics, release), so nobody rebuilds them by hand.

``attnmel.create_model(name, pretrained=tag)`` (``create_model`` below) gives the bare network;
``attnmel.load_model(tag)`` gives it with its preprocessing and a ``predict`` method (``attnmel.inference``).
The registry lives with the checkpoints, not the models, because an entry is a checkpoint file.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

from safetensors.torch import load_file
from torch import nn

from attnmel.checkpoints.format import read_metadata
from attnmel.checkpoints.meta import CheckpointMeta
from attnmel.data.transforms import Preprocessing
from attnmel.errors import CheckpointError, ConfigError
from attnmel.io import file_sha256
from attnmel.models import registry


@dataclass(frozen=True)
class PretrainedWeights:
    tag: str
    #: file name under ``attnmel/weights/``
    file: str
    #: sha256 of that file, checked before its tensors are used
    sha256: str
    description: str

    @property
    def path(self) -> Path:
        return Path(str(resources.files("attnmel") / "weights" / self.file))

    def verify(self) -> Path:
        """The file's path after checking that its bytes are the ones this entry names."""
        if not self.path.is_file():
            raise CheckpointError(f"{self.path}: the pretrained model {self.tag!r} is missing from this installation; "
                                  "reinstall attnmel.")
        digest = file_sha256(self.path)
        if digest != self.sha256:
            raise CheckpointError(f"{self.path}: sha256 {digest[:12]}... is not the {self.sha256[:12]}... of the "
                                  f"pretrained model {self.tag!r}; the file was changed or damaged; reinstall attnmel.")
        return self.path

    @cached_property
    def meta(self) -> CheckpointMeta:
        """The attnmel metadata embedded in the file's safetensors header, validated."""
        return read_metadata(self.verify())

    @property
    def preprocessing(self) -> Preprocessing:
        return self.meta.preprocessing

    @property
    def class_names(self) -> list[str]:
        return list(self.meta.class_names)

    def build(self, name: str | None = None, num_classes: int | None = None, **options: Any) -> nn.Module:
        """The trained network; ``name``, ``num_classes`` and ``options``, when given, must match the entry's."""
        arch = self.meta.architecture.to_dict()
        asked = {"name": name, "num_classes": num_classes, **options}
        differing = [f"{key}={value!r} (the model has {arch.get(key)!r})" for key, value in asked.items()
                     if value is not None and arch.get(key) != value]
        if differing:
            raise ConfigError(f"pretrained {self.tag!r} is {arch['name']} on {arch.get('backbone')}; "
                              f"it cannot be built with {', '.join(differing)}.")
        model = self.meta.architecture.build()
        model.load_state_dict(load_file(str(self.verify())))
        return model.eval()


PRETRAINED: dict[str, PretrainedWeights] = {
    weights.tag: weights
    for weights in (
        PretrainedWeights(
            tag="isic2017-attnmel-mnv2-lesion",
            file="isic2017-attnmel-mnv2-lesion.safetensors",
            sha256="cf8375f521bf5992be642f76172b01fabd1c3bbe866f30e5d7ddab4c5bbad296",
            description="AttnMel-CNN with the lesion prior on ImageNet MobileNetV2, trained on ISIC 2017 + HAM10000 "
                        "(research use only, not a diagnostic tool)",
        ),
    )
}
#: the tag ``attnmel.load_model()`` and every door use when no checkpoint is given
DEFAULT_TAG = "isic2017-attnmel-mnv2-lesion"


def list_pretrained() -> list[str]:
    return list(PRETRAINED)


def get_pretrained(tag: str | None = None) -> PretrainedWeights:
    tag = tag or DEFAULT_TAG
    if tag not in PRETRAINED:
        raise ConfigError(f"no pretrained model {tag!r}; available: {list_pretrained() or 'none'}.")
    return PRETRAINED[tag]


def is_pretrained_tag(source: object) -> bool:
    """Whether a door's ``source`` names a shipped model: None (the default one), or a tag that is not
    also a path on disk (a file of that name wins)."""
    return source is None or (isinstance(source, str) and source in PRETRAINED and not Path(source).exists())


def create_model(name: str, num_classes: int = 2, *, pretrained: str | None = None, **options: Any) -> nn.Module:
    """``attnmel.models.create_model``, or with ``pretrained`` the trained network of that tag (whose
    own options then apply; those given must match them)."""
    if pretrained is not None:
        return get_pretrained(pretrained).build(name, num_classes, **options)
    return registry.create_model(name, num_classes, **options)
