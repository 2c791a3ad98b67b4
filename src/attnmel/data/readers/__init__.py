"""Readers for datasets as users download them: images and masks are paired by image ID, never by position.

Each layout is one module here that registers its reader with ``@register_layout`` (``registry.py``);
every module of the package is imported below, so a new layout is one new file. Layouts are detected
from the folder (``detect_layout``) or named explicitly (``LAYOUTS``): the ISIC 2016-2020 and 2024
releases, HAM10000, PH2, Derm7pt (and its clinical view), isic-cli folders and manifest CSVs.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Literal

from attnmel.data.readers.registry import (
    LayoutEntry,
    check_task_fits,
    detect_layout,
    layout_entry,
    list_layouts,
    read_dataset,
    register_layout,
)

for _module in sorted(pkgutil.iter_modules(__path__), key=lambda module: module.name):
    if _module.name not in ("common", "registry"):
        importlib.import_module(f"{__name__}.{_module.name}")

#: every registered layout, in detection order
LAYOUTS: tuple[str, ...] = tuple(sorted(list_layouts(), key=lambda name: layout_entry(name).priority))
#: the layout choices as a type (``config.py`` validates ``data.layout`` against it)
Layout = Literal[LAYOUTS]  # type: ignore[valid-type]
#: the ground truth each layout carries, i.e. the task sources it can label (None: any, by class name)
LAYOUT_SOURCES: dict[str, tuple[str, ...] | None] = {name: layout_entry(name).sources for name in LAYOUTS}

__all__ = [
    "LAYOUTS", "LAYOUT_SOURCES", "Layout", "LayoutEntry", "check_task_fits", "detect_layout", "layout_entry",
    "list_layouts", "read_dataset", "register_layout",
]
