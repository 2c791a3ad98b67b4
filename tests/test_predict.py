"""``attnmel predict`` takes image files and folders, several at once, as a command line does."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from attnmel.cli import main
from attnmel.predict import collect_inputs, figure_names

from .conftest import SAMPLE

VAL = SAMPLE / "ISIC-2017_Validation_Data"


@pytest.fixture
def images(tmp_path) -> list[Path]:
    """Three sample images in a folder of their own (names as in ISIC 2017)."""
    folder = tmp_path / "in"
    folder.mkdir()
    return [Path(shutil.copy(path, folder)) for path in sorted(VAL.glob("*.jpg"))[:3]]


def _predict(tmp_path, checkpoint, *inputs) -> tuple[int, Path]:
    out = tmp_path / "out"
    code = main(["predict", *map(str, inputs), "--checkpoint", str(checkpoint), "--output", str(out), "--device", "cpu"])
    return code, out


def test_several_files_and_a_folder_are_predicted_once_each_in_order(tiny_checkpoint, tmp_path, images):
    extra = tmp_path / "more"
    extra.mkdir()
    shutil.copy(sorted(VAL.glob("*.jpg"))[3], extra)
    code, out = _predict(tmp_path, tiny_checkpoint, images[1], images[0], extra, images[1])
    assert code == 0
    table = pd.read_csv(out / "predictions.csv")
    expected = [images[1], images[0], *sorted(extra.glob("*.jpg"))]
    assert list(table["file"]) == [str(path) for path in expected]  # the order given, a repeat once
    assert sorted(p.stem for p in (out / "figures").glob("*.png")) == sorted(path.stem for path in expected)


def test_images_of_one_name_in_two_folders_keep_both_figures(tiny_checkpoint, tmp_path, images):
    twin = tmp_path / "twin"
    twin.mkdir()
    other = Path(shutil.copy(sorted(VAL.glob("*.jpg"))[4], twin / images[0].name))  # same name, another picture
    code, out = _predict(tmp_path, tiny_checkpoint, images[0], other)
    assert code == 0
    table = pd.read_csv(out / "predictions.csv")
    assert list(table["file"]) == [str(images[0]), str(other)]
    assert sorted(p.name for p in (out / "figures").glob("*.png")) == [f"{images[0].stem}-2.png", f"{images[0].stem}.png"]
    report = (out / "report.html").read_text()
    assert str(images[0]) in report and str(other) in report  # rows of one name say which file


def test_a_missing_input_among_several_is_one_line_naming_it(tiny_checkpoint, tmp_path, images, capsys):
    missing = tmp_path / "nowhere.jpg"
    code, out = _predict(tmp_path, tiny_checkpoint, images[0], missing, images[1])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and str(missing) in err and err.count("\n") == 1
    assert not (out / "predictions.csv").exists()


def test_an_unreadable_image_among_several_is_skipped_and_alone_is_an_error(tiny_checkpoint, tmp_path, images, capsys):
    broken = images[0].parent / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    code, out = _predict(tmp_path, tiny_checkpoint, images[0], broken)
    assert code == 0
    assert list(pd.read_csv(out / "predictions.csv")["file"]) == [str(images[0])]
    assert "broken.jpg" in (out / "report.html").read_text() and "skipped" in capsys.readouterr().out
    code, _ = _predict(tmp_path / "alone", tiny_checkpoint, broken)
    err = capsys.readouterr().err
    assert code == 2 and str(broken) in err and "Traceback" not in err


def test_inputs_are_collected_in_order_and_figure_names_never_collide(tmp_path):
    """The two rules behind the command, on paths alone (no model)."""
    for name in ("a.jpg", "b.png", "a.png"):
        (tmp_path / name).write_bytes(b"")
    assert collect_inputs([tmp_path / "b.png", tmp_path, tmp_path / "b.png"]) == [
        tmp_path / "b.png", tmp_path / "a.jpg", tmp_path / "a.png"]
    paths = [Path("x/a.jpg"), Path("y/a.jpg"), Path("a-2.jpg"), Path("z/a.png"), Path("b.jpg")]
    names = figure_names(paths)
    assert len(set(names)) == len(names) and names[0] == "a" and names[2] == "a-2" and names[4] == "b"
