"""The demo runs end to end on the bundled sample (shortened here to one epoch)."""

from __future__ import annotations

import pytest

from attnmel.cli import main
from attnmel.demo import DISCLAIMER


@pytest.mark.slow
def test_demo_end_to_end(tmp_path, capsys):
    output = tmp_path / "demo"
    assert main(["demo", "--output", str(output), "--no-progress", "--set", "train.epochs=1"]) == 0
    printed = capsys.readouterr().out
    report = (output / "report.html").read_text()
    assert str((output / "report.html").resolve()) in printed
    assert DISCLAIMER in printed and "not a diagnostic tool" in report
    assert report.count("<img") == 2 + 20 * 3  # ROC + PR, then each image with two overlays
    assert "roc auc" in report
    assert (output / "evaluation" / "predictions.csv").is_file()
    # a second run replaces the previous demo folder
    assert main(["demo", "--output", str(output), "--no-progress", "--set", "train.epochs=1"]) == 0


def test_demo_refuses_foreign_folder(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    assert main(["demo", "--output", str(tmp_path), "--no-progress"]) == 2
    assert (tmp_path / "precious.txt").read_text() == "keep me"


@pytest.mark.parametrize("command", [["info"], ["--version"]])
def test_info_commands(command, capsys):
    try:
        assert main(command) == 0
    except SystemExit as exc:  # argparse's --version exits
        assert exc.code == 0
    assert "attnmel" in capsys.readouterr().out
