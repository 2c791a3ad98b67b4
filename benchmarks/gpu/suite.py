"""The parent process: runs the plan's tasks one by one inside the run's budget, records each
step, and rewrites results.json and RESULTS-gpu.md after every one."""

from __future__ import annotations

import datetime
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from .export import export_checkpoints
from .files import completed_epochs, write_json, write_text
from .report import render_markdown
from .settings import ENTRY, FAST, RESERVE, ROWS, SMOKE_RESERVE, Settings, Task, plan
from .supervise import child_env, run_child


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
        write_json(spec_path, {"settings": asdict(self.s), "task": asdict(task)})
        self.log(f"== {task.name}: up to {timeout:.0f} s" + (f" (estimated {estimate:.0f} s)" if estimate else ""))
        started = time.monotonic()
        status, tail = run_child([sys.executable, str(ENTRY), "--child", str(spec_path)],
                                 timeout, self.log, f"[{task.name}] ", child_env(self.s))
        seconds = time.monotonic() - started
        result = json.loads(result_path.read_text()) if result_path.is_file() else {}
        note = result.get("note", "")
        if status == "cut":
            note = f"cut at {timeout:.0f} s" + (f" during {result['running']}" if result.get("running") else "")
            if task.kind == "quality":
                done = completed_epochs(self.work / "quality" / task.spec["row"] / f"seed{task.spec['seed']}")
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
        write_json(self.out / "results.json", payload)
        try:
            write_text(self.out / "RESULTS-gpu.md", render_markdown(payload))
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
