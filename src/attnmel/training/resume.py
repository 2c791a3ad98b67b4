"""Resuming a run: which config it continues with, and what a resumed run may change.

A run folder's ``last-state.safetensors`` holds the config it was started with. ``--resume``
without ``--config`` continues with that config plus ``--set`` overrides, applied by the same
``apply_overrides`` and checked by the same ``config_from_dict`` as a new run's, so a typo or a
bad value fails the same way, before any image is read. Only ``RESUME_MAY_CHANGE`` may differ
from the run's own config: its length, and how (not which) input batches are made.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from attnmel.arguments import check_path_name
from attnmel.checkpoints.format import training_state_config
from attnmel.config import Config, apply_overrides, config_from_dict, load_config, resolve_config_path
from attnmel.data.splits import SPLIT_FILE, SplitRecord
from attnmel.errors import AttnmelError, ConfigError
from attnmel.outputs import check_output_dir

STATE_FILE = "last-state.safetensors"
#: the config a run writes into its folder (the resolved one: presets and --set applied)
CONFIG_FILE = "config.yaml"
#: what a resumed run may change: its length, and how fast this machine runs it (a later session may
#: have more cores), never what it learns from or how
RESUME_MAY_CHANGE = (("train", "epochs"), ("train", "threads"), ("data", "num_workers"), ("data", "pipeline"),
                     ("data", "cache"), ("data", "cache_dir"))


def saved_config(payload: dict[str, Any], source: str | Path) -> Config:
    """The config a training state was started with. attnmel 0.1.0 recorded the attention options on
    every model; they are dropped for models that do not take them."""
    from attnmel.models.registry import model_entry

    payload = dict(payload)
    model = dict(payload.get("model") or {})
    try:
        options = model_entry(model.get("name", "attnmel")).options
    except ConfigError:
        options = ()
    for key in ("normalize", "attention_channels"):
        if key not in options:
            model.pop(key, None)
    payload["model"] = model
    return config_from_dict(payload, str(source))


def run_config(output_dir: str | Path, overrides: list[str] | None = None) -> Config:
    """The config a run folder was started with, plus ``overrides`` (for ``--resume`` without ``--config``)."""
    path = Path(output_dir) / STATE_FILE
    config = saved_config(training_state_config(path), path)
    return config_from_dict(apply_overrides(config.to_dict(), overrides), f"{path} with --set")


def run_to_start(config: str | None, output_dir: str | Path | None, overrides: list[str] | None = None,
                 resume: bool = False) -> tuple[Config, Path]:
    """The config and run folder of ``attnmel train``: ``config`` (a YAML file or preset) plus ``overrides``,
    or, resuming without one, the run folder's own config; the folder defaults to ``runs/<name>[-foldK]``."""
    if config:
        resolved = load_config(config, overrides)
    elif resume and output_dir:
        resolved = run_config(output_dir, overrides)
    else:
        raise ConfigError("--config is required (a YAML file or a preset such as isic2017/attnmel); "
                          "to resume, give --output RUN --resume.")
    fold = f"-fold{resolved.data.fold}" if resolved.data.folds else ""
    if not output_dir:
        check_path_name(resolved.name, f"{config}: name (the run's folder runs/<name> without --output)",
                        "set name to a plain name (letters, digits, - _ .), or give --output")
    output = Path(output_dir) if output_dir else Path("runs") / f"{resolved.name}{fold}"
    written = output / CONFIG_FILE
    if config and not resume and written.exists() and written.resolve() == resolve_config_path(config).resolve():
        raise ConfigError(f"--config {config} is the {CONFIG_FILE} a new run writes into {output}, so the run would "
                          "write over what it reads; name another --output, or move the config out of it.")
    return resolved, output


def check_new_run_folder(output_dir: str | Path) -> None:
    """A new run writes only into a new or empty folder, or over an earlier run that stopped before its
    first checkpoint (its ``split.json`` says so): never over a user's own files that share a name with
    what a run writes (``metrics.csv``, ``config.yaml``, ...). A run that has a checkpoint is refused
    separately (``--resume``)."""
    folder = check_output_dir(output_dir)
    if not folder.is_dir():
        return
    found = sorted(entry.name for entry in folder.iterdir())
    if not found:
        return
    try:
        SplitRecord.read(folder / SPLIT_FILE)
        return  # an earlier run's folder: starting it again replaces only what that run wrote
    except (AttnmelError, OSError):
        pass
    shown = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
    raise ConfigError(f"--output {folder}: holds files that no attnmel training run wrote ({shown}), which a new run "
                      "could write over; give a new or empty folder as --output (or --resume to continue a run).")


def resumable_config(requested: Config, saved_payload: dict[str, Any], output_dir: Path) -> Config:
    """The run's own config; only ``RESUME_MAY_CHANGE`` may differ on resume."""
    saved = saved_config(saved_payload, output_dir / STATE_FILE)
    mine, theirs = requested.to_dict(), saved.to_dict()
    for section, key in RESUME_MAY_CHANGE:
        mine[section][key] = theirs[section][key]
    if mine != theirs:
        differing = [f"{section}.{key}" for section in theirs if isinstance(theirs[section], dict)
                     for key in theirs[section] if mine[section].get(key) != theirs[section][key]]
        differing += [key for key in theirs if not isinstance(theirs[key], dict) and mine[key] != theirs[key]]
        raise ConfigError(
            f"{output_dir}: the config differs from the run's own ({', '.join(differing)}); resume with the run's "
            "config (omit --config) and change only train.epochs (or train.threads, data.num_workers, pipeline, "
            "cache, cache_dir)."
        )
    for section, key in RESUME_MAY_CHANGE:
        setattr(getattr(saved, section), key, getattr(getattr(requested, section), key))
    return saved
