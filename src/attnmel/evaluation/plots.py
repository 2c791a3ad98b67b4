"""ROC, precision-recall and reliability curves, and the confusion matrix, as PNG files (matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn import metrics as skm  # noqa: E402

from attnmel.io import atomic_path  # noqa: E402
from attnmel.metrics.calibration import reliability_bins  # noqa: E402


def _save(figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)
    return path


def roc_and_pr_curves(
    labels: np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    score_columns: Sequence[str],
    output_dir: Path,
    title: str = "",
) -> dict[str, Path]:
    """Write ``roc.png`` and ``pr.png`` with one curve per scored class."""
    fig_roc, ax_roc = plt.subplots(figsize=(4.5, 4.5))
    fig_pr, ax_pr = plt.subplots(figsize=(4.5, 4.5))
    for column in score_columns:
        index = list(class_names).index(column)
        y = (np.asarray(labels) == index).astype(int)
        score = probabilities[:, index]
        if 0 < y.sum() < len(y):
            fpr, tpr, _ = skm.roc_curve(y, score)
            ax_roc.plot(fpr, tpr, label=f"{column} (AUC {skm.roc_auc_score(y, score):.3f})")
            precision, recall, _ = skm.precision_recall_curve(y, score)
            ax_pr.plot(recall, precision, label=f"{column} (AP {skm.average_precision_score(y, score):.3f})")
    ax_roc.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    ax_roc.set(xlabel="1 - specificity", ylabel="sensitivity", title=f"ROC {title}".strip(), xlim=(0, 1), ylim=(0, 1.01))
    ax_pr.set(xlabel="recall (sensitivity)", ylabel="precision", title=f"Precision-recall {title}".strip(),
              xlim=(0, 1), ylim=(0, 1.01))
    for ax in (ax_roc, ax_pr):
        ax.legend(loc="lower right" if ax is ax_roc else "upper right", fontsize=8)
        ax.grid(alpha=0.3)
    return {"roc": _save(fig_roc, output_dir / "roc.png"), "pr": _save(fig_pr, output_dir / "pr.png")}


def reliability_diagram(
    labels: np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    score_columns: Sequence[str],
    output_dir: Path,
    n_bins: int,
    title: str = "",
) -> dict[str, Path]:
    """Write ``reliability.png``: observed frequency vs mean predicted probability per bin, one curve per
    scored class, with the sample count per bin below (equal-width bins, as in ``calibration.py``)."""
    figure, (ax, ax_count) = plt.subplots(
        2, 1, figsize=(4.5, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8, label="perfect calibration")
    width = 1.0 / n_bins / max(len(score_columns), 1)
    for offset, column in enumerate(score_columns):
        index = list(class_names).index(column)
        bins = reliability_bins(probabilities[:, index], np.asarray(labels) == index, n_bins)
        filled = bins.counts > 0
        ax.plot(bins.mean_confidence[filled], bins.frequency[filled], marker="o", label=f"{column} (ECE {bins.ece:.3f})")
        ax_count.bar(bins.edges[:-1] + offset * width, bins.counts, width=width, align="edge", label=column)
    ax.set(ylabel="observed frequency", title=f"Reliability {title}".strip(), xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    ax_count.set(xlabel=f"predicted probability ({n_bins} equal-width bins)", ylabel="images")
    ax_count.grid(alpha=0.3)
    return {"reliability": _save(figure, output_dir / "reliability.png")}


def confusion_matrix_plot(
    matrix: Sequence[Sequence[int]], class_names: Sequence[str], output_dir: Path, title: str = ""
) -> dict[str, Path]:
    """Write ``confusion.png``: counts (rows: true class, columns: predicted), shaded by the share of
    each true class, so a rare class reads as clearly as a common one."""
    counts = np.asarray(matrix, dtype=int)
    support = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, support, out=np.zeros(counts.shape), where=support > 0)
    size = 1.2 + 0.55 * len(class_names)
    figure, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (row, col), value in np.ndenumerate(counts):
        ax.text(col, row, str(value), ha="center", va="center", fontsize=8,
                color="white" if shares[row, col] > 0.5 else "black")
    ticks = range(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=45, ha="right")
    ax.set_yticks(ticks, class_names)
    ax.set(xlabel="predicted class", ylabel="true class", title=f"Confusion {title}".strip())
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    return {"confusion": _save(figure, output_dir / "confusion.png")}
