"""Every case of the bad-input corpus (tests/corpus.py) through every door that reads it.

Doors: decoding (the library call all doors share), ``attnmel data check``, ``attnmel train``,
``attnmel evaluate`` and ``attnmel predict``, each through the command line. An error case must
stop with one line that names the file; a recovered case must go through and be used.
"""

from __future__ import annotations

import json
import math
import re

import pandas as pd
import pytest

from attnmel.cli import main
from attnmel.config import load_config
from attnmel.data.images import read_image
from attnmel.data.sources import SplitSpec
from attnmel.data.splits import prepare_data
from attnmel.errors import DataError
from attnmel.training.loop import train

from .conftest import make_isic2017_subset, subset_rows, tiny
from .corpus import CASES, Case, cases, dataset_with_image, dataset_with_mask, upload_cases, write_image_case


def _sets(**extra: str) -> list[str]:
    return [arg for change in tiny(*(f"{k}={v}" for k, v in extra.items())) for arg in ("--set", change)]


def _dataset(case: Case, folder, split: str = "Training"):
    """(dataset root, the file at fault) with the case planted in a small ISIC 2017 layout."""
    if case.target == "image":
        return dataset_with_image(case, folder, split)
    if case.target == "mask":
        return dataset_with_mask(case, folder)
    return case.build(folder)


def _assert_names_the_file(err: str, case: Case, culprit) -> None:
    assert err.startswith("error: ") and "Traceback" not in err and err.count("\n") == 1, err
    assert str(culprit) in err, err
    assert re.search(case.error, err), err


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus-model")
    data = make_isic2017_subset(root / "data", n_train=4, n_val=2)
    config = load_config("isic2017/attnmel", tiny())
    return train(config, data, root / "run", progress=False, log=lambda *_: None).best_checkpoint


def test_the_corpus_is_large_and_says_what_each_door_must_do():
    assert len(CASES) >= 25 and len({c.name for c in CASES}) == len(CASES)
    for case in CASES:
        assert case.recovered == (case.error is None)
        assert case.recovered or case.check_kind, case.name
        if case.target == "image":
            assert (case.expected_upload_status == 200) == case.recovered, case.name
            assert case.recovered == (case.verify is not None), case.name
    uploads = list(upload_cases())
    uploadable = [c for c in cases("image") if c.expected_upload_status is not None]
    assert len(uploads) == len(uploadable) and all(isinstance(data, bytes) for _, _, data, _ in uploads)
    assert {status for *_, status in uploads} == {200, 413, 415, 422}


@pytest.mark.parametrize("case", cases("image"), ids=str)
def test_decoding(case, tmp_path):
    path = write_image_case(case, tmp_path / (case.filename or f"{case.name}{case.suffix}"))
    if case.recovered:
        case.verify(read_image(path))
    else:
        with pytest.raises(DataError, match=case.error) as info:
            read_image(path)
        assert info.value.path == path


@pytest.mark.parametrize("case", CASES, ids=str)
def test_data_check(case, tmp_path, capsys):
    root, culprit = _dataset(case, tmp_path)
    code = main(["data", "check", str(root), "--json"])
    out, err = capsys.readouterr()
    if case.check_kind == "fatal":
        assert code == 2
        _assert_names_the_file(err, case, culprit)
        return
    report = json.loads(out)
    found = [f for f in report["findings"] if f["kind"] == case.check_kind and str(culprit) in f["paths"]]
    if case.recovered:
        assert code == 0 and report["counts"]["error"] == 0, report["findings"]
        assert bool(found) == bool(case.check_kind), report["findings"]
    else:
        assert code == 1 and found, report["findings"]
        assert found[0]["severity"] == "error" and re.search(case.error, found[0]["message"])


@pytest.mark.parametrize("case", cases(recovered=False), ids=str)
def test_train_stops_before_the_first_step(case, tmp_path, capsys):
    root, culprit = _dataset(case, tmp_path)
    run = tmp_path / "run"
    extra = {"data.roi": "lesion"} if case.target == "mask" else {}
    code = main(["train", "--config", "isic2017/attnmel", "--data", str(root), "--output", str(run), "--no-progress",
                 *_sets(**extra)])
    assert code == 2
    _assert_names_the_file(capsys.readouterr().err, case, culprit)
    assert not run.exists()  # the run folder is created when the first epoch starts


@pytest.mark.parametrize("case", cases("image", recovered=False) + cases("labels", recovered=False), ids=str)
def test_evaluate_stops_naming_the_file(case, tmp_path, capsys, checkpoint):
    root, culprit = _dataset(case, tmp_path, split="Validation")
    code = main(["evaluate", "--checkpoint", str(checkpoint), "--data", str(root), "--split", "val",
                 "--output", str(tmp_path / "eval"), "--json"])
    assert code == 2
    _assert_names_the_file(capsys.readouterr().err, case, culprit)


@pytest.mark.parametrize("case", cases("image"), ids=str)
def test_predict(case, tmp_path, capsys, checkpoint):
    image = write_image_case(case, tmp_path / "in" / (case.filename or f"{case.name}{case.suffix}"))
    out = tmp_path / "out"
    code = main(["predict", str(image), "--checkpoint", str(checkpoint), "--output", str(out), "--device", "cpu"])
    if not case.recovered:
        assert code == 2
        _assert_names_the_file(capsys.readouterr().err, case, image)
        return
    assert code == 0
    table = pd.read_csv(out / "predictions.csv")
    assert table["file"].tolist() == [str(image)]
    assert math.isclose(table["melanoma"][0] + table["other"][0], 1, abs_tol=1e-5)


def test_recovered_images_and_masks_train_and_evaluate(tmp_path, capsys):
    """All recovered images (in train and val) and masks (with the lesion prior) in one real run."""
    root = make_isic2017_subset(tmp_path / "data", n_train=len(cases("mask", recovered=True)), n_val=2)
    planted = []
    for i, case in enumerate(cases("image", recovered=True)):
        for split, prefix in (("Training", "ISIC_90"), ("Validation", "ISIC_91")):
            image_id = f"{prefix}{i:05d}"
            write_image_case(case, root / f"ISIC-2017_{split}_Data/{image_id}{case.suffix}")
            truth = root / f"ISIC-2017_{split}_Part3_GroundTruth.csv"
            truth.write_text(truth.read_text() + f"{image_id},{float(i % 2)},0.0\n")
            planted.append(image_id)
    for i, case in enumerate(cases("mask", recovered=True)):
        dataset_with_mask(case, tmp_path, root=root, nth=i)
    run, evaluation = tmp_path / "run", tmp_path / "eval"
    assert main(["train", "--config", "isic2017/attnmel", "--data", str(root), "--output", str(run), "--no-progress",
                 *_sets(**{"data.roi": "lesion"})]) == 0
    assert main(["evaluate", "--checkpoint", str(run), "--data", str(root), "--split", "val",
                 "--output", str(evaluation), "--json"]) == 0
    predictions = pd.read_csv(evaluation / "predictions.csv").set_index("image")["melanoma"]
    assert {i for i in planted if i.startswith("ISIC_91")} <= set(predictions.index)
    assert predictions.between(0, 1).all()
    meta = json.loads((run / "best.json").read_text())
    assert meta["training"]["data"]["train"]["with_prior"] == len(cases("mask", recovered=True))
    assert meta["training"]["data"]["skipped"] == 0


@pytest.mark.parametrize("case", cases("labels", recovered=True), ids=str)
def test_recovered_labels_train_and_evaluate(case, tmp_path, capsys, checkpoint):
    root, _ = case.build(tmp_path)
    isic2016 = "isic2016" in case.name
    overrides = tiny(*(["data.val_split=null", "data.val_fraction=0.5"] if isic2016 else []))
    d = load_config("isic2017/attnmel", overrides).data  # what `train` reads before its first step
    data = prepare_data(root, SplitSpec(task=d.task, train_split=d.train_split, val_split=d.val_split, val_fraction=d.val_fraction))
    labels = {s.image_id: s.label for s in data.train + data.val}
    if case.name.startswith("manifest"):
        expected = {"lésion 01": 1, "naevus 02 (copy)": 0, "皮肤 03": 0, "Ünïcödé 04": 1}
    else:
        expected = {r["image_id"]: int(r["melanoma"] == "1.0") for r in subset_rows("Training", 4)}
        if not isic2016:
            expected.update({r["image_id"]: int(r["melanoma"] == "1.0") for r in subset_rows("Validation", 2)})
    assert labels == expected
    split = "train" if isic2016 else "val"
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--data", str(root), "--split", split,
                 "--output", str(tmp_path / "eval"), "--json"]) == 0
