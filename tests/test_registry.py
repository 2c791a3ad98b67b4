"""The registry of shipped weights is data (attnmel/weights/registry.json), read through a validated
dataclass and written by the ship scripts, so shipping a model never edits Python source."""

from __future__ import annotations

import json
import shutil

import pytest

from attnmel.checkpoints import pretrained
from attnmel.checkpoints.pretrained import REGISTRY_FILE, WEIGHTS_FOLDER, Registry, register
from attnmel.errors import CheckpointError, ConfigError
from attnmel.io import file_sha256

from .conftest import REPO

SHIPPED = WEIGHTS_FOLDER / REGISTRY_FILE


def test_every_shipped_entry_names_files_that_are_there_with_their_sha256():
    payload = json.loads(SHIPPED.read_text())
    assert payload["weights"] and payload["default"] in {entry["tag"] for entry in payload["weights"]}
    for entry in payload["weights"]:
        assert file_sha256(WEIGHTS_FOLDER / entry["file"]) == entry["sha256"], entry["tag"]
        assert (WEIGHTS_FOLDER / entry["card"]).is_file(), entry["tag"]
    assert pretrained.list_pretrained() == [entry["tag"] for entry in payload["weights"]]
    assert pretrained.DEFAULT_TAG == payload["default"]


def test_no_python_source_holds_a_shipped_sha256():
    """What a new model changes is the registry file; code that names a digest would go stale with it."""
    digests = {entry.sha256 for entry in Registry.read(SHIPPED).weights.values()}
    sources = [*(REPO / "src").rglob("*.py"), *(REPO / "scripts").rglob("*.py"), *(REPO / "benchmarks").rglob("*.py")]
    holding = [str(path) for path in sources if any(digest in path.read_text() for digest in digests)]
    assert not holding


def _entry(**changes) -> dict:
    entry = {"tag": "tiny", "file": "tiny.safetensors", "sha256": "ab" * 32, "card": "tiny.md", "description": "a test"}
    entry.update(changes)
    return {key: value for key, value in entry.items() if value is not ...}


MALFORMED = {
    "not JSON": ("{ not json", "not JSON"),
    "a list": ("[]", "must be an object with format, default and weights"),
    "unknown top-level key": ({"format": 1, "default": None, "weights": [], "extra": 1}, "format, default and weights"),
    "newer format": ({"format": 2, "default": None, "weights": []}, "format 2 is not 1"),
    "weights not a list": ({"format": 1, "default": None, "weights": {"tiny": {}}}, "'weights' must be a list"),
    "entry not an object": ({"format": 1, "default": None, "weights": ["tiny"]}, "entry 1: an entry must be an object"),
    "missing sha256": ({"format": 1, "default": None, "weights": [_entry(sha256=...)]}, "entry 1 ('tiny'): missing sha256"),
    "misspelt key": ({"format": 1, "default": None, "weights": [_entry(card=..., crad="tiny.md")]},
                     "missing card; unknown crad"),
    "short sha256": ({"format": 1, "default": None, "weights": [_entry(sha256="abc")]}, "64 lower-case hex digits"),
    "number as description": ({"format": 1, "default": None, "weights": [_entry(description=3)]},
                              "'description' must be a non-empty string"),
    "file outside the folder": ({"format": 1, "default": None, "weights": [_entry(file="../x.safetensors")]},
                                "'file' must be a plain .safetensors file name"),
    "card not Markdown": ({"format": 1, "default": None, "weights": [_entry(card="tiny.txt")]},
                          "'card' must be a plain .md file name"),
    "tag twice": ({"format": 1, "default": None, "weights": [_entry(), _entry()]}, "entry 2 ('tiny'): the tag is listed twice"),
    "default not listed": ({"format": 1, "default": "other", "weights": [_entry()]}, "the default 'other' is none of"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_registry_is_one_line_naming_the_file_and_the_fault(case, tmp_path):
    content, expected = MALFORMED[case]
    path = tmp_path / REGISTRY_FILE
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(CheckpointError) as caught:
        Registry.read(path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(str(path)) and expected in message, message


def _shipped_copy(folder, tag="tiny"):
    folder.mkdir(exist_ok=True)
    source = pretrained.get_pretrained()
    shutil.copy(source.path, folder / f"{tag}.safetensors")
    shutil.copy(source.card_path, folder / f"{tag}.md")
    return folder


def test_register_writes_the_entry_that_is_read_back(tmp_path):
    folder = _shipped_copy(tmp_path / "out")
    entry = register(folder, "tiny", "a copy of the shipped model")
    registry = Registry.read(folder / REGISTRY_FILE)
    assert registry.default == "tiny" and registry.weights == {"tiny": entry}  # the first entry is the default
    assert entry.verify() == folder / "tiny.safetensors" and entry.card_path == folder / "tiny.md"
    # a second tag does not take the default unless asked; rewriting an entry keeps its description
    _shipped_copy(folder, "second")
    register(folder, "second", "another copy")
    assert Registry.read(folder / REGISTRY_FILE).default == "tiny"
    (folder / "tiny.safetensors").write_bytes((folder / "tiny.safetensors").read_bytes() + b" ")
    rewritten = register(folder, "tiny", default=False)
    assert rewritten.description == "a copy of the shipped model" and rewritten.verify()
    assert list(Registry.read(folder / REGISTRY_FILE).weights) == ["tiny", "second"]
    assert register(folder, "second", default=True) and Registry.read(folder / REGISTRY_FILE).default == "second"
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_register_refuses_what_it_cannot_write_and_leaves_the_file_as_it_was(tmp_path):
    folder = _shipped_copy(tmp_path / "out")
    with pytest.raises(ConfigError, match="no entry 'tiny' yet; give its description"):
        register(folder, "tiny")
    with pytest.raises(CheckpointError, match="missing; write the weights and the card"):
        register(folder, "absent", "no files")
    assert not (folder / REGISTRY_FILE).exists()
    (folder / REGISTRY_FILE).write_text("{ broken")
    with pytest.raises(CheckpointError, match="not JSON"):
        register(folder, "tiny", "a copy")
    assert (folder / REGISTRY_FILE).read_text() == "{ broken"


def test_a_missing_registry_is_an_empty_one(tmp_path):
    registry = Registry.read(tmp_path / REGISTRY_FILE)
    assert registry.weights == {} and registry.default is None
