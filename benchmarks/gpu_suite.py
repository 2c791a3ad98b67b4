"""One prepared GPU run: every figure that needs a GPU, from one command, inside a time budget.

    python3 benchmarks/gpu_suite.py --out $OUT                    # on the GPU machine: benchmarks/RESULTS.md, "GPU suite"
    python benchmarks/gpu_suite.py --smoke --out /tmp/gpu-suite   # the same steps on a CPU, tiny settings (~2 min)

Tasks run in this order, cheap and decisive first (``plan``); each runs in a process of its own
whose process group is killed when its time budget (or the whole run's) is spent, and
``results.json`` and ``RESULTS-gpu.md`` are rewritten in ``--out`` after every task, so a run
cut short still returns what finished:

  env      the card, driver, torch / CUDA / cuDNN / NCCL versions, the measured bf16 matmul rate,
           the packages, and an estimate of every quality run from its FLOPs
  smoke    every code path on the device: each model x backbone forward/backward in bf16 with
           channels_last (against fp32), the device-side augmentation against the per-sample CPU
           pipeline, the decode-once cache, the Trainer end to end with every fast option (and
           --resume, and evaluation with attention Jaccard), one DDP step (NCCL on a GPU, gloo on a
           CPU) against a plain step. The first broken path that a later task needs stops the run;
           one that none needs (another model, DDP) fails the task loudly and the run goes on
  speed    benchmarks/train_speed.py's table: reference data path vs attnmel's on 1024x768 JPEGs
           with a profile of the training step, then 4000x3000, then attnmel's path with torch.compile
  quality  ROWS x seeds on ISIC 2017 (train -> val): the shipped-model recipe and the GAP baseline
           first (seed 0 of each), AttnMel-CNN-Lesion on VGG-16-BN from scratch (the paper's recipe),
           then the other seeds; a run that its estimate says cannot finish in the time left is
           skipped, not started
  report   results.json, RESULTS-gpu.md, suite.log, profile.txt and the best checkpoint of each
           MobileNetV2 row in fp16 (at most 8 files of 16 MiB each come back from the machine)

Quality runs use attnmel's fast path (``FAST``: cache, device pipeline, bf16, channels_last,
non-deterministic cuDNN) with each preset's own batch size and schedule; RESULTS-gpu.md says so.
Finished runs in ``--work`` are reused and unfinished ones resumed, so a rerun on a warm machine
picks up where the last one stopped.
"""

from __future__ import annotations

import argparse
import collections
import csv
import datetime
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
sys.path[:0] = [str(REPO / "src"), str(BENCHMARKS)]  # the code beside this file, never an installed copy

# --------------------------------------------------------------------------- what runs (edit here)

#: Quality rows: a preset and its overrides, in one line each. ``weights``: the backbone starts from
#: the local ImageNet MobileNetV2 file (--weights). ``early``: seed 0 runs right after the first
#: speed table (the decisive rows); the rest run after the speed tables, seed by seed. ``budget``:
#: seconds one run may take on the GPU. The presets' own recipes are the full budget (224 px,
#: MobileNetV2 rows 20 epochs, the paper's VGG recipe 50 epochs x 2 passes).
ROWS: dict[str, dict] = {
    # the shipped model's recipe at the full budget: its preset with the recipe's 224 px and 20 epochs, on
    # ISIC 2017 alone (the suite carries no HAM10000; JPEG re-encoding needs the per-image pipeline)
    "attnmel-mnv2-lesion": {"preset": "isic2017/attnmel-shipped",
                            "set": ["data.resize=256", "data.image_size=224", "train.epochs=20", "data.held_out={}",
                                    "data.jpeg_quality=null"], "weights": True,
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


# --------------------------------------------------------------------------- settings and plan


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


# --------------------------------------------------------------------------- the parent: run, record, report


class Suite:
    def __init__(self, s: Settings, argv: list[str]):
        self.s = s
        self.out, self.work = Path(s.out), Path(s.work)
        self.started = time.time()
        self.deadline = time.monotonic() + s.budget
        self.tasks = plan(s)
        self.steps: list[dict] = []
        self.results: dict[str, dict] = {}
        self.command = " ".join(["benchmarks/gpu_suite.py", *argv])
        self._log = open(self.out / "suite.log", "a", encoding="utf-8")  # noqa: SIM115 - open for the run

    def log(self, text: str) -> None:
        print(text, flush=True)
        self._log.write(text + "\n")
        self._log.flush()

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def run(self) -> int:
        self.log(f"attnmel GPU suite{' (--smoke)' if self.s.smoke else ''}: {len(self.tasks)} tasks, "
                 f"budget {self.s.budget:.0f} s; out {self.out}; work {self.work}")
        self.log("plan: " + ", ".join(f"{t.name} ({t.budget:.0f} s)" for t in self.tasks))
        self.write()
        stop = None
        for task in self.tasks:
            if stop:
                self.record(task, "skipped", 0.0, stop)
                continue
            self.run_task(task)
            step = self.steps[-1]
            if (task.kind in ("env", "smoke") and step["status"] != "ok" and not self.s.keep_going
                    and step["result"].get("blocking", True)):
                stop = f"not run: the {task.name} task did not pass (--keep-going runs the rest anyway)"
        self.report()
        failed = [s["task"] for s in self.steps if s["status"] in ("failed", "error")]
        self.log(f"done in {time.time() - self.started:.0f} s" + (f"; failed: {', '.join(failed)}" if failed else ""))
        return 1 if failed or stop else 0

    def estimate(self, task: Task) -> float | None:
        """Seconds a quality run should take: a finished run of its row, else the env task's FLOP estimate."""
        if task.kind != "quality":
            return None
        done = [st["seconds"] for st in self.steps if st["kind"] == "quality" and st["status"] == "ok"
                and st["result"].get("row") == task.spec["row"]]
        if done:
            return max(done)
        return self.results.get("env", {}).get("estimates", {}).get(task.spec["row"], {}).get("seconds")

    def run_task(self, task: Task) -> None:
        left = self.left() - (0 if task.kind == "env" else SMOKE_RESERVE if self.s.smoke else RESERVE)
        estimate = self.estimate(task)
        if left < 5 or (estimate is not None and not self.s.smoke and estimate > left):
            why = f"estimated {estimate:.0f} s" if estimate is not None else "needs time"
            self.record(task, "skipped", 0.0, f"not started: {why}, {max(left, 0):.0f} s left of the run's budget")
            return
        timeout = left if self.s.smoke else min(task.budget, left)
        result_path = self.work / "results" / f"{task.name}.json"
        result_path.unlink(missing_ok=True)
        spec_path = self.work / "tasks" / f"{task.name}.json"
        _write_json(spec_path, {"settings": asdict(self.s), "task": asdict(task)})
        self.log(f"== {task.name}: up to {timeout:.0f} s" + (f" (estimated {estimate:.0f} s)" if estimate else ""))
        started = time.monotonic()
        status, tail = run_child([sys.executable, str(Path(__file__).resolve()), "--child", str(spec_path)],
                                 timeout, self.log, f"[{task.name}] ", _child_env(self.s))
        seconds = time.monotonic() - started
        result = json.loads(result_path.read_text()) if result_path.is_file() else {}
        note = result.get("note", "")
        if status == "cut":
            note = f"cut at {timeout:.0f} s" + (f" during {result['running']}" if result.get("running") else "")
            if task.kind == "quality":
                done = _completed_epochs(self.work / "quality" / task.spec["row"] / f"seed{task.spec['seed']}")
                note += f"; {done} epochs finished (not a result)"
        elif status == "failed":
            note = result.get("error") or (tail[-1] if tail else "exited with an error")
        self.results[task.name] = result
        self.record(task, status, seconds, note, result)

    def record(self, task: Task, status: str, seconds: float, note: str, result: dict | None = None) -> None:
        self.steps.append({"task": task.name, "kind": task.kind, "status": status, "seconds": round(seconds, 1),
                           "budget_s": task.budget, "note": note, "result": result or {}})
        self.log(f"== {task.name}: {status} after {seconds:.0f} s" + (f": {note}" if note else ""))
        self.write()

    # ---------------------------------------------------------------- outputs

    def payload(self) -> dict:
        env = self.results.get("env", {})
        return {
            "suite": {"command": self.command, "smoke": self.s.smoke, "budget_s": self.s.budget,
                      "started": datetime.datetime.fromtimestamp(self.started, datetime.UTC).isoformat(timespec="seconds"),
                      "elapsed_s": round(time.time() - self.started, 1), "fast_path": FAST,
                      "rows": {row: ROWS[row] for row in self.s.rows}, "settings": asdict(self.s)},
            "machine": env.get("machine"),
            "plan": [{"task": t.name, "budget_s": t.budget} for t in self.tasks],
            "steps": self.steps,
        }

    def write(self) -> None:
        """results.json first (plain JSON, nothing to import), then the Markdown tables."""
        payload = self.payload()
        _write_json(self.out / "results.json", payload)
        try:
            _write_text(self.out / "RESULTS-gpu.md", render_markdown(payload))
        except Exception as exc:  # noqa: BLE001 - the JSON is written; a table that fails must not stop the run
            self.log(f"warning: RESULTS-gpu.md not written ({type(exc).__name__}: {exc})")

    def report(self) -> None:
        started = time.monotonic()
        note = ""
        try:
            written = export_checkpoints(self.steps, self.work, self.out)
            note = "; ".join(written)
        except Exception as exc:  # noqa: BLE001 - the tables still get written
            note = f"checkpoints not exported ({type(exc).__name__}: {exc})"
        self.steps.append({"task": "report", "kind": "report", "status": "ok", "seconds": round(time.monotonic() - started, 1),
                           "budget_s": RESERVE, "note": note, "result": {}})
        self.write()
        self.log(f"== report: {note}")


def run_child(command: list[str], timeout: float, log, prefix: str, env: dict) -> tuple[str, list[str]]:
    """Run ``command`` in a process group of its own, its output streamed to ``log``; at ``timeout``
    the whole group (DataLoader workers, a DDP child) is ended. Returns ("ok" | "failed" | "cut", the last lines)."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                            start_new_session=True, env=env, cwd=REPO)
    tail: collections.deque[str] = collections.deque(maxlen=40)

    def pump() -> None:
        for line in proc.stdout:
            line = line.rstrip("\n")
            tail.append(line)
            log(prefix + line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    status = "cut"
    try:
        code = proc.wait(timeout=max(timeout, 1))
        status = "ok" if code == 0 else "failed"
    except subprocess.TimeoutExpired:
        pass
    finally:  # also when this process is stopped (SIGTERM -> SystemExit): the task's group goes with it
        if proc.poll() is None or status == "cut":
            _end_group(proc)
    reader.join(timeout=5)
    return status, list(tail)


def _end_group(proc: subprocess.Popen) -> None:
    for sig, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            if sig == signal.SIGKILL:
                return
        except subprocess.TimeoutExpired:
            continue
    try:  # stragglers of the group (workers that ignored SIGTERM) once its leader is gone
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _die_with_parent() -> None:
    """A task's process ends when the process that started it does, even one killed outright (the
    device tool's time limit), so nothing keeps the GPU busy after the suite (Linux; else a no-op)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _child_env(s: Settings) -> dict:
    env = dict(os.environ)
    paths = [*s.python_path, str(REPO / "src"), str(BENCHMARKS), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def _completed_epochs(run: Path) -> int:
    metrics = run / "metrics.csv"
    return max(sum(1 for _ in metrics.open()) - 1, 0) if metrics.is_file() else 0


def _write_text(path: Path, text: str) -> None:
    """Atomic: a run killed mid-write leaves the previous file (the library's helper needs no import here)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _write_json(path: Path, payload) -> None:
    _write_text(path, json.dumps(payload, indent=2, default=str) + "\n")


# --------------------------------------------------------------------------- tables


def _cell(values: list) -> str:
    values = [v for v in values if isinstance(v, int | float) and not math.isnan(v)]
    if not values:
        return "-"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {spread:.3f}"


def _steps_of(payload: dict, kind: str) -> list[dict]:
    return [s for s in payload["steps"] if s["kind"] == kind]


def render_markdown(payload: dict) -> str:
    """RESULTS-gpu.md: the machine, every task's status, then the smoke, speed and quality tables."""
    machine = payload.get("machine") or {}
    suite = payload["suite"]
    lines = [f"# attnmel GPU suite{' (--smoke: tiny settings, not a measurement)' if suite['smoke'] else ''}", ""]
    if machine:
        lines += [f"Card: **{machine.get('device_name')}**{machine.get('device_detail', '')}; {machine.get('cpu_count')} CPU "
                  f"cores; {machine.get('versions')}; measured {machine.get('matmul_dtype')} matmul "
                  f"{machine.get('matmul_tflops', float('nan')):.3g} TFLOP/s. Date: {suite['started']} (UTC).", ""]
    lines += [f"Command: `python3 {suite['command']}` ({suite['elapsed_s']:.0f} s of a {suite['budget_s']:.0f} s budget).", "",
              "| task | status | seconds | budget s | note |", "|---|---|---:|---:|---|"]
    lines += [f"| {s['task']} | {s['status']} | {s['seconds']:.0f} | {s['budget_s']:.0f} | {s['note']} |"
              for s in payload["steps"]]
    for step in _steps_of(payload, "smoke"):
        checks = step["result"].get("checks", [])
        lines += ["", f"## Smoke check ({step['status']}; DDP backend {step['result'].get('backend', '?')}, "
                  f"device {step['result'].get('device', '?')})", "", "| check | ok | seconds | detail |", "|---|---|---:|---|"]
        lines += [f"| {c['name']} | {'yes' if c['ok'] else '**NO**'} | {c['seconds']:.1f} | {c['detail']} |" for c in checks]
    lines += _speed_lines(payload)
    lines += _quality_lines(payload)
    return "\n".join(lines) + "\n"


def _speed_lines(payload: dict) -> list[str]:
    speed = [s for s in _steps_of(payload, "speed") if s["result"].get("flops")]
    if not speed:
        return []
    import train_speed  # imports torch: only once there is a table to draw

    compiled = {s["result"].get("size"): s for s in _steps_of(payload, "compile")}
    rows = []
    for step in speed:
        r = step["result"]
        variants = [dict(r["attnmel"], compile=False)] if r.get("attnmel") else [{"compile": False, "note": step["status"]}]
        if r["size"] in compiled:
            c = compiled[r["size"]]
            variants.append(dict(c["result"]["attnmel"], compile=True) if c["result"].get("attnmel")
                            else {"compile": True, "note": f"{c['status']}: {c['note']}"})
        rows.append({"size": r["size"], "images": r["images"], "reference": r.get("reference"), "variants": variants})
    first = speed[0]["result"]
    machine = payload.get("machine") or {}
    rate, label = machine.get("matmul_flops", first.get("rate")), machine.get("matmul_dtype", "?")
    counts = ", ".join(f"{r['size']}: {r['images']}" for r in rows)
    lines = ["", f"## Training speed ({first['model']} ({first['backbone']}) at {first['image_size']} px, batch "
             f"{first['batch_size']}; images per size: {counts})", "",
             f"attnmel path: cache + device pipeline, amp {first.get('amp_label', '?')}, channels_last "
             f"{first.get('channels_last_label', '?')}; reference: PIL + per-sample transforms in {first['workers']} "
             "workers, fp32; compile row: torch.compile of the training model, "
             f"{(compiled.get(first['size']) or {}).get('result', {}).get('compile_backend', 'inductor')} backend, "
             "its warm-up epoch excluded.", ""]
    lines += train_speed.speed_table(rows, first["flops"], first["counted"], rate, label)
    profile = first.get("profile")
    if profile:
        lines += ["", f"Profile of attnmel's training step ({profile['measured']}, {profile['step_ms']:.1f} ms per step "
                  f"= {profile['images_per_second']:.0f} img/s under the profiler; the operators keep the "
                  f"{profile['measured'].split()[0]} busy {100 * profile['busy']:.0f}% of the step; full table in profile.txt):", "",
                  "| operator | ms per step | share | calls per step |", "|---|---:|---:|---:|"]
        lines += [f"| `{t['op']}` | {t['ms_per_step']:.2f} | {100 * t['share']:.1f}% | {t['calls_per_step']:.0f} |"
                  for t in profile["top"]]
    return lines


QUALITY_METRICS = ("roc_auc", "average_precision", "sensitivity_at_90_specificity")
_SHALLOW = ("jaccard_pool3", "jaccard_stage3", "jaccard_layer2")
_DEEP = ("jaccard_pool4", "jaccard_stage4", "jaccard_layer3", "jaccard_cam")


def _quality_lines(payload: dict) -> list[str]:
    steps = _steps_of(payload, "quality")
    if not steps:
        return []
    by_row: dict[str, list[dict]] = {}
    for step in steps:
        row = step["task"].removeprefix("quality-").rsplit("-seed", 1)[0]
        by_row.setdefault(row, []).append(step)
    lines = ["", "## Quality on ISIC 2017 (train -> val, epoch selected by val ROC AUC)", "",
             f"Every run: `{' '.join(payload['suite']['fast_path'])}` (speed only; each preset's own batch size, "
             "schedule and epochs). Jaccard: attention (or the GAP model's CAM) against the lesion masks of val.", "",
             "| row | preset + overrides | seeds done | epochs x input | val ROC AUC | val AP | sens @ 90% spec | "
             "Jaccard stride-8 | Jaccard stride-16 or CAM | img/s per epoch (incl. val) | min per run | not done |",
             "|---|---|---|---|---|---|---|---|---|---:|---:|---|"]
    extra: list[str] = []
    for row, row_steps in by_row.items():
        done = [s["result"] for s in row_steps if s["status"] == "ok" and "roc_auc" in s["result"]]
        missing = [f"seed {s['task'].rsplit('seed', 1)[1]}: {s['status']}" for s in row_steps if s not in
                   [t for t in row_steps if t["status"] == "ok" and "roc_auc" in t["result"]]]
        spec = payload["suite"]["rows"].get(row, {})
        recipe = f"`{spec.get('preset', '?')}` {' '.join(spec.get('set', []))}".strip()
        if not done:
            lines.append(f"| {row} | {recipe} | - | | | | | | | | | {'; '.join(missing)} |")
            continue
        first = done[0]
        shallow = next((k for k in _SHALLOW if k in first), None)
        deep = next((k for k in _DEEP if k in first), None)
        lines.append(
            f"| {row} | {recipe} | {','.join(str(r['seed']) for r in done)} | {first['epochs']} x {first['image_size']} px | "
            + " | ".join(_cell([r[m] for r in done]) for m in QUALITY_METRICS)
            + f" | {_cell([r[shallow] for r in done]) if shallow else '-'} | {_cell([r[deep] for r in done]) if deep else '-'}"
            + f" | {statistics.mean(r['train_images_per_second'] for r in done):.0f}"
            + f" | {statistics.mean(r['seconds'] for r in done) / 60:.1f} | {'; '.join(missing)} |")
        for r in done:
            for e in r.get("extra", []):
                extra.append(f"| {row} | {r['seed']} | {e['data']}:{e['split']} | {e.get('images', '-')} | "
                             + " | ".join(f"{e[m]:.3f}" if m in e else "-" for m in QUALITY_METRICS)
                             + f" | {e.get('jaccard', '-')} | {e.get('note', '')} |")
    if extra:
        lines += ["", "The same checkpoints on other data (`--extra-eval`):", "",
                  "| row | seed | data:split | images | ROC AUC | AP | sens @ 90% spec | Jaccard (deepest map) | note |",
                  "|---|---|---|---:|---|---|---|---|---|"] + extra
    return lines


# --------------------------------------------------------------------------- checkpoints in fp16


def export_checkpoints(steps: list[dict], work: Path, out: Path) -> list[str]:
    """The best seed's ``best.safetensors`` of each quality row, in fp16 (same metadata), where it fits
    in what comes back from the machine (8 files of 16 MiB); returns one note per row."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    best: dict[str, dict] = {}
    for step in steps:
        r = step["result"]
        if step["kind"] == "quality" and step["status"] == "ok" and "roc_auc" in r:
            if r["row"] not in best or r["roc_auc"] > best[r["row"]]["roc_auc"]:
                best[r["row"]] = r
    notes = []
    for row, r in best.items():
        source = work / "quality" / row / f"seed{r['seed']}" / "best.safetensors"
        target = out / f"{row}-seed{r['seed']}-fp16.safetensors"
        files = [p for p in out.iterdir() if p.is_file() and not p.name.startswith(".")]
        with safe_open(str(source), framework="pt") as handle:
            metadata = handle.metadata()
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118 - safe_open has no __iter__
        halves = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
        size = sum(v.numel() * v.element_size() for v in halves.values())
        if not all(bool(torch.isfinite(v).all()) for v in halves.values() if v.is_floating_point()):
            notes.append(f"{row}: not exported (a weight overflows fp16)")
        elif size > RETURNED_FILE_BYTES * 0.98:
            notes.append(f"{row}: not exported ({size / 2**20:.0f} MiB in fp16 > 16 MiB)")
        elif target not in files and len(files) + 1 > RETURNED_FILES:
            notes.append(f"{row}: not exported (already {len(files)} files in --out)")
        else:
            tmp = target.with_name(f".{target.name}.tmp")
            save_file(halves, str(tmp), metadata=metadata)
            os.replace(tmp, target)
            notes.append(f"{row}: {target.name} ({target.stat().st_size / 2**20:.1f} MiB, val AUC {r['roc_auc']:.3f})")
    return notes


# --------------------------------------------------------------------------- children: one task each


def child_main(spec_path: str) -> int:
    _die_with_parent()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run_child's finally then ends a DDP child too
    payload = json.loads(Path(spec_path).read_text())
    s, task = Settings(**payload["settings"]), Task(**payload["task"])
    result_path = Path(s.work) / "results" / f"{task.name}.json"
    result: dict = {}

    def save(**values) -> None:
        result.update(values)
        _write_json(result_path, result)

    try:
        {"env": task_env, "smoke": task_smoke, "speed": task_speed, "compile": task_speed,
         "quality": task_quality, "ddp": task_ddp}[task.kind](s, task, save)
    except Exception as exc:  # noqa: BLE001 - one line for the table, the traceback for the log
        traceback.print_exc()
        message = " ".join(f"{type(exc).__name__}: {exc}".split())
        save(error=message[:500])
        print(f"FAILED: {message[:500]}", flush=True)
        return 1
    return 0


def _device(s: Settings):
    import torch

    if s.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(s.device)


def _nccl_version() -> str:
    import torch

    version = torch.cuda.nccl.version()
    return ".".join(map(str, version)) if isinstance(version, tuple) else str(version)


def _constraint_pins() -> dict[str, str]:
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

    pins = _constraint_pins()
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

    device = _device(s)
    versions = f"Python {platform.python_version()}, torch {torch.__version__}"
    machine = {"device": str(device), "cpu_count": os.cpu_count(), "python": platform.python_version(),
               "torch": torch.__version__, "cuda": torch.version.cuda}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        machine.update(device_name=props.name, memory_gib=round(props.total_memory / 2**30, 1),
                       capability=f"{props.major}.{props.minor}", multiprocessors=props.multi_processor_count,
                       cudnn=torch.backends.cudnn.version(), nccl=_nccl_version())
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

    estimates, data = {}, _data_summary(s)
    for row in s.rows:
        try:
            config = _quality_config(s, row, 0)
            flops = _training_flops(config)
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


def _training_flops(config) -> float:
    """FLOPs of one training image (forward + backward) at the config's input size, counted on the meta device."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from attnmel.models import create_model

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


def _data_summary(s: Settings) -> dict:
    from attnmel.data.readers import read_dataset

    index = read_dataset(s.data)
    train, val = index.split("train"), index.split("val")
    return {"path": s.data, "train": len(train), "train_melanoma": sum(x.label == 1 for x in train), "val": len(val),
            "val_masks": sum(x.mask_path is not None for x in val)}


def subset_dataset(source: str | Path, target: Path, n_train: int, n_val: int) -> Path:
    """An ISIC 2017 folder with the first ``n`` images of each split, a third of them melanoma, with
    their lesion masks: the smoke check's data, and --smoke's."""
    from attnmel.data.readers import read_dataset

    done = target / "DONE"
    if done.is_file() and done.read_text() == f"{Path(source).resolve()} {n_train} {n_val}":
        return target
    shutil.rmtree(target, ignore_errors=True)
    index = read_dataset(source)
    for split, official, n in (("train", "Training", n_train), ("val", "Validation", n_val)):
        samples = index.split(split)
        melanoma = [x for x in samples if x.label == 1][: max(1, n // 3)]
        chosen = sorted(melanoma + [x for x in samples if x.label != 1][: n - len(melanoma)], key=lambda x: x.image_id)
        images, masks = target / f"ISIC-2017_{official}_Data", target / f"ISIC-2017_{official}_Part1_GroundTruth"
        images.mkdir(parents=True)
        masks.mkdir(parents=True)
        with open(target / f"ISIC-2017_{official}_Part3_GroundTruth.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["image_id", "melanoma", "seborrheic_keratosis"])
            for x in chosen:
                shutil.copy(x.image_path, images / f"{x.image_id}{x.image_path.suffix}")
                if x.mask_path is not None:
                    shutil.copy(x.mask_path, masks / f"{x.image_id}_segmentation.png")
                writer.writerow([x.image_id, float(x.label == 1), 0.0])
    done.write_text(f"{Path(source).resolve()} {n_train} {n_val}")
    return target


# ---------------------------------------------------------------- smoke


def _smoke_data(s: Settings) -> Path:
    """The smoke check's few images (and, with --smoke, the quality runs')."""
    return subset_dataset(s.data, Path(s.work) / "smoke-data", 12 if s.smoke else 48, 8 if s.smoke else 32)


def _relative_error(out, ref) -> float:
    return float((out.float() - ref.float()).norm() / ref.float().norm().clamp_min(1e-12))


def task_smoke(s: Settings, task: Task, save) -> None:
    """Each code path on the device. A broken path that the later tasks use ends the task at once
    (and, by default, the run); one they do not use (a model they never train, DDP) is recorded and
    the checks go on, so the task fails loudly but the measurements still run."""
    import torch

    device = _device(s)
    size, batch, resize = (32, 2, 36) if s.smoke else (224, 8, 256)
    checks: list[dict] = []
    save(device=str(device), backend="nccl" if device.type == "cuda" else "gloo", checks=checks)
    subset = _smoke_data(s)
    broken: list[str] = []

    def check(name: str, fn, blocking: bool = True) -> None:
        """Run one check. ``blocking``: the later tasks need this path."""
        save(running=name, blocking=blocking)  # a check that hangs is named when the task is cut
        started = time.perf_counter()
        try:
            detail = fn()
        except Exception as exc:
            checks.append({"name": name, "ok": False, "seconds": time.perf_counter() - started,
                           "detail": " ".join(f"{type(exc).__name__}: {exc}".split())[:300]})
            traceback.print_exc()
            print(f"BROKEN {name}: {checks[-1]['detail']}", flush=True)
            broken.append(name)
            save(checks=checks, note=f"first broken path: {broken[0]}")
            if blocking:
                raise SuiteError(f"smoke check {name} failed: {checks[-1]['detail']}") from None
            return
        checks.append({"name": name, "ok": True, "seconds": time.perf_counter() - started, "detail": detail})
        print(f"ok  {name}: {detail} ({checks[-1]['seconds']:.1f} s)", flush=True)
        save(checks=checks)

    from attnmel.models import list_models, model_entry

    used = _models_in_use(s)
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False  # fp32 references must be fp32
    for name in list_models():
        for backbone in model_entry(name).backbones:
            check(f"model {name}/{backbone}", lambda n=name, b=backbone: _check_model(n, b, device, size, batch),
                  blocking=(name, backbone) in used)
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    check("device augmentation = CPU pipeline", lambda: _check_augment(subset, device, resize, size))
    check("cache", lambda: _check_cache(subset, device, Path(s.work) / "smoke-cache", resize, size))
    check("trainer + resume + evaluate", lambda: _check_trainer(s, subset, device, size, resize))
    check("ddp step", lambda: _check_ddp(s), blocking=False)  # one GPU trains without DDP
    if broken:
        save(running=None, blocking=False)
        raise SuiteError(f"smoke check: {len(broken)} broken path(s) that the later tasks do not use, first "
                         f"{broken[0]}: {next(c['detail'] for c in checks if c['name'] == broken[0])}")
    save(running=None, note=f"{len(checks)} checks passed")


def _models_in_use(s: Settings) -> set[tuple[str, str]]:
    """(model, backbone) of what the later tasks train: the speed benchmark's model and each quality row's."""
    from attnmel.config import load_config

    used = {("attnmel", "mobilenet_v2" if s.smoke else "vgg16_bn")}  # task_speed's model
    for row in s.rows:
        # read for the names only (nothing is loaded); a preset keeping pretrained statistics needs weights named
        config = load_config(ROWS[row]["preset"], [*ROWS[row]["set"], "model.weights=imagenet"])
        used.add((config.model.name, config.model.backbone))
    return used


def _check_model(name: str, backbone: str, device, size: int, batch: int) -> str:
    """fp32 NCHW is the reference; fp32 channels_last must match it closely, bf16 autocast loosely;
    then one bf16 + channels_last training step must give every parameter a finite gradient."""
    import torch

    from attnmel.models import create_model
    from attnmel.training.losses import FocalLoss

    torch.manual_seed(0)
    model = create_model(name, 2, backbone=backbone).to(device).eval()
    x = torch.randn(batch, 3, size, size, device=device)
    with torch.no_grad():
        reference = model(x)
        model = model.to(memory_format=torch.channels_last)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        channels_last = model(x_cl)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            bf16 = model(x_cl)
    errors = {"channels_last": _relative_error(channels_last.logits, reference.logits),
              "bf16": _relative_error(bf16.logits, reference.logits)}
    for layer, amap in reference.attention.items():
        errors[f"bf16 {layer}"] = _relative_error(bf16.attention[layer], amap)
    bounds = {"channels_last": 1e-2}  # other cuDNN algorithms (Winograd, FFT) round differently; a layout bug gives ~1
    for key, value in errors.items():
        if not value <= bounds.get(key, 0.1):  # NaN fails too
            raise AssertionError(f"{key} relative error {value:.2e} against fp32 NCHW (bound {bounds.get(key, 0.1)})")
    model.train()
    with torch.autocast(device.type, dtype=torch.bfloat16):
        out = model(x_cl)
    labels = torch.arange(batch, device=device) % 2
    loss = FocalLoss(2.0)(out.logits.float(), labels) + sum(a.float().mean() for a in out.attention.values())
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not bool(torch.isfinite(p.grad).all()))]
    if missing or not math.isfinite(loss.item()):
        raise AssertionError(f"loss {loss.item()}; no or non-finite gradient for {missing[:3]}")
    return (f"channels_last {errors['channels_last']:.1e}, bf16 {errors['bf16']:.1e}"
            + (f", maps {max(v for k, v in errors.items() if ' ' in k):.1e}" if reference.attention else "")
            + f"; logits {bf16.logits.dtype}, step ok")


def _augment_inputs(subset: Path, resize: int, size: int):
    from attnmel.data.readers import read_dataset
    from attnmel.data.transforms import NORMALIZATION_PRESETS, Preprocessing

    samples = read_dataset(subset).split("train")
    mean, std = NORMALIZATION_PRESETS["isic2017"]
    return samples, Preprocessing(0.8, resize, size, mean, std), mean, std


def _check_augment(subset: Path, device, resize: int, size: int) -> str:
    """Every training key and every evaluation view: the device batches equal the per-sample v2 path."""
    import torch
    from torchvision.transforms import v2

    from attnmel.data.dataset import IsicDataset
    from attnmel.data.masks import RoiSpec
    from attnmel.data.pipelines import DeviceBatches
    from attnmel.data.transforms import eval_augment, geometry, train_augment

    samples, prep, mean, std = _augment_inputs(subset, resize, size)
    roi = RoiSpec("lesion")
    keys = [(i % len(samples), 7919 * i + 11) for i in range(2 * len(samples))]
    source = DeviceBatches(samples, prep, roi, device)
    if device.type == "cuda" and not source.on_device:
        raise AssertionError(f"the split stayed in host memory ({source.placement})")
    reference = IsicDataset(samples, v2.Compose([geometry(resize, 0.8), train_augment(size, mean, std)]), roi)
    position = 0
    for b in source.train(keys, 8):
        if b["image"].device.type != device.type:
            raise AssertionError(f"batch made on {b['image'].device}, not {device}")
        for n in range(len(b["index"])):
            expected = reference[keys[position]]
            if not torch.equal(b["mask"][n].cpu(), expected["mask"]):
                raise AssertionError(f"key {keys[position]}: mask differs")
            torch.testing.assert_close(b["image"][n].cpu(), expected["image"], rtol=0, atol=1e-6)
            if int(b["label"][n]) != int(expected["label"]) or bool(b["has_mask"][n]) != bool(expected["has_mask"]):
                raise AssertionError(f"key {keys[position]}: label or has_mask differs")
            position += 1
    evaluation = IsicDataset(samples, v2.Compose([geometry(resize, 0.8), eval_augment(size, mean, std)]), None)
    seen = 0
    for b in source.evaluate(range(len(samples)), 8):
        for n in range(len(b["index"])):
            torch.testing.assert_close(b["image"][n].cpu(), evaluation[seen]["image"], rtol=0, atol=1e-6)
            seen += 1
    if position != len(keys) or seen != len(samples):
        raise AssertionError(f"{position} of {len(keys)} training keys and {seen} of {len(samples)} views compared")
    return f"{position} training samples and {seen} evaluation views equal ({source.placement})"


def _check_cache(subset: Path, device, cache_dir: Path, resize: int, size: int) -> str:
    """Cached geometry = fresh decode, the second prepare decodes nothing, and the device pipeline
    built from the cache holds the same pixels as one built by decoding."""
    import torch

    from attnmel.data.cache import GeometryCache, decode_geometry
    from attnmel.data.masks import RoiSpec
    from attnmel.data.pipelines import DeviceBatches

    samples, prep, _, _ = _augment_inputs(subset, resize, size)
    roi = RoiSpec("lesion")
    shutil.rmtree(cache_dir, ignore_errors=True)
    cache = GeometryCache(cache_dir, resize, 0.8)
    cached = cache.prepare(samples, roi, num_workers=2)
    again = cache.prepare(samples, roi, num_workers=0)
    if cached.images_built != len(samples) or again.images_built != 0:
        raise AssertionError(f"decoded {cached.images_built} then {again.images_built} of {len(samples)} images")
    for sample in samples:
        image, mask, has = cached.load(sample)
        fresh = decode_geometry(sample, roi, resize, 0.8)
        if not (torch.equal(image, fresh[0]) and torch.equal(mask, fresh[1]) and has == fresh[2]):
            raise AssertionError(f"{sample.image_id}: cached geometry differs from a fresh decode")
    from_cache = DeviceBatches(samples, prep, roi, device, cached=again)
    decoded = DeviceBatches(samples, prep, roi, device)
    if not (torch.equal(from_cache.images, decoded.images) and torch.equal(from_cache.masks, decoded.masks)):
        raise AssertionError("the device pipeline holds other pixels when built from the cache")
    return f"{len(samples)} images and regions equal to a fresh decode; reused without decoding ({from_cache.placement})"


#: seconds the DDP check's process may take (NCCL's start included) before it counts as hung
DDP_TIMEOUT = 90


def _check_ddp(s: Settings) -> str:
    """One DDP step in a process of its own, so that a hung collective costs DDP_TIMEOUT, not the task."""
    spec = Path(s.work) / "tasks" / "ddp.json"
    _write_json(spec, {"settings": asdict(s), "task": asdict(Task("ddp", "ddp", DDP_TIMEOUT))})
    result_path = Path(s.work) / "results" / "ddp.json"
    result_path.unlink(missing_ok=True)
    status, tail = run_child([sys.executable, str(Path(__file__).resolve()), "--child", str(spec)], DDP_TIMEOUT,
                             lambda line: print(line, flush=True), "  [ddp] ", _child_env(s))
    result = json.loads(result_path.read_text()) if result_path.is_file() else {}
    if status != "ok":
        raise AssertionError(result.get("error") or f"the DDP process was {status}" + (f": {tail[-1]}" if tail else ""))
    return result["detail"]


def task_ddp(s: Settings, task: Task, save) -> None:
    """A process group of one (NCCL on CUDA, gloo on CPU): a DDP step of AttnMel-CNN-Lesion on
    MobileNetV2 in bf16 + channels_last, with the library's batch-norm conversion and its
    differentiable all-reduce of the prior's Dice terms, must equal the same step without DDP.
    One process is all one GPU allows (NCCL refuses two ranks on one device); with one process
    SyncBatchNorm computes local statistics, so its cross-GPU kernels stay untested here."""
    import copy
    import socket

    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from attnmel.models import create_model
    from attnmel.training.distributed import GlobalBatchNorm, _sum_over_ranks
    from attnmel.training.losses import FocalLoss, attention_prior_loss

    device, size = _device(s), 32 if s.smoke else 224
    if device.type == "cuda":
        torch.cuda.set_device(device.index or 0)
        device = torch.device("cuda", device.index or 0)
    backend = "nccl" if device.type == "cuda" else "gloo"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        base = create_model("attnmel", 2, backbone="mobilenet_v2")
        plain = copy.deepcopy(base)
        converted = (torch.nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(base)) if device.type == "cuda"
                     else GlobalBatchNorm.convert(copy.deepcopy(base)))
        plain = plain.to(device).to(memory_format=torch.channels_last)
        converted = converted.to(device).to(memory_format=torch.channels_last)
        ddp = DistributedDataParallel(converted, device_ids=[device.index] if device.type == "cuda" else None,
                                      gradient_as_bucket_view=True)
        x = torch.randn(4, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
        labels = torch.tensor([0, 1, 0, 1], device=device)
        region = (torch.rand(4, 1, size, size, device=device) > 0.5).float()
        has_region = torch.tensor([True, True, False, True], device=device)

        def step(model, reduce):
            optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
            with torch.autocast(device.type, dtype=torch.bfloat16):
                out = model(x)
            prior, _ = attention_prior_loss({k: v.float() for k, v in out.attention.items()}, region, has_region,
                                            [0.01, 0.1], reduce=reduce)
            loss = FocalLoss(2.0)(out.logits.float(), labels) + prior
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            return loss.detach()

        loss_ddp = step(ddp, _sum_over_ranks)
        loss_plain = step(plain, None)
        a = torch.cat([p.detach().flatten().float() for p in converted.parameters()])
        b = torch.cat([p.detach().flatten().float() for p in plain.parameters()])
        difference = float((a - b).norm() / b.norm())
        if not difference < 1e-4 or not torch.isfinite(loss_ddp):
            raise AssertionError(f"the DDP step moved the weights elsewhere: relative difference {difference:.2e}")
        total = torch.ones(3, device=device)
        dist.all_reduce(total)
        gathered: list = [None]
        dist.all_gather_object(gathered, {"rank": 0})
        probe_tensor = torch.ones(3, device=device, requires_grad=True)
        _sum_over_ranks(probe_tensor * 2).sum().backward()
        if total.tolist() != [1.0, 1.0, 1.0] or gathered != [{"rank": 0}] or probe_tensor.grad.tolist() != [2.0, 2.0, 2.0]:
            raise AssertionError("a collective returned a wrong value")
        version = f" {_nccl_version()}" if backend == "nccl" else ""
        detail = (f"{backend}{version}, 1 process: DDP step = plain step (relative difference {difference:.1e}, loss "
                  f"{loss_ddp.item():.4f} vs {loss_plain.item():.4f}); all_reduce, all_gather_object and the "
                  "differentiable all-reduce answer right")
        print(detail, flush=True)
        save(backend=backend, detail=detail)
    finally:
        dist.destroy_process_group()


def _check_trainer(s: Settings, subset: Path, device, size: int, resize: int) -> str:
    """The Trainer with every fast option on the device: 1 epoch, --resume to 2, then evaluation with masks."""
    from attnmel.config import load_config
    from attnmel.evaluation.evaluate import EvaluationOptions, evaluate_checkpoint
    from attnmel.inference import DataSplit, InferenceSettings
    from attnmel.training.loop import Trainer

    run = Path(s.work) / "smoke-run"
    shutil.rmtree(run, ignore_errors=True)
    overrides = [*FAST, "model.weights=null", f"data.image_size={size}", f"data.resize={resize}", "train.batch_size=8",
                 f"data.cache_dir={Path(s.work) / 'smoke-cache'}", f"train.device={device}", "data.num_workers=2",
                 *(["train.threads=1"] if s.smoke else [])]
    config = load_config("isic2017/attnmel-mobilenetv2-lesion", [*overrides, "train.epochs=1"])
    Trainer(config, subset, run, progress=False, log=lambda *_: None).run()
    trainer = Trainer(load_config("isic2017/attnmel-mobilenetv2-lesion", [*overrides, "train.epochs=2"]), subset, run,
                      resume=True, progress=False, log=lambda *_: None)
    result = trainer.run()
    history = result.history
    if len(history) != 2 or not all(math.isfinite(r["train_loss"]) and r["train_prior_samples"] > 0 for r in history):
        raise AssertionError(f"history {history}")
    evaluation = evaluate_checkpoint(run, DataSplit(subset, "val"), run / "eval", EvaluationOptions(masks=True),
                                     InferenceSettings(device=str(device), progress=False))
    jaccard = {layer: evaluation.attention_quality.mean(layer) for layer in evaluation.attention_quality.layers}
    if not jaccard or not all(math.isfinite(v) for v in jaccard.values()):
        raise AssertionError(f"attention Jaccard {jaccard}")
    return (f"2 epochs (the second resumed) at {size} px on {device}, {history[-1]['images_per_second']:.0f} img/s; "
            f"val AUC {evaluation.classification['melanoma'].roc_auc:.3f}, Jaccard "
            + ", ".join(f"{k} {v:.2f}" for k, v in jaccard.items()))


# ---------------------------------------------------------------- speed


def task_speed(s: Settings, task: Task, save) -> None:
    """One size of benchmarks/train_speed.py (reference, then attnmel, then the profile), or its
    compile row; results are saved after each part."""
    import torch
    import train_speed

    device = _device(s)
    size_text, images = task.spec["size"], task.spec["images"]
    options = (["--image-size", "32", "--resize", "36", "--batch-size", "4", "--workers", "2", "--threads", "1",
                "--backbone", "mobilenet_v2"] if s.smoke else ["--workers", str(s.workers)])
    args = train_speed.build_parser().parse_args(["--data", s.data, "--images", str(images), "--device", str(device),
                                                  "--sizes", size_text, *options])
    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(s.work) / "speed" / f"{size_text}-{images}"
    flops, counted = train_speed.training_flops(args)
    amp = device.type == "cuda"
    save(size=size_text, images=images, model=args.model, backbone=args.backbone, image_size=args.image_size,
         batch_size=args.batch_size, workers=args.workers, flops=flops, counted=counted,
         amp_label="bf16" if amp else "off", channels_last_label="on" if amp else "off")
    started = time.perf_counter()
    size = tuple(int(v) for v in size_text.split("x"))
    data = train_speed.make_inputs(Path(s.data), work / "data", size, images, max(2, args.batch_size // 4), args.workers)
    print(f"inputs: {images} + {max(2, args.batch_size // 4)} JPEGs at {size_text} in {time.perf_counter() - started:.1f} s",
          flush=True)
    if task.kind == "compile":
        backend = "eager" if s.smoke else "inductor"
        if backend != "inductor":  # --smoke: dynamo's graph capture without inductor's minutes of C++ compiling on a CPU
            import functools

            torch.compile = functools.partial(torch.compile, backend=backend)
        ours = {}
        with train_speed._peak_memory(device, ours):
            ours.update(train_speed.run_attnmel(data, args, device, work, True))
        save(attnmel=ours, compile_backend=backend)
        print(f"attnmel + compile: {ours['train']:.1f} img/s", flush=True)
        return
    reference = {}
    with train_speed._peak_memory(device, reference):
        reference.update(train_speed.run_reference(data, args, device))
    save(reference=reference)
    print(f"reference: {reference['train']:.1f} img/s (data path alone {reference['data']:.1f})", flush=True)
    ours = {}
    with train_speed._peak_memory(device, ours):
        ours.update(train_speed.run_attnmel(data, args, device, work, False))
    save(attnmel=ours)
    print(f"attnmel: {ours['train']:.1f} img/s (data path alone {ours['data']:.1f}); b/a {ours['train'] / reference['train']:.2f}x",
          flush=True)
    if task.spec.get("profile"):
        profile = train_speed.profile_attnmel(data, args, device, work, steps=5)
        _write_text(Path(s.out) / "profile.txt", f"attnmel training step, {size_text} inputs, batch {args.batch_size}, "
                    f"{device}: {profile['step_ms']:.1f} ms per step\n\n{profile['table']}\n")
        save(profile={k: v for k, v in profile.items() if k != "table"})
        print(f"profile: {profile['step_ms']:.1f} ms per step; top: " + ", ".join(
            f"{t['op']} {100 * t['share']:.0f}%" for t in profile["top"][:4]), flush=True)


# ---------------------------------------------------------------- quality


def _quality_config(s: Settings, row: str, seed: int):
    from attnmel.config import load_config

    spec = ROWS[row]
    overrides = [*spec["set"], *FAST, f"train.seed={seed}", f"data.num_workers={min(s.workers, 8)}",
                 f"data.cache_dir={Path(s.work) / 'cache'}", f"train.device={s.device}"]
    if spec.get("weights"):
        if not s.weights or not Path(s.weights).is_file():
            raise SuiteError(f"{s.weights or '--weights'}: the ImageNet MobileNetV2 weights file is missing; run "
                             "`python benchmarks/gpu_prepare.py` beside the code (it copies it into .data/gpu-suite) "
                             "or pass --weights FILE.")
        overrides.append(f"model.weights={s.weights}")
    if s.smoke:
        overrides += SMOKE_SET
    config = load_config(spec["preset"], overrides)
    config.name = f"gpu-suite-{row}-seed{seed}"
    return config


def task_quality(s: Settings, task: Task, save) -> None:
    """Train one (row, seed) run (or finish it), then evaluate its best checkpoint on val with attention Jaccard."""
    from attnmel.evaluation.evaluate import EvaluationOptions, evaluate_checkpoint
    from attnmel.inference import DataSplit, InferenceSettings
    from attnmel.training.loop import train
    from attnmel.training.resume import STATE_FILE

    row, seed = task.spec["row"], task.spec["seed"]
    config = _quality_config(s, row, seed)
    data = str(_smoke_data(s)) if s.smoke else s.data
    output = Path(s.work) / "quality" / row / f"seed{seed}"
    started = time.perf_counter()
    save(row=row, seed=seed, epochs=config.train.epochs, image_size=config.data.image_size,
         batch_size=config.train.batch_size)
    if _completed_epochs(output) < config.train.epochs:
        train(config, data, output, resume=(output / STATE_FILE).is_file(), progress=False,
              log=lambda text: print(text, flush=True))
    with open(output / "metrics.csv", newline="") as handle:
        history = list(csv.DictReader(handle))
    train_seconds = time.perf_counter() - started
    rates = [float(r["images_per_second"]) for r in history]
    save(train_seconds=round(train_seconds, 1), train_images_per_second=statistics.median(rates),
         best_epoch=max(history, key=lambda r: float(r["val_roc_auc"]))["epoch"])
    evaluation = output / "eval-val"
    if not (evaluation / "metrics.json").is_file():
        evaluate_checkpoint(output, DataSplit(data, "val"), evaluation, EvaluationOptions(masks=True),
                            InferenceSettings(device=s.device, progress=False))
    metrics = json.loads((evaluation / "metrics.json").read_text())
    values = {key: metrics["classification"]["melanoma"][key] for key in QUALITY_METRICS}
    for layer, layer_values in metrics.get("attention_quality", {}).get("layers", {}).items():
        values[f"jaccard_{layer}"] = layer_values["jaccard"]
    extra = []
    for i, item in enumerate(s.extra_eval):
        data, split = item.rsplit(":", 1)
        target = output / f"eval-extra{i}"
        if not (target / "metrics.json").is_file():
            evaluate_checkpoint(output, DataSplit(data, split), target, EvaluationOptions(masks=True),
                                InferenceSettings(device=s.device, progress=False))
        m = json.loads((target / "metrics.json").read_text())
        layers = m.get("attention_quality", {}).get("layers", {})
        deep = next((layers[k]["jaccard"] for k in ("pool4", "stage4", "layer3", "cam") if k in layers), None)
        extra.append({"data": data, "split": split, "images": m["images"],
                      **{k: m["classification"]["melanoma"][k] for k in QUALITY_METRICS},
                      "jaccard": "-" if deep is None or math.isnan(deep) else f"{deep:.3f}"})
    save(**values, extra=extra, seconds=round(time.perf_counter() - started, 1))
    print(f"{row} seed {seed}: " + ", ".join(f"{k} {v:.3f}" for k, v in values.items()), flush=True)


# --------------------------------------------------------------------------- command line


def _default_path(*candidates: Path) -> str:
    return str(next((c for c in candidates if c.exists()), candidates[0]))


def _install_wheels(folder: Path, target: Path) -> None:
    wheels = sorted(folder.glob("*.whl"))
    if not wheels:
        raise SuiteError(f"{folder}: no .whl files; run `python benchmarks/gpu_prepare.py --wheels` beside the code "
                         "and carry .whl, or leave out --wheels.")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--no-cache-dir", "--upgrade", "--target", str(target), *map(str, wheels)], check=True)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        return child_main(argv[1])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stopped: end the running task's process group
    prepared = REPO / ".data" / "gpu-suite"
    shared = REPO.parent / "shared"
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--out", required=True, help="where results.json, RESULTS-gpu.md, the log and checkpoints go")
    parser.add_argument("--work", help="runs, generated JPEGs, caches (default: <tmp>/attnmel-gpu-suite[-smoke])")
    parser.add_argument("--data", help="ISIC 2017 folder (default: .data/gpu-suite/isic2017, else ../shared/data/isic2017; "
                        "--smoke: the bundled sample)")
    parser.add_argument("--weights", help="ImageNet MobileNetV2 state dict (default: .data/gpu-suite/"
                        "mobilenet_v2_imagenet_features.pth, else ../shared/weights/...)")
    parser.add_argument("--smoke", action="store_true", help="the same tasks on tiny settings (a CPU, about 2 minutes)")
    parser.add_argument("--budget", type=float, help=f"seconds for the whole run (default {TOTAL_BUDGET}; --smoke "
                        f"{SMOKE_TOTAL_BUDGET})")
    parser.add_argument("--steps", nargs="+", default=["smoke", "speed", "compile", "quality"],
                        choices=["smoke", "speed", "compile", "quality"], help="which tasks (env and report always run)")
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--seeds", nargs="+", type=int, help="quality seeds (default: each row's)")
    parser.add_argument("--extra-eval", action="append", default=[], metavar="DATA:SPLIT",
                        help="also score every quality checkpoint on this dataset folder's split (repeatable)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1))
    parser.add_argument("--wheels", help="install the wheels in this folder (--no-index) before anything else")
    parser.add_argument("--keep-going", action="store_true", help="run the other tasks even when env or smoke fails")
    args = parser.parse_args(argv)

    data = args.data or (str(REPO / "src" / "attnmel" / "sample_data" / "isic2017") if args.smoke else
                         _default_path(prepared / "isic2017", shared / "data" / "isic2017"))
    weights = args.weights or _default_path(prepared / "mobilenet_v2_imagenet_features.pth",
                                            shared / "weights" / "mobilenet_v2_imagenet_features.pth")
    for item in args.extra_eval:
        if ":" not in item or not Path(item.rsplit(":", 1)[0]).exists():
            parser.error(f"--extra-eval {item!r}: give DATA:SPLIT with an existing dataset folder, e.g. ../isic2016:test")
    if not Path(data).is_dir():
        parser.error(f"--data {data}: no such folder; run `python benchmarks/gpu_prepare.py` beside the code or pass --data")
    out = Path(args.out)
    work = Path(args.work or Path(tempfile.gettempdir()) / f"attnmel-gpu-suite{'-smoke' if args.smoke else ''}")
    try:
        out.mkdir(parents=True, exist_ok=True)
        work.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        parser.error(f"--out/--work: cannot create the folder ({exc.strerror})")
    python_path = []
    if args.wheels:
        try:
            _install_wheels(Path(args.wheels), work / "site")
        except (SuiteError, subprocess.CalledProcessError) as exc:
            print(f"gpu_suite: {exc}", file=sys.stderr)
            return 2
        python_path.append(str(work / "site"))
    settings = Settings(out=str(out.resolve()), work=str(work.resolve()), data=str(Path(data).resolve()),
                        weights=str(Path(weights).resolve()) if weights else None, device=args.device,
                        workers=args.workers, smoke=args.smoke,
                        budget=args.budget or (SMOKE_TOTAL_BUDGET if args.smoke else TOTAL_BUDGET), steps=args.steps,
                        rows=args.rows, seeds=args.seeds, extra_eval=[str(Path(e.rsplit(':', 1)[0]).resolve()) + ":" +
                                                                      e.rsplit(":", 1)[1] for e in args.extra_eval],
                        keep_going=args.keep_going, python_path=python_path)
    return Suite(settings, argv).run()


if __name__ == "__main__":
    sys.exit(main())
