"""The best checkpoint of each quality row, in fp16, within what comes back from the machine."""

from __future__ import annotations

import os
from pathlib import Path

from .settings import RETURNED_FILE_BYTES, RETURNED_FILES


def export_checkpoints(steps: list[dict], work: Path, out: Path) -> list[str]:
    """The best seed's ``best.safetensors`` of each quality row, in fp16 (same metadata), where it fits
    in what comes back from the machine (8 files of 16 MiB); returns one note per row."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    best: dict[str, dict] = {}
    for step in steps:
        r = step["result"]
        if step["kind"] == "quality" and step["status"] == "ok" and "roc_auc" in r:
            if r["row"] not in best or r["roc_auc"] > best[r["row"]]["roc_auc"]:
                best[r["row"]] = r
    notes = []
    for row, r in best.items():
        source = work / "quality" / row / f"seed{r['seed']}" / "best.safetensors"
        target = out / f"{row}-seed{r['seed']}-fp16.safetensors"
        files = [p for p in out.iterdir() if p.is_file() and not p.name.startswith(".")]
        with safe_open(str(source), framework="pt") as handle:
            metadata = handle.metadata()
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118 - safe_open has no __iter__
        halves = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
        size = sum(v.numel() * v.element_size() for v in halves.values())
        if not all(bool(torch.isfinite(v).all()) for v in halves.values() if v.is_floating_point()):
            notes.append(f"{row}: not exported (a weight overflows fp16)")
        elif size > RETURNED_FILE_BYTES * 0.98:
            notes.append(f"{row}: not exported ({size / 2**20:.0f} MiB in fp16 > 16 MiB)")
        elif target not in files and len(files) + 1 > RETURNED_FILES:
            notes.append(f"{row}: not exported (already {len(files)} files in --out)")
        else:
            tmp = target.with_name(f".{target.name}.tmp")
            save_file(halves, str(tmp), metadata=metadata)
            os.replace(tmp, target)
            notes.append(f"{row}: {target.name} ({target.stat().st_size / 2**20:.1f} MiB, val AUC {r['roc_auc']:.3f})")
    return notes
