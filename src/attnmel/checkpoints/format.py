"""Checkpoints that never unpickle: safetensors for tensors, the metadata embedded in its header.

- A model checkpoint is ``<stem>.safetensors``: the weights, with the ``CheckpointMeta``
  (``checkpoints/meta.py``) embedded in the safetensors header, so weights and metadata can never
  be separated. ``<stem>.json`` beside it is a readable copy (the sidecar) for people and other
  tools; nothing reads it back. ``update_metadata`` rewrites both (same tensors) when a later step
  adds to the metadata, e.g. the ``temperature`` that ``attnmel calibrate`` fits.
- A training state (``last-state.safetensors``) holds the model, optimiser, schedule, RNG and
  history so that ``--resume`` continues exactly where the last complete epoch ended.
Each file is written atomically (``attnmel.io``): a crash leaves the previous complete file.

Pickle checkpoints (``torch.save``) are refused here; ``checkpoints/legacy.py`` reads them when the
user trusts the file, and ``checkpoints/loader.py`` chooses between the two.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from attnmel.checkpoints.meta import CheckpointMeta, attnmel_version
from attnmel.errors import CheckpointError
from attnmel.io import atomic_path, atomic_write_json, json_safe

#: the file a run folder's best model is kept in
BEST_FILE = "best.safetensors"
STATE_FORMAT = "attnmel-training-state"


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    contiguous = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(contiguous, str(tmp), metadata={"attnmel": json.dumps(metadata, allow_nan=False)})


def _read_embedded(path: Path) -> Any:
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
        return json.loads(header["attnmel"])
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint not found.") from None
    except Exception as exc:  # noqa: BLE001 - corrupt header, foreign safetensors file, bad JSON
        raise CheckpointError(f"{path}: not an attnmel safetensors checkpoint ({type(exc).__name__}: {exc}).") from None


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"{path}: unreadable safetensors file ({exc}).") from None


PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt", ".pkl", ".pickle", ".bin", ".tar")


def is_pickle_checkpoint(path: str | Path) -> bool:
    """A ``torch.save`` file: by suffix, or by content (zip or pickle protocol 2+ magic) whatever its name."""
    path = Path(path)
    if path.suffix in (".safetensors", ".json") or path.is_dir():
        return False
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return True
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError:
        return False
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def refuse_pickle(path: Path) -> CheckpointError:
    return CheckpointError(
        f"{path}: pickle checkpoints are not loaded by default because unpickling can run code; "
        "convert it once with `attnmel export --checkpoint FILE --format safetensors --trust-pickle`, "
        "or pass --trust-pickle if you trust its source."
    )


#: the suffixes of a model checkpoint's two files: the weights, and the readable copy of the metadata
CHECKPOINT_SUFFIXES = (".safetensors", ".json")


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """(weights, sidecar) for a run folder (its best model), a ``.safetensors`` or a ``.json`` path, or a
    path without either suffix (``.safetensors`` and ``.json`` appended). Only those two suffixes are
    replaced: the dots of ``model.v2.safetensors`` are part of its name, never a suffix to drop (that
    read, and wrote, ``model.safetensors``)."""
    path = Path(path)
    if path.is_dir():
        path = path / BEST_FILE
    if is_pickle_checkpoint(path):
        raise refuse_pickle(path)
    stem = path.with_suffix("") if path.suffix in CHECKPOINT_SUFFIXES else path
    weights, sidecar = (stem.with_name(stem.name + suffix) for suffix in CHECKPOINT_SUFFIXES)
    return weights, sidecar


def save_model_checkpoint(path: str | Path, model: nn.Module, meta: CheckpointMeta) -> Path:
    weights, sidecar = checkpoint_paths(path)
    payload = json_safe(meta.to_dict())
    _save_tensors(weights, model.state_dict(), payload)
    atomic_write_json(sidecar, payload)
    return weights


def read_metadata(path: str | Path) -> CheckpointMeta:
    """The metadata embedded in the checkpoint, validated (the sidecar JSON is only a copy of it)."""
    weights, _ = checkpoint_paths(path)
    return CheckpointMeta.from_dict(_read_embedded(weights), weights)


def update_metadata(path: str | Path, **changes: Any) -> CheckpointMeta:
    """Change fields of a model checkpoint's metadata: same tensors, file and sidecar rewritten atomically."""
    return copy_with_metadata(path, path, **changes)


def copy_with_metadata(source: str | Path, destination: str | Path, **changes: Any) -> CheckpointMeta:
    """``destination`` holds the tensors of ``source`` with changed metadata (``source`` untouched unless
    it is the destination); the new metadata is returned."""
    weights, _ = checkpoint_paths(source)
    target, sidecar = checkpoint_paths(destination)
    meta = read_metadata(weights).replace(**changes)
    payload = json_safe(meta.to_dict())
    _save_tensors(target, _read_tensors(weights), payload)
    atomic_write_json(sidecar, payload)
    return meta


def _read_network(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, CheckpointMeta]:
    """Rebuild the network from its embedded metadata and load its weights (no pickle involved); the
    public way is ``attnmel.load_model(path)``."""
    weights, _ = checkpoint_paths(path)
    meta = read_metadata(weights)
    model = model_from_state(meta, _read_tensors(weights), weights)
    model.to(device).eval()
    return model, meta


def load_weights_into(model: nn.Module, meta: CheckpointMeta, path: Path) -> None:
    """Load the checkpoint file ``path`` (described by ``meta``) into an already built ``model``."""
    state = _read_tensors(path)
    meta.check_weights(model, state, path)
    model.load_state_dict(state)


def model_from_state(meta: CheckpointMeta, state: dict[str, torch.Tensor], source: str | Path) -> nn.Module:
    """Build the model ``meta`` describes and load ``state`` into it, after checking that they fit."""
    with torch.device("meta"):
        skeleton = meta.architecture.build()
    meta.check_weights(skeleton, state, source)
    model = meta.architecture.build()
    model.load_state_dict(state)
    return model


# ----------------------------------------------------------------------------------- training state


def _flatten(value: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace tensors by references and gather them, so the rest is JSON."""
    if isinstance(value, torch.Tensor):
        key = prefix or "tensor"
        tensors[key] = value
        return {"__tensor__": key}
    if isinstance(value, dict):
        return {"__dict__": [[_flatten(k, f"{prefix}.k{i}", tensors), _flatten(v, f"{prefix}.{i}", tensors)]
                             for i, (k, v) in enumerate(value.items())]}
    if isinstance(value, tuple):
        return {"__tuple__": [_flatten(v, f"{prefix}.{i}", tensors) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_flatten(v, f"{prefix}.{i}", tensors) for i, v in enumerate(value)]
    if isinstance(value, float) and not math.isfinite(value):
        return {"__float__": str(value)}  # nan, inf, -inf: float() reads them back
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise CheckpointError(f"cannot store a {type(value).__name__} in a training state ({prefix}).")


def _unflatten(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, dict):
        if "__tensor__" in value:
            return tensors[value["__tensor__"]]
        if "__dict__" in value:
            return {_unflatten(k, tensors): _unflatten(v, tensors) for k, v in value["__dict__"]}
        if "__tuple__" in value:
            return tuple(_unflatten(v, tensors) for v in value["__tuple__"])
        if "__float__" in value:
            return float(value["__float__"])
    if isinstance(value, list):
        return [_unflatten(v, tensors) for v in value]
    return value


def save_training_state(path: str | Path, state: dict[str, Any]) -> None:
    """Store a nested state (model, optimiser, scheduler, RNG, counters) in one safetensors file."""
    weights, _ = checkpoint_paths(path)
    tensors: dict[str, torch.Tensor] = {}
    structure = _flatten(state, "s", tensors)
    _save_tensors(weights, tensors, {"format": STATE_FORMAT, "attnmel_version": attnmel_version(), "state": structure})


def _training_state_header(path: str | Path) -> tuple[Path, dict[str, Any]]:
    weights, _ = checkpoint_paths(path)
    if not weights.is_file():
        raise CheckpointError(f"{weights.parent}: no complete training state to resume from ({weights.name} missing).")
    payload = _read_embedded(weights)
    if not isinstance(payload, dict) or payload.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{weights}: not an attnmel training state.")
    return weights, payload


def load_training_state(path: str | Path) -> dict[str, Any]:
    weights, payload = _training_state_header(path)
    return _unflatten(payload["state"], _read_tensors(weights))


def training_state_config(path: str | Path) -> dict[str, Any]:
    """The config stored in a training state, read from the header alone (no tensors loaded)."""
    weights, payload = _training_state_header(path)
    for key, value in payload["state"]["__dict__"]:
        if key == "config":
            return _unflatten(value, {})
    raise CheckpointError(f"{weights}: the training state holds no config.")
