"""Trained attnmel models that ship inside the package, by tag (torchvision's ``Weights``, timm's
pretrained tags): each entry carries its file and, read from that file's own header, its
validated metadata (``CheckpointMeta``: architecture, preprocessing, class names, metrics, release), so nobody rebuilds them by hand.

``attnmel.create_model(name, pretrained=tag)`` (``create_model`` below) gives the bare network;
``attnmel.load_model(tag)`` gives it with its preprocessing and a ``predict`` method (``attnmel.inference``).
The registry lives with the checkpoints, not the models, because an entry is a checkpoint file.

The entries are data, ``attnmel/weights/registry.json`` (tag, file, sha256, card, description, and
the default tag), written by ``scripts/ship_model.py`` through
``register``: shipping a model never edits Python source.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
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
from attnmel.io import atomic_write_json, file_sha256
from attnmel.models import registry

#: the folder of the shipped files and of their registry
WEIGHTS_FOLDER = Path(str(resources.files("attnmel") / "weights"))
REGISTRY_FILE = "registry.json"
REGISTRY_FORMAT = 1
_SHA256 = re.compile(r"[0-9a-f]{64}")
_FIX = "restore it from the attnmel release, or rewrite the entry with scripts/ship_model.py"
_ENTRY_KEYS = ("tag", "file", "sha256", "card", "description")


@dataclass(frozen=True)
class PretrainedWeights:
    tag: str
    #: file name beside the registry (``attnmel/weights/`` for the shipped ones)
    file: str
    #: sha256 of that file, checked before its tensors are used
    sha256: str
    #: the model card's file name, beside the weights
    card: str
    description: str
    folder: Path = field(default=WEIGHTS_FOLDER, compare=False, repr=False)

    @classmethod
    def from_dict(cls, entry: object, where: str, folder: Path = WEIGHTS_FOLDER) -> PretrainedWeights:
        """One registry entry, validated; ``where`` names it in the one-line error (file and position)."""
        if not isinstance(entry, dict):
            raise CheckpointError(f"{where}: an entry must be an object with {', '.join(_ENTRY_KEYS)}, "
                                  f"not {type(entry).__name__}; {_FIX}.")
        missing = [key for key in _ENTRY_KEYS if key not in entry]
        unknown = sorted(set(entry) - set(_ENTRY_KEYS))
        if missing or unknown:
            problem = "; ".join(([f"missing {', '.join(missing)}"] if missing else [])
                                + ([f"unknown {', '.join(unknown)}"] if unknown else []))
            raise CheckpointError(f"{where}: {problem} (an entry has exactly {', '.join(_ENTRY_KEYS)}); {_FIX}.")
        for key in _ENTRY_KEYS:
            if not isinstance(entry[key], str) or not entry[key].strip():
                raise CheckpointError(f"{where}: {key!r} must be a non-empty string, not {entry[key]!r}; {_FIX}.")
        if not _SHA256.fullmatch(entry["sha256"]):
            raise CheckpointError(f"{where}: 'sha256' must be 64 lower-case hex digits, not {entry['sha256']!r}; {_FIX}.")
        for key, suffix in (("file", ".safetensors"), ("card", ".md")):
            name = entry[key]
            if Path(name).name != name or not name.endswith(suffix) or name.startswith("."):
                raise CheckpointError(f"{where}: {key!r} must be a plain {suffix} file name beside the registry, "
                                      f"not {name!r}; {_FIX}.")
        return cls(entry["tag"], entry["file"], entry["sha256"], entry["card"], entry["description"], folder)

    def to_dict(self) -> dict[str, str]:
        return {key: value for key, value in asdict(self).items() if key in _ENTRY_KEYS}

    @property
    def path(self) -> Path:
        return self.folder / self.file

    @property
    def card_path(self) -> Path:
        return self.folder / self.card

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



@dataclass(frozen=True)
class Registry:
    """The registry file: its entries by tag, and the tag every door uses when no checkpoint is given."""

    weights: dict[str, PretrainedWeights]
    default: str | None

    @classmethod
    def read(cls, path: Path) -> Registry:
        """``registry.json``, validated: a malformed file or entry is one line naming the file, the entry
        and the field. A missing file is an empty registry (a new ``--output`` folder)."""
        if not path.is_file():
            return cls({}, None)
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{path}: cannot read the registry of shipped models ({exc}); {_FIX}.") from None
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{path}: not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); {_FIX}.") from None
        if not isinstance(payload, dict) or set(payload) != {"format", "default", "weights"}:
            found = sorted(payload) if isinstance(payload, dict) else type(payload).__name__
            raise CheckpointError(f"{path}: the registry must be an object with format, default and weights, "
                                  f"not {found}; {_FIX}.")
        if payload["format"] != REGISTRY_FORMAT:
            raise CheckpointError(f"{path}: registry format {payload['format']!r} is not {REGISTRY_FORMAT}, the one "
                                  "this attnmel reads; upgrade attnmel or rewrite the registry with scripts/ship_model.py.")
        if not isinstance(payload["weights"], list):
            raise CheckpointError(f"{path}: 'weights' must be a list of entries, not "
                                  f"{type(payload['weights']).__name__}; {_FIX}.")
        weights: dict[str, PretrainedWeights] = {}
        for number, entry in enumerate(payload["weights"], 1):
            tag = entry.get("tag") if isinstance(entry, dict) else None
            where = f"{path}: entry {number}" + (f" ({tag!r})" if isinstance(tag, str) else "")
            weights_entry = PretrainedWeights.from_dict(entry, where, path.parent)
            if weights_entry.tag in weights:
                raise CheckpointError(f"{where}: the tag is listed twice; keep one entry per tag; {_FIX}.")
            weights[weights_entry.tag] = weights_entry
        default = payload["default"]
        if default is not None and default not in weights:
            raise CheckpointError(f"{path}: the default {default!r} is none of the entries "
                                  f"({', '.join(weights) or 'none'}); name one of them; {_FIX}.")
        return cls(weights, default)

    def to_dict(self) -> dict[str, Any]:
        return {"format": REGISTRY_FORMAT, "default": self.default,
                "weights": [entry.to_dict() for entry in self.weights.values()]}


def register(folder: str | Path, tag: str, description: str | None = None, *, default: bool = False) -> PretrainedWeights:
    """Write (or rewrite) ``tag``'s entry in ``folder/registry.json``, atomically, with the sha256 its file
    has now. A new entry names ``<tag>.safetensors`` and ``<tag>.md`` and needs ``description``; an
    existing one keeps its file, card and (unless given) description. The weights and the card must
    already be in ``folder``. The first entry of a new registry, or ``default=True``, becomes the default."""
    folder = Path(folder)
    path = folder / REGISTRY_FILE
    current = Registry.read(path)
    old = current.weights.get(tag)
    if old is None and description is None:
        raise ConfigError(f"{path}: no entry {tag!r} yet; give its description to add it.")
    values = old.to_dict() if old is not None else {"tag": tag, "file": f"{tag}.safetensors", "card": f"{tag}.md"}
    values["description"] = description if description is not None else values["description"]
    if Path(tag).name != tag:
        raise ConfigError(f"{path}: the tag {tag!r} must be a plain name (it names the files beside the registry).")
    for key in ("file", "card"):
        if not (folder / values[key]).is_file():
            raise CheckpointError(f"{folder / values[key]}: missing; write the weights and the card before "
                                  f"registering {tag!r}.")
    values["sha256"] = file_sha256(folder / values["file"])
    entry = PretrainedWeights.from_dict(values, f"{path}: entry {tag!r}", folder)
    updated = Registry({**current.weights, tag: entry}, tag if default or current.default is None else current.default)
    atomic_write_json(path, updated.to_dict())
    return entry


_SHIPPED = Registry.read(WEIGHTS_FOLDER / REGISTRY_FILE)
PRETRAINED: dict[str, PretrainedWeights] = dict(_SHIPPED.weights)
#: the tag ``attnmel.load_model()`` and every door use when no checkpoint is given
DEFAULT_TAG: str | None = _SHIPPED.default


def list_pretrained() -> list[str]:
    return list(PRETRAINED)


def get_pretrained(tag: str | None = None) -> PretrainedWeights:
    tag = tag or DEFAULT_TAG
    if tag is None:
        raise ConfigError(f"{WEIGHTS_FOLDER / REGISTRY_FILE} names no default shipped model; pass a checkpoint.")
    if tag not in PRETRAINED:
        raise ConfigError(f"no pretrained model {tag!r}; available: {list_pretrained() or 'none'}.")
    return PRETRAINED[tag]


def is_pretrained_tag(source: object) -> bool:
    """Whether a door's ``source`` names a shipped model: None (the default one), or a tag that is not
    also a path on disk (a file of that name wins)."""
    return source is None or (isinstance(source, str) and source in PRETRAINED and not Path(source).exists())


def create_model(name: str, num_classes: int = 2, *, pretrained: str | None = None, **options: Any) -> nn.Module:
    """A registered model built with ``options`` (``weights``: how the backbone starts, see ``attnmel
    info``), or with ``pretrained`` the trained network of that tag (whose own options then apply;
    those given must match them). The one public way to build a network, as timm's."""
    if pretrained is not None:
        return get_pretrained(pretrained).build(name, num_classes, **options)
    return registry._create_model(name, num_classes, **options)
