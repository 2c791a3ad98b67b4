"""``@register_model`` and ``list_models``: one name selects one architecture (as in timm).

Each model registers itself beside its network (``models/networks.py``) as a function whose
keyword arguments are the options it takes; ``attnmel.create_model`` (which also builds a shipped
model by tag, ``attnmel.checkpoints.pretrained``) builds it through ``_create_model`` below, which
passes through exactly those, so an
option a model does not use is an error rather than a silent no-op, and the ``Architecture`` recorded
in ``model.architecture`` holds the options that shaped it. Adding a model is one decorated function; the
parametrised tests in ``tests/test_models.py`` then cover it.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from torch import nn

from attnmel.errors import ConfigError

#: Options that set how a model is initialised, not what it is (never recorded in the architecture).
INIT_OPTIONS = ("weights",)
#: The most classes a model may declare (a sanity bound, far above any dermoscopy task).
MAX_CLASSES = 1000


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., nn.Module]
    paper_row: str
    description: str
    #: the option names the builder takes besides ``num_classes`` (``backbone``, ``weights``, ...)
    options: tuple[str, ...]
    #: the backbones the model accepts (one for models defined on a single backbone)
    backbones: tuple[str, ...]

    @property
    def default_backbone(self) -> str:
        return self.default("backbone")

    def default(self, option: str) -> Any:
        return inspect.signature(self.builder).parameters[option].default


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str, *, paper_row: str, description: str, backbones: tuple[str, ...] | None = None
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register ``fn(num_classes, *, backbone=..., weights=None, **options) -> nn.Module`` under ``name``.

    ``backbones`` limits the backbones the model accepts (default: every registered backbone).
    """

    def decorate(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        from attnmel.models.backbones import list_backbones

        parameters = inspect.signature(fn).parameters
        if "num_classes" not in parameters or "backbone" not in parameters:
            raise TypeError(f"model {name!r}: the builder must take num_classes and backbone")
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        options = tuple(p for p in parameters if p != "num_classes")
        _REGISTRY[name] = ModelEntry(name, fn, paper_row, description, options, backbones or tuple(list_backbones()))
        return fn

    return decorate


def list_models() -> list[str]:
    return list(_REGISTRY)


def model_entry(name: str) -> ModelEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"Unknown model {name!r}; choose one of {list_models()}.") from None


def check_model_options(name: str, options: dict[str, Any]) -> ModelEntry:
    """The entry of ``name`` after checking that it takes every option in ``options`` (values unchecked
    except the backbone); the error names the options it does take."""
    entry = model_entry(name)
    unknown = sorted(set(options) - set(entry.options))
    if unknown:
        raise ConfigError(
            f"model {name!r} does not take {', '.join(unknown)}; its options are {', '.join(entry.options)}."
        )
    backbone = options.get("backbone")
    if backbone is not None and backbone not in entry.backbones:
        only = f"is defined on {entry.backbones[0]}" if len(entry.backbones) == 1 else f"takes {list(entry.backbones)}"
        raise ConfigError(f"model {name!r} {only}, not backbone {backbone!r}; use 'gap', 'melcnn' or 'attnmel' "
                          "for other backbones.")
    return entry


def _create_model(name: str, num_classes: int = 2, **options: Any) -> nn.Module:
    """Build a registered model with the options it takes (see ``attnmel info``): the models layer's
    part of ``attnmel.create_model``, the public way, which adds shipped models by tag.

    ``weights`` initialises the backbone: ``None`` (random), ``"imagenet"`` (torchvision's weights
    API; needs the network or a warm torch hub cache) or a local state-dict path.
    """
    if "pretrained" in options:  # the shipped models are checkpoints, a layer above this one
        raise ConfigError("attnmel.models.create_model builds a network to train; for a shipped model by tag use "
                          "attnmel.create_model(name, pretrained=tag).")
    entry = check_model_options(name, options)
    if isinstance(options.get("weights"), Path):
        options["weights"] = str(options["weights"])
    model = entry.builder(num_classes=num_classes, **options)
    shape = {key: value for key, value in options.items() if key not in INIT_OPTIONS}
    # torch types module attributes as Tensor | Module; a plain attribute is what torch stores here
    model.architecture = Architecture(name, num_classes, with_defaults(entry, shape))  # type: ignore[assignment]
    return model


def create_model(name: str, num_classes: int = 2, **options: Any) -> nn.Module:
    """Deprecated (removed in the next release): ``attnmel.create_model(name, num_classes, **options)``."""
    warnings.warn("attnmel.models.create_model is deprecated and goes in the next release; use "
                  "attnmel.create_model (the same arguments, and pretrained=tag).", DeprecationWarning, stacklevel=2)
    return _create_model(name, num_classes, **options)


def with_defaults(entry: ModelEntry, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with the model's default for every shape option not given: an architecture is
    complete on its own, and a record written before an option existed reads as that option's default."""
    complete = dict(options)
    for option in entry.options:
        if option not in INIT_OPTIONS:
            complete.setdefault(option, entry.default(option))
    return complete


def architecture_options(architecture: dict[str, Any]) -> dict[str, Any]:
    """The options of an ``architecture`` record that its model takes. attnmel 0.1.0 also recorded the
    attention options on models without attention; an option of another registered model is
    therefore left out, while a name no model takes is an error."""
    entry = model_entry(architecture.get("name"))
    known = {option for other in _REGISTRY.values() for option in other.options}
    strange = sorted(k for k in architecture if k not in ("name", "num_classes") and k not in known)
    if strange:
        raise ConfigError(f"model {entry.name!r} has no option {', '.join(strange)}; its options are "
                          f"{', '.join(entry.options)}.")
    return {k: v for k, v in architecture.items() if k in entry.options and k not in INIT_OPTIONS and v is not None}


@dataclass(frozen=True)
class Architecture:
    """What to build: a registered model name, its class count and the options it takes; ``attnmel.create_model``
    records it on every model (``model.architecture``) and checkpoints store it."""

    name: str
    num_classes: int
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def backbone(self) -> str | None:
        return self.options.get("backbone")

    @property
    def normalize(self) -> str | None:
        """The attention gates' normalisation (None for models without gates)."""
        return self.options.get("normalize")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "num_classes": self.num_classes, **self.options}

    @classmethod
    def of(cls, model: nn.Module) -> Architecture:
        """The architecture ``attnmel.create_model`` recorded on ``model``."""
        return cast(Architecture, model.architecture)

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> Architecture:
        """Read (and check) an ``architecture`` record; options the model does not take are dropped
        (0.1.0 recorded attention options on every model)."""
        name, classes = payload.get("name"), payload.get("num_classes")
        if not isinstance(classes, int) or isinstance(classes, bool) or not 2 <= classes <= MAX_CLASSES:
            raise ValueError(f"num_classes {classes!r} is not a whole number between 2 and {MAX_CLASSES}")
        try:
            options = architecture_options(payload)
            entry = check_model_options(name, options)
        except ConfigError as exc:
            raise ValueError(str(exc).rstrip(".")) from None
        return cls(name, classes, with_defaults(entry, options))

    def build(self) -> nn.Module:
        return _create_model(self.name, self.num_classes, **self.options)
