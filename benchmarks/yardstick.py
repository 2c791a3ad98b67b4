"""Recipes side by side, as their yardsticks judged them: the table a recipe decision is made on.

    python benchmarks/yardstick.py /work/runs/yardstick/isic-only /work/runs/yardstick/balanced \
        --names "ISIC 2017 only" "HAM10000 at weight 0.2"

Each ``attnmel yardstick --runs`` folder (finished, same seed) against the first: ROC AUC on every
pooled image out of fold and on each held-out site (fold models averaged), the paired difference
with its DeLong interval and p-value. Prints a markdown table; reads only the folders' cached scores.

``--negatives-by SITE=CSV:COLUMN`` adds a row per value of a metadata column: the site's melanomas
against only its other images of that value. Where a recipe gains only against one subgroup (for
HAM10000, ``dx_type`` follow_up: nevi photographed in digital follow-up), it learnt that subgroup's
photographs, not the lesions:

    python benchmarks/yardstick.py RUNS_A RUNS_B \
        --negatives-by ham10000=../shared/data/ham10000/HAM10000_metadata.csv:dx_type
"""

from __future__ import annotations

import argparse
import sys

from attnmel.errors import AttnmelError
from attnmel.yardstick import compare_recipes, read_strata


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="attnmel yardstick --runs folders; the first is the baseline")
    parser.add_argument("--names", nargs="+", help="one name per folder (default: the folders' names)")
    parser.add_argument("--seed", type=int, default=0, help="the seed to compare (default 0)")
    parser.add_argument("--negatives-by", action="append", default=[], metavar="SITE=CSV:COLUMN",
                        help="split a site's negatives by a metadata column (repeatable)")
    args = parser.parse_args(argv)
    splits = {}
    for given in args.negatives_by:
        site, _, rest = given.partition("=")
        csv_path, _, column = rest.rpartition(":")
        if not (site and csv_path and column):
            parser.exit(2, f"{parser.prog}: error: --negatives-by {given!r}: give SITE=CSV:COLUMN, e.g. "
                           "ham10000=HAM10000_metadata.csv:dx_type.\n")
        splits[site] = (csv_path, column)
    try:
        strata = {site: read_strata(csv_path, column) for site, (csv_path, column) in splits.items()}
        comparison = compare_recipes(args.runs, args.seed, args.names, strata)
    except AttnmelError as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    print(comparison.to_markdown(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
