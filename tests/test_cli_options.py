"""Options are checked where they are parsed, mean one thing across commands, and a command imports
only what it uses (``--version`` and ``--help`` never import torch)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from attnmel.cli import COMMANDS, main


def _imports_torch(*argv: str) -> bool:
    code = "import sys\nfrom attnmel.cli import main\nmain(sys.argv[1:])\nprint('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    return out.stdout.strip().splitlines()[-1] == "True"


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["train", "--help"], ["serve", "--help"],
                                  ["data", "check", "--help"], ["report", "--help"]])
def test_version_and_help_do_not_import_torch(argv):
    assert not _imports_torch(*argv)


def test_data_check_does_not_import_torch(sample_data):
    assert not _imports_torch("data", "check", str(sample_data), "--no-decode")


def test_every_command_has_help(capsys):
    assert main(["--help"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in COMMANDS)


@pytest.mark.parametrize(("argv", "option"), [
    (["evaluate", "--data", ".", "--bins", "0"], "--bins"),
    (["evaluate", "--data", ".", "--batch-size", "0"], "--batch-size"),
    (["evaluate", "--data", ".", "--threshold", "1.5"], "--threshold"),
    (["calibrate", "--checkpoint", "x", "--data", ".", "--workers", "-1"], "--workers"),
    (["predict", ".", "--batch-size", "-2"], "--batch-size"),
    (["serve", "--port", "99999"], "--port"),
    (["serve", "--threads", "-3"], "--threads"),
    (["serve", "--max-upload-mb", "0"], "--max-upload-mb"),
    (["data", "check", ".", "--workers", "many"], "--workers"),
])
def test_a_bad_option_value_is_one_line_naming_the_option(argv, option, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and option in err and "Traceback" not in err


def test_cli_defaults_are_the_library_defaults():
    from attnmel.cli import calibrate, export, serve
    from attnmel.data.transforms import NORMALIZATION_PRESETS
    from attnmel.export import FORMATS, ONNX_OPSET
    from attnmel.metrics.calibration import DEFAULT_BINS
    from attnmel.serving.app import ServiceSettings

    assert calibrate.DEFAULT_BINS == DEFAULT_BINS
    assert (export.FORMATS, export.ONNX_OPSET) == (FORMATS, ONNX_OPSET)
    assert export.NORMALIZATION_PRESETS == tuple(NORMALIZATION_PRESETS)
    assert (serve.MAX_PIXELS, serve.MAX_BATCH) == (ServiceSettings.max_pixels, ServiceSettings.max_batch)
