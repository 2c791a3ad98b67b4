"""The GPU suite (benchmarks/gpu_suite.py, the package benchmarks/gpu) and what prepares it (benchmarks/gpu_prepare.py).

The slow test runs the whole suite with --smoke on the CPU, as CI does, with the packages that the
GPU machine lacks made unimportable, so the suite cannot rot between GPU runs. The others check
its parts: the order and budgets of the plan, the kill of a task that overruns, the tables of a
run cut short, the data and wheel preparation, and the speed benchmark's reusable pieces.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from .conftest import REPO, SAMPLE, make_isic2017_subset

BENCHMARKS = REPO / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))  # the suite's package and train_speed, imported as the suite imports them
from gpu import report, settings, smoke, supervise  # noqa: E402
from gpu.suite import Suite  # noqa: E402

#: attnmel dependencies that the GPU machine's python3 does not have (benchmarks/gpu_wheels.txt)
NOT_ON_GPU_MACHINE = ("fastapi", "starlette", "pydantic", "uvicorn", "python_multipart", "multipart", "imagehash",
                      "pywt")


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def prepare():
    return _load("gpu_prepare")


@pytest.fixture(scope="module")
def train_speed():
    return _load("train_speed")


def _settings(tmp_path, **changes):
    values = {"out": str(tmp_path / "out"), "work": str(tmp_path / "work"), "data": str(SAMPLE), "weights": None,
              "device": "cpu", "workers": 1, "smoke": False, "budget": 540, "steps": ["smoke", "speed", "compile", "quality"],
              "rows": list(settings.ROWS), "seeds": None}
    values.update(changes)
    (tmp_path / "out").mkdir(exist_ok=True)
    return settings.Settings(**values)


# --------------------------------------------------------------------------- the plan and the budgets


def test_plan_puts_cheap_decisive_tasks_first(tmp_path):
    names = [t.name for t in settings.plan(_settings(tmp_path))]
    first_speed, second_speed = (f"speed-{size}" for size, _ in settings.SPEED)
    early = [f"quality-{row}-seed0" for row, spec in settings.ROWS.items() if spec["early"]]
    assert names[:3 + len(early)] == ["env", "smoke", first_speed, *early]
    assert names.index(second_speed) < names.index(f"compile-{settings.SPEED[0][0]}") < names.index(
        "quality-vgg16-scratch-lesion-seed0")
    # after the speed tables, seed by seed: every row's seed 0 before any row's seed 1
    late = names[names.index(f"compile-{settings.SPEED[0][0]}") + 1:]
    assert late[0] == "quality-vgg16-scratch-lesion-seed0"
    assert late.index("quality-gap-mnv2-seed1") < late.index("quality-attnmel-mnv2-lesion-seed2")
    assert len(names) == 3 + 2 + sum(len(spec["seeds"]) for spec in settings.ROWS.values())


def test_plan_follows_steps_rows_and_seeds(tmp_path):
    s = _settings(tmp_path, steps=["quality"], rows=["gap-mnv2"], seeds=[1, 2])
    assert [t.name for t in settings.plan(s)] == ["env", "quality-gap-mnv2-seed1", "quality-gap-mnv2-seed2"]
    smoke = _settings(tmp_path, smoke=True)
    assert [t.name for t in settings.plan(smoke) if t.kind == "quality"] == [f"quality-{row}-seed0" for row in settings.ROWS]


def test_a_broken_model_stops_the_run_only_when_a_later_task_trains_it(tmp_path):
    gpu = smoke.models_in_use(_settings(tmp_path))
    assert gpu == {("attnmel", "vgg16_bn"), ("attnmel", "mobilenet_v2"), ("gap", "mobilenet_v2")}
    only_gap = smoke.models_in_use(_settings(tmp_path, rows=["gap-mnv2"], smoke=True))
    assert only_gap == {("attnmel", "mobilenet_v2"), ("gap", "mobilenet_v2")}


def test_a_run_that_cannot_finish_in_the_time_left_is_not_started(tmp_path):
    s = _settings(tmp_path, budget=100)
    run = Suite(s, ["--out", s.out])
    run.results["env"] = {"estimates": {"vgg16-scratch-lesion": {"seconds": 400.0}, "gap-mnv2": {"seconds": 30.0}}}
    task = next(t for t in run.tasks if t.name == "quality-vgg16-scratch-lesion-seed0")
    started = time.monotonic()
    run.run_task(task)
    assert time.monotonic() - started < 5
    step = run.steps[-1]
    assert step["status"] == "skipped" and "estimated 400 s" in step["note"]
    # a finished run of the same row replaces the FLOP estimate
    run.steps.append({"task": "quality-gap-mnv2-seed0", "kind": "quality", "status": "ok", "seconds": 55.0,
                      "result": {"row": "gap-mnv2"}})
    assert run.estimate(next(t for t in run.tasks if t.name == "quality-gap-mnv2-seed1")) == 55.0
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["steps"][-1]["status"] == "skipped"  # written as it goes


def _state(pid: int) -> str | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("State:"):
                return line.split()[1]
    except FileNotFoundError:
        return None
    return None


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads process states from /proc")
def test_a_task_that_overruns_is_killed_with_its_children():
    code = ("import subprocess, sys, time\n"
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            "print(p.pid, flush=True)\n"
            "time.sleep(60)\n")
    lines: list[str] = []
    started = time.monotonic()
    status, tail = supervise.run_child([sys.executable, "-c", code], 10, lines.append, "", dict(os.environ))
    assert status == "cut" and time.monotonic() - started < 30
    grandchild = int(tail[0])
    deadline = time.monotonic() + 5
    while _state(grandchild) not in (None, "Z") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _state(grandchild) in (None, "Z"), "the task's own child outlived the kill"
    # a task's process dies with the suite even when the suite is killed outright (no handler runs)
    task = (f"import sys, time; sys.path.insert(0, {str(BENCHMARKS)!r}); from gpu.supervise import die_with_parent; die_with_parent(); "
            "print('ready', flush=True); time.sleep(60)")
    outer = subprocess.Popen([sys.executable, "-c", "import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', "
                              f"{task!r}]); print(p.pid, flush=True); p.wait()"], stdout=subprocess.PIPE, text=True)
    orphan = int(outer.stdout.readline())
    assert outer.stdout.readline().strip() == "ready"  # the task's process has asked to die with its parent
    outer.kill()
    outer.wait()
    deadline = time.monotonic() + 5
    while _state(orphan) not in (None, "Z") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _state(orphan) in (None, "Z"), "a task outlived the suite that was killed"
    ok, _ = supervise.run_child([sys.executable, "-c", "print('fine')"], 30, lines.append, "", dict(os.environ))
    failed, tail = supervise.run_child([sys.executable, "-c", "raise SystemExit('broken')"], 30, lines.append, "", dict(os.environ))
    assert (ok, failed, tail[-1]) == ("ok", "failed", "broken")


# --------------------------------------------------------------------------- tables of a partial run


def _payload():
    speed = {"size": "1024x768", "images": 2000, "model": "attnmel", "backbone": "vgg16_bn", "image_size": 224,
             "batch_size": 256, "workers": 16, "flops": 92.4e9, "counted": "forward + backward", "amp_label": "bf16",
             "channels_last_label": "on",
             "reference": {"train": 500.0, "data": 900.0, "memory": "40.0 GiB"}}  # attnmel's part was cut
    quality = {"row": "gap-mnv2", "seed": 0, "epochs": 20, "image_size": 224, "roc_auc": 0.9, "average_precision": 0.7,
               "sensitivity_at_90_specificity": 0.6, "jaccard_cam": 0.2, "train_images_per_second": 3000.0,
               "seconds": 60.0, "extra": []}
    return {
        "suite": {"command": "benchmarks/gpu_suite.py --out x", "smoke": False, "budget_s": 540, "started": "2026-12-02T00:00:00",
                  "elapsed_s": 540, "fast_path": settings.FAST, "rows": settings.ROWS},
        "machine": {"device_name": "NVIDIA H200", "device_detail": "", "cpu_count": 16, "versions": "torch 2.11.0",
                    "matmul_flops": 7.9e14, "matmul_tflops": 790.0, "matmul_dtype": "bf16"},
        "plan": [],
        "steps": [
            {"task": "smoke", "kind": "smoke", "status": "failed", "seconds": 30, "budget_s": 120,
             "note": "smoke check model attnmel/resnet50 failed",
             "result": {"backend": "nccl", "device": "cuda", "checks": [
                 {"name": "model attnmel/vgg16_bn", "ok": True, "seconds": 1.0, "detail": "fine"},
                 {"name": "model attnmel/resnet50", "ok": False, "seconds": 1.0, "detail": "AssertionError: bf16 off"}]}},
            {"task": "speed-1024x768", "kind": "speed", "status": "cut", "seconds": 110, "budget_s": 110, "note": "cut at 110 s",
             "result": speed},
            {"task": "quality-gap-mnv2-seed0", "kind": "quality", "status": "ok", "seconds": 60, "budget_s": 120, "note": "",
             "result": quality},
            {"task": "quality-gap-mnv2-seed1", "kind": "quality", "status": "cut", "seconds": 120, "budget_s": 120,
             "note": "cut at 120 s; 7 epochs finished (not a result)", "result": {"row": "gap-mnv2", "seed": 1}},
        ],
    }


def test_tables_of_a_run_cut_short_show_what_finished():
    text = report.render_markdown(_payload())
    assert "Card: **NVIDIA H200**" in text and "bf16 matmul 790 TFLOP/s" in text
    assert "| model attnmel/resnet50 | **NO** | 1.0 | AssertionError: bf16 off |" in text
    assert "## Smoke check (failed; DDP backend nccl, device cuda)" in text
    assert "| 1024x768 JPEG | (a) reference | 500.0 | 900.0 | 40.0 GiB | | 10.4 min | |" in text
    assert "| 1024x768 JPEG | (b) attnmel | - | - | - | | | cut |" in text
    assert "| floor | 92.4 GFLOP per training image (forward + backward) vs measured bf16 matmul 790.00 TFLOP/s | 8549.8 |" in text
    row = next(line for line in text.splitlines() if line.startswith("| gap-mnv2 |"))
    assert "| 0 | 20 x 224 px | 0.900 ± 0.000 | 0.700 ± 0.000 | 0.600 ± 0.000 | - | 0.200 ± 0.000 | 3000 | 1.0 |" in row
    assert row.endswith("| seed 1: cut |")


# --------------------------------------------------------------------------- preparation


def test_prepare_copies_what_the_suite_reads_and_checks_the_weights(prepare, tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    make_isic2017_subset(shared / "data" / "isic2017", n_train=6, n_val=3)
    (shared / "weights").mkdir()
    (shared / "weights" / prepare.WEIGHTS_NAME).write_bytes(b"not the published weights")
    target = tmp_path / "target"
    with pytest.raises(prepare.PrepareError, match="SHA-256 .* is not the published"):
        prepare.prepare_data(shared, target)
    import hashlib

    monkeypatch.setattr(prepare, "WEIGHTS_SHA256", hashlib.sha256(b"not the published weights").hexdigest())
    (target / "isic2017" / "stale.txt").parent.mkdir(parents=True, exist_ok=True)
    (target / "isic2017" / "stale.txt").write_text("left by an older copy")
    counts = prepare.prepare_data(shared, target)
    assert (counts["images"], counts["masks"], counts["removed"]) == (9, 9, 1)
    assert counts["copied"] == 9 + 9 + 2 + 1  # images, masks, two label tables, weights
    assert (target / "isic2017" / "ISIC-2017_Validation_Part3_GroundTruth.csv").is_file()
    assert (target / prepare.WEIGHTS_NAME).read_bytes() == b"not the published weights"
    assert prepare.prepare_data(shared, target)["copied"] == 0  # already there


def test_wheel_list_takes_exact_pins_only(prepare, tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("# comment\n\nimagehash==4.3.2  # why\npywavelets==1.9.0\n")
    assert prepare.wheel_list(good) == ["imagehash==4.3.2", "pywavelets==1.9.0"]
    bad = tmp_path / "bad.txt"
    bad.write_text("imagehash>=4.3\n")
    with pytest.raises(prepare.PrepareError, match=r"bad.txt:1: .* is not NAME==VERSION"):
        prepare.wheel_list(bad)
    assert prepare._wheel_name("python-multipart==0.0.34") == "python_multipart"
    for pin in prepare.wheel_list():  # the shipped list is well-formed (and today names nothing)
        assert "==" in pin


def test_speed_inputs_are_encoded_in_parallel_and_reused(train_speed, tmp_path):
    data = train_speed.make_inputs(SAMPLE, tmp_path / "inputs", (64, 48), 4, 2, workers=2)
    images = sorted((data / "ISIC-2017_Training_Data").glob("*.jpg"))
    assert len(images) == 4 and len(list((data / "ISIC-2017_Validation_Data").glob("*.jpg"))) == 2
    from PIL import Image

    with Image.open(images[0]) as image:
        assert image.size == (64, 48)
    stamps = [p.stat().st_mtime_ns for p in images]
    train_speed.make_inputs(SAMPLE, tmp_path / "inputs", (64, 48), 4, 2, workers=2)
    assert [p.stat().st_mtime_ns for p in images] == stamps


def test_precision_rows_time_the_shipped_preset_on_one_dataset(train_speed, tmp_path):
    """The shipped preset names a second training dataset; the speed table times it on ISIC 2017 alone."""
    import argparse

    args = argparse.Namespace(preset="isic2017/attnmel-shipped", workers=0, threads=1, rounds=1,
                              warmup_batches=0, timed_batches=1)
    rows = train_speed.precision_rows(SAMPLE, args, tmp_path)
    assert [row["variant"] for row in rows] == [name for name, _, _ in train_speed.PRECISION_VARIANTS]
    assert all(row["median"] > 0 and row["model_only"] > 0 for row in rows)
    assert rows[0]["ratio"] == 1.0 and rows[0]["model_only_ratio"] == 1.0


# --------------------------------------------------------------------------- the whole suite, as CI runs it


def _blocking_site(folder: Path) -> Path:
    """A sitecustomize that makes the packages the GPU machine lacks unimportable, in this process's children too."""
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(
        "import sys\n"
        f"BLOCKED = {set(NOT_ON_GPU_MACHINE)!r}\n"
        "class _NotOnTheGpuMachine:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in BLOCKED:\n"
        "            raise ModuleNotFoundError(f'No module named {name!r} (not on the GPU machine)')\n"
        "sys.meta_path.insert(0, _NotOnTheGpuMachine())\n")
    return folder


@pytest.mark.slow
def test_smoke_suite_runs_every_task_on_a_cpu(tmp_path):
    import torchvision

    from attnmel.models import list_models, model_entry

    from .checkpoint_helpers import network_of

    weights = tmp_path / "mobilenet_v2_features.pth"  # the loading path of the ImageNet file, random values
    torch.manual_seed(0)
    torch.save({k: v for k, v in torchvision.models.mobilenet_v2().state_dict().items() if k.startswith("features.")},
               weights)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(_blocking_site(tmp_path / "site")), str(REPO / "src")]),
           "OMP_NUM_THREADS": "1"}
    blocked = subprocess.run([sys.executable, "-c", "import imagehash"], env=env, capture_output=True, text=True)
    assert blocked.returncode != 0 and "not on the GPU machine" in blocked.stderr
    out, work = tmp_path / "out", tmp_path / "work"
    done = subprocess.run([sys.executable, str(BENCHMARKS / "gpu_suite.py"), "--smoke", "--out", str(out), "--work",
                           str(work), "--weights", str(weights), "--device", "cpu", "--workers", "2", "--budget", "1500"],
                          env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]

    results = json.loads((out / "results.json").read_text())
    steps = {s["task"]: s for s in results["steps"]}
    assert list(steps) == [t["task"] for t in results["plan"]] + ["report"]
    assert all(s["status"] == "ok" for s in steps.values()), {k: (s["status"], s["note"]) for k, s in steps.items()}
    assert results["machine"]["device"] == "cpu" and results["machine"]["matmul_dtype"] == "fp32"

    smoke = steps["smoke"]["result"]
    names = [c["name"] for c in smoke["checks"]]
    assert names[:-4] == [f"model {m}/{b}" for m in list_models() for b in model_entry(m).backbones]
    assert names[-4:] == ["device augmentation = CPU pipeline", "cache", "trainer + resume + evaluate", "ddp step"]
    assert all(c["ok"] for c in smoke["checks"]) and smoke["backend"] == "gloo"
    assert smoke["checks"][-1]["detail"].startswith("gloo, 1 process: DDP step = plain step")

    speed = [s["result"] for s in results["steps"] if s["kind"] == "speed"]
    assert len(speed) == 2 and all(r["reference"]["train"] > 0 and r["attnmel"]["train"] > 0 for r in speed)
    assert speed[0]["profile"]["top"] and (out / "profile.txt").is_file()
    assert [s for s in results["steps"] if s["kind"] == "compile"][0]["result"]["attnmel"]["train"] > 0

    quality = {s["result"]["row"]: s["result"] for s in results["steps"] if s["kind"] == "quality"}
    assert set(quality) == set(settings.ROWS)
    for row, r in quality.items():
        assert 0 <= r["roc_auc"] <= 1 and r["epochs"] == 1 and r["image_size"] == 32, row
        assert any(k.startswith("jaccard_") for k in r), row

    text = (out / "RESULTS-gpu.md").read_text()
    assert "## Smoke check (ok; DDP backend gloo, device cpu)" in text
    assert "| 320x240 JPEG | (b) attnmel + compile |" in text
    for row in settings.ROWS:
        assert f"| {row} | `{settings.ROWS[row]['preset']}`" in text

    returned = [p for p in out.iterdir() if not p.name.startswith(".")]
    assert len(returned) <= settings.RETURNED_FILES and all(p.stat().st_size <= settings.RETURNED_FILE_BYTES for p in returned)
    exported = sorted(out.glob("*-fp16.safetensors"))
    assert [p.name.split("-seed")[0] for p in exported] == sorted(r for r, spec in settings.ROWS.items() if spec.get("weights"))
    for path in exported:
        model, meta = network_of(path)
        row = path.name.split("-seed")[0]
        original, _ = network_of(work / "quality" / row / "seed0" / "best.safetensors")
        assert meta.task == "melanoma"
        for (key, half), full in zip(model.state_dict().items(), original.state_dict().values(), strict=True):
            if full.is_floating_point():
                torch.testing.assert_close(half, full.half().float(), rtol=0, atol=0, msg=key)
