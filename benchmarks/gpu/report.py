"""RESULTS-gpu.md from results.json: the machine, every task's status, then the smoke, speed and
quality tables (plain data in, Markdown out; torch only once there is a speed table)."""

from __future__ import annotations

import math
import statistics


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
