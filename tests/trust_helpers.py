"""Trust fields for tests: OOD detectors fitted on random features, one of them flagging every image."""

from __future__ import annotations

import dataclasses

import numpy as np

from attnmel.checkpoints.trust import OodDetector
from attnmel.evaluation.trust import DetectorData, fit_ood


def random_detector(dim: int, inputs: tuple[str, ...] = ("features",)) -> OodDetector:
    """A detector fitted on standard normal features of ``dim`` values (and image statistics when asked)."""
    rng = np.random.default_rng(0)

    def data(n: int) -> DetectorData:
        return DetectorData(rng.normal(size=(n, dim)), rng.normal(size=(n, 14)), None, "random")

    return fit_ood(data(60), data(20), inputs=inputs, components=4)


def flagging_detector(dim: int) -> OodDetector:
    """A detector whose thresholds (0) flag every image: for the doors' tests of a flagged answer."""
    detector = random_detector(dim)
    return dataclasses.replace(detector, parts=tuple(dataclasses.replace(p, threshold=0.0) for p in detector.parts))
