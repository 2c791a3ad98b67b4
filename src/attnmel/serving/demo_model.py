"""Where the demo model comes from when ``attnmel serve`` has no ``--checkpoint``. No downloads.

1. ``./demo-output/run/best.safetensors``, if ``make demo`` (``attnmel demo``) ran in the current
   folder: the model its report describes.
2. Otherwise the cached demo model, ``<cache>/demo-model/<attnmel version>/best.safetensors`` with
   ``<cache>`` = ``$ATTNMEL_CACHE``, else ``$XDG_CACHE_HOME/attnmel``, else ``~/.cache/attnmel``.
3. Otherwise it is trained now with the ``demo-serve`` preset on the bundled sample (about a
   minute on 2 CPU cores) and cached for the next start.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from attnmel.checkpoints.format import checkpoint_paths
from attnmel.config import load_config
from attnmel.demo import sample_data_path
from attnmel.training.loop import train
from attnmel.version import __version__

DEMO_PRESET = "demo-serve"
MAKE_DEMO_CHECKPOINT = Path("demo-output") / "run" / "best.safetensors"


def cache_root() -> Path:
    if os.environ.get("ATTNMEL_CACHE"):
        return Path(os.environ["ATTNMEL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "attnmel"


def cached_demo_checkpoint(cache: Path | None = None) -> Path:
    return (cache or cache_root()) / "demo-model" / __version__ / "best.safetensors"


def train_demo_checkpoint(
    target: Path, *, overrides: list[str] | None = None, log: Callable[[str], None] = print
) -> Path:
    """Train the ``demo-serve`` preset and keep only its best model at ``target`` (+ sidecar)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    config = load_config(DEMO_PRESET, overrides)
    log(f"training the demo model ({DEMO_PRESET} preset, bundled sample, CPU; about a minute) -> {target}")
    with tempfile.TemporaryDirectory(prefix=".train-", dir=target.parent) as tmp:
        result = train(config, sample_data_path(), Path(tmp) / "run", progress=False, log=log)
        weights, sidecar = checkpoint_paths(result.best_checkpoint)
        # the sidecar first: a complete .safetensors is what marks the cache entry as ready
        os.replace(sidecar, target.with_suffix(".json"))
        shutil.copyfile(weights, Path(tmp) / "ready.safetensors")
        os.replace(Path(tmp) / "ready.safetensors", target)
    return target


def demo_checkpoint(
    *, cache: Path | None = None, search_make_demo: bool = True, log: Callable[[str], None] = print
) -> Path:
    """The demo model's checkpoint, trained and cached on first use."""
    if search_make_demo and MAKE_DEMO_CHECKPOINT.is_file():
        log(f"serving the demo model written by `make demo`: {MAKE_DEMO_CHECKPOINT.resolve()}")
        return MAKE_DEMO_CHECKPOINT
    cached = cached_demo_checkpoint(cache)
    if cached.is_file():
        log(f"serving the cached demo model: {cached}")
        return cached
    return train_demo_checkpoint(cached, log=log)
