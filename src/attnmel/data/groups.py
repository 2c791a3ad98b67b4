"""Which images belong together: one lesion, one patient, or photographs a dataset lists as duplicates.

Several photographs of one lesion (HAM10000, ISIC 2019) or of one patient (ISIC 2020) on both
sides of a split inflate every validation metric. Grouped splits keep each group on one side, and
the leak detector (``attnmel.data.leaks``) finds groups on two sides, for a run and for
``attnmel data check``. No torch here: ``data check`` uses it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from attnmel.data.records import Sample


def group_labels(samples: Sequence[Sample], group_by: str, duplicates: Iterable[tuple[str, str]] = ()) -> np.ndarray:
    """One integer per sample; two samples share it when they share a ``group_by`` value or are listed
    duplicates of each other, transitively. A sample without a value is a group of its own (unless a
    listed duplicate joins it to one)."""
    n = len(samples)
    rows: list[int] = []
    cols: list[int] = []
    first: dict[str, int] = {}
    for i, sample in enumerate(samples):
        value = sample.groups.get(group_by)
        if value is not None:
            rows.append(i)
            cols.append(first.setdefault(value, i))
    position = {sample.image_id: i for i, sample in enumerate(samples)}
    for a, b in duplicates:
        if a in position and b in position:
            rows.append(position[a])
            cols.append(position[b])
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels


def ungrouped(samples: Sequence[Sample], group_by: str) -> int:
    """How many samples carry no ``group_by`` value (each is then a group of its own)."""
    return sum(group_by not in sample.groups for sample in samples)

