"""Wheels carried beside the code, installed without an index before anything imports them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .settings import SuiteError


def install_wheels(folder: Path, target: Path) -> None:
    wheels = sorted(folder.glob("*.whl"))
    if not wheels:
        raise SuiteError(f"{folder}: no .whl files; run `python benchmarks/gpu_prepare.py --wheels` beside the code "
                         "and carry .whl, or leave out --wheels.")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--no-cache-dir", "--upgrade", "--target", str(target), *map(str, wheels)], check=True)
