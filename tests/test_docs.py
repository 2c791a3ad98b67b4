"""The front page and the documentation site.

The README stays a front page; the site (``mkdocs.yml``, ``docs/``) builds with ``mkdocs build
--strict`` (every link, anchor and API reference resolves); and the examples in both run as written:
every Python block, the README's command-line block, and every ``attnmel`` command line of the
manual through the real argument parser. An API change that leaves an example behind fails here.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from attnmel.cli import build_parser, main

from .conftest import REPO, SAMPLE

README = REPO / "README.md"
DOCS = REPO / "docs"
PAGES = [README, *sorted(DOCS.rglob("*.md"))]
UNSEEN_IMAGE = REPO / "src/attnmel/sample_data/isic2016-unseen/ISBI2016_ISIC_Part3_Test_Data/ISIC_0000117.jpg"
FENCE = re.compile(r"(?:<!-- (?P<marker>[^>]*?) -->\n)?```(?P<lang>\w*)\n(?P<body>.*?)```", re.S)


@dataclasses.dataclass(frozen=True)
class Block:
    page: Path
    line: int
    lang: str
    marker: str  # the HTML comment right above the fence ("example: NAME", "quick start"), or ""
    body: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    text = page.read_text()
    return [Block(page, text.count("\n", 0, m.start("body")), m["lang"], m["marker"] or "", m["body"])
            for m in FENCE.finditer(text)]


ALL = [block for page in PAGES for block in blocks(page)]
PYTHON = [b for b in ALL if b.lang == "python"]


# --- the front page ---------------------------------------------------------------------------

def test_the_readme_is_a_front_page():
    """Under 250 lines: what it is, the two-command start, the shipped model, an example each, links."""
    text = README.read_text()
    assert len(text.splitlines()) < 250
    for heading in ("## Quick start", "## Shipped model", "## Documentation"):
        assert heading in text, heading
    shipped = text.split("## Shipped model")[1].split("\n## ")[0]
    assert "benchmarks/RESULTS.md" in shipped  # the headline cites where it was measured
    assert [b.lang for b in blocks(README)].count("python") == 1
    assert [b.marker for b in blocks(README) if b.lang == "sh"] == ["quick start", "example: cli"]


def test_the_quick_start_is_exactly_make_demo_and_make_test():
    """Both commands build .venv themselves (the Makefile's targets depend on the install stamps)."""
    (quick,) = [b for b in blocks(README) if b.marker == "quick start"]
    commands = [line.split("#")[0].strip() for line in quick.body.splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^demo: install$", makefile, re.M) and re.search(r"^test: install-dev$", makefile, re.M)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_name_files_that_exist(page):
    """The README's links are read on the forge, not built by mkdocs: check them here (docs too)."""
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        assert path.exists(), f"{page.relative_to(REPO)}: link to {target}, which does not exist"


# --- the site ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_site_builds_strictly_offline(tmp_path):
    """Strict: any warning (a broken link or anchor, a docstring mkdocstrings cannot read) fails."""
    pytest.importorskip("mkdocs", reason="mkdocs is in the dev extra (pip install 'attnmel[dev]')")
    site = tmp_path / "site"
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(REPO / "mkdocs.yml"),
                          "--site-dir", str(site)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    assert (site / "index.html").is_file() and (site / "results" / "index.html").is_file()
    api = (site / "api" / "inference" / "index.html").read_text()
    assert "load_model" in api and "Prediction" in api  # generated from the docstrings
    assert "Benchmark results" in (site / "results" / "index.html").read_text()  # RESULTS.md is included


def test_every_page_is_in_the_navigation():
    import yaml

    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())

    def pages(nav):
        for item in nav:
            if isinstance(item, str):
                yield item
            else:
                for value in item.values():
                    yield from ([value] if isinstance(value, str) else pages(value))

    listed = set(pages(config["nav"]))
    assert listed == {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}


# --- the examples -----------------------------------------------------------------------------

def _features_only_mobilenet(path: Path) -> None:
    """A features-only MobileNetV2 state dict, the kind of file ``model.weights`` takes (random values)."""
    import torch
    import torchvision

    torch.manual_seed(0)
    features = torchvision.models.mobilenet_v2(weights=None).features.state_dict()
    torch.save({f"features.{key}": value for key, value in features.items()}, path)


class World:
    """A working folder as the examples assume one: ``lesion.jpg``, ``../shared/data/isic2017`` (the
    bundled sample), trained run folders, ImageNet-style weights. Each part is made when asked for."""

    def __init__(self, root: Path, tiny_checkpoint: Path):
        self.cwd = root / "work"
        self.cwd.mkdir(parents=True)
        self.root, self.tiny_run = root, tiny_checkpoint.parent

    def provide(self, need: str) -> None:
        if need == "lesion.jpg":
            shutil.copyfile(UNSEEN_IMAGE, self.cwd / "lesion.jpg")
        elif need == "isic2017":
            shutil.copytree(SAMPLE, self.root / "shared/data/isic2017", dirs_exist_ok=True)
        elif need.startswith("runs/"):
            shutil.copytree(self.tiny_run, self.cwd / need)
        elif need == "mobilenet_v2_imagenet_features.pth":
            _features_only_mobilenet(self.cwd / need)
        elif need == "export":  # what the manual's `attnmel export` line writes
            assert main(["export"]) == 0
        else:
            raise AssertionError(f"no such part of the world: {need}")


#: example name -> what its world must hold, and what to check after it ran (besides not raising)
EXAMPLES = {
    "load_model": (["lesion.jpg"], lambda ns: 0 <= ns["result"].probability <= 1),
    "shipped_model": (["lesion.jpg"], lambda ns: 0 <= ns["result"].probability <= 1),
    "create_model": ([], lambda ns: tuple(ns["out"].logits.shape) == (1, 2)),
    "register_model": ([], lambda ns: "melcnn-mnv2" in __import__("attnmel").list_models()),
    "checkpoint_metadata": (["runs/lesion"], lambda ns: list(ns["model"].meta.class_names) == list(ns["meta"].class_names)
                            == ["other", "melanoma"]),
    "onnx_runtime": (["lesion.jpg", "export"], lambda ns: ns["probabilities"].shape[0] == 1),
    "attention_quality": (["runs/lesion", "isic2017"], lambda ns: ns["quality"].to_dict()),
    "train_calibrate_evaluate": (["isic2017", "mobilenet_v2_imagenet_features.pth", "runs/seed2"],
                                 lambda ns: 0 <= ns["evaluation"].classification["melanoma"].roc_auc <= 1),
}


def test_every_python_example_is_marked_and_known():
    """A Python block without ``<!-- example: NAME -->`` (or with an unknown NAME) would go unrun."""
    names = [b.marker.removeprefix("example: ") for b in PYTHON]
    unmarked = [b.where for b in PYTHON if not b.marker.startswith("example: ")]
    assert not unmarked, f"Python blocks without an example marker: {unmarked}"
    assert len(names) == len(set(names)), names
    assert set(names) == set(EXAMPLES), set(names) ^ set(EXAMPLES)


@pytest.fixture
def world(tmp_path, tiny_checkpoint, monkeypatch):
    import attnmel.models.registry as registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # what an example registers goes
    world = World(tmp_path, tiny_checkpoint)
    monkeypatch.chdir(world.cwd)
    return world


@pytest.mark.slow
@pytest.mark.filterwarnings("error:attnmel.*deprecated:DeprecationWarning")  # examples show the current API
@pytest.mark.parametrize("block", PYTHON, ids=lambda b: b.marker.removeprefix("example: "))
def test_the_python_example_runs_as_written(block, world):
    needs, check = EXAMPLES[block.marker.removeprefix("example: ")]
    for need in needs:
        world.provide(need)
    namespace: dict = {"__name__": "__example__"}
    exec(compile(block.body, block.where, "exec"), namespace)
    assert check(namespace), block.where


@pytest.mark.slow
def test_the_readme_command_line_example_runs(world, capsys):
    """Each line, as a user would type it, through the real CLI, on the bundled sample."""
    world.provide("lesion.jpg")
    world.provide("isic2017")
    (cli,) = [b for b in blocks(README) if b.marker == "example: cli"]
    for argv in _command_lines(cli.body):
        assert main(argv[1:]) == 0, argv
    printed = capsys.readouterr().out
    assert "P(melanoma)" in printed or "melanoma" in printed
    assert (world.cwd / "predictions" / "report.html").is_file()
    assert (world.cwd / "eval-val" / "metrics.json").is_file()


def _command_lines(body: str) -> list[list[str]]:
    """The ``attnmel`` command lines of a shell block, as bash splits them (``$K`` is a fold number)."""
    joined = re.sub(r"\\\n\s*", " ", body)
    lines = [line.strip() for line in joined.splitlines() if line.strip().startswith("attnmel ")]
    commands = []
    for line in lines:
        out = subprocess.run(["bash", "-c", f'K=0; set -- {line}\nprintf "%s\\0" "$@"'],
                             capture_output=True, text=True, check=True)
        commands.append(out.stdout.split("\0")[:-1])
        assert commands[-1][:1] == ["attnmel"], line
    return commands


SHELL = [b for b in ALL if b.lang == "sh" and b.page != README]
COMMAND_LINES = [(b, argv) for b in SHELL for argv in _command_lines(b.body)]


def test_the_manual_shows_command_lines():
    assert len(COMMAND_LINES) > 50  # the parse test below has something to parse


@pytest.mark.parametrize("block, argv", COMMAND_LINES, ids=[f"{b.where}-{i}" for i, (b, _) in enumerate(COMMAND_LINES)])
def test_every_command_line_of_the_manual_parses(block, argv, capsys):
    """Every option the manual shows exists, with a value of the right kind (running them takes data and hours)."""
    assert argv[0] == "attnmel"
    try:
        build_parser(argv[1]).parse_args(argv[1:])
    except SystemExit as exc:
        pytest.fail(f"{block.where}: {' '.join(argv)}: {capsys.readouterr().err.strip()} (exit {exc.code})")
