"""ROC and precision-recall curves as PNG files (matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn import metrics as skm  # noqa: E402

from attnmel.io import atomic_path  # noqa: E402


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
