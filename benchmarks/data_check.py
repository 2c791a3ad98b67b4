"""How long ``attnmel data check`` takes on the shared ISIC copies (prints a Markdown table).

    PYTHONPATH=src python benchmarks/data_check.py [--shared ../shared/data] [--workers 1 2]

(``--shared`` defaults to ``$ATTNMEL_SHARED/data``, else ``../shared/data`` beside the repository.)

Every image and mask is decoded, hashed twice (content and perceptual) and compared with every
other image; the import of attnmel/torch is not counted.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from attnmel.data.integrity import check_datasets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    shared = Path(os.environ.get("ATTNMEL_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "data"
    parser.add_argument("--shared", default=shared, type=Path)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    args = parser.parse_args()
    runs = [["isic2017"], ["isic2016"], ["isic2017", "isic2016"]]
    print(f"machine: {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at start\n")
    print("| datasets | workers | images | masks | errors | warnings | infos | seconds | images/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for names in runs:
        roots = [args.shared / name for name in names]
        if not all(root.is_dir() for root in roots):
            continue
        for workers in args.workers:
            started = time.perf_counter()
            report = check_datasets(roots, workers=workers)
            seconds = time.perf_counter() - started
            print(f"| {' + '.join(names)} | {workers} | {report.images_checked} | {report.masks_checked} | "
                  f"{report.count('error')} | {report.count('warning')} | {report.count('info')} | {seconds:.1f} | "
                  f"{report.images_checked / seconds:.0f} |")


if __name__ == "__main__":
    main()
