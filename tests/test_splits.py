"""Splits that respect lesions and patients: groups never straddle, classes stay stratified, folds
partition training, the split is a pure function of the seed and is written down."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import GroupShuffleSplit

from attnmel.cli import main
from attnmel.config import load_config
from attnmel.data.groups import group_labels
from attnmel.data.records import TASKS, DatasetIndex, Sample
from attnmel.data.sources import SplitSpec
from attnmel.data.split_methods import fraction_split, grouped_split, stratified_split
from attnmel.data.splits import SplitRecord, prepare_data
from attnmel.errors import ConfigError, DataError
from attnmel.evaluation.folds import read_fold_splits

from .conftest import tiny
from .layouts import make_ham10000, make_isic2018, make_isic2019, make_isic2020

#: HAM10000's class shares (MEL, NV, BCC, AKIEC, BKL, DF, VASC), roughly
SHARES = np.array([0.11, 0.67, 0.05, 0.03, 0.11, 0.01, 0.02])
#: a class spread over at least this many groups can be stratified ...
STRATIFIABLE_GROUPS = 10
#: ... to within this much of the overall validation share
TOLERANCE = 0.04


def lesions(n_lesions: int = 300, seed: int = 0) -> list[Sample]:
    """HAM10000-like training images: 1-4 photographs per lesion, one diagnosis per lesion."""
    rng = np.random.default_rng(seed)
    samples = []
    for lesion in range(n_lesions):
        label = int(rng.choice(len(SHARES), p=SHARES / SHARES.sum()))
        for _ in range(int(rng.integers(1, 5))):
            samples.append(Sample(f"ISIC_{len(samples):07d}", Path("unused.jpg"), label, "train",
                                  groups={"lesion_id": f"HAM_{lesion:07d}"}))
    return samples


def _index(samples, duplicates=()) -> DatasetIndex:
    return DatasetIndex(Path("ham"), "ham10000", TASKS["isic2018-7class"], {"train": samples},
                        duplicates=list(duplicates))


def _class_deviation(labels: np.ndarray, val: list[int], groups_per_class: dict[int, int]) -> float:
    """Largest gap between a stratifiable class's validation share and the overall validation share."""
    share = np.bincount(labels[val], minlength=len(SHARES)) / np.maximum(np.bincount(labels, minlength=len(SHARES)), 1)
    overall = len(val) / len(labels)
    return max(abs(share[c] - overall) for c, n in groups_per_class.items() if n >= STRATIFIABLE_GROUPS)


def test_grouped_split_never_separates_a_lesion_and_stays_stratified_over_many_seeds():
    samples = lesions()
    index = _index(samples)
    labels = np.array([s.label for s in samples])
    groups = np.array([s.groups["lesion_id"] for s in samples])
    per_class: dict[int, set] = defaultdict(set)
    for sample in samples:
        per_class[sample.label].add(sample.groups["lesion_id"])
    groups_per_class = {c: len(g) for c, g in per_class.items()}
    assert sum(n >= STRATIFIABLE_GROUPS for n in groups_per_class.values()) >= 4
    worst = 0.0
    for seed in range(20):
        train, val, _ = grouped_split(index, samples, "lesion_id", 0.2, None, None, seed)
        assert sorted(train + val) == list(range(len(samples))) and not set(train) & set(val)
        assert not set(groups[train]) & set(groups[val]), f"seed {seed} separated a lesion"
        assert 0.15 < len(val) / len(samples) < 0.25
        worst = max(worst, _class_deviation(labels, val, groups_per_class))
    assert worst <= TOLERANCE
    # the tolerance means something: a split by groups that ignores classes is far outside it
    unstratified = max(
        _class_deviation(labels, next(GroupShuffleSplit(1, test_size=0.2, random_state=seed).split(
            labels, labels, groups))[1].tolist(), groups_per_class)
        for seed in range(20)
    )
    assert unstratified > 2 * TOLERANCE


def test_folds_partition_training_by_group_and_are_a_pure_function_of_the_seed():
    samples = lesions(120)
    index = _index(samples)
    groups = np.array([s.groups["lesion_id"] for s in samples])
    vals = [grouped_split(index, samples, "lesion_id", None, 5, fold, seed=7)[1] for fold in range(5)]
    assert sorted(i for val in vals for i in val) == list(range(len(samples)))      # each image validated once
    owner = {}
    for fold, val in enumerate(vals):
        for lesion in set(groups[val]):
            assert owner.setdefault(lesion, fold) == fold                           # each lesion in one fold
    again = [grouped_split(index, samples, "lesion_id", None, 5, fold, seed=7)[1] for fold in range(5)]
    assert again == vals
    other = [grouped_split(index, samples, "lesion_id", None, 5, fold, seed=8)[1] for fold in range(5)]
    assert other != vals


def test_listed_duplicates_and_patients_stay_together():
    """ISIC 2020: two images listed as duplicates are one group even under different lesion IDs."""
    samples = lesions(60)
    duplicates = [(samples[i].image_id, samples[-1 - i].image_id) for i in range(0, 30, 3)]
    index = _index(samples, duplicates)
    position = {s.image_id: i for i, s in enumerate(samples)}
    labels = group_labels(samples, "lesion_id", duplicates)
    for a, b in duplicates:
        assert labels[position[a]] == labels[position[b]]
    for seed in range(10):
        _, val, _ = grouped_split(index, samples, "lesion_id", 0.25, None, None, seed)
        val = set(val)
        for a, b in duplicates:
            assert (position[a] in val) == (position[b] in val)


def test_images_without_a_group_are_groups_of_their_own():
    samples = [Sample(f"ISIC_{i}", Path("x.jpg"), i % 2, "train", groups={"lesion_id": "L1"} if i < 4 else {})
               for i in range(12)]
    labels = group_labels(samples, "lesion_id")
    assert len(set(labels[:4].tolist())) == 1 and len(set(labels.tolist())) == 9


def test_prepare_data_grouped_on_ham10000_writes_its_split(tmp_path):
    dx = ["mel", "nv", "nv", "bkl", "mel", "nv", "bkl", "nv", "mel", "nv", "nv", "bkl", "nv", "mel", "nv", "bkl"]
    lesion_of = [0, 1, 1, 2, 3, 4, 5, 4, 6, 7, 7, 8, 9, 10, 11, 12]
    make_ham10000(tmp_path / "ham", [(d, f"HAM_{k:07d}") for d, k in zip(dx, lesion_of, strict=True)], masks=False)
    data = prepare_data(tmp_path / "ham", SplitSpec(task="isic2018-7class", split="grouped", group_by="lesion_id",
                        folds=3, fold=1, seed=3))
    lesions_of = lambda samples: {s.groups["lesion_id"] for s in samples}  # noqa: E731
    assert not lesions_of(data.train) & lesions_of(data.val)
    record = data.split
    assert (record.mode, record.group_by, record.folds, record.fold, record.seed) == ("grouped", "lesion_id", 3, 1, 3)
    assert set(record.val) == {s.image_id for s in data.val} and len(record.train) + len(record.val) == 16
    assert record.groups == {"train": len(lesions_of(data.train)), "val": len(lesions_of(data.val))}
    assert data.summary(None)["split"]["groups"] == record.groups
    path = record.write(tmp_path / "run" / "split.json")
    assert SplitRecord.read(path) == record
    again = prepare_data(tmp_path / "ham", SplitSpec(task="isic2018-7class", split="grouped", group_by="lesion_id",
                         folds=3, fold=1, seed=3))
    assert again.split == record
    with pytest.raises(DataError, match="split record"):
        SplitRecord.read(tmp_path / "nowhere.json")


def test_grouped_split_needs_groups_and_official_split_warns_of_straddling_lesions(tmp_path, sample_data):
    with pytest.raises(DataError, match="lesion_id"):
        prepare_data(sample_data, SplitSpec(split="grouped", group_by="lesion_id", val_fraction=0.2))
    # ISIC 2018 with a validation lesion that also has a training image
    make_isic2018(tmp_path, {"Training": [("MEL", "HAM_1"), ("NV", "HAM_2"), ("NV", "HAM_3")],
                             "Validation": [("MEL", "HAM_1"), ("NV", "HAM_4")]}, masks=False)
    data = prepare_data(tmp_path, SplitSpec(task="isic2018-7class"))
    assert data.split.mode == "official"
    assert [p.kind for p in data.problems] == ["leak"] and "HAM_1" in data.problems[0].message


def test_isic2020_patient_split_keeps_patients_and_listed_duplicates_together(tmp_path):
    rows = [("benign", f"IP_{k // 3}", f"IL_{k}") for k in range(18)]
    rows[4] = ("malignant", "IP_1", "IL_4")
    rows[10] = ("malignant", "IP_3", "IL_10")
    ids = make_isic2020(tmp_path, rows, duplicates=[(0, 17)])        # patients IP_0 and IP_5 share a photograph
    for seed in range(5):
        data = prepare_data(tmp_path, SplitSpec(task="isic2020-binary", split="grouped", group_by="patient_id",
                            val_fraction=0.34, seed=seed))
        patients = lambda samples: {s.groups["patient_id"] for s in samples}  # noqa: E731
        assert not patients(data.train) & patients(data.val)
        val = set(data.split.val)
        assert (ids[0] in val) == (ids[17] in val)
        assert data.split.groups["train"] + data.split.groups["val"] == 5    # six patients, two joined


@pytest.mark.parametrize(("changes", "message"), [
    (["data.fold=1"], "go together"),
    (["data.fold=3", "data.folds=3", "data.split=grouped", "data.group_by=lesion_id"], "below data.folds"),
    (["data.fold=0", "data.folds=1", "data.split=grouped", "data.group_by=lesion_id"], "at least 2"),
    (["data.fold=0", "data.folds=5"], "need data.split grouped"),
    (["data.split=grouped", "data.val_fraction=0.2"], "needs data.group_by"),
    (["data.group_by=patient_id"], "only used by data.split 'grouped'"),
    (["data.split=grouped", "data.group_by=lesion_id"], "needs data.val_fraction"),
    (["data.group_by=visit_id", "data.split=grouped"], "lesion_id"),
    (["data.split=random"], "official"),
    (["train.select_metric=balanced_multiclass_accuracy"], "more than two classes"),
])
def test_split_config_is_checked_when_built(changes, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, changes)


def test_split_config_accepts_the_documented_forms():
    config = load_config("isic2016/attnmel", ["data.split=grouped", "data.group_by=lesion_id", "data.fold=2",
                                              "data.folds=5"])
    assert (config.data.split, config.data.group_by, config.data.fold, config.data.folds) == ("grouped", "lesion_id", 2, 5)
    assert load_config("isic2016/attnmel").data.split == "auto"
    multiclass = load_config(None, ["data.task=isic2019-8class", "train.select_metric=balanced_multiclass_accuracy"])
    assert multiclass.train.select_metric == "balanced_multiclass_accuracy"


@pytest.mark.slow
def test_fold_runs_through_the_cli_combine_into_out_of_fold_predictions(tmp_path, capsys):
    dx = ["mel", "nv", "bkl", "bcc", "akiec", "df", "vasc"] * 2 + ["nv", "mel", "nv", "bkl"]
    ids = make_ham10000(tmp_path / "ham", [(d, f"HAM_{k // 2:07d}") for k, d in enumerate(dx)], masks=False)
    overrides = [arg for change in tiny("data.task=isic2018-7class", "data.split=grouped", "data.group_by=lesion_id",
                                        "data.normalization=imagenet") for arg in ("--set", change)]
    runs = []
    for fold in range(2):
        runs.append(tmp_path / f"ham-fold{fold}")
        assert main(["train", "--config", "isic2017/attnmel", "--data", str(tmp_path / "ham"), "--output", str(runs[-1]),
                     "--fold", str(fold), "--folds", "2", "--no-progress", *overrides]) == 0
    splits = [SplitRecord.read(run / "split.json") for run in runs]
    assert [(s.fold, s.folds, s.group_by) for s in splits] == [(0, 2, "lesion_id"), (1, 2, "lesion_id")]
    assert sorted(splits[0].val + splits[1].val) == sorted(ids)
    lesion = {image_id: f"HAM_{k // 2:07d}" for k, image_id in enumerate(ids)}
    assert not {lesion[i] for i in splits[0].val} & {lesion[i] for i in splits[0].train}
    capsys.readouterr()
    assert main(["evaluate", "--oof", "--checkpoint", str(runs[0]), "--checkpoint", str(runs[1] / "best.safetensors"),
                 "--data", str(tmp_path / "ham")]) == 0
    out = tmp_path / "ham-oof"
    assert "out of fold: 18 images" in capsys.readouterr().out
    predicted = pd.read_csv(out / "oof_predictions.csv")
    assert sorted(predicted["image"]) == sorted(ids) and list(predicted.columns[1:]) == list(TASKS["isic2018-7class"].class_names)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["images"] == 18 and [f["fold"] for f in metrics["folds"]] == [0, 1] and metrics["missing_folds"] == []
    assert (out / "confusion.png").is_file() and (out / "oof_ground_truth.csv").is_file()
    # a fold given twice is not a cross-validation
    with pytest.raises(DataError, match="also in the validation split"):
        read_fold_splits([runs[0], runs[0]])
    assert main(["train", "--config", "isic2017/attnmel", "--data", str(tmp_path / "ham"), "--fold", "1"]) == 2
    assert "--fold K and --folds N go together" in capsys.readouterr().err



def test_a_run_reports_left_out_classes_in_one_line_per_split(tmp_path):
    classes = ["MEL", "NV", "UNK", "NV", "MEL", "UNK", "BCC", "NV", "UNK", "MEL"]
    make_isic2019(tmp_path, [(c, None) for c in classes])
    data = prepare_data(tmp_path, SplitSpec(task="isic2019-8class", val_fraction=0.3))
    assert len(data.train) + len(data.val) == 7
    assert [p.message for p in data.problems] == ["train: left out of task 'isic2019-8class': UNK 3"]


def test_fraction_folds_partition_training_stratified_and_the_plain_fraction_is_unchanged():
    labels = [0] * 30 + [1] * 9 + [2] * 5
    vals = [fraction_split(labels, None, 4, fold, seed=1)[1] for fold in range(4)]
    assert sorted(i for val in vals for i in val) == list(range(len(labels)))
    for val in vals:
        counts = np.bincount(np.array(labels)[val], minlength=3)
        assert all(abs(counts[c] - labels.count(c) / 4) < 1 for c in range(3))
    # without folds, the ISIC 2016 presets' stratified share, exactly as before
    assert fraction_split(labels, 0.1, None, None, seed=0) == stratified_split(labels, 0.1, seed=0)
