"""Bundle ISIC 2016 images that the shipped model never saw: absent from ISIC 2017 by content.

The shipped model is trained on the ISIC 2017 training split and its epoch and seed are chosen on
ISIC 2017 validation; most ISIC 2016 images reappear in ISIC 2017. This script asks
``attnmel data check`` (content hashes and perceptual hashes) which ISIC 2016 images have an
identical or near-identical twin anywhere in ISIC 2017, keeps the others, and writes a small
sample of them, with their lesion masks, in the ISIC 2016 layout as the split ``test``:

    python scripts/make_unseen_sample.py --isic2017 ../shared/data/isic2017 --isic2016 ../shared/data/isic2016 \\
        --output src/attnmel/sample_data/isic2016-unseen

Every unseen melanoma is kept, and benign images (with a mask) are drawn by a fixed seed to fill
``--images``; the sample's README records the counts and the rule.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
from pathlib import Path

from attnmel.data.integrity import check_datasets
from attnmel.data.readers import read_dataset


def unseen_samples(isic2017: Path, isic2016: Path):
    """ISIC 2016 samples with no identical or near-identical image in ISIC 2017 (any split)."""
    report = check_datasets([isic2017, isic2016], "melanoma", progress=False)
    twins = set()
    for finding in report.findings:
        paths = [Path(p) for p in finding.paths if p is not None]
        if any(p.is_relative_to(isic2017) for p in paths):
            twins |= {p for p in paths if p.is_relative_to(isic2016)}
    index = read_dataset(isic2016, "melanoma")
    return [s for split in index.splits.values() for s in split if s.image_path not in twins], index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--isic2017", type=Path, required=True)
    parser.add_argument("--isic2016", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    isic2017, isic2016 = args.isic2017.resolve(), args.isic2016.resolve()
    unseen, index = unseen_samples(isic2017, isic2016)
    unseen = [s for s in unseen if s.mask_path is not None]
    melanoma = sorted((s for s in unseen if s.label == 1), key=lambda s: s.image_id)
    benign = sorted((s for s in unseen if s.label == 0), key=lambda s: s.image_id)
    random.Random(args.seed).shuffle(benign)
    chosen = sorted(melanoma + benign[: max(0, args.images - len(melanoma))], key=lambda s: s.image_id)
    if args.output.exists():
        shutil.rmtree(args.output)
    data = args.output / "ISBI2016_ISIC_Part3_Test_Data"
    masks = args.output / "ISBI2016_ISIC_Part1_Test_GroundTruth"
    data.mkdir(parents=True)
    masks.mkdir(parents=True)
    rows = []
    for sample in chosen:
        shutil.copy(sample.image_path, data / f"{sample.image_id}.jpg")
        shutil.copy(sample.mask_path, masks / f"{sample.image_id}_Segmentation.png")
        rows.append(f"{sample.image_id},{float(sample.label)}")
    (args.output / "ISBI2016_ISIC_Part3_Test_GroundTruth.csv").write_text("\n".join(rows) + "\n")
    n_mel = sum(s.label for s in chosen)
    (args.output / "README.md").write_text(
        "# ISIC 2016 images the shipped model never saw\n\n"
        f"{len(chosen)} ISIC 2016 images ({n_mel} melanoma, {len(chosen) - n_mel} benign), each with its lesion mask,\n"
        f"in the ISIC 2016 layout (split `test`). Of the {sum(map(len, index.splits.values()))} ISIC 2016 images read,\n"
        f"{len(unseen)} with a mask have no identical or near-identical image (content hash, perceptual hash)\n"
        "anywhere in ISIC 2017, the shipped model's training and selection data (`attnmel data check`\n"
        "across both releases); every unseen melanoma is here, and benign images drawn with a fixed seed.\n"
        "Melanoma is therefore over-represented compared with the releases (about 1 in 5).\n\n"
        "Made by `python scripts/make_unseen_sample.py` (repository root). Licence: ISIC data for research\n"
        "(CC BY-NC 4.0). Cite: D. Gutman et al., Skin Lesion Analysis toward Melanoma Detection (ISIC 2016),\n"
        "arXiv:1605.01397.\n"
    )
    print(f"wrote {len(chosen)} unseen images ({n_mel} melanoma) to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
