"""No traceback for a user's mistake, no silent wrong answer, bounded memory per upload.

Tampered checkpoints (tests/corpus.py ``CHECKPOINT_CASES``) go through every door that loads a
model; each must stop with one line per bad field naming the file and the field.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest
import torch

from attnmel.cli import main
from attnmel.errors import OutputError

from .conftest import REPO, make_isic2017_subset, tiny
from .corpus import CHECKPOINT_CASES, write_checkpoint_case


def _lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


@pytest.fixture
def sample_image(sample_data):
    return sorted((sample_data / "ISIC-2017_Validation_Data").glob("*.jpg"))[0]


@pytest.mark.parametrize("case", CHECKPOINT_CASES, ids=str)
def test_a_tampered_checkpoint_is_one_line_per_field_in_every_door(case, tiny_checkpoint, tmp_path, sample_image,
                                                                    sample_data, capsys):
    bad = write_checkpoint_case(case, tiny_checkpoint, tmp_path / "bad.safetensors")
    doors = {
        "evaluate": ["evaluate", "--checkpoint", str(bad), "--data", str(sample_data), "--output", str(tmp_path / "e")],
        "predict": ["predict", str(sample_image), "--checkpoint", str(bad), "--output", str(tmp_path / "p")],
        "export": ["export", "--checkpoint", str(bad), "--format", "safetensors", "--output", str(tmp_path / "x")],
        "serve": ["serve", "--checkpoint", str(bad), "--port", "1"],
    }
    for door, argv in doors.items():
        assert main(argv) == 2, door
        err = capsys.readouterr().err
        assert "Traceback" not in err and err.startswith("error: "), (door, err)
        assert case.words in err and str(bad) in err, (door, err)
        for line in _lines(err):  # every line names the file, or is the one-line fix
            assert str(bad) in line or line.startswith("Fix:"), (door, line)
    assert not (tmp_path / "e").exists() and not (tmp_path / "p").exists()


def test_metadata_that_disagrees_with_its_weights_is_never_a_silent_answer(tiny_checkpoint, tmp_path):
    """One class name for a two-output model used to write P(other) as P(melanoma)."""
    from attnmel.checkpoints.format import read_metadata
    from attnmel.errors import CheckpointError

    bad = write_checkpoint_case(CHECKPOINT_CASES[0], tiny_checkpoint, tmp_path / "one-name.safetensors")
    with pytest.raises(CheckpointError, match="'class_names': 1 names for a model with 2 outputs"):
        read_metadata(bad)


def test_nan_weights_are_an_error_in_predict_not_a_class(tiny_checkpoint, tmp_path, sample_image, capsys):
    from attnmel.checkpoints.format import save_model_checkpoint

    from .checkpoint_helpers import network_of

    model, meta = network_of(tiny_checkpoint)
    with torch.no_grad():
        model.classifier.weight.fill_(3e38)  # finite weights whose outputs overflow
    overflowing = save_model_checkpoint(tmp_path / "overflow.safetensors", model, meta)
    assert main(["predict", str(sample_image), "--checkpoint", str(overflowing), "--output", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert "NaN or infinite" in err and "Traceback" not in err and "-> other" not in err


def test_train_with_no_epochs_is_refused_before_any_image_is_read(tmp_path, capsys):
    for epochs in ("0", "-1"):
        assert main(["train", "--config", "isic2017/attnmel", "--data", str(tmp_path / "nowhere"),
                     "--set", f"train.epochs={epochs}", "--output", str(tmp_path / "run")]) == 2
        err = capsys.readouterr().err
        assert "train.epochs must be at least 1" in err and "nowhere" not in err  # the config fails first
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("option", ["train.batch_size=0", "data.crop_ratio=0", "train.threads=-3"])
def test_a_bad_training_value_is_one_line_naming_the_option(option, sample_data, tmp_path, capsys):
    assert main(["train", "--config", "isic2017/attnmel", "--data", str(sample_data), "--set", option,
                 "--output", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and option.split("=")[0] in err and "Traceback" not in err


@pytest.mark.parametrize("door", ["evaluate", "predict", "calibrate", "train"])
def test_an_unwritable_or_full_output_is_one_line_and_keeps_what_was_there(door, tiny_checkpoint, sample_data,
                                                                          sample_image, tmp_path, capsys, monkeypatch):
    """The disk fills up (or the folder is read-only) while a result is written: one line, exit 2."""
    import errno

    import attnmel.io

    real = attnmel.io.tempfile.mkstemp

    def full(*args, **kwargs):
        if kwargs.get("dir") and "out" in str(kwargs["dir"]):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(attnmel.io.tempfile, "mkstemp", full)
    out = tmp_path / "out"
    argv = {
        "evaluate": ["evaluate", "--checkpoint", str(tiny_checkpoint), "--data", str(sample_data), "--output", str(out)],
        "predict": ["predict", str(sample_image), "--checkpoint", str(tiny_checkpoint), "--output", str(out)],
        "calibrate": ["calibrate", "--checkpoint", str(tiny_checkpoint), "--data", str(sample_data)],
        "train": ["train", "--config", "isic2017/attnmel", "--data", str(make_isic2017_subset(tmp_path / "d", 4, 2)),
                  "--output", str(out), *[a for o in tiny() for a in ("--set", o)]],
    }[door]
    if door == "calibrate":  # it writes the checkpoint's own folder
        monkeypatch.setattr(attnmel.io.tempfile, "mkstemp", lambda *a, **k: (_ for _ in ()).throw(
            OSError(errno.EROFS, "Read-only file system")))
    before = tiny_checkpoint.read_bytes()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "cannot write here" in err and "Traceback" not in err, err
    assert err.count("\n") == 1
    assert tiny_checkpoint.read_bytes() == before


def test_output_error_names_the_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    import errno

    import attnmel.io
    from attnmel.io import atomic_write_text

    target = tmp_path / "x.txt"
    target.write_text("before")
    real_replace = os.replace

    def refused(src, dst):
        raise OSError(errno.EACCES, "Permission denied", str(dst))

    monkeypatch.setattr(attnmel.io.os, "replace", refused)
    with pytest.raises(OutputError, match=r"x.txt: cannot write here \(Permission denied\)"):
        atomic_write_text(target, "after")
    monkeypatch.setattr(attnmel.io.os, "replace", real_replace)
    assert target.read_text() == "before" and not list(tmp_path.glob(".*.tmp"))


def test_files_keep_the_permissions_the_umask_gives(tiny_checkpoint, tmp_path):
    from attnmel.checkpoints.format import save_model_checkpoint

    from .checkpoint_helpers import network_of

    old = os.umask(0o022)
    try:
        model, meta = network_of(tiny_checkpoint)
        written = save_model_checkpoint(tmp_path / "m.safetensors", model, meta)
    finally:
        os.umask(old)
    for path in (written, written.with_suffix(".json")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


def test_best_json_holds_strict_json(tiny_checkpoint):
    text = tiny_checkpoint.with_suffix(".json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))


def test_skip_bad_skips_an_image_that_fails_to_decode_mid_epoch(tmp_path, capsys):
    """A PNG whose header and IEND chunk are fine (so the pre-flight passes) but whose pixel data is not."""
    import io

    from PIL import Image

    data = make_isic2017_subset(tmp_path / "data", n_train=8, n_val=4, masks=False)
    source = sorted((data / "ISIC-2017_Training_Data").glob("*.jpg"))[0]
    buffer = io.BytesIO()
    Image.open(source).save(buffer, format="PNG")
    raw = bytearray(buffer.getvalue())
    idat = raw.index(b"IDAT")
    length = int.from_bytes(raw[idat - 4:idat], "big")
    for k in range(idat + 4 + length // 2, idat + 4 + length // 2 + 64):
        raw[k] ^= 0x5A
    victim = source.with_suffix(".png")
    victim.write_bytes(bytes(raw))
    source.unlink()
    args = ["train", "--config", "isic2017/attnmel", "--data", str(data), "--no-progress",
            *[a for o in tiny("train.epochs=1") for a in ("--set", o)]]
    assert main([*args, "--output", str(tmp_path / "run")]) == 2  # without skip_bad: one line naming the file
    err = capsys.readouterr().err
    assert victim.name in err and err.count("\n") == 1
    assert main([*args, "--output", str(tmp_path / "run2"), "--set", "data.skip_bad=true"]) == 0
    printed = capsys.readouterr().out
    assert "training attnmel (mobilenet_v2) on 8 images" in printed  # the pre-flight let it through
    assert "epoch 1: skipped an image that does not decode" in printed and victim.name in printed
    header, row = (tmp_path / "run2" / "metrics.csv").read_text().splitlines()[:2]
    assert dict(zip(header.split(","), row.split(","), strict=True))["train_skipped"] == "1"


def test_progress_bars_stay_off_when_output_is_not_a_terminal(tmp_path):
    code = ("import sys\nfrom attnmel.io import progress_bar\n"
            "for _ in progress_bar(range(3), show=True, desc='x'):\n    pass\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert out.returncode == 0 and "\r" not in out.stderr and "x:" not in out.stderr


@pytest.mark.slow
def test_a_16_bit_upload_is_decoded_without_full_size_float_copies(tmp_path):
    """A 16-bit 4000 x 4000 PNG (32 MB of pixels), decoded at full size as every door does: the old
    float64 path peaked above 380 MB; row blocks leave the pixels, 8-bit gray and RGB (96 MB)."""
    from PIL import Image

    path = tmp_path / "big16.png"
    Image.fromarray((np.arange(4000 * 4000, dtype=np.uint32).reshape(4000, 4000) % 65536).astype(np.uint16)).save(path)
    code = (
        "import resource, sys\nfrom attnmel.data.images import read_image_bytes\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "image = read_image_bytes(data, 'big16.png')\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(image.size, (after - before) // 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert out.returncode == 0, out.stderr
    size, growth_mb = out.stdout.rsplit(" ", 1)
    assert size.strip() == "(4000, 4000)"
    assert int(growth_mb) < 150, out.stdout  # the decoded pixels (32 MB), 8-bit gray and RGB, not 380 MB
