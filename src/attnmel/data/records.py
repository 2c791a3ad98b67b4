"""What a dataset is once read: samples paired by image ID, split by name, labelled for a task."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from attnmel.errors import DataError

#: what grouped splits may keep together: images of one lesion, or of one patient
GroupColumn = Literal["lesion_id", "patient_id"]
GROUP_COLUMNS: tuple[str, ...] = get_args(GroupColumn)
#: what a grouped split keeps on one side: a dataset's group column, or "photograph" (each image with
#: its near-identical copies, for datasets that list no lesions, such as ISIC 2017)
GroupBy = Literal["lesion_id", "patient_id", "photograph"]
GROUP_BY: tuple[str, ...] = get_args(GroupBy)
#: joins split names into one pool: ``train+val`` is both splits (cross-validation over all labelled images)
SPLIT_JOINER = "+"
#: how a run chooses validation (``attnmel.data.splits``); "auto": the dataset's validation split
#: when it has one, else a stratified share of training
SplitMode = Literal["auto", "official", "fraction", "grouped"]
SPLIT_MODES: tuple[str, ...] = get_args(SplitMode)


@dataclass(frozen=True)
class Task:
    """A labelling of ISIC diagnoses.

    ``score_columns`` are the probability columns of the ISIC scorer format, the positive class
    first: the 2017 challenge scored melanoma and seborrheic keratosis, each against the rest; the
    2018 and 2019 challenges score every class. A task with a ``source`` takes its classes from
    that dataset's ground truth, by name, in the order of its header (a reader checks the header
    holds exactly these classes); ``left_out`` classes are read, counted and reported, never trained
    or scored (ISIC 2019's ``UNK``). A task without a source is melanoma vs rest, which every layout
    can tell.
    """

    name: str
    class_names: tuple[str, ...]
    score_columns: tuple[str, ...]
    positive_class: str = "melanoma"
    source: str | None = None
    left_out: tuple[str, ...] = ()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def positive_index(self) -> int:
        return self.class_names.index(self.positive_class)

    @property
    def dataset_classes(self) -> tuple[str, ...]:
        """Every class the source's ground truth names, including those the task leaves out."""
        return self.class_names + self.left_out

    def label_from_flags(self, melanoma: bool, seborrheic_keratosis: bool | None) -> int | None:
        """Class index from the ISIC 2016/2017 ground-truth flags; None when the task cannot tell."""
        if self.source not in (None, "isic2017"):
            return None
        if self.name == "melanoma":
            return 1 if melanoma else 0
        if seborrheic_keratosis is None:
            return None
        if melanoma and seborrheic_keratosis:
            return None
        return 1 if melanoma else 2 if seborrheic_keratosis else 0

    def label_from_class(self, dataset_class: str, melanoma: bool) -> int | None:
        """Class index of an image whose ground truth names ``dataset_class`` (the source's own class
        name) and says whether it is a melanoma; None when the task leaves that class out."""
        if self.source is None:
            return 1 if melanoma else 0
        if dataset_class in self.class_names:
            return self.class_names.index(dataset_class)
        return None


ISIC2018_CLASSES = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")
ISIC2019_CLASSES = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC")

TASKS: dict[str, Task] = {
    "melanoma": Task("melanoma", ("other", "melanoma"), ("melanoma",)),
    "isic2017-3class": Task(
        "isic2017-3class", ("nevus", "melanoma", "seborrheic_keratosis"), ("melanoma", "seborrheic_keratosis"),
        source="isic2017",
    ),
    "isic2018-7class": Task("isic2018-7class", ISIC2018_CLASSES, ISIC2018_CLASSES, "MEL", source="isic2018"),
    "isic2019-8class": Task("isic2019-8class", ISIC2019_CLASSES, ISIC2019_CLASSES, "MEL", source="isic2019",
                            left_out=("UNK",)),
    "isic2020-binary": Task("isic2020-binary", ("benign", "malignant"), ("malignant",), "malignant",
                            source="isic2020"),
    # ISIC 2024 (SLICE-3D): ``target`` is malignant vs benign (basal and squamous cell carcinoma count as malignant)
    "isic2024-binary": Task("isic2024-binary", ("benign", "malignant"), ("malignant",), "malignant",
                            source="isic2024"),
    # PH2's Clinical Diagnosis: 0 common nevus, 1 atypical nevus, 2 melanoma
    "ph2-3class": Task("ph2-3class", ("common_nevus", "atypical_nevus", "melanoma"), ("melanoma", "atypical_nevus"),
                       source="ph2"),
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
    #: what the dataset says belongs together (``GROUP_COLUMNS``: lesion_id, patient_id), where it says so
    groups: dict[str, str] = field(default_factory=dict)
    #: the dataset the record was read from (``read_dataset`` sets the layout's name, or the name the caller
    #: gives), so records of several datasets can be told apart once mixed; None for records built by hand
    dataset: str | None = None
    #: image-level criteria the dataset labels (Derm7pt's seven-point checklist, PH2's dermoscopic features)
    criteria: dict[str, str] = field(default_factory=dict)


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
    #: image-ID pairs the dataset itself lists as duplicates (ISIC 2020): never split apart
    duplicates: list[tuple[str, str]] = field(default_factory=list)
    #: images read but left out of the task, per split and dataset class (ISIC 2019 UNK)
    left_out: dict[str, dict[str, int]] = field(default_factory=dict)
    #: what the images are; ``summary`` says so when they are not dermoscopy (ISIC 2024's total-body crops)
    modality: str = "dermoscopy"

    def split(self, name: str) -> list[Sample]:
        """One split, or several joined by ``+`` (``train+val``), in the order named."""
        parts = name.split(SPLIT_JOINER)
        missing = [part for part in parts if part not in self.splits]
        if missing or len(set(parts)) != len(parts):
            raise DataError(
                self.root,
                f"this {self.layout} dataset has no split {name!r} (it has {sorted(self.splits)}).",
                "choose an existing split (or several joined by +, each once, e.g. train+val), or set "
                "data.val_fraction to carve validation from training.",
            )
        return [sample for part in parts for sample in self.splits[part]]

    def summary(self) -> dict:
        """Counts per split and class, masks present/missing, groups, and images left out of the task."""
        out: dict = {"root": str(self.root), "layout": self.layout, "task": self.task.name, "splits": {}}
        if self.modality != "dermoscopy":
            out["modality"] = self.modality
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
            groups = {column: len({s.groups[column] for s in samples if column in s.groups}) for column in GROUP_COLUMNS}
            if any(groups.values()):
                out["splits"][name]["groups"] = {column: n for column, n in groups.items() if n}
            if self.left_out.get(name):
                out["splits"][name]["left_out"] = dict(self.left_out[name])
            criteria: dict[str, Counter[str]] = {}
            for sample in samples:
                for criterion, value in sample.criteria.items():
                    criteria.setdefault(criterion, Counter())[value] += 1
            if criteria:
                out["splits"][name]["criteria"] = {c: dict(sorted(v.items())) for c, v in criteria.items()}
        for name, counts in self.left_out.items():
            if name not in out["splits"]:
                out["splits"][name] = {"images": 0, "classes": {}, "masks_present": 0, "masks_missing": 0,
                                       "attribute_masks": 0, "left_out": dict(counts)}
        return out
