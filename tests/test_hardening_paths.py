"""Issue 30: nothing is written outside the place asked for, nothing a command did not write is
replaced, and no stale or relabelled data is taken silently.

Each test is one KIND of defect tried with several cases: names that become part of a path
(dataset names, run ids, image IDs, config names) pass one rule (``attnmel.arguments.path_name``);
an output set never destroys a file it did not write; calibrate writes the file it was given and
only over its own earlier output; a folder whose re-run failed is not reported; a resumed run
refuses data whose labels, masks or dataset names changed; a malformed HDF5 entry is one line; a file
written into a folder of the user's (report, data stats) replaces only its own earlier output; a new
training run refuses a folder of files no run wrote; export never writes into another training run.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from attnmel.arguments import check_path_name, path_name
from attnmel.cli import main
from attnmel.data.splits import SPLIT_FILE
from attnmel.errors import ConfigError, DataError
from attnmel.io import atomic_write_text, file_sha256
from attnmel.outputs import MANIFEST, TRAINING_RUN_FILES, OutputSet, read_manifest
from attnmel.training.resume import STATE_FILE

from .conftest import SAMPLE, make_isic2017_subset, tiny, write_csv


def _one_line(err: str) -> str:
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def _tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes: what a refused command must leave as it was."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _tiny_data(tiny_checkpoint: Path) -> Path:
    return tiny_checkpoint.parents[1] / "data"


# ------------------------------------------------------------------ names that become part of a path


@pytest.mark.parametrize("name", ["", "  ", ".", "..", "a/b", "x/../../victim", "/abs", "a\\b", "C:x", "new\nline",
                                  "nul\x00", "x" * 201, 5, None])
def test_the_one_rule_refuses_every_name_that_is_not_a_name_inside_a_folder(name):
    assert path_name(name) is not None
    with pytest.raises(ConfigError, match="Fix:"):
        check_path_name(name, "dataset name")


@pytest.mark.parametrize("name", ["ph2", "ISIC_0000000", "ham10000-2", "model.v2", "..x", "x..", "site 3", "é"])
def test_the_one_rule_accepts_plain_names(name):
    assert path_name(name) is None and check_path_name(name, "dataset name") == name


@pytest.mark.parametrize("names", [["..", "ham"], [".", "ham"], ["a\\b", "ham"], [" ", "ham"], ["C:x", "ham"],
                                   ["ok", "attnmel-outputs.json"], ["external_validation.json", "ok"],
                                   ["stale-20260101", "ok"], [".."]], ids=str)
def test_a_dataset_name_that_would_leave_the_output_folder_or_hit_its_files_is_refused(names, tiny_checkpoint,
                                                                                       tmp_path, capsys):
    """evaluate --data ..=PH2 --data ham=HAM --output project/ext wrote the first dataset into project/."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("metrics.json", "predictions.csv", "roc.png"):
        (project / name).write_text(f"the user's own {name}\n")
    before = _tree(tmp_path)
    data = _tiny_data(tiny_checkpoint)
    argv = ["evaluate", "--checkpoint", str(tiny_checkpoint), "--output", str(project / "ext"), "--no-ci"]
    for name in names:
        argv += ["--data", f"{name}={data}"]
    assert main(argv) == 2
    assert "dataset name" in _one_line(capsys.readouterr().err)
    assert _tree(tmp_path) == before and not (project / "ext").exists()


def test_names_taken_from_a_file_name_or_a_mapping_pass_the_same_rule(tmp_path):
    from attnmel.data.sources import data_sources

    odd = tmp_path / "..csv"  # its stem is "."
    odd.write_text("image,label\n")
    for data in ([odd], {"..": tmp_path}, {"a/b": tmp_path}, {"": tmp_path}):
        with pytest.raises(ConfigError, match="dataset name .*NAME=PATH"):
            data_sources(data)
    odd.with_name("x.csv").write_text("image,label\n")
    assert [s.name for s in data_sources([f"site={tmp_path}", str(odd.with_name("x.csv"))])] == ["site", "x"]


def _previous_set(folder: Path, run_id, command: str = "predict", files: dict[str, str] | None = None) -> None:
    """A folder as an earlier run left it: its files and a manifest (here with whatever run id a file may hold)."""
    files = files if files is not None else {"predictions.csv": "old predictions\n", "figures/a.png": "old figure"}
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    entries = [{"path": name, "sha256": file_sha256(folder / name)} for name in files]
    (folder / MANIFEST).write_text(json.dumps({"run_id": run_id, "command": command, "files": entries}))


@pytest.mark.parametrize("run_id", ["x/../../victim", "..", ".", "/tmp/abs", "a\\b", "", 5, None, ["x"]], ids=str)
def test_a_run_id_read_from_a_manifest_never_leads_stale_files_outside_the_folder(run_id, tmp_path):
    root = tmp_path / "root"
    folder = root / "a" / "out"
    folder.mkdir(parents=True)
    (root / "victim").mkdir()
    (root / "victim" / "figures").mkdir()
    (root / "victim" / "figures" / "a.png").write_text("the victim's file")
    _previous_set(folder, run_id)
    outside = {k: v for k, v in _tree(root).items() if not k.startswith("a/out/")}
    outputs = OutputSet(folder, "predict", known=("predictions.csv", "report.html", "figures/"), log=None)
    (outputs.path("predictions.csv")).write_text("new predictions\n")
    outputs.commit()
    assert {k: v for k, v in _tree(root).items() if not k.startswith("a/out/")} == outside
    assert (folder / "stale-earlier" / "figures" / "a.png").read_text() == "old figure"
    assert sorted(read_manifest(folder, ("predict",)).files) == ["predictions.csv"]


def test_predict_into_a_folder_whose_manifest_names_a_run_id_outside_it(tiny_checkpoint, tmp_path, capsys):
    """The issue's case through the command: the stale figures stay inside the folder."""
    out = tmp_path / "a" / "b" / "out"
    out.mkdir(parents=True)
    image = sorted((SAMPLE / "ISIC-2017_Validation_Data").glob("*.jpg"))[0]
    _previous_set(out, "x/../../victim", files={"figures/old.png": "old figure", "report.html": "old report"})
    (tmp_path / "a" / "victim").mkdir()
    (tmp_path / "a" / "victim" / "report.html").write_text("keep me")
    assert main(["predict", str(image), "--checkpoint", str(tiny_checkpoint), "--output", str(out)]) == 0
    assert (tmp_path / "a" / "victim" / "report.html").read_text() == "keep me"
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["b", "victim"]
    assert (out / "stale-earlier" / "figures" / "old.png").read_text() == "old figure"
    assert "moved 1 file(s) (figures/old.png)" in capsys.readouterr().out


@pytest.mark.parametrize("listed", ["../victim.txt", "/tmp/victim.txt", "stale-x/a.csv", "a/../../victim.txt"])
def test_file_names_a_manifest_lists_outside_the_folder_are_never_moved(listed, tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (tmp_path / "victim.txt").write_text("keep")
    (folder / "stale-x").mkdir()
    (folder / "stale-x" / "a.csv").write_text("set aside earlier")
    entries = [{"path": listed, "sha256": "0" * 64}]
    (folder / MANIFEST).write_text(json.dumps({"run_id": "r1", "command": "predict", "files": entries}))
    outputs = OutputSet(folder, "predict", log=None)
    outputs.path("predictions.csv").write_text("new\n")
    outputs.commit()
    assert (tmp_path / "victim.txt").read_text() == "keep"
    assert (folder / "stale-x" / "a.csv").read_text() == "set aside earlier"


@pytest.mark.parametrize("image_id", ["../../escape", "sub/escape", "..\\escape", "x/../../../escape", ".."])
def test_an_image_id_from_a_manifest_csv_cannot_name_a_figure_outside_figures(image_id, tiny_checkpoint, tmp_path,
                                                                              capsys):
    images = sorted((SAMPLE / "ISIC-2017_Validation_Data").glob("*.jpg"))[:2]
    data = tmp_path / "data"
    data.mkdir()
    for image in images:
        shutil.copy(image, data)
    write_csv(data / "manifest.csv", ["image", "label", "image_id"],
              [[images[0].name, "1", image_id], [images[1].name, "0", "plain"]])
    before = _tree(tmp_path)
    out = tmp_path / "deep" / "er" / "out"
    assert main(["evaluate", "--checkpoint", str(tiny_checkpoint), "--data", str(data), "--split", "all",
                 "--figures", "--output", str(out), "--no-ci"]) == 2
    assert "cannot name its figure" in _one_line(capsys.readouterr().err)
    assert _tree(tmp_path) == before and not (tmp_path / "deep").exists()  # refused before the folder is touched


@pytest.mark.parametrize("name", ["../escape", "..", "a/b", "C:run"])
def test_a_config_name_that_is_not_a_folder_name_is_refused_before_a_run_folder_is_made(name, tmp_path, monkeypatch,
                                                                                        capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--config", "isic2017/attnmel", "--data", str(tmp_path / "nowhere"),
                 "--set", f"name={name}"]) == 2
    assert "runs/<name>" in _one_line(capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("where", ["--output", "runs/<name>"])
def test_a_new_run_never_writes_its_config_over_the_config_it_reads(where, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "project" if where == "--output" else tmp_path / "runs" / "mine"
    folder.mkdir(parents=True)
    config = folder / "config.yaml"
    config.write_text("name: mine  # my own comments, which a rewrite would drop\n")
    before = _tree(tmp_path)
    argv = ["train", "--config", str(config), "--data", str(tmp_path / "nowhere")]
    assert main(argv + (["--output", str(folder)] if where == "--output" else [])) == 2
    assert "would write over what it reads" in _one_line(capsys.readouterr().err)
    assert _tree(tmp_path) == before


# ------------------------------------------------------------------ never replace a file it did not write


def _user_files(folder: Path) -> dict[str, str]:
    files = {"metrics.json": '{"mine": 1}\n', "predictions.csv": "the user's own\n", "roc.png": "not a png"}
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return files


def _evaluate_like(folder: Path, lines: list[str]) -> OutputSet:
    outputs = OutputSet(folder, "evaluate", known=("predictions.csv", "metrics.json", "roc.png", "figures/"),
                        log=lines.append)
    for name in ("predictions.csv", "metrics.json"):
        outputs.path(name).write_text(f"new {name}\n")
    (folder / "roc.png").write_text("new plot")  # written straight into the folder, then added (as the plots are)
    outputs.add(folder / "roc.png")
    outputs.commit()
    return outputs


@pytest.mark.parametrize("earlier", ["no manifest", "another command's manifest", "edited since", "unreadable manifest"])
def test_files_no_earlier_run_of_the_command_wrote_are_set_aside_not_overwritten(earlier, tmp_path):
    folder = tmp_path / "out"
    mine = _user_files(folder)
    if earlier == "another command's manifest":
        _previous_set(folder, "r1", command="predict", files=mine)
    elif earlier == "edited since":
        _previous_set(folder, "r1", command="evaluate", files=mine)
        (folder / "metrics.json").write_text('{"edited by hand": 1}\n')
        mine["metrics.json"] = '{"edited by hand": 1}\n'
    elif earlier == "unreadable manifest":
        (folder / MANIFEST).write_text("{not json")
    lines: list[str] = []
    _evaluate_like(folder, lines)
    aside = next(folder.glob("stale-*"))
    kept = {name: (aside / name).read_text() for name in mine if (aside / name).is_file()}
    assert "metrics.json" in kept and all(kept[name] == mine[name] for name in kept)
    if earlier != "edited since":
        assert kept == mine
    assert (folder / "metrics.json").read_text() == "new metrics.json\n"
    assert any("no earlier attnmel evaluate wrote here" in line for line in lines), lines


def test_a_rerun_replaces_its_own_unchanged_files_in_place(tmp_path):
    folder = tmp_path / "out"
    _evaluate_like(folder, [])
    lines: list[str] = []
    _evaluate_like(folder, lines)
    assert not list(folder.glob("stale-*")) and lines == []


def test_a_stale_folder_is_never_reused_so_nothing_set_aside_is_overwritten(tmp_path):
    folder = tmp_path / "out"
    for _ in range(3):
        _user_files(folder)
        (folder / MANIFEST).unlink(missing_ok=True)
        _evaluate_like(folder, [])
    asides = sorted(p.name for p in folder.glob("stale-*"))
    assert asides == ["stale-earlier", "stale-earlier-2", "stale-earlier-3"]
    for aside in asides:
        assert (folder / aside / "metrics.json").read_text() == '{"mine": 1}\n'
    _previous_set(folder, "stale-earlier-2/../x", command="evaluate", files={"figures/a.png": "fig"})
    _evaluate_like(folder, [])
    assert (folder / "stale-earlier-4" / "figures" / "a.png").read_text() == "fig"


@pytest.mark.parametrize("what", ["link to a folder", "file"])
def test_a_link_or_file_where_a_folder_of_the_set_should_be_is_set_aside_not_written_through(what, tmp_path):
    folder, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    folder.mkdir()
    elsewhere.mkdir()
    (elsewhere / "a.png").write_text("someone else's")
    if what == "file":
        (folder / "figures").write_text("a file called figures")
    else:
        os.symlink(elsewhere, folder / "figures")
    outputs = OutputSet(folder, "predict", known=("figures/",), log=None)
    atomic_write_text(outputs.path("figures/a.png"), "new figure")
    outputs.commit()
    assert (elsewhere / "a.png").read_text() == "someone else's"
    assert (folder / "figures").is_dir() and not (folder / "figures").is_symlink()
    assert (folder / "stale-earlier" / "figures").is_symlink() or (folder / "stale-earlier" / "figures").is_file()


def test_evaluate_into_a_folder_holding_the_users_files_keeps_them(tiny_checkpoint, tmp_path, capsys):
    project = tmp_path / "project"
    mine = _user_files(project)
    assert main(["evaluate", "--checkpoint", str(tiny_checkpoint), "--data", str(_tiny_data(tiny_checkpoint)),
                 "--split", "val", "--output", str(project), "--no-ci"]) == 0
    assert {name: (project / "stale-earlier" / name).read_text() for name in mine} == mine
    assert "no earlier attnmel evaluate wrote here" in capsys.readouterr().out


def test_export_into_another_runs_folder_keeps_that_runs_model(tiny_checkpoint, tmp_path, capsys):
    other = tmp_path / "runs" / "other"
    other.mkdir(parents=True)
    for name in ("best.safetensors", "best.json"):
        (other / name).write_bytes(b"the other run's " + name.encode())
    before = _tree(other)
    assert main(["export", "--checkpoint", str(tiny_checkpoint), "--format", "safetensors", "--output", str(other)]) == 0
    assert {name: (other / "stale-earlier" / name).read_bytes() for name in before} == before
    assert sorted(read_manifest(other, ("export",)).files) == ["best.json", "best.md", "best.safetensors"]


# ------------------------------------------------------------------ calibrate writes what it was given


def test_checkpoint_paths_replace_only_their_own_suffixes(tmp_path):
    from attnmel.checkpoints.format import checkpoint_paths

    cases = {"models/model.v2.safetensors": ("models/model.v2.safetensors", "models/model.v2.json"),
             "models/model.v2.json": ("models/model.v2.safetensors", "models/model.v2.json"),
             "models/model.v2": ("models/model.v2.safetensors", "models/model.v2.json"),
             "run/best.safetensors": ("run/best.safetensors", "run/best.json"),
             "a.b.c": ("a.b.c.safetensors", "a.b.c.json")}
    for given, expected in cases.items():
        assert checkpoint_paths(tmp_path / given) == tuple(tmp_path / e for e in expected), given
    (tmp_path / "folder").mkdir()
    assert checkpoint_paths(tmp_path / "folder")[0] == tmp_path / "folder" / "best.safetensors"


@pytest.fixture
def two_runs(tiny_checkpoint, tmp_path):
    """A run being calibrated and another training run beside it."""
    runs = {}
    for name in ("mine", "other"):
        runs[name] = tmp_path / "runs" / name
        runs[name].mkdir(parents=True)
        for suffix in (".safetensors", ".json"):
            shutil.copy(tiny_checkpoint.with_suffix(suffix), runs[name] / f"best{suffix}")
    return runs


@pytest.mark.parametrize("output, words", [
    ("runs/other", "existing folder"),
    ("runs/other/best.safetensors", "calibrate did not write"),
    ("runs/other/best", "calibrate did not write"),
    ("models/model.v2", "is a .safetensors file"),
    ("models/model.json", "is a .safetensors file"),
    ("models/model.pt", "is a .safetensors file"),
    ("runs/mine/best", "being calibrated"),
    ("models/theirs.safetensors", "is not the copy of a calibrated checkpoint"),
    ("models/notes.safetensors", "not an attnmel checkpoint"),
    ("models/link.safetensors", "is a link"),
])
def test_calibrate_never_writes_over_a_file_it_did_not_write(output, words, two_runs, tmp_path):
    from attnmel.evaluation.calibration import calibrated_output

    models = tmp_path / "models"
    models.mkdir()
    (models / "theirs.json").write_text('{"a user\'s": "json"}')
    (models / "notes.safetensors").write_text("not a checkpoint")
    os.symlink(two_runs["other"] / "best.safetensors", models / "link.safetensors")
    before = _tree(tmp_path)
    with pytest.raises(ConfigError, match=words):
        calibrated_output(two_runs["mine"] / "best.safetensors", tmp_path / output)
    assert _tree(tmp_path) == before


def test_calibrate_writes_exactly_the_file_it_was_given_and_replaces_its_own_output(two_runs, tmp_path, capsys):
    from attnmel.checkpoints.format import read_metadata
    from attnmel.evaluation.calibration import calibrated_output

    mine = two_runs["mine"] / "best.safetensors"
    assert calibrated_output(mine, two_runs["mine"] / "best.v2.safetensors") == two_runs["mine"] / "best.v2.safetensors"
    assert calibrated_output(mine, tmp_path / "calibrated") == tmp_path / "calibrated.safetensors"
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(mine, models / "model.safetensors")
    untouched = (models / "model.safetensors").read_bytes()
    argv = ["calibrate", "--checkpoint", str(mine), "--data", str(SAMPLE), "--output", str(models / "model.v2.safetensors"),
            "--device", "cpu"]
    assert main(argv) == 0
    assert "model.v2.safetensors" in capsys.readouterr().out
    assert (models / "model.safetensors").read_bytes() == untouched
    assert read_metadata(models / "model.v2.safetensors").calibration is not None
    assert (models / "model.v2.json").is_file() and not (models / "model.json").exists()
    assert main(argv) == 0  # its own earlier output: replaced
    other = _tree(two_runs["other"])
    assert main([*argv[:-3], str(two_runs["other"]), "--device", "cpu"]) == 2
    _one_line(capsys.readouterr().err)
    assert _tree(two_runs["other"]) == other


# ------------------------------------------------------------------ a table a failed run left is not reported


def test_an_external_validation_table_is_reported_only_while_its_run_is_complete(tiny_checkpoint, tmp_path, capsys):
    a = make_isic2017_subset(tmp_path / "a", n_train=1, n_val=4)
    b = make_isic2017_subset(tmp_path / "b", n_train=1, n_val=4)
    out = tmp_path / "ext"
    base = ["evaluate", "--checkpoint", str(tiny_checkpoint), "--split", "val", "--no-ci", "--output", str(out)]
    report = ["report", str(out), "--output", str(tmp_path / "r.html")]
    assert main([*base, "--data", f"a={a}", "--data", f"b={b}"]) == 0
    assert main(report) == 0
    capsys.readouterr()
    before = _tree(out)
    for target in ("external_validation.html", "external_validation_auc.html", "a/roc.png", "b/metrics.json"):
        assert main(["report", str(out), "--output", str(out / target)]) == 2  # its own input set is not written over
        assert "which it reads" in _one_line(capsys.readouterr().err)
    assert _tree(out) == before
    # a re-run with other datasets: the dataset it did not score is moved aside, the table names only its own
    assert main([*base, "--data", f"a={a}", "--data", f"c={b}"]) == 0
    assert not (out / "b").exists() and list(out.glob("stale-*/b/metrics.json"))
    assert [row["name"] for row in json.loads((out / "external_validation.json").read_text())["datasets"]] == ["a", "c"]
    assert main(report) == 0
    capsys.readouterr()
    # a dataset that is not there: refused before the folder is touched, so its complete earlier run stays
    before = _tree(out)
    assert main([*base, "--data", f"a={a}", "--data", f"b={tmp_path / 'gone'}"]) == 2
    assert "dataset folder not found" in _one_line(capsys.readouterr().err) and _tree(out) == before
    # the table edited after its run: refused
    table = (out / "external_validation.json").read_text()
    (out / "external_validation.json").write_text(table.replace('"a"', '"A"'))
    assert main(report) == 2
    assert "changed after run" in _one_line(capsys.readouterr().err)
    (out / "external_validation.json").write_text(table)
    # a re-run that fails after the first dataset was scored again (a truncated image in the second): the
    # earlier table is still there, but no longer reported as this folder's result
    broken = make_isic2017_subset(tmp_path / "broken", n_train=1, n_val=4)
    victim = sorted((broken / "ISIC-2017_Validation_Data").glob("*.jpg"))[1]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    assert main([*base, "--data", f"a={a}", "--data", f"b={broken}"]) == 2
    assert victim.name in _one_line(capsys.readouterr().err)
    assert (out / "external_validation.json").is_file()
    assert main(report) == 2
    assert "no output manifest" in _one_line(capsys.readouterr().err)
    # a single-dataset evaluation written over the folder moves the table aside; a table put back is not its
    assert main([*base, "--data", f"a={a}", "--data", f"c={b}"]) == 0
    assert main([*base, "--data", str(a)]) == 0
    assert not (out / "external_validation.json").exists() and main(report) == 0  # the evaluation is reported
    shutil.copy(next(out.glob("stale-*/external_validation.json")), out)
    capsys.readouterr()
    assert main(report) == 2
    assert "did not write this file" in _one_line(capsys.readouterr().err)


def test_one_named_dataset_is_evaluated_as_help_documents_it(tiny_checkpoint, tmp_path, capsys):
    """--data NAME=PATH alone said "dataset folder not found"; a folder whose own name holds '=' stays a path."""
    data = _tiny_data(tiny_checkpoint)
    odd = tmp_path / "site=3"
    shutil.copytree(data, odd)
    for given, out in ((f"isic={data}", "named"), (str(odd), "odd"), (f"x={odd}", "named-odd")):
        assert main(["evaluate", "--checkpoint", str(tiny_checkpoint), "--data", given, "--split", "val", "--no-ci",
                     "--output", str(tmp_path / out)]) == 0, given
        assert json.loads((tmp_path / out / "metrics.json").read_text())["images"] == 6
    capsys.readouterr()


# ------------------------------------------------------------------ resume refuses relabelled data


def _flip_labels(data: Path, official: str, only: int | None = None) -> None:
    truth = data / f"ISIC-2017_{official}_Part3_GroundTruth.csv"
    lines = truth.read_text().splitlines()
    rows = [line.split(",") for line in lines[1:]]
    for k, row in enumerate(rows):
        if only is None or k == only:
            row[1] = "0.0" if float(row[1]) > 0.5 else "1.0"
    truth.write_text("\n".join([lines[0], *(",".join(row) for row in rows)]) + "\n")


def _record(data, roi=True):
    from attnmel.data.masks import RoiSpec
    from attnmel.data.sources import SplitSpec
    from attnmel.data.splits import prepare_data

    return prepare_data(data, SplitSpec(roi=RoiSpec("lesion") if roi else None)).split


def test_the_split_record_tells_labels_masks_and_dataset_names_apart_from_the_images(tmp_path):
    data = make_isic2017_subset(tmp_path / "d", n_train=6, n_val=4)
    start = _record(data)
    assert start.differences(_record(data)) == []
    _flip_labels(data, "Training")
    assert start.differences(_record(data)) == ["train: the same images, but their labels changed"]
    _flip_labels(data, "Training")
    _flip_labels(data, "Validation", only=2)
    assert start.differences(_record(data)) == ["val: the same images, but their labels changed"]
    _flip_labels(data, "Validation", only=2)
    mask = sorted((data / "ISIC-2017_Training_Part1_GroundTruth").glob("*.png"))[0]
    Image.open(mask).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(mask)  # same size, other lesion
    assert start.differences(_record(data)) == ["train: the same images, but their masks changed"]
    assert _record(data, roi=False).learned["train"].keys() == {"labels", "datasets"}  # no prior: masks not learned
    renamed = _record({"site": data})
    assert renamed.differences(_record({"site": data})) == []
    assert _record(data).differences(renamed) == ["train: the same images, but their datasets changed",
                                                  "val: the same images, but their datasets changed"]


def test_resume_after_the_labels_were_flipped_is_refused_and_an_old_record_is_said_to_be_unchecked(tmp_path, capsys):
    from attnmel.config import load_config
    from attnmel.training.loop import train

    data = make_isic2017_subset(tmp_path / "d", n_train=4, n_val=2)
    config = load_config("isic2017/attnmel", tiny())
    train(config, data, tmp_path / "run", progress=False, log=lambda *_: None)
    _flip_labels(data, "Training")
    argv = ["train", "--data", str(data), "--output", str(tmp_path / "run"), "--resume", "--no-progress",
            "--set", "train.epochs=2"]
    assert main(argv) == 2
    err = _one_line(capsys.readouterr().err)
    assert "cannot resume on other data" in err and "train: the same images, but their labels changed" in err
    _flip_labels(data, "Training")
    split = tmp_path / "run" / "split.json"
    record = json.loads(split.read_text())
    del record["learned"]  # as attnmel wrote it before labels were fingerprinted
    split.write_text(json.dumps(record))
    assert main(argv) == 0  # an older record: resumed on what it can check, saying what it cannot
    out = capsys.readouterr().out
    assert "labels, dataset names or prior masks changed since the run started is unknown" in out
    assert json.loads(split.read_text()) == record  # the run's own record is kept as it was


# ------------------------------------------------------------------ malformed HDF5 entries


def _hdf5_case(root: Path, case: str) -> str:
    """An ISIC 2024 folder whose first entry is replaced by ``case``; returns that entry's ID."""
    import h5py
    import numpy as np

    from .layouts import make_isic2024

    ids = make_isic2024(root, [(1, "IP_1", "IL_1", "Malignant::Melanoma"), (0, "IP_1", None, "Benign"),
                               (0, "IP_2", None, "Benign")])
    with h5py.File(root / "train-image.hdf5", "a") as handle:
        del handle[ids[0]]
        make = {
            "group": lambda: handle.create_group(ids[0]),
            "soft link": lambda: handle.__setitem__(ids[0], h5py.SoftLink(f"/{ids[1]}")),
            "external link": lambda: handle.__setitem__(ids[0], h5py.ExternalLink(str(root / "x.h5"), "/y")),
            "float array": lambda: handle.create_dataset(ids[0], data=np.zeros(16, np.float32)),
            "2-D pixels": lambda: handle.create_dataset(ids[0], data=np.zeros((130, 130), np.uint8)),
            "empty": lambda: handle.create_dataset(ids[0], data=np.zeros(0, np.uint8)),
            "integer": lambda: handle.create_dataset(ids[0], data=7),
            "group with data": lambda: handle.create_group(ids[0]).create_dataset("x", data=np.zeros(3, np.uint8)),
        }
        make[case]()
    return ids[0]


@pytest.mark.parametrize("case", ["group", "soft link", "external link", "float array", "2-D pixels", "empty",
                                  "integer", "group with data"])
def test_a_malformed_hdf5_entry_is_one_finding_not_a_traceback(case, tmp_path, capsys):
    pytest.importorskip("h5py")
    from attnmel.data.images import read_image, verify_image

    root = tmp_path / "isic2024"
    bad = _hdf5_case(root, case)
    assert main(["data", "check", str(root), "--workers", "0"]) == 1
    out = capsys.readouterr().out
    finding = next(line for line in out.splitlines() if f"train-image.hdf5/{bad}:" in line)
    assert "Fix:" in finding and "Traceback" not in out
    for door in (read_image, verify_image):
        with pytest.raises(DataError, match=bad):
            door(root / "train-image.hdf5" / bad)
    overrides = tiny("data.task=isic2024-binary", "data.val_fraction=0.34")
    assert main(["train", "--config", "isic2017/attnmel", "--data", str(root), "--output", str(tmp_path / "run"),
                 *[a for o in overrides for a in ("--set", o)]]) == 2  # the pre-flight names it before training
    assert bad in _one_line(capsys.readouterr().err)


# ------------------------------------------------------------------ one output file in a folder of the user's


def _one_file_command(kind: str, tiny_checkpoint: Path, tmp_path: Path, output: Path) -> list[str]:
    if kind == "data stats":
        return ["data", "stats", str(_tiny_data(tiny_checkpoint)), "--output", str(output)]
    evaluation = tmp_path / "eval"
    if not (evaluation / MANIFEST).is_file():
        assert main(["evaluate", "--checkpoint", str(tiny_checkpoint), "--data", str(_tiny_data(tiny_checkpoint)),
                     "--split", "val", "--no-ci", "--output", str(evaluation)]) == 0
    return ["report", str(evaluation), "--output", str(output)]


@pytest.mark.parametrize("kind, taken", [("report", "out.html"), ("report", "out.png"), ("report", "a link"),
                                         ("data stats", "out.json"), ("data stats", "a link")])
def test_a_file_written_beside_the_users_own_never_replaces_one_it_did_not_write(kind, taken, tiny_checkpoint,
                                                                                 tmp_path, capsys):
    """report and data stats write into a folder of the user's (the report's figure beside it): a file of
    that name which no earlier run of the command wrote is set aside, its own earlier output replaced."""
    mine = tmp_path / "mine"
    mine.mkdir()
    output = mine / ("out.json" if kind == "data stats" else "out.html")
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"the user's file a link points at")
    if taken == "a link":
        output.symlink_to(victim)
    else:
        (mine / taken).write_bytes(b"the user's own " + taken.encode())
    (mine / "notes.txt").write_text("unrelated")
    argv = _one_file_command(kind, tiny_checkpoint, tmp_path, output)
    capsys.readouterr()
    assert main(argv) == 0
    assert f"no earlier attnmel {kind} wrote here" in capsys.readouterr().out
    [aside] = mine.glob("stale-*")
    if taken == "a link":
        assert (aside / output.name).is_symlink() and victim.read_bytes() == b"the user's file a link points at"
    else:
        assert (aside / taken).read_bytes() == b"the user's own " + taken.encode()
    assert output.is_file() and not output.is_symlink() and (mine / "notes.txt").read_text() == "unrelated"
    # a re-run replaces its own output in place; another output in the same folder leaves it alone
    assert main(argv) == 0 and len(list(mine.glob("stale-*"))) == 1
    first = _tree(mine)
    second = mine / f"second{output.suffix}"
    assert main(_one_file_command(kind, tiny_checkpoint, tmp_path, second)) == 0
    assert second.is_file() and {k: v for k, v in _tree(mine).items() if k in first} == first
    # an output edited since is the user's now: set aside again, not replaced
    output.write_bytes(b"edited by the user")
    assert main(argv) == 0
    assert [p.read_bytes() for p in mine.glob(f"stale-*/{output.name}")].count(b"edited by the user") == 1


# ------------------------------------------------------------------ a new training run into a folder of files


@pytest.mark.parametrize("files", [{"metrics.csv": "epoch,loss\n"}, {"config.yaml": "mine: 1\n"},
                                   {"notes.txt": "x"}, {"sub/data.csv": "a\n"}, {"split.json": "not a record"},
                                   {"attnmel-outputs.json": "{}", "metrics.json": "{}"}])
def test_a_new_run_refuses_a_folder_of_files_no_training_run_wrote(files, tmp_path, capsys):
    folder = tmp_path / "project"
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    before = _tree(folder)
    data = make_isic2017_subset(tmp_path / "d", n_train=4, n_val=2)
    argv = ["train", "--config", "isic2017/attnmel", "--data", str(data), "--output", str(folder), "--no-progress",
            *[a for o in tiny() for a in ("--set", o)]]
    assert main(argv) == 2
    err = _one_line(capsys.readouterr().err)
    assert str(folder) in err and "no attnmel training run wrote" in err and "new or empty folder" in err
    assert _tree(folder) == before


def test_a_new_run_starts_in_an_empty_folder_or_over_a_run_that_stopped_before_its_first_checkpoint(tmp_path):
    """The yardstick (and a user) start a fold again when it stopped before writing last-state."""
    from attnmel.config import load_config
    from attnmel.training.loop import train

    data = make_isic2017_subset(tmp_path / "d", n_train=4, n_val=2)
    run = tmp_path / "run"
    run.mkdir()
    train(load_config("isic2017/attnmel", tiny()), data, run, progress=False, log=lambda *_: None)
    for name in ("last-state.safetensors", "best.safetensors", "best.json"):  # as if stopped in epoch 1
        (run / name).unlink()
    result = train(load_config("isic2017/attnmel", tiny()), data, run, progress=False, log=lambda *_: None)
    assert result.best_checkpoint.is_file() and (run / "last-state.safetensors").is_file()


# ------------------------------------------------------------------ export never touches another run's checkpoint


@pytest.mark.parametrize("other", ["a whole run", "last-state.safetensors", "split.json"])
@pytest.mark.parametrize("fmt", ["safetensors", "onnx"])
def test_export_into_another_training_runs_folder_is_refused(other, fmt, tiny_checkpoint, tmp_path, capsys):
    folder = tmp_path / "runs" / "other"
    if other == "a whole run":
        shutil.copytree(tiny_checkpoint.parent, folder)
    else:
        folder.mkdir(parents=True)
        for name in ("best.safetensors", "best.json", other):
            (folder / name).write_bytes(b"the other run's " + name.encode())
    before = _tree(folder)
    assert set(TRAINING_RUN_FILES) == {STATE_FILE, SPLIT_FILE}  # named below both layers: the same names
    assert main(["export", "--checkpoint", str(tiny_checkpoint), "--format", fmt, "--output", str(folder)]) == 2
    err = _one_line(capsys.readouterr().err)
    assert str(folder) in err and "training run" in err and "--output" in err
    assert _tree(folder) == before


def test_export_into_the_run_it_exports_writes_beside_its_checkpoint(tiny_checkpoint, tmp_path, capsys):
    run = tmp_path / "mine"
    shutil.copytree(tiny_checkpoint.parent, run)
    before = _tree(run)
    assert main(["export", "--checkpoint", str(run / "best.safetensors"), "--output", str(run)]) == 0
    assert {name: data for name, data in _tree(run).items() if name in before} == before
    assert sorted(read_manifest(run, ("export",)).files) == ["best.md", "best.onnx"]
    capsys.readouterr()
