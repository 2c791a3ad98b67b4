"""``attnmel data check``: what a dataset holds and which of its files cannot be used."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from attnmel.data.images import read_image, read_mask
from attnmel.data.readers import read_dataset
from attnmel.data.records import DatasetIndex, Problem
from attnmel.errors import DataError


@dataclass
class CheckReport:
    index: DatasetIndex
    unreadable: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.unreadable

    def to_dict(self) -> dict:
        summary = self.index.summary()
        summary["unreadable"] = [p.to_dict() for p in self.unreadable]
        summary["notes"] = [p.to_dict() for p in self.index.problems]
        summary["ok"] = self.ok
        return summary

    def to_text(self) -> str:
        summary = self.index.summary()
        lines = [f"{summary['root']}  (layout: {summary['layout']}, task: {summary['task']})"]
        for name, split in summary["splits"].items():
            classes = ", ".join(f"{cls} {n}" for cls, n in split["classes"].items())
            lines.append(
                f"  {name:<6} {split['images']:>6} images ({classes}); masks {split['masks_present']} present, "
                f"{split['masks_missing']} missing"
            )
        for problem in self.index.problems:
            lines.append(f"  note: {problem.path}: {problem.message}")
        if self.unreadable:
            lines.append(f"  {len(self.unreadable)} unreadable file(s):")
            lines.extend(f"    {p.path}: {p.message}" for p in self.unreadable)
        else:
            lines.append("  all images and masks decode")
        return "\n".join(lines)


def check_dataset(
    root: str | Path, task: str = "melanoma", *, decode: bool = True, progress: bool = False
) -> CheckReport:
    """Read the layout (tolerating bad entries, which become notes) and try to decode every file."""
    index = read_dataset(root, task, skip_bad=True)
    report = CheckReport(index)
    if not decode:
        return report
    samples = [s for split in index.splits.values() for s in split]
    for sample in tqdm(samples, desc="decoding", unit="img", disable=not progress):
        try:
            size = read_image(sample.image_path).size
        except DataError as exc:
            report.unreadable.append(Problem(sample.image_path, "unreadable_image", exc.problem))
            continue
        for mask in [sample.mask_path, *sample.attribute_paths.values()]:
            if mask is None:
                continue
            try:
                read_mask(mask, size)
            except DataError as exc:
                report.unreadable.append(Problem(mask, "unreadable_mask", exc.problem))
    return report
