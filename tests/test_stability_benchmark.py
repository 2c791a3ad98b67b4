"""benchmarks/stability.py (issue 20): |dP| under +-1 grey-level noise and JPEG q90, for any checkpoint."""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import benchmark_script


@pytest.fixture(scope="module")
def stability():
    yield from benchmark_script("stability")


def test_perturbations_change_every_pixel_by_one_level_or_re_encode(stability):
    image = np.random.default_rng(0).integers(1, 255, (40, 50, 3), dtype=np.uint8)
    noisy = stability.plus_minus_one(image, np.random.default_rng(1))
    assert np.array_equal(np.abs(noisy.astype(int) - image), np.ones_like(image, dtype=int))
    assert np.array_equal(stability.shifted(image, 1).astype(int) - image, np.ones_like(image, dtype=int))
    again = stability.jpeg_again(image)
    assert again.shape == image.shape and not np.array_equal(again, image)


def test_the_table_for_any_checkpoint(stability, tiny_checkpoint, capsys):
    data = tiny_checkpoint.parents[1] / "data"
    assert stability.main(["--checkpoint", str(tiny_checkpoint), "--data", str(data), "--limit", "4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "class flips at default 0.5 (no operating point stored in the checkpoint)" in lines[0]
    assert "| perturbation | images | max abs dP | p95 abs dP | class flips |" in lines
    rows = [line.split("|")[1:-1] for line in lines if line.startswith("| ") and "images |" not in line]
    assert [r[0].strip() for r in rows] == ["+-1 grey level (x1)", "+1 / -1 everywhere", "JPEG q90"]
    for _, images, largest, p95, _ in rows:
        assert int(images) == 4 and 0 <= float(p95) <= float(largest) <= 1
