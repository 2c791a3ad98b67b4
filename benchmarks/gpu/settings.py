"""What the GPU suite runs (the rows, budgets and sizes: edit here), its settings, and the plan:
which tasks, in which order."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

#: the repository this package sits in, and the file every task process is started from
REPO = Path(__file__).resolve().parents[2]
BENCHMARKS = REPO / "benchmarks"
ENTRY = BENCHMARKS / "gpu_suite.py"

# --------------------------------------------------------------------------- what runs (edit here)

#: Quality rows: a preset and its overrides, in one line each. ``weights``: the backbone starts from
#: the local ImageNet MobileNetV2 file (--weights). ``early``: seed 0 runs right after the first
#: speed table (the decisive rows); the rest run after the speed tables, seed by seed. ``budget``:
#: seconds one run may take on the GPU. The presets' own recipes are the full budget (224 px,
#: MobileNetV2 rows 20 epochs, the paper's VGG recipe 50 epochs x 2 passes).
ROWS: dict[str, dict] = {
    # the shipped model's recipe at the full budget on MobileNetV2: its preset with the recipe's 224 px and
    # 20 epochs, on ISIC 2017 alone (the suite carries no HAM10000; JPEG re-encoding needs the per-image
    # pipeline), its backbone pinned to the one the --weights file holds
    "attnmel-mnv2-lesion": {"preset": "isic2017/attnmel-shipped",
                            "set": ["model.backbone=mobilenet_v2", "data.normalization=imagenet",
                                    "model.input_blur=null", "data.resize=256", "data.image_size=224",
                                    "train.epochs=20", "data.held_out={}", "data.jpeg_quality=null"], "weights": True,
                            "seeds": [0, 1, 2], "early": True, "budget": 120},
    "gap-mnv2": {"preset": "isic2017/gap-mobilenetv2", "set": [], "weights": True,
                 "seeds": [0, 1, 2], "early": True, "budget": 120},
    "vgg16-scratch-lesion": {"preset": "isic2017/attnmel-lesion", "set": ["model.weights=null"],
                             "seeds": [0], "early": False, "budget": 300},
}
#: attnmel's fast path for every quality run (speed only: same samples, bf16 rounding)
FAST = ["data.cache=true", "data.pipeline=device", "train.amp=true", "train.channels_last=true",
        "train.deterministic=false", "train.eval_batch_size=256"]
#: --smoke: tiny runs of the same rows
SMOKE_SET = ["data.image_size=32", "data.resize=36", "train.epochs=1", "train.passes_per_epoch=1",
             "train.batch_size=8", "train.eval_batch_size=16", "train.threads=1"]
#: speed tables: (JPEG size, training images); the first also gets the profile and the compile row
SPEED = [("1024x768", 2000), ("4000x3000", 512)]
SPEED_SMOKE = [("320x240", 16), ("640x480", 16)]
#: seconds on the GPU per task (a quality run's is its row's ``budget``)
BUDGETS = {"env": 45, "smoke": 120, "speed": 110, "compile": 180}
#: the whole run, and the seconds kept back for the report at the end (--smoke: it has no GPU checkpoints to write)
TOTAL_BUDGET, SMOKE_TOTAL_BUDGET, RESERVE, SMOKE_RESERVE = 540, 180, 15, 5
#: how a quality run's duration is estimated before it has run once (env task): its FLOPs at this
#: share of the measured matmul rate, but no faster than STEP_FLOOR per optimiser step (an eager
#: step of a ~150-kernel network is launch-bound), plus per-epoch validation/checkpoint and start-up
UTILISATION, STEP_FLOOR, EPOCH_OVERHEAD, STARTUP = 0.35, 0.010, 0.5, 20.0

#: modules the suite imports -> the pip package that provides it (for the missing-wheel message)
MODULES = {"torch": "torch", "torchvision": "torchvision", "numpy": "numpy", "PIL": "pillow", "yaml": "pyyaml",
           "safetensors": "safetensors", "sklearn": "scikit-learn", "scipy": "scipy", "pandas": "pandas",
           "matplotlib": "matplotlib", "tqdm": "tqdm", "tensorboard": "tensorboard"}
RETURNED_FILES, RETURNED_FILE_BYTES = 8, 16 * 2**20


class SuiteError(Exception):
    """A one-line problem with the suite's input (a missing file, a missing package)."""


@dataclass
class Settings:
    out: str
    work: str
    data: str
    weights: str | None
    device: str
    workers: int
    smoke: bool
    budget: float
    steps: list[str]
    rows: list[str]
    seeds: list[int] | None
    extra_eval: list[str] = field(default_factory=list)
    keep_going: bool = False
    python_path: list[str] = field(default_factory=list)


@dataclass
class Task:
    name: str
    kind: str
    budget: float
    spec: dict = field(default_factory=dict)


def plan(s: Settings) -> list[Task]:
    """The tasks of this run, in order: env, smoke, the first speed table, seed 0 of the early quality
    rows, the other speed tables, compile, then the remaining quality runs seed by seed."""
    speed = SPEED_SMOKE if s.smoke else SPEED
    tasks = [Task("env", "env", BUDGETS["env"])]
    if "smoke" in s.steps:
        tasks.append(Task("smoke", "smoke", BUDGETS["smoke"]))
    speed_tasks = [Task(f"speed-{size}", "speed", BUDGETS["speed"], {"size": size, "images": n, "profile": i == 0})
                   for i, (size, n) in enumerate(speed)] if "speed" in s.steps else []
    compile_tasks = [Task(f"compile-{speed[0][0]}", "compile", BUDGETS["compile"],
                          {"size": speed[0][0], "images": speed[0][1]})] if "compile" in s.steps else []
    runs = []
    if "quality" in s.steps:
        for row in s.rows:
            seeds = s.seeds if s.seeds is not None else ROWS[row]["seeds"][: 1 if s.smoke else None]
            for order, seed in enumerate(seeds):
                runs.append((order, row, seed))
    early = [r for r in runs if r[0] == 0 and ROWS[r[1]]["early"]]
    late = sorted((r for r in runs if r not in early), key=lambda r: (r[0], s.rows.index(r[1])))
    quality = {r: Task(f"quality-{r[1]}-seed{r[2]}", "quality", ROWS[r[1]]["budget"], {"row": r[1], "seed": r[2]})
               for r in runs}
    return [*tasks, *speed_tasks[:1], *(quality[r] for r in early), *speed_tasks[1:], *compile_tasks,
            *(quality[r] for r in late)]


def torch_device(s: Settings):
    """The torch device of ``--device`` (``auto``: CUDA where there is one)."""
    import torch

    if s.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(s.device)
