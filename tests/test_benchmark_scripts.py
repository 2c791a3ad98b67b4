"""Every script in benchmarks/ and scripts/ runs, as its command line, on tiny inputs.

A script nobody runs rots unseen when the library's API moves under it. Each case below starts the
script in a process of its own (from a scratch folder, so that nothing lands in the repository) on
the bundled sample, a random-weight checkpoint and the smallest settings its flags allow, and checks
that it exits 0 and prints its table. The parametrisation lists every ``*.py`` of both folders, so a
new script without a case here (or in ``COVERED_ELSEWHERE``) fails.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
import torchvision

from .checkpoint_helpers import make_checkpoint
from .conftest import MOBILENET_WEIGHTS, REPO, SAMPLE, make_isic2017_subset

UNSEEN = REPO / "src" / "attnmel" / "sample_data" / "isic2016-unseen"
SCRIPTS = sorted(path.relative_to(REPO).as_posix() for folder in ("benchmarks", "scripts")
                 for path in (REPO / folder).glob("*.py"))

#: scripts whose whole command already runs on tiny inputs in another test (script: that test)
COVERED_ELSEWHERE = {
    "benchmarks/gpu_suite.py": "tests/test_gpu_suite.py::test_smoke_suite_runs_every_task_on_a_cpu",
    "scripts/ship_model.py": "tests/test_ship_model.py::test_ship_model_trains_chooses_and_packages",
    # the cross-validation yardstick, wherever its script lands, has its own smoke case beside its tests
    "benchmarks/yardstick.py": "tests/test_yardstick.py",
    "scripts/yardstick.py": "tests/test_yardstick.py",
}
#: modules beside the scripts that are no command of their own (module: the scripts that import it,
#: whose cases run it)
HELPERS = {"benchmarks/ood_images.py": ("benchmarks/trust.py",)}


@dataclass
class Inputs:
    """What the cases share: a random-weight checkpoint (MobileNetV2, 64 px), random ImageNet-shaped
    MobileNetV2 features, and a small ISIC 2017 folder with lesion masks."""

    checkpoint: Path
    weights: Path
    isic2017: Path


@dataclass
class Run:
    """A script's arguments and what its output must hold: a table under ``table`` (its header's
    start) with at least ``rows`` rows, and/or a line matching ``line``; ``then`` checks the files."""

    args: list[str]
    table: str | None = None
    rows: int = 1
    line: str | None = None
    then: Callable[[], None] | None = None


@dataclass
class Case:
    build: Callable[[Inputs, Path], Run]
    slow: bool = False
    #: why the case cannot run here (checked when it runs), or None
    needs: Callable[[], str | None] = field(default=lambda: None)


CASES: dict[str, Case] = {}


def case(script: str, *, slow: bool = False, needs: Callable[[], str | None] = lambda: None):
    def register(build: Callable[[Inputs, Path], Run]) -> Callable[[Inputs, Path], Run]:
        CASES[script] = Case(build, slow, needs)
        return build
    return register


# --------------------------------------------------------------------------- benchmarks/


@case("benchmarks/data_check.py")
def _data_check(inputs: Inputs, tmp: Path) -> Run:
    shared = tmp / "shared"
    shared.mkdir()
    (shared / "isic2017").symlink_to(inputs.isic2017)
    return Run(["--shared", str(shared), "--workers", "1"], table="| datasets | workers | images |")


@case("benchmarks/decode_routes.py")
def _decode_routes(inputs: Inputs, tmp: Path) -> Run:
    return Run(["--checkpoint", str(inputs.checkpoint), "--images", "1",
                "--data", str(inputs.isic2017 / "ISIC-2017_Validation_Data")], table="| image | size | P full |", rows=4)


def _published_weights() -> str | None:
    return None if MOBILENET_WEIGHTS.is_file() else f"the published MobileNetV2 weights are not at {MOBILENET_WEIGHTS}"


@case("benchmarks/gpu_prepare.py", needs=_published_weights)
def _gpu_prepare(inputs: Inputs, tmp: Path) -> Run:
    shared = tmp / "shared"
    (shared / "data").mkdir(parents=True)
    (shared / "data" / "isic2017").symlink_to(inputs.isic2017)
    (shared / "weights").mkdir()
    (shared / "weights" / MOBILENET_WEIGHTS.name).symlink_to(MOBILENET_WEIGHTS)
    target = tmp / "prepared"

    def copied() -> None:
        assert len(list((target / "isic2017" / "ISIC-2017_Training_Data").glob("*.jpg"))) == 12
        assert (target / MOBILENET_WEIGHTS.name).stat().st_size == MOBILENET_WEIGHTS.stat().st_size

    return Run(["--shared", str(shared), "--target", str(target)], line=r"^travels with a run: .* MiB", then=copied)


@case("benchmarks/isic2024_memory.py")
def _isic2024_memory(inputs: Inputs, tmp: Path) -> Run:
    return Run(["--images", "24", "--workers", "0", "--folder", str(tmp / "isic2024")], table="| images | HDF5 MB |")


@case("benchmarks/noise_gain.py")
def _noise_gain(inputs: Inputs, tmp: Path) -> Run:
    return Run(["--weights", str(inputs.weights), "--checkpoint", str(inputs.checkpoint), "--data", str(inputs.isic2017),
                "--images", "4", "--estimate", "4"], table="| backbone |", rows=3)


@case("benchmarks/predict_speed.py", slow=True)
def _predict_speed(inputs: Inputs, tmp: Path) -> Run:
    return Run(["--checkpoint", str(inputs.checkpoint), "--images", str(UNSEEN / "ISBI2016_ISIC_Part3_Test_Data"),
                "--count", "4", "--repeats", "1", "--batch-size", "4", "--threads", "1"],
               table="| path | seconds | images/s |", rows=7)


@case("benchmarks/quality_isic2017.py", slow=True)
def _quality_isic2017(inputs: Inputs, tmp: Path) -> Run:
    return Run(["--data", str(inputs.isic2017), "--weights", str(inputs.weights), "--out", str(tmp / "runs"),
                "--rows", "gap-mnv2", "attnmel-mnv2", "gap-mnv2-tta", "--seeds", "0", "--epochs", "1",
                "--image-size", "32", "--workers", "0", "--threads", "1",
                "--set", "train.batch_size=4", "--set", "train.eval_batch_size=8", "--set", "train.passes_per_epoch=1"],
               table="| row |", rows=3)


@case("benchmarks/serve_load.py", slow=True)
def _serve_load(inputs: Inputs, tmp: Path) -> Run:
    return Run(["--checkpoint", str(inputs.checkpoint), "--requests", "4", "--clients", "2", "--modes", "direct",
                "--warmup", "1", "--threads", "1", "--time-limit", "120", "--log-dir", str(tmp / "logs")],
               table="| mode | ok | errors |")


@case("benchmarks/serve_memory.py", slow=True)
def _serve_memory(inputs: Inputs, tmp: Path) -> Run:
    return Run(["--checkpoint", str(inputs.checkpoint), "--clients", "2", "--width", "640", "--height", "480"],
               table="| idle RSS MiB |")


@case("benchmarks/serve_stalled.py", slow=True)
def _serve_stalled(inputs: Inputs, tmp: Path) -> Run:
    return Run(["--checkpoint", str(inputs.checkpoint), "--clients", "1", "--budgets", "128"],
               table="| upload budget MB |")


@case("benchmarks/stability.py")
def _stability(inputs: Inputs, tmp: Path) -> Run:
    return Run(["--checkpoint", str(inputs.checkpoint), "--data", str(inputs.isic2017), "--split", "val", "--limit", "4"],
               table="| model | perturbation | images |", rows=3)


@case("benchmarks/train_speed.py", slow=True)
def _train_speed(inputs: Inputs, tmp: Path) -> Run:
    return Run(["--data", str(inputs.isic2017), "--images", "8", "--sizes", "160x120", "--device", "cpu",
                "--backbone", "mobilenet_v2", "--image-size", "32", "--resize", "36", "--batch-size", "4",
                "--workers", "0", "--threads", "1", "--warmup-batches", "1", "--work-dir", str(tmp / "work")],
               line=r"^\| 160x120 JPEG \| \(b\) attnmel \|")


def _shared_folder(tmp: Path) -> Path:
    """A ``--shared`` folder as the trust benchmarks read it: the bundled ISIC 2017 and unseen ISIC 2016
    samples, and a tiny HAM10000."""
    from .layouts import HAM_ROWS, make_ham10000

    shared = tmp / "shared"
    (shared / "data").mkdir(parents=True)
    (shared / "data" / "isic2017").symlink_to(SAMPLE)
    (shared / "data" / "isic2016").symlink_to(UNSEEN)
    make_ham10000(shared / "data" / "ham10000", HAM_ROWS)
    return shared


@case("benchmarks/trust.py", slow=True)
def _trust(inputs: Inputs, tmp: Path) -> Run:
    shared = _shared_folder(tmp)
    figures = tmp / "figures.json"

    def wrote_figures() -> None:
        assert "ood" in figures.read_text()

    return Run(["--shared", str(shared), "--checkpoint", str(inputs.checkpoint), "--cache", str(tmp / "cache"),
                "--json", str(figures)], table="| detector |", rows=4, then=wrote_figures)


@case("benchmarks/ood.py", slow=True)
def _ood(inputs: Inputs, tmp: Path) -> Run:
    shared = _shared_folder(tmp)
    return Run(["--shared", str(shared), "--checkpoint", str(inputs.checkpoint), "--cache", str(tmp / "cache"),
                "--splits", "2", "--noise", "35", "--per-photo", "2", "--ham-train", "20", "--held-out-share", "0.5"],
               table="| set | images |", rows=8)


# --------------------------------------------------------------------------- scripts/


@case("scripts/make_unseen_sample.py")
def _make_unseen_sample(inputs: Inputs, tmp: Path) -> Run:
    output = tmp / "unseen"

    def written() -> None:
        assert len(list((output / "ISBI2016_ISIC_Part3_Test_Data").glob("*.jpg"))) >= 4

    return Run(["--isic2017", str(inputs.isic2017), "--isic2016", str(UNSEEN), "--output", str(output), "--images", "4"],
               line=r"^wrote \d+ unseen images", then=written)


# --------------------------------------------------------------------------- the runs


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Inputs:
    root = tmp_path_factory.mktemp("script-inputs")
    checkpoint = make_checkpoint(root / "tiny.safetensors")
    weights = root / "mobilenet_v2_features.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.mobilenet_v2().features.state_dict(prefix="features."), weights)
    return Inputs(checkpoint, weights, make_isic2017_subset(root / "isic2017", n_train=12, n_val=6))


def table_rows(output: str, header: str) -> list[str]:
    """The rows under the first table whose header starts with ``header`` (its ``|---`` line skipped)."""
    lines = output.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(header)), None)
    assert start is not None, f"no table {header!r} in:\n{output[-3000:]}"
    assert lines[start + 1].startswith("|--"), lines[start + 1]
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return rows


def _param(script: str):
    slow = script in CASES and CASES[script].slow
    return pytest.param(script, id=script, marks=[pytest.mark.slow] if slow else [])


@pytest.mark.parametrize("script", [_param(script) for script in SCRIPTS])
def test_the_script_runs_on_tiny_inputs(script, inputs, tmp_path):
    if script in COVERED_ELSEWHERE:
        where = COVERED_ELSEWHERE[script]
        test_file, _, name = where.partition("::")
        text = (REPO / test_file).read_text()
        assert Path(script).stem in text and (not name or f"def {name}(" in text), f"{where} no longer runs {script}"
        return
    if script in HELPERS:
        imports = re.compile(rf"^\s*(from|import) {Path(script).stem}\b", re.MULTILINE)
        users = [user for user in HELPERS[script] if user in CASES and imports.search((REPO / user).read_text())]
        assert users, f"{script}: none of {HELPERS[script]} imports it and has a case here"
        return
    assert script in CASES, f"{script} has no smoke case: add one to {Path(__file__).name} (tiny inputs, its table)"
    why = CASES[script].needs()
    if why:
        pytest.skip(why)
    run = CASES[script].build(inputs, tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH")) if p),
           "OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"}
    scratch = tmp_path / "cwd"  # relative default paths (runs/, caches) land here, never in the repository
    scratch.mkdir()
    done = subprocess.run([sys.executable, str(REPO / script), *run.args], cwd=scratch, env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, f"{script} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    if run.table:
        assert len(table_rows(done.stdout, run.table)) >= run.rows, done.stdout[-3000:]
    if run.line:
        assert re.search(run.line, done.stdout, re.MULTILINE), f"no line {run.line!r} in:\n{done.stdout[-3000:]}"
    if run.then:
        run.then()


def test_every_case_names_a_script_that_exists():
    """A case left behind by a renamed or removed script would never run."""
    assert not sorted((set(CASES) | set(HELPERS)) - set(SCRIPTS))
