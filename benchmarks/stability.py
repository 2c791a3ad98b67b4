"""How much P(melanoma) moves when an image changes in ways a viewer cannot see.

    python benchmarks/stability.py                                   # the shipped model, ISIC 2017 val
    python benchmarks/stability.py --checkpoint runs/x --draws 3     # any checkpoint or run folder
    python benchmarks/stability.py --yardstick RUNS_A --yardstick RUNS_B   # every fold model of two recipes

The yardstick judges accuracy at several sites but not steadiness; ``--yardstick`` measures every
finished fold model of each recipe, so two recipes are compared on steadiness as well (the rule in
the docs' yardstick page).

Over every image of a split (default: ISIC 2017 val, /work/shared/data/isic2017), each decoded as
every door decodes it, the model answers the image and two perturbations of it:
- ``+-1 grey level``: every pixel and channel moves by +1 or -1 (random sign, seeded; clipped to
  0..255), ``--draws`` times;
- ``+1 / -1 everywhere``: the whole image one grey level brighter, and one darker;
- ``JPEG q90``: the decoded image re-encoded as JPEG at quality 90 (Pillow) and decoded again.
The table gives, per perturbation, the largest and the 95th percentile |dP(melanoma)|, the share
of images whose predicted class (at the model's threshold, 0.5 by default) flips, and the mean
change of the log-odds against their spread over the images (``|d log-odds| / sd``): a
temperature scales both alike, so this last column compares a raw run with a calibrated file. A
model that should be trusted on images from other cameras and pipelines moves little under both.
"""

from __future__ import annotations

import argparse
import io
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "isic2017"


@dataclass
class Stability:
    perturbation: str
    images: int
    max_abs_dp: float
    p95_abs_dp: float
    flipped: float
    #: mean |change of log-odds| over the standard deviation of the unperturbed log-odds
    relative_change: float


def log_odds(probability: np.ndarray) -> np.ndarray:
    p = np.clip(probability, 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def plus_minus_one(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return shifted(image, rng.choice(np.array([-1, 1], dtype=np.int16), size=image.shape))


def shifted(image: np.ndarray, step: int) -> np.ndarray:
    return np.clip(image.astype(np.int16) + step, 0, 255).astype(np.uint8)


def jpeg_again(image: np.ndarray, quality: int = 90) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def measure(model, paths: list[Path], draws: int = 1, seed: int = 0, threshold: float = 0.5,
            batch_size: int = 32, tta: bool = False) -> list[Stability]:
    """|dP(positive class)| per perturbation over ``paths`` for a loaded model (``attnmel.load_model``)."""
    return measure_images(model, decode(paths), draws, seed, threshold, batch_size, tta)


def decode(paths: list[Path]) -> list[np.ndarray]:
    """The images as every door decodes them."""
    from attnmel.data.images import read_image

    return [np.asarray(read_image(path)) for path in paths]


def measure_images(model, images: list[np.ndarray], draws: int = 1, seed: int = 0, threshold: float = 0.5,
                   batch_size: int = 32, tta: bool = False) -> list[Stability]:
    """``measure`` on decoded images; every model measured with the same seed sees the same noise."""
    rng = np.random.default_rng(seed)

    def probabilities(batch: list[np.ndarray]) -> np.ndarray:
        answers = model.predict(batch, batch_size=batch_size, **({"tta": True} if tta else {}))
        return np.array([p.probability for p in answers])

    base = probabilities(images)
    perturbed = {f"+-1 grey level (x{draws})": [probabilities([plus_minus_one(i, rng) for i in images])
                                                 for _ in range(draws)],
                 "+1 / -1 everywhere": [probabilities([shifted(i, step) for i in images]) for step in (1, -1)],
                 "JPEG q90": [probabilities([jpeg_again(i) for i in images])]}
    base_log_odds = log_odds(base)
    spread = max(float(base_log_odds.std()), 1e-12)
    rows = []
    for name, answers in perturbed.items():
        dp = np.abs(np.stack(answers) - base[None])
        flips = np.stack([(a > threshold) != (base > threshold) for a in answers])
        moved = np.abs(log_odds(np.stack(answers)) - base_log_odds[None]).mean() / spread
        rows.append(Stability(name, len(images), float(dp.max()), float(np.percentile(dp, 95)), float(flips.mean()),
                              float(moved)))
    return rows


def split_images(data: Path, split: str) -> list[Path]:
    from attnmel.data.readers import read_dataset

    return [sample.image_path for sample in read_dataset(data).split(split)]


def models_to_measure(checkpoints: list[str], yardsticks: list[Path]) -> list[str | None]:
    """``--checkpoint`` values, then every finished fold model of each ``--yardstick`` folder; None: the
    shipped model."""
    from attnmel.yardstick import SCORES_FILE, scored_folds

    found: list[str | None] = list(checkpoints)
    for folder in yardsticks:
        folds = [str(path.parent) for path in scored_folds(folder)]
        if not folds:
            raise SystemExit(f"--yardstick {folder}: no finished fold model (seed*/fold*/{SCORES_FILE}); run "
                             "attnmel yardstick there first.")
        found += folds
    return found or [None]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", action="append", default=[],
                        help="checkpoint, run folder or pretrained tag (repeatable; default: the shipped model)")
    parser.add_argument("--yardstick", action="append", default=[], type=Path,
                        help="an attnmel yardstick --runs folder: every finished fold model of it (repeatable)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--split", default="val")
    parser.add_argument("--draws", type=int, default=1, help="noise draws per image")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, help="only the first N images")
    parser.add_argument("--tta", action="store_true", help="answer with the average of the 8 dihedral views")
    args = parser.parse_args(argv)
    import attnmel

    paths = split_images(args.data, args.split)[: args.limit]
    images = decode(paths)  # once, for every model
    table = []
    for checkpoint in models_to_measure(args.checkpoint, args.yardstick):
        model = attnmel.load_model(checkpoint, device="cpu")
        threshold, rule = model.decision_threshold()
        name = checkpoint or "the shipped model"
        print(f"{name} on {args.data.name} {args.split} ({len(paths)} images{', TTA' if args.tta else ''}); "
              f"class flips at {rule}")
        table += [(name, row) for row in measure_images(model, images, args.draws, args.seed,
                                                        threshold=0.5 if threshold is None else threshold,
                                                        tta=args.tta)]
    print("\n| model | perturbation | images | max abs dP | p95 abs dP | class flips | abs d log-odds / sd |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, row in table:
        print(f"| {name} | {row.perturbation} | {row.images} | {row.max_abs_dp:.3f} | {row.p95_abs_dp:.3f} "
              f"| {row.flipped:.1%} | {row.relative_change:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
