"""Atomic writes and run folders, without importing attnmel (the parent process stays light)."""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_text(path: Path, text: str) -> None:
    """Atomic: a run killed mid-write leaves the previous file (the library's helper needs no import here)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json(path: Path, payload) -> None:
    write_text(path, json.dumps(payload, indent=2, default=str) + "\n")


def completed_epochs(run: Path) -> int:
    metrics = run / "metrics.csv"
    return max(sum(1 for _ in metrics.open()) - 1, 0) if metrics.is_file() else 0
