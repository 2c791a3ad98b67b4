"""The env task: the machine, versions, the matmul rate, the packages, the data, and an estimate
of every quality run from its FLOPs."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess

from .ddp import nccl_version
from .quality import quality_config
from .settings import (
    EPOCH_OVERHEAD,
    MODULES,
    REPO,
    STARTUP,
    STEP_FLOOR,
    UTILISATION,
    Settings,
    SuiteError,
    Task,
    torch_device,
)


def constraint_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements" / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[name.strip().lower()] = version.strip()
    return pins


def task_env(s: Settings, task: Task, save) -> None:
    """The machine, versions, the matmul rate, the packages, the data, and an estimate per quality row."""
    import importlib
    import importlib.metadata

    pins = constraint_pins()
    for module, package in MODULES.items():
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise SuiteError(
                f"python3 here cannot import {module} ({exc}); add {package}=={pins.get(package, 'VERSION')} to "
                "benchmarks/gpu_wheels.txt, run `python benchmarks/gpu_prepare.py --wheels` beside the code, carry .whl "
                "and pass --wheels .whl") from None
    import torch
    import train_speed

    device = torch_device(s)
    versions = f"Python {platform.python_version()}, torch {torch.__version__}"
    machine = {"device": str(device), "cpu_count": os.cpu_count(), "python": platform.python_version(),
               "torch": torch.__version__, "cuda": torch.version.cuda}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        machine.update(device_name=props.name, memory_gib=round(props.total_memory / 2**30, 1),
                       capability=f"{props.major}.{props.minor}", multiprocessors=props.multi_processor_count,
                       cudnn=torch.backends.cudnn.version(), nccl=nccl_version())
        smi = shutil.which("nvidia-smi")
        if smi:
            query = subprocess.run([smi, "--query-gpu=driver_version,clocks.max.sm,power.limit", "--format=csv,noheader"],
                                   capture_output=True, text=True, timeout=20)
            machine["nvidia_smi"] = query.stdout.strip()
        machine["device_detail"] = (f" ({machine['memory_gib']} GiB, sm_{props.major}{props.minor}, "
                                    f"{props.multi_processor_count} SMs; driver, max SM clock, power limit: "
                                    f"{machine.get('nvidia_smi', '?')})")
        versions += f", CUDA {torch.version.cuda}, cuDNN {machine['cudnn']}, NCCL {machine['nccl']}"
    else:
        machine.update(device_name=f"{platform.processor() or platform.machine()} CPU (no GPU)",
                       device_detail=f", {torch.get_num_threads()} torch threads")
    machine["versions"] = versions
    packages = {}
    for package in ["torch", "torchvision", "numpy", "pillow", "pyyaml", "safetensors", "scikit-learn", "scipy",
                    "pandas", "matplotlib", "tqdm", "tensorboard"]:
        try:
            packages[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            packages[package] = None
    machine["packages"] = packages
    print(f"card: {machine['device_name']}{machine['device_detail']}", flush=True)
    print(f"versions: {versions}", flush=True)
    save(machine=machine)

    rate, label = train_speed.matmul_rate(device)
    machine.update(matmul_flops=rate, matmul_tflops=rate / 1e12, matmul_dtype=label)
    print(f"measured {label} matmul: {rate / 1e12:.1f} TFLOP/s", flush=True)
    save(machine=machine)

    estimates, data = {}, data_summary(s)
    for row in s.rows:
        try:
            config = quality_config(s, row, 0)
            flops = training_flops(config)
        except Exception as exc:  # noqa: BLE001 - no weights file, a broken model: its runs (and the smoke check) say so
            print(f"estimate {row}: none ({type(exc).__name__}: {exc})", flush=True)
            continue
        d, t = config.data, config.train
        per_pass = data["train"] + (d.oversample - 1) * data["train_melanoma"] if d.sampler == "oversample" else data["train"]
        images = t.epochs * t.passes_per_epoch * per_pass
        compute = images * flops / (rate * UTILISATION)
        seconds = max(compute, images / t.batch_size * STEP_FLOOR) + t.epochs * EPOCH_OVERHEAD + STARTUP
        estimates[row] = {"seconds": round(seconds, 1), "images": images, "gflop_per_image": round(flops / 1e9, 2)}
        print(f"estimate {row}: {images} training images x {flops / 1e9:.1f} GFLOP -> {seconds:.0f} s", flush=True)
    save(estimates=estimates, data=data)


def training_flops(config) -> float:
    """FLOPs of one training image (forward + backward) at the config's input size, counted on the meta device."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from attnmel import create_model

    size = config.data.image_size
    with torch.device("meta"):
        model = create_model(config.model.name, 2, **{k: v for k, v in config.model.options().items() if k != "weights"})
        images = torch.randn(2, 3, size, size)
    counter = FlopCounterMode(display=False)
    with counter:
        model(images).logits.sum().backward()
    total = counter.get_total_flops() / 2
    if any(isinstance(m, torch.nn.Conv2d) and m.groups > 1 for m in model.modules()):
        forward = FlopCounterMode(display=False)  # a grouped convolution's backward is counted as dense
        with forward, torch.no_grad():
            model(images)
        total = 3 * forward.get_total_flops() / 2
    return total


def data_summary(s: Settings) -> dict:
    from attnmel.data.readers import read_dataset

    index = read_dataset(s.data)
    train, val = index.split("train"), index.split("val")
    return {"path": s.data, "train": len(train), "train_melanoma": sum(x.label == 1 for x in train), "val": len(val),
            "val_masks": sum(x.mask_path is not None for x in val)}
