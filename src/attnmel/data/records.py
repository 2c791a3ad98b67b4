"""What a dataset is once read: samples paired by image ID, split by name, labelled for a task."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from attnmel.errors import DataError


@dataclass(frozen=True)
class Task:
    """A labelling of ISIC diagnoses.

    ``score_columns`` are the probability columns of the ISIC scorer format: the 2017 challenge
    scored melanoma and seborrheic keratosis, each against the rest.
    """

    name: str
    class_names: tuple[str, ...]
    score_columns: tuple[str, ...]
    positive_class: str = "melanoma"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def positive_index(self) -> int:
        return self.class_names.index(self.positive_class)

    def label_from_flags(self, melanoma: bool, seborrheic_keratosis: bool | None) -> int | None:
        """Class index from the ISIC ground-truth flags; None when the task cannot tell."""
        if self.name == "melanoma":
            return 1 if melanoma else 0
        if seborrheic_keratosis is None:
            return None
        if melanoma and seborrheic_keratosis:
            return None
        return 1 if melanoma else 2 if seborrheic_keratosis else 0


TASKS: dict[str, Task] = {
    "melanoma": Task("melanoma", ("other", "melanoma"), ("melanoma",)),
    "isic2017-3class": Task(
        "isic2017-3class", ("nevus", "melanoma", "seborrheic_keratosis"), ("melanoma", "seborrheic_keratosis")
    ),
}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        from attnmel.errors import ConfigError

        raise ConfigError(f"Unknown task {name!r}; choose one of {sorted(TASKS)}.") from None


@dataclass
class Sample:
    """One labelled image and the optional masks that belong to it (paired by ``image_id``)."""

    image_id: str
    image_path: Path
    label: int
    split: str
    mask_path: Path | None = None
    #: dermoscopic-feature masks, ISIC 2018 Task 2 format: feature name -> PNG
    attribute_paths: dict[str, Path] = field(default_factory=dict)
    #: ISIC 2017 Part 2 format: (superpixel PNG, features JSON)
    superpixel_paths: tuple[Path, Path] | None = None


@dataclass
class Problem:
    """A non-fatal finding while reading (a file skipped on the user's request, a missing mask...)."""

    path: Path | None
    kind: str
    message: str

    def to_dict(self) -> dict[str, str | None]:
        return {"path": None if self.path is None else str(self.path), "kind": self.kind, "message": self.message}


@dataclass
class DatasetIndex:
    root: Path
    layout: str
    task: Task
    splits: dict[str, list[Sample]]
    problems: list[Problem] = field(default_factory=list)

    def split(self, name: str) -> list[Sample]:
        if name not in self.splits:
            raise DataError(
                self.root,
                f"this {self.layout} dataset has no split {name!r} (it has {sorted(self.splits)}).",
                "choose an existing split, or set data.val_fraction to carve validation from training.",
            )
        return self.splits[name]

    def summary(self) -> dict:
        """Counts per split and class, and masks present/missing."""
        out: dict = {"root": str(self.root), "layout": self.layout, "task": self.task.name, "splits": {}}
        for name, samples in self.splits.items():
            counts = Counter(s.label for s in samples)
            with_mask = sum(s.mask_path is not None for s in samples)
            out["splits"][name] = {
                "images": len(samples),
                "classes": {cls: counts.get(i, 0) for i, cls in enumerate(self.task.class_names)},
                "masks_present": with_mask,
                "masks_missing": len(samples) - with_mask,
                "attribute_masks": sum(bool(s.attribute_paths) or s.superpixel_paths is not None for s in samples),
            }
        return out
