"""The OOD detector, chosen on one part and reported on another (issue 31).

    python benchmarks/ood.py --shared ../shared [--checkpoint FILE] [--cache DIR] [--splits 20]

Every candidate detector (``attnmel.evaluation.trust.fit_ood``: the pooled features, the image
statistics or both; one mean or one per class; 16 or 32 components) learns ISIC 2017 train and a
sample of HAM10000 train (the model's training images, without the HAM10000 lesions it held out) and
takes its thresholds from half A of the held-out in-distribution images (ISIC 2017 val and the
held-out HAM10000 lesions: at most 5% of each class). The candidate is chosen on the selection
part: three noise kinds, half of the shipped photographs, two kinds of screenshot. The chosen one
is then reported, over ``--splits`` random halves, on what it was not chosen on: half B of ISIC 2017
val and of the held-out HAM10000 lesions, ISIC 2016 test, 500 fresh noise images of seven kinds
(four never seen in the choice) at five sizes, the other photographs and fresh screenshots; flag
rates per class with 95% Wilson intervals. The detector the checkpoint carries is reported beside it.

Features and image statistics come from the model's own forward pass (``keep=("features",)``), cached
per set and checkpoint in ``--cache``. The non-dermoscopy images are made or shipped offline (never
downloaded): seven kinds of generated noise at five sizes; the photographs shipped inside scikit-image
(``skimage.data``; the dev extra pins it), scikit-learn and matplotlib, whole and as crops, split by
source photograph between the choice and the report; windows, dialogs, code and tables rendered with PIL.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from attnmel.config import load_config
from attnmel.data.readers import read_dataset
from attnmel.data.sources import data_sources, held_out_images
from attnmel.evaluation.operating_point import wilson_interval
from attnmel.evaluation.trust import DetectorData, fit_ood
from attnmel.inference import InferenceSettings, load_model
from attnmel.inference.trust import feature_tap
from attnmel.io import file_sha256

NOISE_KINDS = ("uniform", "gaussian", "salt-and-pepper", "grey-random", "grey-gaussian", "coloured-blocks", "stripes")
SIZES = ((96, 96), (224, 224), (300, 300), (640, 480), (1024, 768))
#: skimage.data photographs that ship with the package (the others need a download) and are photographs
#: (not drawings, masks or microscopy)
SKIMAGE_PHOTOS = ("astronaut", "brick", "camera", "chelsea", "clock", "coffee", "coins", "grass", "gravel",
                  "hubble_deep_field", "moon", "rocket", "stereo_motorcycle", "retina", "immunohistochemistry", "cell")


def noise(kind: str, size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    width, height = size
    if kind == "uniform":
        array = rng.integers(0, 256, (height, width, 3))
    elif kind == "gaussian":
        array = rng.normal(rng.uniform(60, 200, 3), rng.uniform(10, 60), (height, width, 3))
    elif kind == "salt-and-pepper":
        array = np.broadcast_to(rng.uniform(60, 200, 3), (height, width, 3)).copy()
        draw = rng.random((height, width))
        share = rng.uniform(0.02, 0.3)
        array[draw < share / 2], array[draw > 1 - share / 2] = 0, 255
    elif kind == "grey-random":
        array = np.repeat(rng.integers(0, 256, (height, width, 1)), 3, axis=2)
    elif kind == "grey-gaussian":
        array = np.repeat(rng.normal(rng.uniform(60, 200), rng.uniform(10, 60), (height, width, 1)), 3, axis=2)
    elif kind == "coloured-blocks":
        block = int(rng.integers(2, 48))
        cells = rng.integers(0, 256, (height // block + 1, width // block + 1, 3))
        array = np.repeat(np.repeat(cells, block, axis=0), block, axis=1)[:height, :width]
    elif kind == "stripes":
        rows, cols = np.mgrid[0:height, 0:width]
        period = float(rng.uniform(3, 60))
        angle = float(rng.uniform(0, np.pi))
        wave = np.sin(2 * np.pi * (cols * np.cos(angle) + rows * np.sin(angle)) / period)
        colours = rng.integers(0, 256, (2, 3))
        array = np.where((wave > 0)[..., None], colours[0], colours[1])
    else:
        raise ValueError(f"unknown noise kind {kind!r}")
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))


def noise_images(count: int, seed: int, kinds: tuple[str, ...] = NOISE_KINDS) -> list[tuple[str, Image.Image]]:
    """``count`` (kind, image) pairs, the kinds and sizes in turn."""
    rng = np.random.default_rng(seed)
    return [(kinds[i % len(kinds)], noise(kinds[i % len(kinds)], SIZES[(i // len(kinds)) % len(SIZES)], rng))
            for i in range(count)]


def _rgb(array: np.ndarray) -> Image.Image:
    array = np.asarray(array)
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    if array.dtype != np.uint8:
        array = (255 * (array - array.min()) / max(float(np.ptp(array)), 1e-9)).astype(np.uint8)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    return Image.fromarray(array[..., :3])


def photo_sources() -> dict[str, Image.Image]:
    """Every shipped photograph by name (skimage.data, scikit-learn's and matplotlib's sample photos)."""
    import matplotlib
    import sklearn

    out = {}
    try:
        import skimage.data
    except ImportError:  # the dev extra installs it
        skimage = None
    if skimage is not None:
        for name in SKIMAGE_PHOTOS:
            image = getattr(skimage.data, name)()
            out[f"skimage {name}"] = _rgb(image[0] if isinstance(image, tuple) else image)
    for path in [Path(sklearn.__file__).parent / "datasets" / "images" / name for name in ("china.jpg", "flower.jpg")] + \
            [Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"]:
        if path.is_file():
            out[path.stem] = Image.open(path).convert("RGB")
    return out


def photographs(names: list[str], per_photo: int, seed: int) -> Iterator[tuple[str, Image.Image]]:
    """Each named photograph whole, then ``per_photo - 1`` square crops of 1/4 to all of its short side."""
    sources = photo_sources()
    rng = np.random.default_rng(seed)
    for name in names:
        image = sources[name]
        yield name, image
        for _ in range(per_photo - 1):
            side = int(rng.integers(max(min(image.size) // 4, 32), min(image.size) + 1))
            left = int(rng.integers(0, image.width - side + 1))
            top = int(rng.integers(0, image.height - side + 1))
            yield name, image.crop((left, top, left + side, top + side))


def screenshot(kind: str, rng: np.random.Generator) -> Image.Image:
    """A rendered screen: ``window`` (title bar, text, buttons), ``code`` (dark editor), ``table`` or ``dialog``."""
    width, height = int(rng.integers(320, 1280)), int(rng.integers(240, 900))
    dark = kind == "code"
    image = Image.new("RGB", (width, height), (30, 30, 36) if dark else tuple(int(v) for v in rng.integers(225, 256, 3)))
    draw = ImageDraw.Draw(image)
    ink = (200, 200, 190) if dark else (20, 20, 20)
    words = ["file", "edit", "view", "melanoma", "result", "value", "total", "cancel", "ok", "settings", "error", "load"]
    if kind in ("window", "dialog"):
        draw.rectangle((0, 0, width, 28), fill=tuple(int(v) for v in rng.integers(40, 120, 3)))
        draw.text((10, 8), " ".join(rng.choice(words, 3)), fill=(255, 255, 255))
    y, line = 40, 0
    while y < height - 20:
        if kind == "table":
            for column in range(0, width, 120):
                draw.rectangle((column, y, column + 118, y + 18), outline=(150, 150, 150))
                draw.text((column + 4, y + 4), f"{rng.choice(words)} {int(rng.integers(0, 999))}", fill=ink)
            y += 20
        else:
            indent = 10 + 20 * int(rng.integers(0, 4)) if kind == "code" else 10
            text = " ".join(rng.choice(words, int(rng.integers(2, 9))))
            draw.text((indent, y), f"{line:3d}  {text}" if kind == "code" else text, fill=ink)
            y += int(rng.integers(14, 22))
        line += 1
    if kind in ("window", "dialog"):
        for k in range(int(rng.integers(1, 4))):
            left = width - 110 * (k + 1)
            draw.rectangle((left, height - 40, left + 100, height - 12), fill=(70, 110, 200), outline=(20, 40, 90))
            draw.text((left + 30, height - 32), str(rng.choice(words)), fill=(255, 255, 255))
    return image


SCREEN_KINDS = ("window", "code", "table", "dialog")


def screenshots(count: int, seed: int, kinds: tuple[str, ...] = SCREEN_KINDS) -> list[tuple[str, Image.Image]]:
    rng = np.random.default_rng(seed)
    return [(kinds[i % len(kinds)], screenshot(kinds[i % len(kinds)], rng)) for i in range(count)]


SETTINGS = InferenceSettings(device="cpu", progress=False, batch_size=32)
SELECTION_NOISE = ("uniform", "gaussian", "salt-and-pepper")
MAX_FLAGGED = 0.05


def image_arrays(loaded, images) -> dict[str, np.ndarray]:
    """Features and image statistics of PIL images, through the model's preprocessing and forward pass."""
    features, statistics = [], []
    for start in range(0, len(images), 32):
        batch = torch.stack([loaded.preprocessing(image.convert("RGB")) for image in images[start:start + 32]])
        with feature_tap(loaded.predictor.models) as tapped:
            loaded.predictor(batch)
        features.append(tapped.features())
        statistics.append(tapped.statistics(loaded.preprocessing.mean, loaded.preprocessing.std))
    return {"features": np.concatenate(features), "statistics": np.concatenate(statistics)}


def sample_arrays(loaded, samples) -> dict[str, np.ndarray]:
    out = loaded.infer(samples, SETTINGS, keep=("features",))
    return {"features": out.features, "statistics": out.image_statistics, "labels": out.labels,
            "ids": np.array(out.image_ids)}


def cached(cache: Path, name: str, make) -> dict[str, np.ndarray]:
    path = cache / f"{name}.npz"
    if path.is_file():
        return dict(np.load(path))
    arrays = make()
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    print(f"cached {name}: {len(arrays['features'])} images", file=sys.stderr)
    return arrays


def dermoscopy_sets(loaded, shared: Path, cache: Path, ham_train: int,
                    share: float = 0.1) -> dict[str, dict[str, np.ndarray]]:
    data = shared / "data"
    isic2017 = read_dataset(data / "isic2017", loaded.task)
    ham_source = data_sources([data / "ham10000"])[0]
    spec = load_config("isic2017/attnmel-shipped").data.split_spec(0)
    held = held_out_images(ham_source, dataclasses.replace(spec, held_out=(("ham10000", share),), layout=None))
    held_ids = {sample.image_id for sample in held}
    ham = [s for s in read_dataset(data / "ham10000", loaded.task).split("train") if s.image_id not in held_ids]
    rng = np.random.default_rng(0)
    ham = [ham[i] for i in sorted(rng.choice(len(ham), min(ham_train, len(ham)), replace=False))]
    sets = {"isic2017-train": lambda: sample_arrays(loaded, isic2017.split("train")),
            "ham10000-train": lambda: sample_arrays(loaded, ham),
            "isic2017-val": lambda: sample_arrays(loaded, isic2017.split("val")),
            "ham10000-held-out": lambda: sample_arrays(loaded, held)}
    if (data / "isic2016").is_dir():
        sets["isic2016-test"] = lambda: sample_arrays(loaded, read_dataset(data / "isic2016", loaded.task).split("test"))
    return {name: cached(cache, name, make) for name, make in sets.items()}


def ood_sets(loaded, cache: Path, count: int, per_photo: int) -> dict[str, dict[str, np.ndarray]]:
    names = sorted(photo_sources())
    half = names[::2], names[1::2]

    def made(pairs):
        arrays = image_arrays(loaded, [image for _, image in pairs])
        arrays["kinds"] = np.array([kind for kind, _ in pairs])
        return arrays

    return {
        "select-noise": cached(cache, f"select-noise-{count}", lambda: made(noise_images(count // 5, 1, SELECTION_NOISE))),
        "select-photos": cached(cache, f"select-photos-{per_photo}",
                                lambda: made(list(photographs(list(half[0]), per_photo, 1)))),
        "select-screens": cached(cache, f"select-screens-{count}", lambda: made(screenshots(count // 12, 1, ("window", "code")))),
        "report-noise": cached(cache, f"report-noise-{count}", lambda: made(noise_images(count, 2))),
        "report-photos": cached(cache, f"report-photos-{per_photo}",
                                lambda: made(list(photographs(list(half[1]), per_photo, 2)))),
        "report-screens": cached(cache, f"report-screens-{count}", lambda: made(screenshots(count // 8, 2))),
    }


def data(arrays: dict[str, np.ndarray], name: str, rows=None, labelled: bool = True) -> DetectorData:
    rows = slice(None) if rows is None else rows
    labels = arrays.get("labels")
    return DetectorData(arrays["features"][rows], arrays["statistics"][rows],
                        labels[rows] if labelled and labels is not None else None, name)


def halves(sets: dict[str, dict[str, np.ndarray]], seed: int) -> tuple[DetectorData, dict[str, np.ndarray]]:
    """(half A of ISIC 2017 val + held-out HAM10000 for the thresholds, the row masks of half B)."""
    rng = np.random.default_rng(seed)
    parts, rest = [], {}
    for name in ("isic2017-val", "ham10000-held-out"):
        n = len(sets[name]["features"])
        mask = np.zeros(n, bool)
        mask[rng.permutation(n)[: n // 2]] = True
        parts.append(data(sets[name], f"{name} half A", mask))
        rest[name] = ~mask
    return DetectorData.join(parts), rest


CANDIDATES = [(inputs, means, k) for inputs in (("features",), ("image-statistics",), ("features", "image-statistics"))
              for means in ("one mean", "class means") for k in (16, 32)]


def flag_rate(detector, arrays, rows=None) -> np.ndarray:
    rows = slice(None) if rows is None else rows
    return detector.score(arrays["features"][rows], arrays["statistics"][rows]) > 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--checkpoint", default=None, help="default: the shipped model")
    parser.add_argument("--cache", type=Path, default=Path("benchmarks/.trust-cache"))
    parser.add_argument("--ham-train", type=int, default=1500, help="HAM10000 training images sampled for the statistics")
    parser.add_argument("--splits", type=int, default=20, help="random halves the report averages over")
    parser.add_argument("--noise", type=int, default=500, help="generated noise images reported (a fifth more chosen on)")
    parser.add_argument("--per-photo", type=int, default=9, help="views of each photograph: itself and its crops")
    parser.add_argument("--held-out-share", type=float, default=0.1,
                        help="the share of HAM10000 lesions the model held out of training (the shipped preset's: 0.1)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    loaded = load_model(args.checkpoint, SETTINGS)
    cache = args.cache / file_sha256(loaded.sources[0])[:12]
    sets = dermoscopy_sets(loaded, args.shared, cache, args.ham_train, args.held_out_share)
    sets.update(ood_sets(loaded, cache, args.noise, args.per_photo))
    train_sets = [sets["isic2017-train"], sets["ham10000-train"]]
    names = loaded.class_names

    def train(labelled: bool) -> DetectorData:
        return DetectorData.join([data(a, n, labelled=labelled) for a, n in zip(
            train_sets, ("isic2017 train", "ham10000 train sample"), strict=True)])

    print(f"checkpoint {loaded.sources[0]}; training images {len(train(True))}; ISIC 2017 val "
          f"{len(sets['isic2017-val']['features'])}, held-out HAM10000 {len(sets['ham10000-held-out']['features'])}\n")
    held, rest = halves(sets, 0)
    lines = ["| candidate | selection noise flagged | selection photos | selection screenshots | ISIC 2017 val half B | "
             "HAM10000 held-out half B |", "|---|---|---|---|---|---|"]
    scored = []
    for inputs, means, k in CANDIDATES:
        detector = fit_ood(train(True), held, inputs=inputs, components=k, max_flagged=MAX_FLAGGED,
                           class_means=means == "class means")
        rates = [flag_rate(detector, sets[name]).mean() for name in ("select-noise", "select-photos", "select-screens")]
        id_rates = [flag_rate(detector, sets[name], rest[name]).mean() for name in ("isic2017-val", "ham10000-held-out")]
        label = f"{' + '.join(inputs)}, {means}, k={k}"
        lines.append(f"| {label} | " + " | ".join(f"{r:.3f}" for r in rates + id_rates) + " |")
        # ties go to the simpler candidate (one mean, fewer components): nothing of the report part decides
        scored.append((float(np.mean(rates)), means == "one mean", -k, label, (inputs, means, k)))
    best = max(scored)
    inputs, means, k = best[4]
    print("### Choice (thresholds on half A of each held-out dermoscopy set; chosen by the mean flag rate of the "
          "selection part, ties to the simpler; the half-B columns are shown, not used)\n\n" + "\n".join(lines)
          + f"\n\nchosen: {best[3]}\n")

    report = {name: [] for name in ("isic2017-val", "ham10000-held-out")}
    per_class = {name: {c: [] for c in range(len(names))} for name in report}
    detectors = []
    for split in range(args.splits):
        held, rest = halves(sets, split)
        detector = fit_ood(train(True), held, inputs=inputs, components=k, max_flagged=MAX_FLAGGED,
                           class_means=means == "class means")
        detectors.append(detector)
        for name in report:
            flags = flag_rate(detector, sets[name], rest[name])
            labels = sets[name]["labels"][rest[name]]
            report[name].append((int(flags.sum()), len(flags)))
            for c in per_class[name]:
                per_class[name][c].append((int(flags[labels == c].sum()), int((labels == c).sum())))
    chosen = detectors[0]
    shipped = loaded.meta.ood_detector
    rows = ["| set | images | chosen detector: flagged [95% CI] | per class | the checkpoint's detector: flagged |",
            "|---|---|---|---|---|"]

    def cell(hits: int, n: int) -> str:
        low, high = wilson_interval(hits, n)
        return f"{hits / max(n, 1):.3f} [{low:.3f}, {high:.3f}]"

    def shipped_rate(arrays, rows_=None) -> str:
        if shipped is None or ("image-statistics" in shipped.inputs and arrays.get("statistics") is None):
            return "n/a"
        return f"{flag_rate(shipped, arrays, rows_).mean():.3f}"

    for name in report:
        hits, n = (sum(v) for v in zip(*report[name], strict=True))
        classes = "; ".join(f"{names[c]} {cell(*(sum(v) for v in zip(*per_class[name][c], strict=True)))}"
                            for c in per_class[name])
        rows.append(f"| {name}, half B (mean of {args.splits} splits) | {n // args.splits} | {cell(hits, n)} | "
                    f"{classes} | {shipped_rate(sets[name])} (all) |")
    if "isic2016-test" in sets:
        arrays = sets["isic2016-test"]
        flags = flag_rate(chosen, arrays)
        classes = "; ".join(f"{names[c]} {cell(int(flags[arrays['labels'] == c].sum()), int((arrays['labels'] == c).sum()))}"
                            for c in range(len(names)))
        rows.append(f"| isic2016-test (external) | {len(flags)} | {cell(int(flags.sum()), len(flags))} | {classes} | "
                    f"{shipped_rate(arrays)} |")
    for name in ("report-noise", "report-photos", "report-screens"):
        arrays = sets[name]
        flags = flag_rate(chosen, arrays)
        rows.append(f"| {name[7:]} (all) | {len(flags)} | {cell(int(flags.sum()), len(flags))} | | {shipped_rate(arrays)} |")
        if name == "report-noise":
            for kind in NOISE_KINDS:
                mine = arrays["kinds"] == kind
                seen = "seen in the choice" if kind in SELECTION_NOISE else "held-out kind"
                rows.append(f"| noise: {kind} ({seen}) | {mine.sum()} | {cell(int(flags[mine].sum()), int(mine.sum()))} | | "
                            f"{shipped_rate({k: v[mine] for k, v in arrays.items()})} |")
    print("### Report (on what the choice did not see)\n\n" + "\n".join(rows) + "\n")
    grey = image_arrays(loaded, [noise("grey-random", (300, 300), np.random.default_rng(0))])
    parts = chosen.part_scores(grey["features"], grey["statistics"])
    print("### Why 300 x 300 grey noise passed the checkpoint's detector\n")
    if shipped is not None:
        print(f"the checkpoint's detector: relative score {float(shipped.score(grey['features'], grey['statistics'])[0]):.2f} "
              "(flagged above 1)")
    print("chosen detector, per part: " + ", ".join(
        f"{part.input} {float(parts[part.input][0]):.3g} (threshold {part.threshold:.3g})" for part in chosen.parts))


if __name__ == "__main__":
    main()
