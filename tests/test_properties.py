"""Property-based tests (hypothesis): readers, mask pairing and the metric functions."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from attnmel.data import read_dataset
from attnmel.metrics.classification import binary_metrics, classification_report, sensitivity_at_specificity

from .conftest import write_csv

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------------------------- readers

isic_ids = st.lists(st.integers(0, 9_999_999), min_size=1, max_size=25, unique=True).map(
    lambda numbers: [f"ISIC_{n:07d}" for n in numbers]
)


@st.composite
def isic2017_splits(draw):
    """Per split: (id, melanoma, has mask), plus masks for IDs that are not in the dataset."""
    ids = draw(isic_ids)
    cut = draw(st.integers(1, len(ids)))
    splits = {}
    for split, chunk in (("Training", ids[:cut]), ("Validation", ids[cut:])):
        if chunk:
            splits[split] = [(i, draw(st.booleans()), draw(st.booleans())) for i in chunk]
    orphans = [f"ISIC_{n:07d}" for n in draw(st.lists(st.integers(10_000_000, 10_000_099), max_size=3, unique=True))]
    return splits, orphans, draw(st.randoms(use_true_random=False))


@SETTINGS
@given(isic2017_splits())
def test_isic2017_pairs_images_and_masks_by_id_whatever_the_order(drawn):
    splits, orphans, rng = drawn
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        files = []
        for official, rows in splits.items():
            files += [(root / f"ISIC-2017_{official}_Data/{i}.jpg") for i, _, _ in rows]
            files += [(root / f"ISIC-2017_{official}_Part1_GroundTruth/{i}_segmentation.png") for i, _, m in rows if m]
            files += [(root / f"ISIC-2017_{official}_Part1_GroundTruth/{o}_segmentation.png") for o in orphans]
            shuffled = list(rows)
            rng.shuffle(shuffled)
            write_csv(root / f"ISIC-2017_{official}_Part3_GroundTruth.csv", ["image_id", "melanoma", "seborrheic_keratosis"],
                      [[i, "1.0" if mel else "0.0", "0.0"] for i, mel, _ in shuffled])
        rng.shuffle(files)  # creation order must not matter
        for path in files:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(path.name.encode())  # the layout is read without decoding

        index = read_dataset(root, skip_bad=True)
        for official, rows in splits.items():
            split = {"Training": "train", "Validation": "val"}[official]
            got = {s.image_id: s for s in index.split(split)}
            assert set(got) == {i for i, _, _ in rows}
            for image_id, melanoma, has_mask in rows:
                sample = got[image_id]
                assert sample.label == int(melanoma) and sample.image_path.stem == image_id
                if has_mask:
                    assert sample.mask_path.name == f"{image_id}_segmentation.png"
                    assert sample.mask_path.read_bytes() == sample.mask_path.name.encode()
                else:
                    assert sample.mask_path is None
        assert sorted(p.path.name for p in index.problems) == sorted(
            f"{o}_segmentation.png" for o in orphans for _ in splits
        )
        assert all(p.kind == "orphan_mask" for p in index.problems)


name_text = st.text(
    alphabet=st.characters(categories=("L", "Nd"), include_characters=" -_()é皮", exclude_characters="\\/"),
    min_size=1, max_size=12,
).map(str.strip).filter(lambda t: t and not t.startswith("."))
LABEL_SPELLINGS = {0: ["0", "0.0", "other", "benign", "OTHER"], 1: ["1", "1.0", "melanoma", "malignant", "Melanoma"]}


@st.composite
def manifests(draw):
    names = draw(st.lists(name_text, min_size=1, max_size=12, unique_by=str.casefold))
    rows = []
    for name in names:
        label = draw(st.integers(0, 1))
        rows.append((name, label, draw(st.sampled_from(LABEL_SPELLINGS[label])),
                     draw(st.sampled_from(["train", "val", "test", ""])), draw(st.booleans())))
    return rows, draw(st.booleans()), draw(st.booleans())


@SETTINGS
@given(manifests())
def test_manifest_round_trip(drawn):
    rows, bom, crlf = drawn
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        lines = ["image,label,mask,split"]
        for name, _, spelling, split, has_mask in rows:
            image = root / "images" / f"{name}.jpg"
            image.parent.mkdir(parents=True, exist_ok=True)
            image.write_bytes(b"x")
            mask = ""
            if has_mask:
                mask = f"masks/{name}_mask.png"
                (root / "masks").mkdir(exist_ok=True)
                (root / mask).write_bytes(b"m")
            lines.append(",".join(f'"{v}"' for v in (f"images/{name}.jpg", spelling, mask, split)))
        text = ("\r\n" if crlf else "\n").join(lines) + "\n"
        (root / "manifest.csv").write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())

        index = read_dataset(root / "manifest.csv")
        got = {(s.image_id, s.label, s.split, s.mask_path.name if s.mask_path else None)
               for split in index.splits.values() for s in split}
        assert got == {(name, label, split or "all", f"{name}_mask.png" if has_mask else None)
                       for name, label, _, split, has_mask in rows}


@SETTINGS
@given(isic_ids, st.data())
def test_isic2016_labels_in_any_official_spelling(ids, data):
    spellings = data.draw(st.sampled_from([("benign", "malignant"), ("0", "1"), ("0.0", "1.0")]))
    labels = [data.draw(st.integers(0, 1)) for _ in ids]
    header = data.draw(st.booleans())
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        images = root / "ISBI2016_ISIC_Part3_Training_Data"
        images.mkdir()
        for image_id in ids:
            (images / f"{image_id}.jpg").write_bytes(b"x")
        write_csv(root / "ISBI2016_ISIC_Part3_Training_GroundTruth.csv", ["image", "label"] if header else None,
                  [[i, spellings[label]] for i, label in zip(ids, labels, strict=True)])
        index = read_dataset(root)
        assert {s.image_id: s.label for s in index.split("train")} == dict(zip(ids, labels, strict=True))


# --------------------------------------------------------------------------------------------- metrics


@st.composite
def scored_labels(draw, both_classes: bool = False):
    n = draw(st.integers(2, 60))
    y = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    if both_classes and len(set(y)) < 2:
        y[0], y[1] = 0, 1
    coarse = draw(st.booleans())  # few distinct scores: many ties
    values = st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]) if coarse else st.floats(0, 1, allow_nan=False)
    s = draw(st.lists(values, min_size=n, max_size=n))
    return np.array(y), np.array(s, dtype=float)


RATES = ("roc_auc", "average_precision", "accuracy", "sensitivity", "specificity", "balanced_accuracy",
         "precision", "npv", "sensitivity_at_90_specificity")


def _same(a, b) -> bool:
    a, b = a.to_dict(), b.to_dict()
    return all((math.isnan(a[k]) and math.isnan(b[k])) or math.isclose(a[k], b[k], abs_tol=1e-12) for k in RATES)


@SETTINGS
@given(scored_labels(), st.floats(0.05, 0.95), st.randoms(use_true_random=False))
def test_metric_bounds_and_order_invariance(drawn, threshold, rng):
    y, s = drawn
    metrics = binary_metrics(y, s, threshold)
    for key in RATES:
        assert math.isnan(getattr(metrics, key)) or 0 <= getattr(metrics, key) <= 1, key
    order = list(range(len(y)))
    rng.shuffle(order)
    assert _same(binary_metrics(y[order], s[order], threshold), metrics)


@SETTINGS
@given(scored_labels(both_classes=True), st.floats(0.05, 0.95))
def test_metrics_agree_with_sklearn_and_auc_is_symmetric(drawn, threshold):
    y, s = drawn
    metrics = binary_metrics(y, s, threshold)
    predicted = (s > threshold).astype(int)
    assert math.isclose(metrics.accuracy, skm.accuracy_score(y, predicted))
    assert math.isclose(metrics.sensitivity, skm.recall_score(y, predicted))
    assert math.isclose(metrics.specificity, skm.recall_score(y, predicted, pos_label=0))
    assert math.isclose(metrics.balanced_accuracy, skm.balanced_accuracy_score(y, predicted))
    if predicted.any():
        assert math.isclose(metrics.precision, skm.precision_score(y, predicted))
    else:
        assert math.isnan(metrics.precision)
    # swapping the classes, or negating the score, mirrors the AUC
    assert math.isclose(metrics.roc_auc + binary_metrics(1 - y, s).roc_auc, 1, abs_tol=1e-12)
    assert math.isclose(metrics.roc_auc + binary_metrics(y, -s).roc_auc, 1, abs_tol=1e-12)


def _brute_sensitivity_at_specificity(y: np.ndarray, s: np.ndarray, target: float) -> float:
    best = 0.0
    for t in [*np.unique(s), math.inf]:
        predicted = s >= t
        specificity = np.sum(~predicted & (y == 0)) / np.sum(y == 0)
        if specificity >= target - 1e-12:
            best = max(best, np.sum(predicted & (y == 1)) / np.sum(y == 1))
    return float(best)


@SETTINGS
@given(scored_labels(both_classes=True), st.lists(st.floats(0, 1), min_size=2, max_size=6))
def test_sensitivity_at_specificity_is_the_best_operating_point_and_monotone(drawn, targets):
    y, s = drawn
    values = [sensitivity_at_specificity(y, s, t) for t in sorted(targets)]
    assert values == sorted(values, reverse=True)  # asking for more specificity never gains sensitivity
    for target, value in zip(sorted(targets), values, strict=True):
        assert math.isclose(value, _brute_sensitivity_at_specificity(y, s, target), abs_tol=1e-12)
    assert sensitivity_at_specificity(y, s, 0.0) == 1.0


@pytest.mark.filterwarnings("ignore:A single label was found:UserWarning", "ignore:y_pred contains classes:UserWarning")
@SETTINGS
@given(st.integers(3, 40).flatmap(lambda n: st.tuples(
    st.lists(st.integers(0, 2), min_size=n, max_size=n),
    st.lists(st.lists(st.floats(0.01, 1), min_size=3, max_size=3), min_size=n, max_size=n),
)), st.randoms(use_true_random=False))
def test_three_class_report_is_consistent_and_order_invariant(drawn, rng):
    labels, raw = drawn
    labels = np.array(labels)
    probabilities = np.array(raw) / np.array(raw).sum(axis=1, keepdims=True)
    names, columns = ("nevus", "melanoma", "seborrheic_keratosis"), ("melanoma", "seborrheic_keratosis")
    report = classification_report(labels, probabilities, names, columns)
    assert math.isclose(report.multiclass.accuracy, skm.accuracy_score(labels, probabilities.argmax(1)))
    for column in columns:
        assert report[column].n_positive == int(np.sum(labels == names.index(column)))
    order = list(range(len(labels)))
    rng.shuffle(order)
    shuffled = classification_report(labels[order], probabilities[order], names, columns)
    for column in columns:
        assert _same(shuffled[column], report[column])
    assert math.isclose(shuffled.multiclass.balanced_accuracy, report.multiclass.balanced_accuracy)

