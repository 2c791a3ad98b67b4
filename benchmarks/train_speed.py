"""Training speed: the original AttnMel data path against attnmel's, on the same images, one table.

(a) reference: written to behave like the original code: every step decodes the full-size JPEG
    with PIL in DataLoader workers and applies per-sample transforms (0.8 centre crop, resize
    to 256, random 224 crop, rot90, flips, ToTensor, Normalize); fp32, NCHW.
(b) attnmel: ``attnmel.training.loop.Trainer`` with the decode-once cache, the device pipeline
    (batch augmentation where the model runs), bf16 autocast and channels_last (``auto``: on CUDA
    only); ``--compile`` adds a row with ``torch.compile`` (warm-up epoch excluded from the timing).

Inputs: the shared ISIC 2017 training images upsampled and re-encoded as JPEG at each ``--sizes``
(default 1024x768 and 4000x3000), generated into a temporary folder. Reported per size and path:
training images/s (forward + backward + SGD step, after a warm-up), data-path-only images/s, peak
GPU memory, the ratio b/a, and the time the paper's ISIC 2017 schedule would take at that speed
(50 epochs x 2 passes x (2000 + 3 x 374) images, melanoma oversampled x4). The floor: FLOPs of one
training image (forward + backward, ``FlopCounterMode``) against the measured matmul rate (bf16
on a GPU, fp32 on a CPU).

    python benchmarks/train_speed.py                                   # on an H100: the defaults
    python benchmarks/train_speed.py --images 24 --batch-size 8 --device cpu --sizes 1024x768,4000x3000
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import multiprocessing
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode
from torchvision import transforms as T

from attnmel import create_model
from attnmel.config import load_config
from attnmel.data.cache import GeometryCache
from attnmel.data.readers import read_dataset
from attnmel.data.transforms import NORMALIZATION_PRESETS
from attnmel.devices import bf16_supported
from attnmel.models import model_entry
from attnmel.models.backbones import get_backbone_spec
from attnmel.training.loop import Trainer
from attnmel.training.losses import FocalLoss

REPO = Path(__file__).resolve().parents[1]
#: the paper's ISIC 2017 schedule: 50 epochs x 2 passes x (2000 images + 374 melanomas x 3 extra copies)
PAPER_SCHEDULE_IMAGES = (2000 + 3 * 374) * 2 * 50


# --------------------------------------------------------------------------- inputs


def _encode(job: tuple[str, str, tuple[int, int]]) -> None:
    source, target, size = job
    with Image.open(source) as image:
        image.convert("RGB").resize(size, Image.Resampling.BICUBIC).save(target, quality=90)


def make_inputs(source: Path, target: Path, size: tuple[int, int], count: int, val_count: int, workers: int = 1) -> Path:
    """An ISIC 2017 layout whose JPEGs are the shared images upsampled to ``size`` and re-encoded.

    Encoding runs in ``workers`` processes (a 4000x3000 JPEG takes about half a second on one
    core); a folder already complete for these counts is reused, so several variants share it.
    """
    index = read_dataset(source)
    jobs, tables = [], []
    for split, official, n in (("train", "Training", count), ("val", "Validation", val_count)):
        samples = index.split(split)[:n]
        if len(samples) < n:
            raise SystemExit(f"{source} has only {len(samples)} {split} images; lower --images")
        folder = target / f"ISIC-2017_{official}_Data"
        folder.mkdir(parents=True, exist_ok=True)
        rows = [[s.image_id, float(s.label == 1), 0.0] for s in samples]
        tables.append((target / f"ISIC-2017_{official}_Part3_GroundTruth.csv", rows))
        jobs += [(str(s.image_path), str(folder / f"{s.image_id}.jpg"), size) for s in samples]
    if all(path.is_file() and sum(1 for _ in path.open()) == len(rows) + 1 for path, rows in tables):
        return target  # the ground-truth tables are written last: their presence means the images are complete
    if workers > 1:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            list(pool.map(_encode, jobs, chunksize=8))
    else:
        for job in jobs:
            _encode(job)
    for path, rows in tables:
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["image_id", "melanoma", "seborrheic_keratosis"])
            writer.writerows(rows)
    return target


# --------------------------------------------------------------------------- (a) the reference path


class RatioCenterCropPIL:
    def __init__(self, ratio: float):
        self.ratio = ratio

    def __call__(self, image: Image.Image) -> Image.Image:
        side = int(self.ratio * min(image.size))
        return T.CenterCrop(side)(image)


class RandomRot90PIL:
    TURNS = (None, Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270)

    def __call__(self, image: Image.Image) -> Image.Image:
        turn = self.TURNS[int(torch.randint(0, 4, ()).item())]
        return image if turn is None else image.transpose(turn)


class ReferenceDataset(Dataset):
    """PIL decode of the full-size file and the per-sample transform chain, like the original code."""

    def __init__(self, paths: list[Path], labels: list[int], image_size: int, resize: int, crop_ratio: float):
        mean, std = NORMALIZATION_PRESETS["isic2017"]
        self.paths, self.labels = paths, labels
        self.transform = T.Compose([
            RatioCenterCropPIL(crop_ratio), T.Resize((resize, resize)), T.RandomCrop(image_size), RandomRot90PIL(),
            T.RandomHorizontalFlip(), T.RandomVerticalFlip(), T.ToTensor(), T.Normalize(mean, std),
        ])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        image = Image.open(self.paths[index]).convert("RGB")
        return self.transform(image), self.labels[index]


def reference_loader(data: Path, args, device: torch.device) -> DataLoader:
    samples = read_dataset(data).split("train")
    dataset = ReferenceDataset([s.image_path for s in samples], [s.label for s in samples], args.image_size,
                               args.resize, args.crop_ratio)
    return DataLoader(dataset, batch_size=args.batch_size, shuffle=True, num_workers=args.workers, drop_last=True,
                      pin_memory=device.type == "cuda", persistent_workers=args.workers > 0)


def run_reference(data: Path, args, device: torch.device) -> dict:
    torch.backends.cudnn.benchmark = True  # the reference gets cuDNN's fastest kernels too
    loader = reference_loader(data, args, device)
    model = create_model(args.model, 2, backbone=args.backbone, weights=None).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=1e-4)
    criterion = FocalLoss(2.0)

    def step(images, labels):
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        loss = criterion(model(images).logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()

    model.train()
    train_rate = _timed_epochs(loader, step, args.warmup_batches, device)
    data_rate = _timed_epochs(loader, lambda images, labels: None, args.warmup_batches, device)
    return {"train": train_rate, "data": data_rate}


def _timed_epochs(loader: DataLoader, step, warmup: int, device: torch.device) -> float:
    """Images/s over all batches after the first ``warmup`` ones (two epochs: workers warm too)."""
    seen, started = 0, None
    for epoch in range(2):
        for i, (images, labels) in enumerate(loader):
            step(images, labels)
            if epoch == 0 and i + 1 == warmup:
                _sync(device)
                started = time.perf_counter()
            elif started is not None:
                seen += len(labels)
    _sync(device)
    return seen / (time.perf_counter() - started)


# --------------------------------------------------------------------------- (b) attnmel's path


def attnmel_trainer(data: Path, args, device: torch.device, cache_dir: Path, output: Path, use_compile: bool) -> Trainer:
    amp = args.amp == "on" or (args.amp == "auto" and device.type == "cuda")
    channels_last = args.channels_last == "on" or (args.channels_last == "auto" and device.type == "cuda")
    config = load_config(None, [
        f"model.name={args.model}", f"model.backbone={args.backbone}", "model.weights=null",
        f"data.resize={args.resize}", f"data.crop_ratio={args.crop_ratio}", f"data.image_size={args.image_size}",
        "data.sampler=uniform", "data.pipeline=device", "data.cache=true", f"data.cache_dir={cache_dir}",
        f"data.num_workers={args.workers}", f"train.batch_size={args.batch_size}", f"train.device={device}",
        f"train.amp={amp}", f"train.channels_last={channels_last}", f"train.compile={use_compile}",
        "train.deterministic=false", "train.epochs=4",
    ])
    return Trainer(config, data, output, progress=False, log=lambda *_: None)


def run_attnmel(data: Path, args, device: torch.device, work: Path, use_compile: bool) -> dict:
    cache_dir = work / "cache"
    samples = read_dataset(data).split("train")
    started = time.perf_counter()
    GeometryCache(cache_dir, args.resize, args.crop_ratio).prepare(samples, num_workers=args.workers)
    cache_seconds = time.perf_counter() - started  # the first variant builds it, a second one reuses it
    trainer = attnmel_trainer(data, args, device, cache_dir, work / f"run-compile-{use_compile}", use_compile)
    trainer.train_epoch(0)  # warm-up: cudnn autotuning, torch.compile, worker start
    _sync(device)
    started = time.perf_counter()
    images = trainer.train_epoch(1)["images"] + trainer.train_epoch(2)["images"]
    _sync(device)
    train_rate = images / (time.perf_counter() - started)
    started, seen = time.perf_counter(), 0
    for batch in trainer._train_loader(3, 0):
        seen += len(batch["label"])
    _sync(device)
    data_rate = seen / (time.perf_counter() - started)
    return {"train": train_rate, "data": data_rate, "cache_seconds": cache_seconds, "amp": trainer.config.train.amp,
            "channels_last": trainer.config.train.channels_last}


def profile_attnmel(data: Path, args, device: torch.device, work: Path, steps: int = 5) -> dict:
    """Where a training step of attnmel's path spends its time: ``torch.profiler`` over up to
    ``steps`` steps of one epoch after up to two warm-up steps (device time on CUDA, CPU time
    otherwise). Returns the table as text and the ten most expensive operators, per step."""
    from torch.profiler import ProfilerActivity, profile

    trainer = attnmel_trainer(data, args, device, work / "cache", work / "run-profile", False)
    loader = trainer._train_loader(0, 0)
    if len(loader) < 2:
        raise SystemExit("profiling needs at least 2 batches per epoch; raise --images or lower --batch-size")
    warmup = min(2, len(loader) - 1)  # cuDNN autotuning, the allocator
    steps = min(steps, len(loader) - warmup)
    batches = iter(loader)
    for i in range(warmup):
        trainer._step(next(batches), 0, i)
    _sync(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    started = time.perf_counter()
    with profile(activities=activities) as prof:
        for i in range(steps):
            trainer._step(next(batches), 0, warmup + i)
        _sync(device)
    seconds = (time.perf_counter() - started) / steps
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    averages = prof.key_averages()
    total = sum(getattr(e, key) for e in averages) or 1.0
    top = sorted(averages, key=lambda e: getattr(e, key), reverse=True)[:10]
    return {
        "steps": steps,
        "step_ms": 1000 * seconds,
        # operator time over wall time: well under 1 on a GPU means the step waits on the host (launches, data)
        "busy": total / 1e6 / steps / seconds,
        "images_per_second": args.batch_size / seconds,
        "measured": "device time" if device.type == "cuda" else "CPU time",
        "top": [{"op": e.key, "ms_per_step": getattr(e, key) / 1000 / steps, "share": getattr(e, key) / total,
                 "calls_per_step": e.count / steps} for e in top],
        "table": averages.table(sort_by=key, row_limit=30),
    }


# --------------------------------------------------------------------------- the CPU fast path

#: (name, bf16 autocast, channels_last): fp32 NCHW first (the baseline), the fast path last, and each of its
#: two parts alone, so the table says which part carries the gain on this CPU
PRECISION_VARIANTS = (
    ("fp32, NCHW", False, False),
    ("fp32, channels_last", False, True),
    ("bf16 autocast, NCHW", True, False),
    ("bf16 autocast + channels_last (fast path)", True, True),
)


def random_backbone_weights(preset: str, folder: Path) -> Path:
    """A state dict of the preset's backbone at random initialisation: the values do not change the time,
    and a preset that keeps pretrained batch-norm statistics needs a file to keep them from."""
    config = load_config(preset, ["model.weights=imagenet"])  # not loaded: only read for the backbone's name
    backbone = get_backbone_spec(config.model.backbone or model_entry(config.model.name).default_backbone)
    weights = folder / f"random-{backbone.name}.pth"
    torch.save(backbone.build(weights=None).state_dict(), weights)
    return weights


def precision_trainer(data: Path, args, amp: bool, channels_last: bool, weights: Path, output: Path) -> Trainer:
    """The shipped model's preset as it trains (per-sample pipeline in loader workers), differing only in
    precision. It times one dataset, so the preset's other datasets' held-out shares are cleared."""
    config = load_config(args.preset, [
        f"model.weights={weights}", "data.held_out={}", f"train.amp={amp}", f"train.channels_last={channels_last}",
        f"data.num_workers={args.workers}", f"train.threads={args.threads or torch.get_num_threads()}",
        "train.tensorboard_figures=0",
    ])
    return Trainer(config, data, output, progress=False, log=lambda *_: None)


def precision_rows(data: Path, args, work: Path) -> list[dict]:
    """Images/s of each variant, ``--rounds`` times in alternation so that a noisy machine hits all alike:
    whole training steps (loading, forward, backward, optimiser), and the model's step alone on the same
    batches already loaded. Where the whole step is much slower than the model's alone, the loader bounds it."""
    weights = random_backbone_weights(args.preset, work)
    trainers = {name: precision_trainer(data, args, amp, cl, weights, work / f"run-{amp}-{cl}")
                for name, amp, cl in PRECISION_VARIANTS}
    whole: dict[str, list[float]] = {name: [] for name in trainers}
    model_only: dict[str, list[float]] = {name: [] for name in trainers}
    for round_index in range(args.rounds):
        for name, trainer in trainers.items():
            trainer.training_mode()
            batches = iter(trainer._train_loader(round_index, 0))
            for step in range(args.warmup_batches):
                trainer._step(next(batches), round_index, step)
            started, seen, loaded = time.perf_counter(), 0, []
            for step in range(args.timed_batches):
                batch = next(batches)
                trainer._step(batch, round_index, step)
                seen += len(batch["label"])
                loaded.append(batch)
            whole[name].append(seen / (time.perf_counter() - started))
            started = time.perf_counter()
            for step, batch in enumerate(loaded):
                trainer._step(batch, round_index, step)
            model_only[name].append(seen / (time.perf_counter() - started))
    base = statistics.median(whole[PRECISION_VARIANTS[0][0]])
    base_model = statistics.median(model_only[PRECISION_VARIANTS[0][0]])
    return [{"variant": name, "median": statistics.median(values), "low": min(values), "high": max(values),
             "ratio": statistics.median(values) / base, "model_only": statistics.median(model_only[name]),
             "model_only_ratio": statistics.median(model_only[name]) / base_model}
            for name, values in whole.items()]


def precision_main(args) -> int:
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="attnmel-precision-"))
    try:
        rows = precision_rows(Path(args.data), args, work)
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    config = load_config(args.preset)
    print(f"# attnmel training speed on this machine: {args.preset} ({config.model.backbone}, "
          f"{config.data.image_size} px, batch {config.train.batch_size}), whole training steps with data loading")
    print(f"machine: {_machine(torch.device('cpu'))}; torch {torch.__version__}; {torch.get_num_threads()} threads, "
          f"{args.workers} loader workers; {args.rounds} rounds x {args.timed_batches} batches after "
          f"{args.warmup_batches} warm-up")
    print(f"command: python benchmarks/train_speed.py {' '.join(sys.argv[1:])}")
    print()
    print(f"native bf16 here: {'yes' if bf16_supported(torch.device('cpu')) else 'no (emulated: the default path is fp32)'}")
    print()
    print("| path | whole steps, images/s (median) | min - max over rounds | x fp32 | model step alone, images/s | "
          "x fp32 | whole / model alone |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['variant']} | {row['median']:.1f} | {row['low']:.1f} - {row['high']:.1f} | {row['ratio']:.2f} | "
              f"{row['model_only']:.1f} | {row['model_only_ratio']:.2f} | {row['median'] / row['model_only']:.2f} |")
    return 0


# --------------------------------------------------------------------------- the floor


def training_flops(args) -> tuple[float, str]:
    """FLOPs of one training image (forward + backward) at ``--image-size``, and how they were counted."""
    model = create_model(args.model, 2, backbone=args.backbone, weights=None)
    images = torch.randn(2, 3, args.image_size, args.image_size)
    forward, total = FlopCounterMode(display=False), FlopCounterMode(display=False)
    with forward:
        model(images)
    with total:
        model(images).logits.sum().backward()
    if any(isinstance(m, torch.nn.Conv2d) and m.groups > 1 for m in model.modules()):
        # FlopCounterMode counts a grouped convolution's backward as if it were dense (torch 2.14)
        return 3 * forward.get_total_flops() / 2, "3 x forward"
    return total.get_total_flops() / 2, "forward + backward"


def matmul_rate(device: torch.device) -> tuple[float, str]:
    """Measured dense matmul FLOP/s: bf16 on CUDA, fp32 on the CPU."""
    n, dtype, label = (8192, torch.bfloat16, "bf16") if device.type == "cuda" else (1024, torch.float32, "fp32")
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    repeats = 50 if device.type == "cuda" else 5
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - started), label


# --------------------------------------------------------------------------- helpers


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def _peak_memory(device: torch.device, out: dict):
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    yield
    out["memory"] = f"{torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB" if device.type == "cuda" else "n/a"


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _machine(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, {os.cpu_count()} CPU cores"
    return f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, no GPU"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "isic2017"), help="ISIC 2017 folder")
    parser.add_argument("--sizes", default="1024x768,4000x3000", help="comma-separated WxH of the generated JPEGs")
    parser.add_argument("--images", type=int, default=2000, help="training images per size (ISIC 2017 has 2000)")
    parser.add_argument("--model", default="attnmel")
    parser.add_argument("--backbone", default="vgg16_bn")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--resize", type=int, default=256)
    parser.add_argument("--crop-ratio", type=float, default=0.8)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1))
    parser.add_argument("--warmup-batches", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--amp", choices=("auto", "on", "off"), default="auto")
    parser.add_argument("--channels-last", choices=("auto", "on", "off"), default="auto")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--threads", type=int, help="torch threads in the training process (default: torch's choice)")
    parser.add_argument("--work-dir", help="where the generated images and the cache go (default: a temporary folder)")
    parser.add_argument("--precision", action="store_true",
                        help="instead: the shipped model's preset on --data as it trains, fp32 NCHW against bf16 "
                             "autocast, channels_last and both (the CPU fast path), whole steps and model alone")
    parser.add_argument("--preset", default="isic2017/attnmel-shipped", help="with --precision: the preset to time")
    parser.add_argument("--rounds", type=int, default=3, help="with --precision: alternating rounds per variant")
    parser.add_argument("--timed-batches", type=int, default=8, help="with --precision: timed batches per round")
    return parser


def resolve_device(name: str) -> torch.device:
    return torch.device("cuda" if name == "auto" and torch.cuda.is_available() else "cpu" if name == "auto" else name)


def speed_table(rows: list[dict], flops: float, counted: str, rate: float, rate_label: str) -> list[str]:
    """The table's lines. A row is ``{"size", "images", "reference", "variants"}``; a part that did not
    finish (None) prints as "-", so a run cut short still tabulates what it measured."""
    lines = [
        "| input | path | train img/s | data path only, img/s | peak GPU memory | b/a | paper schedule (312,200 img) | one-off cache build |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        size_text, reference = row["size"], row.get("reference")
        if reference:
            lines.append(f"| {size_text} JPEG | (a) reference | {reference['train']:.1f} | {reference['data']:.1f} | "
                         f"{reference['memory']} | | {_duration(PAPER_SCHEDULE_IMAGES / reference['train'])} | |")
        else:
            lines.append(f"| {size_text} JPEG | (a) reference | - | - | - | | | |")
        for ours in row.get("variants", []):
            path = "(b) attnmel + compile" if ours["compile"] else "(b) attnmel"
            if "train" not in ours:
                lines.append(f"| {size_text} JPEG | {path} | - | - | - | | | {ours.get('note', '')} |")
                continue
            ratio = f"{ours['train'] / reference['train']:.2f}x" if reference else ""
            cache = f"{ours['cache_seconds']:.1f} s ({row['images']} images)" if not ours["compile"] else ""
            lines.append(f"| {size_text} JPEG | {path} | {ours['train']:.1f} | {ours['data']:.1f} | {ours['memory']} | "
                         f"{ratio} | {_duration(PAPER_SCHEDULE_IMAGES / ours['train'])} | {cache} |")
    floor = rate / flops
    lines.append(f"| floor | {flops / 1e9:.1f} GFLOP per training image ({counted}) vs measured {rate_label} matmul "
                 f"{rate / 1e12:.2f} TFLOP/s | {floor:.1f} | | | | {_duration(PAPER_SCHEDULE_IMAGES / floor)} | |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.precision:
        return precision_main(args)

    device = resolve_device(args.device)
    if args.images < 2 * args.batch_size:
        parser.error("--images must be at least twice --batch-size (a warm-up batch, then timed ones)")
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="attnmel-speed-"))
    rows = []
    try:
        flops, counted = training_flops(args)
        rate, rate_label = matmul_rate(device)
        for size_text in args.sizes.split(","):
            size = tuple(int(v) for v in size_text.lower().split("x"))
            data = make_inputs(Path(args.data), work / size_text / "data", size, args.images,
                               max(2, args.batch_size // 4), args.workers)
            reference = {}
            with _peak_memory(device, reference):
                reference.update(run_reference(data, args, device))
            variants = []
            for use_compile in [False, True] if args.compile else [False]:
                ours = {"compile": use_compile}
                with _peak_memory(device, ours):
                    ours.update(run_attnmel(data, args, device, work / size_text, use_compile))
                variants.append(ours)
            rows.append({"size": size_text, "images": args.images, "reference": reference, "variants": variants})
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)

    print(f"# attnmel training speed: {args.model} ({args.backbone}) at {args.image_size} px, batch {args.batch_size}, "
          f"{args.images} images per size")
    print(f"machine: {_machine(device)}; torch {torch.__version__}")
    print(f"command: python benchmarks/train_speed.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    first = rows[0]["variants"][0]
    print(f"attnmel path: cache + device pipeline, amp {'bf16' if first['amp'] else 'off'}, channels_last "
          f"{'on' if first['channels_last'] else 'off'}; reference: PIL + per-sample transforms in "
          f"{args.workers} workers, fp32")
    print()
    print("\n".join(speed_table(rows, flops, counted, rate, rate_label)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
