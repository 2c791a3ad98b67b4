"""``attnmel data check``, ``attnmel data stats`` and ``attnmel data cache``."""

from __future__ import annotations

import argparse
import json
import sys

from attnmel.cli.options import Parser, add_workers, non_negative_int, positive_int
from attnmel.data.integrity import DEFAULT_MIN_SIZE
from attnmel.data.leaks import DEFAULT_PHASH_DISTANCE
from attnmel.data.masks import DEFAULT_DERMO_FEATURES, ROI_KINDS
from attnmel.data.readers import LAYOUTS
from attnmel.data.records import TASKS


def register(data: argparse.ArgumentParser) -> None:
    commands = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True, parser_class=Parser)

    check = commands.add_parser(
        "check", help="integrity report: counts, unreadable files, bad masks, duplicates, leakage, label conflicts",
        description="Exit code 0 when there are no errors, 1 when there are (warnings do not fail), 2 when a "
                    "dataset cannot be read at all.",
    )
    check.add_argument("paths", nargs="+", metavar="PATH",
                       help="dataset folder (ISIC 2017/2016 layout, isic-cli folder) or manifest CSV; give several "
                            "to check leakage and label conflicts across them")
    check.add_argument("--task", default="melanoma", choices=sorted(TASKS))
    check.add_argument("--json", action="store_true", help="print JSON instead of text")
    check.add_argument("--no-decode", action="store_true", help="only read the layout, do not decode images")
    check.add_argument("--min-size", type=positive_int, default=DEFAULT_MIN_SIZE,
                       help=f"warn about images with a side below this many px (default {DEFAULT_MIN_SIZE}, the paper's input)")
    check.add_argument("--phash-distance", type=non_negative_int, default=DEFAULT_PHASH_DISTANCE,
                       help=f"near-identical when perceptual hashes differ in at most this many of 256 bits "
                            f"(default {DEFAULT_PHASH_DISTANCE}; 0 for only the closest copies)")
    add_workers(check, default=None)
    check.set_defaults(handler=_check)

    stats = commands.add_parser("stats", help="normalisation mean/std of a split (the paper's method)")
    stats.add_argument("path")
    stats.add_argument("--split", default="train")
    stats.add_argument("--layout", choices=LAYOUTS)
    stats.add_argument("--resize", type=positive_int, default=256)
    stats.add_argument("--crop-ratio", type=float, default=0.8)
    stats.add_argument("--output", help="write the statistics JSON here (usable as data.normalization); a file there that no "
                       "earlier attnmel data stats wrote is moved aside to stale-*/ first")
    stats.set_defaults(handler=_stats)

    cache = commands.add_parser("cache", help="decode every image once and keep the paper's geometry on disk")
    cache.add_argument("path")
    cache.add_argument("--layout", choices=LAYOUTS)
    cache.add_argument("--resize", type=positive_int, default=256)
    cache.add_argument("--crop-ratio", type=float, default=0.8)
    cache.add_argument("--cache-dir", help="default: $ATTNMEL_CACHE_DIR or ~/.cache/attnmel (use the run's data.cache_dir)")
    cache.add_argument("--roi", action="append", choices=ROI_KINDS,
                       help="also cache this region of interest (repeatable; default: lesion)")
    cache.add_argument("--dermo-features", nargs="+", default=list(DEFAULT_DERMO_FEATURES), metavar="FEATURE")
    add_workers(cache, default=2)
    cache.add_argument("--json", action="store_true", help="print the counts as JSON")
    cache.set_defaults(handler=_cache)


def _check(args: argparse.Namespace) -> int:
    from attnmel.data.integrity import check_datasets

    report = check_datasets(
        args.paths, args.task, decode=not args.no_decode, min_size=args.min_size,
        phash_distance=args.phash_distance, workers=args.workers, progress=not args.json and sys.stderr.isatty(),
    )
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.to_text())
    return 0 if report.ok else 1


def _stats(args: argparse.Namespace) -> int:
    from attnmel.data.readers import read_dataset
    from attnmel.data.stats import normalization_stats
    from attnmel.io import atomic_write_json
    from attnmel.outputs import OutputSet, check_output_file

    if args.output:
        check_output_file(args.output)
    index = read_dataset(args.path, layout=args.layout)
    stats = normalization_stats(index.split(args.split), args.resize, args.crop_ratio)
    if args.output:
        outputs = OutputSet.for_file(args.output, "data stats")
        atomic_write_json(outputs.path(outputs.known[0]), stats)
        outputs.commit()
        print(f"wrote {args.output}")
    print(json.dumps(stats, indent=2))
    return 0


def _cache(args: argparse.Namespace) -> int:
    from attnmel.data.cache import build_cache
    from attnmel.data.masks import RoiSpec

    rois = [RoiSpec(kind, tuple(args.dermo_features)) for kind in (args.roi or ["lesion"])]
    report = build_cache(
        args.path, cache_dir=args.cache_dir, resize=args.resize, crop_ratio=args.crop_ratio, rois=rois,
        layout=args.layout, num_workers=args.workers, progress=not args.json and sys.stderr.isatty(),
        log=(lambda *_: None) if args.json else print,
    )
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"cache: {report['cache_dir']} ({report['bytes'] / 2**20:.1f} MiB)")
    return 0
