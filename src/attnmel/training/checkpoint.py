"""Checkpoints that never unpickle: safetensors for tensors, a JSON sidecar for everything else.

- A model checkpoint is ``<stem>.safetensors``: the weights, with the metadata (architecture,
  class names, preprocessing, training summary, validation metrics, attnmel version) embedded in
  the safetensors header, so weights and metadata can never disagree. ``<stem>.json`` beside it is
  a readable copy of that metadata (the sidecar) for people and other tools. ``update_metadata``
  rewrites both (same tensors) when a later step adds to it, e.g. the ``temperature`` that
  ``attnmel calibrate`` fits (read with ``checkpoint_temperature``; 1.0 when never calibrated).
- A training state (``last-state.safetensors``) holds the model, optimiser, schedule, RNG and
  history so that ``--resume`` continues exactly where the last complete epoch ended.
Each file is written atomically (``attnmel.io``): a crash leaves the previous complete file.

Pickle checkpoints (``torch.save``) are refused unless the caller passes ``trust_pickle=True``
(``--trust-pickle``): unpickling can run arbitrary code. See ``attnmel.training.legacy``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from attnmel.errors import CheckpointError
from attnmel.io import atomic_path, atomic_write_json

FORMAT = "attnmel-checkpoint"
FORMAT_VERSION = 1


def _version() -> str:
    from attnmel import __version__

    return __version__


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    contiguous = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(contiguous, str(tmp), metadata={"attnmel": json.dumps(metadata)})


def _read_embedded(path: Path) -> dict[str, Any]:
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
        return json.loads(header["attnmel"])
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint not found.") from None
    except Exception as exc:  # noqa: BLE001 - corrupt header, foreign safetensors file, bad JSON
        raise CheckpointError(f"{path}: not an attnmel safetensors checkpoint ({type(exc).__name__}: {exc}).") from None


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


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """(weights, sidecar) for a run folder (its best model), a ``.safetensors`` or a ``.json`` path."""
    path = Path(path)
    if path.is_dir():
        path = path / "best.safetensors"
    if is_pickle_checkpoint(path):
        raise refuse_pickle(path)
    stem = path.with_suffix("")
    return stem.with_suffix(".safetensors"), stem.with_suffix(".json")


def save_model_checkpoint(path: str | Path, model: nn.Module, metadata: dict[str, Any]) -> Path:
    weights, sidecar = checkpoint_paths(path)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "attnmel_version": _version(),
        "architecture": dict(model.architecture),
        **metadata,
    }
    _save_tensors(weights, model.state_dict(), payload)
    atomic_write_json(sidecar, payload)
    return weights


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata embedded in the checkpoint (the sidecar JSON is only a copy of it)."""
    weights, _ = checkpoint_paths(path)
    meta = _read_embedded(weights)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{weights}: not an attnmel model checkpoint (format {meta.get('format')!r}).")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(f"{weights}: written by a newer attnmel ({meta.get('attnmel_version')}); upgrade attnmel.")
    return meta


def update_metadata(path: str | Path, changes: dict[str, Any]) -> dict[str, Any]:
    """Merge ``changes`` into a model checkpoint's metadata: same tensors, file and sidecar rewritten atomically."""
    weights, sidecar = checkpoint_paths(path)
    meta = {**read_metadata(path), **changes}
    try:
        tensors = load_file(str(weights), device="cpu")
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"{weights}: unreadable safetensors file ({exc}).") from None
    _save_tensors(weights, tensors, meta)
    atomic_write_json(sidecar, meta)
    return meta


def checkpoint_temperature(meta: dict[str, Any]) -> float:
    """The softmax temperature fitted by ``attnmel calibrate`` (1.0, i.e. none, when never calibrated)."""
    value = meta.get("temperature")
    return 1.0 if value is None else float(value)


def load_model_checkpoint(
    path: str | Path, device: str | torch.device = "cpu", *, trust_pickle: bool = False
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model from its embedded metadata and load its weights (no pickle involved).

    ``trust_pickle=True`` also accepts legacy ``torch.save`` checkpoints, with the assumptions
    documented in ``attnmel.training.legacy``.
    """
    if is_pickle_checkpoint(path):
        if not trust_pickle:
            raise refuse_pickle(Path(path))
        from attnmel.training.legacy import load_legacy_checkpoint

        return load_legacy_checkpoint(path, device)
    weights, _ = checkpoint_paths(path)
    meta = read_metadata(path)
    try:
        state = load_file(str(weights), device="cpu")
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"{weights}: unreadable safetensors file ({exc}).") from None
    model = model_from_state(meta["architecture"], state, weights)
    model.to(device).eval()
    return model, meta


def model_from_state(arch: dict[str, Any], state: dict[str, torch.Tensor], source: Path) -> nn.Module:
    """Build ``arch`` (the ``architecture`` metadata) and load ``state`` into it, all keys required."""
    from attnmel.models import create_model

    model = create_model(
        arch["name"],
        arch["num_classes"],
        backbone=arch.get("backbone"),
        weights=None,
        normalize=arch.get("normalize", "sigmoid"),
        attention_channels=arch.get("attention_channels", 256),
    )
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatch
        raise CheckpointError(f"{source}: weights do not fit {arch['name']} ({str(exc).splitlines()[-1].strip()}).") from None
    if missing or unexpected:
        raise CheckpointError(
            f"{source}: weights do not fit {arch['name']} ({len(missing)} missing, {len(unexpected)} unexpected keys)."
        )
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
    if isinstance(value, float) and value != value:
        return {"__float__": "nan"}
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
    _save_tensors(weights, tensors, {"format": "attnmel-training-state", "attnmel_version": _version(), "state": structure})


def load_training_state(path: str | Path) -> dict[str, Any]:
    weights, _ = checkpoint_paths(path)
    if not weights.is_file():
        raise CheckpointError(f"{weights.parent}: no complete training state to resume from ({weights.name} missing).")
    payload = _read_embedded(weights)
    if payload.get("format") != "attnmel-training-state":
        raise CheckpointError(f"{weights}: not an attnmel training state.")
    try:
        tensors = load_file(str(weights), device="cpu")
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"{weights}: unreadable training state ({exc}); start a new run.") from None
    return _unflatten(payload["state"], tensors)
