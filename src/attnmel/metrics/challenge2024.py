"""The metrics of the ISIC 2024 challenge (SLICE-3D).

* **pAUC above a minimum TPR** (``p_auc_tpr`` of ISIC-Research/Challenge-2024-Metrics): the area
  of the ROC curve's region where sensitivity is at least ``min_tpr``, i.e. the integral over
  TPR in [min_tpr, 1] of (1 - FPR), the curve being linear between its operating points. It ranges
  over [0, 1 - min_tpr]: 0.2 at most with the Kaggle leaderboard's 0.80, 0.12 with the challenge
  site's 0.88. The challenge computes it by flipping labels and scores and cutting scikit-learn's
  ROC at FPR = 1 - min_tpr; the same area is computed here straight from the (resampled) scores,
  vectorised over a leading axis so that the stratified bootstrap of ``attnmel.metrics.intervals``
  evaluates every resample at once (scikit-learn's ``roc_auc_score(max_fpr=)`` bounds FPR, not TPR,
  and is McClish-standardised, so it cannot serve). The tests check it against the challenge's
  definition to 1e-9 on random and tied scores.
* **Top-k retrieval sensitivity per patient** (k = 15, the secondary metric): for each patient
  with at least one positive lesion, the share of their positives among their k highest-scored
  lesions; the mean over those patients.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from attnmel.errors import ConfigError

#: the Kaggle leaderboard's minimum sensitivity (the challenge site used 0.88)
DEFAULT_MIN_TPR = 0.80
#: lesions per patient the secondary metric looks at
TOP_K = 15


def check_min_tpr(min_tpr: float) -> float:
    if not (isinstance(min_tpr, int | float) and 0 <= min_tpr < 1):
        raise ConfigError(f"--min-tpr must be at least 0 and below 1 (e.g. 0.8 or 0.88), not {min_tpr!r}.")
    return float(min_tpr)


def batch_partial_auc_above_tpr(score: np.ndarray, positive: np.ndarray, min_tpr: float = DEFAULT_MIN_TPR) -> np.ndarray:
    """pAUC above ``min_tpr`` of each row of (..., N) scores; NaN where a row lacks a class.

    The ROC's operating points are the ends of the tie groups of the scores sorted high first; the
    cumulative counts inside a tie group are replaced by the group's end, so each step from one
    position to the next is either a whole segment of the curve or of length zero."""
    score = np.asarray(score, dtype=float)
    positive = np.asarray(positive, dtype=bool)
    order = np.argsort(-score, axis=-1, kind="stable")
    ranked = np.take_along_axis(score, order, axis=-1)
    hits = np.take_along_axis(positive, order, axis=-1)
    n = score.shape[-1]
    last_of_ties = np.ones(ranked.shape, dtype=bool)
    last_of_ties[..., :-1] = ranked[..., 1:] != ranked[..., :-1]
    group_end = np.minimum.accumulate(np.where(last_of_ties, np.arange(n), n)[..., ::-1], axis=-1)[..., ::-1]
    true_pos = np.take_along_axis(np.cumsum(hits, axis=-1), group_end, axis=-1)
    false_pos = (group_end + 1) - true_pos
    n_pos = positive.sum(axis=-1, keepdims=True)
    n_neg = n - n_pos
    zeros = np.zeros((*score.shape[:-1], 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = np.concatenate([zeros, true_pos / n_pos], axis=-1)
        fpr = np.concatenate([zeros, false_pos / n_neg], axis=-1)
        t0, t1, f0, f1 = tpr[..., :-1], tpr[..., 1:], fpr[..., :-1], fpr[..., 1:]
        start = np.maximum(t0, min_tpr)
        f_start = f0 + (start - t0) / (t1 - t0) * (f1 - f0)
        area = np.where(t1 > start, (t1 - start) * (1 - (f_start + f1) / 2), 0.0).sum(axis=-1)
    return np.where((n_pos[..., 0] > 0) & (n_neg[..., 0] > 0), area, math.nan)


def partial_auc_above_tpr(y_true: Sequence[int], score: Sequence[float], min_tpr: float = DEFAULT_MIN_TPR) -> float:
    """pAUC above ``min_tpr`` of ``score`` for the 0/1 labels ``y_true`` (NaN without both classes)."""
    return float(batch_partial_auc_above_tpr(np.asarray(score, dtype=float)[None], np.asarray(y_true).astype(bool)[None],
                                             check_min_tpr(min_tpr))[0])


def top_k_sensitivity(y_true: Sequence[int], score: Sequence[float], patients: Sequence[str], k: int = TOP_K) -> float:
    """Mean over patients with a positive of the share of their positives among their ``k`` highest
    scores (ties broken by order of appearance); NaN when no patient has a positive."""
    frame_y = np.asarray(y_true).astype(bool)
    frame_s = np.asarray(score, dtype=float)
    patients = np.asarray(patients)
    shares = []
    for patient in np.unique(patients[frame_y]):
        mine = np.flatnonzero(patients == patient)
        top = mine[np.argsort(-frame_s[mine], kind="stable")[:k]]
        shares.append(frame_y[top].sum() / frame_y[mine].sum())
    return float(np.mean(shares)) if shares else math.nan
