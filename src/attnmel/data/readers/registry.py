"""``@register_layout``, ``detect_layout`` and ``read_dataset``: one name selects one dataset layout, as
``@register_model`` selects one architecture.

Each layout registers its reader in a module of its own (``attnmel/data/readers/<layout>.py``) with
how to recognise the folder and which ground truth it carries; detection, the ``Layout`` choices,
``LAYOUT_SOURCES`` and the reader dispatch are all read from here, so adding a layout is one new
file, which the parametrised tests in ``tests/test_readers_layouts.py`` then cover.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from attnmel.data.readers.common import Reading, ReadSplits
from attnmel.data.records import TASKS, DatasetIndex, Task, get_task
from attnmel.errors import DataError

Reader = Callable[[Path, Task, Reading], ReadSplits]


@dataclass(frozen=True)
class LayoutEntry:
    name: str
    reader: Reader
    #: True when ``root`` (a folder, or a file for single-file layouts) is this layout; None: never
    #: detected, only chosen by name
    detect: Callable[[Path], bool] | None
    #: the task sources whose classes its ground truth carries (None: any, by class name)
    sources: tuple[str, ...] | None
    #: what the folder holds, for the message when no layout is recognised
    expects: str
    #: detection order: lower first (generic layouts such as a bare metadata.csv go last)
    priority: int
    #: what the images are (``data check`` says so when they are not dermoscopy)
    modality: str


_REGISTRY: dict[str, LayoutEntry] = {}


def register_layout(
    name: str,
    *,
    detect: Callable[[Path], bool] | None,
    sources: tuple[str, ...] | None,
    expects: str = "",
    priority: int = 50,
    modality: str = "dermoscopy",
) -> Callable[[Reader], Reader]:
    """Register ``reader(root, task, reading) -> {split: [Sample, ...]}`` under ``name``."""

    def decorate(reader: Reader) -> Reader:
        if name in _REGISTRY:
            raise ValueError(f"layout {name!r} is registered twice")
        _REGISTRY[name] = LayoutEntry(name, reader, detect, sources, expects, priority, modality)
        return reader

    return decorate


def list_layouts() -> list[str]:
    return list(_REGISTRY)


def layout_entry(name: str, root: Path | None = None) -> LayoutEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise DataError(root, f"unknown layout {name!r}.", f"use one of {tuple(_REGISTRY)}.") from None


def detect_layout(root: Path) -> str:
    root = Path(root)
    if not root.exists():
        raise DataError(root, "dataset folder not found.", "check the path given with --data.")
    detectable = sorted((e for e in _REGISTRY.values() if e.detect is not None), key=lambda e: e.priority)
    for entry in detectable:
        if entry.detect is not None and entry.detect(root):
            return entry.name
    if root.is_file():
        raise DataError(root, "a single file is not a dataset.", "pass a dataset folder or a manifest CSV.")
    expected = [entry.expects for entry in detectable if entry.expects]
    raise DataError(
        root,
        f"not a recognised dataset layout (expected {', '.join(expected[:-1])}, or {expected[-1]})."
        if any(root.iterdir()) else "the folder is empty.",
        "point --data at the folder you downloaded, or write a manifest CSV (see README: Data).",
    )


def read_dataset(
    root: str | Path,
    task: str | Task = "melanoma",
    *,
    layout: str | None = None,
    skip_bad: bool = False,
    dataset: str | None = None,
) -> DatasetIndex:
    """Read any supported layout into a ``DatasetIndex``.

    With ``skip_bad`` unusable entries (an ID without image, an image without label...) are
    left out and recorded in ``problems`` instead of raising. Every sample's ``dataset`` is
    ``dataset`` (default: the layout's name).
    """
    root = Path(root)
    task = get_task(task) if isinstance(task, str) else task
    entry = layout_entry(layout or detect_layout(root), root)
    reading = Reading(skip_bad)
    check_task_fits(root, entry.name, task)
    splits = entry.reader(root, task, reading)
    splits = {name: samples for name, samples in splits.items() if samples or not reading.skip_bad}
    if not any(splits.values()):
        raise DataError(root, "no labelled images found.", "check that images and ground-truth files are in place.")
    for sample in (sample for samples in splits.values() for sample in samples):
        sample.dataset = dataset or entry.name
    return DatasetIndex(
        root=root, layout=entry.name, task=task, splits=splits, problems=reading.problems,
        duplicates=reading.duplicates, left_out={split: dict(counts) for split, counts in reading.left_out.items()},
        modality=entry.modality,
    )


def check_task_fits(root: Path, layout: str, task: Task) -> None:
    """A task that takes its classes from one dataset's ground truth reads only layouts that carry it."""
    sources = layout_entry(layout, root).sources
    if task.source is None or sources is None or task.source in sources:
        return
    fitting = [name for name, other in TASKS.items() if other.source is None or other.source in sources]
    raise DataError(
        root,
        f"task {task.name!r} takes its classes from the {task.source} ground truth, which this {layout} dataset "
        "does not have.",
        f"use task {' or '.join(repr(name) for name in fitting)}.",
    )
