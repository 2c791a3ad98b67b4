"""The package is typed (PEP 561 ``py.typed``) and mypy, configured in pyproject.toml's
``[tool.mypy]``, finds nothing in it: an annotation that drifts from the code fails here."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import resources

import pytest

from .conftest import REPO


def test_the_package_says_it_is_typed_and_ships_the_marker():
    assert resources.files("attnmel").joinpath("py.typed").is_file()
    package_data = re.search(r"\[tool\.setuptools\.package-data\]\nattnmel = \[(.*?)\]", (REPO / "pyproject.toml").read_text())
    assert package_data and '"py.typed"' in package_data.group(1)  # wheels carry the marker too


@pytest.mark.slow
def test_mypy_finds_no_error_in_the_package():
    pytest.importorskip("mypy", reason="mypy is in the dev extra (pip install 'attnmel[dev]')")
    out = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml")],
                         cwd=REPO, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
    assert "Success: no issues found" in out.stdout
