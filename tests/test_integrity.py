"""``attnmel data check`` as an integrity report: duplicates, leakage, label conflicts, sizes."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from attnmel.cli import main
from attnmel.data.integrity import check_datasets
from attnmel.data.leaks import PHASH_BITS, _popcount, close_pairs

from .conftest import write_csv
from .layouts import make_isic2018, make_isic2019, make_isic2020

GT_HEADER = ["image_id", "melanoma", "seborrheic_keratosis"]


def _write_split(root, official: str, rows: list[list[str]], images: dict[str, bytes]) -> None:
    """An ISIC 2017 split: ``rows`` (id, melanoma, sk) and each row's image bytes."""
    data = root / f"ISIC-2017_{official}_Data"
    data.mkdir(parents=True, exist_ok=True)
    for image_id, *_ in rows:
        (data / f"{image_id}.jpg").write_bytes(images[image_id])
    write_csv(root / f"ISIC-2017_{official}_Part3_GroundTruth.csv", GT_HEADER, rows)


def _reencoded(path) -> bytes:
    """The same photograph, resized to 90% and saved again at JPEG quality 60."""
    image = Image.open(path).convert("RGB")
    image = image.resize((image.width * 9 // 10, image.height * 9 // 10), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=60)
    return buffer.getvalue()


@pytest.fixture
def leaky(isic2017, tmp_path):
    """Two datasets built from real ISIC images with planted problems (and nothing else wrong)."""
    truth = (isic2017 / "ISIC-2017_Training_Part3_GroundTruth.csv").read_text().splitlines()[1:]
    rows = [line.split(",") for line in truth[:16]]
    train_rows, val_rows = rows[:10], rows[10:16]
    source = isic2017 / "ISIC-2017_Training_Data"
    exact, reencoded, duplicated = train_rows[0][0], train_rows[1][0], train_rows[2][0]
    images = {r[0]: (source / f"{r[0]}.jpg").read_bytes() for r in rows}
    images["ISIC_9100001"] = images[exact]  # exact copy into val: leak
    images["ISIC_9100002"] = _reencoded(source / f"{reencoded}.jpg")  # re-encoded copy into val: similar leak
    images["ISIC_9000003"] = images[duplicated]  # second copy inside train: duplicate
    root = tmp_path / "isic2017"
    _write_split(root, "Training", train_rows + [["ISIC_9000003", train_rows[2][1], "0.0"]], images)
    _write_split(root, "Validation",
                 val_rows + [["ISIC_9100001", train_rows[0][1], "0.0"], ["ISIC_9100002", train_rows[1][1], "0.0"]], images)

    # A second dataset (ISIC 2016 layout): its test split holds one of the 2017 training images
    # with the other label, its training split shares another image (harmless).
    other = tmp_path / "isic2016"
    for split, image_id in (("Test", train_rows[3][0]), ("Training", train_rows[4][0])):
        folder = other / f"ISBI2016_ISIC_Part3_{split}_Data"
        folder.mkdir(parents=True)
        shutil.copy(source / f"{image_id}.jpg", folder)
        flipped = "0.0" if train_rows[3][1] == "1.0" else "1.0"
        label = flipped if split == "Test" else train_rows[4][1]
        write_csv(other / f"ISBI2016_ISIC_Part3_{split}_GroundTruth.csv", None, [[image_id, label]])
    return root, other, {"exact": exact, "reencoded": reencoded, "duplicated": duplicated,
                         "test_leak": train_rows[3][0], "shared": train_rows[4][0]}


def _ids(finding: dict) -> set[str]:
    return {p.rsplit("/", 1)[-1].split(".")[0] for p in finding["paths"]}


def test_planted_duplicates_and_leaks_are_found_and_nothing_else(leaky, capsys):
    root, _, ids = leaky
    assert main(["data", "check", str(root), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    by_kind: dict[str, list[dict]] = {}
    for item in report["findings"]:
        by_kind.setdefault(item["kind"], []).append(item)
    assert [_ids(f) for f in by_kind.pop("leak")] == [{ids["exact"], "ISIC_9100001"}]
    similar = by_kind.pop("similar_leak")
    assert [_ids(f) for f in similar] == [{ids["reencoded"], "ISIC_9100002"}] and similar[0]["severity"] == "warning"
    assert [_ids(f) for f in by_kind.pop("duplicate_image")] == [{ids["duplicated"], "ISIC_9000003"}]
    by_kind.pop("small_image", None)  # the shared copies are ~256 px
    assert by_kind == {}, by_kind  # no false positive among the other real images
    assert report["counts"]["error"] == 1 and not report["ok"]


def test_leakage_and_label_conflicts_across_two_datasets(leaky):
    root, other, ids = leaky
    report = check_datasets([root, other])
    cross = [f for f in report.of_kind("leak") if any("isic2016" in str(p) for p in f.paths)]
    assert len(cross) == 1 and "isic2017/train" in cross[0].message and "isic2016/test" in cross[0].message
    conflicts = report.of_kind("label_conflict")
    assert len(conflicts) == 1 and ids["test_leak"] in conflicts[0].message
    assert "melanoma" in conflicts[0].message and "other" in conflicts[0].message
    shared = report.of_kind("shared_image")
    assert len(shared) == 1 and shared[0].severity == "info" and ids["shared"] in shared[0].message


def test_real_isic2016_and_2017_label_conflicts(isic2017, isic2016):
    """The three IDs whose melanoma label differs between the releases (../shared/data/isic2016/README.md)."""
    report = check_datasets([isic2017, isic2016], decode=False)
    found = sorted(f.message.split()[5] for f in report.of_kind("label_conflict"))
    assert found == ["ISIC_0000077", "ISIC_0000511", "ISIC_0010094"]


def test_min_size_and_text_report(leaky, capsys):
    root, _, _ = leaky
    assert not check_datasets([root], min_size=100).of_kind("small_image")
    assert main(["data", "check", str(root), "--min-size", "300"]) == 1
    text = capsys.readouterr().out
    assert "ERROR leak (1): identical images in two splits" in text
    assert "WARNING small_image" in text and "short side below 300 px" in text
    assert text.strip().splitlines()[-1].startswith("1 error, ")


def test_no_decode_reads_only_the_layout(leaky):
    root, _, _ = leaky
    report = check_datasets([root], decode=False)
    assert report.images_checked == 0 and report.ok and not report.findings


def test_close_pairs_matches_brute_force():
    rng = np.random.default_rng(0)
    words = PHASH_BITS**2 // 64
    hashes = rng.integers(0, 2**63, (300, words), dtype=np.uint64)
    hashes[17] = hashes[4]
    hashes[17, 0] ^= np.uint64(0b1011)  # 3 bits apart
    bits = np.unpackbits(hashes.view(np.uint8), axis=1).astype(int)
    brute = {(i, j, int(np.sum(bits[i] != bits[j]))) for i in range(300) for j in range(i + 1, 300)}
    for limit in (3, 110, 120):
        assert set(close_pairs(hashes, limit, block=64)) == {p for p in brute if p[2] <= limit}
    assert (4, 17, 3) in close_pairs(hashes, 3)


def test_popcount_fallback_agrees_with_numpy(monkeypatch):
    words = np.random.default_rng(1).integers(0, 2**63, (5, 7), dtype=np.uint64)
    expected = _popcount(words)
    monkeypatch.delattr(np, "bitwise_count")
    assert np.array_equal(_popcount(words), expected)


def test_lesions_patients_and_listed_duplicates_on_both_sides_are_leaks(tmp_path, capsys):
    """ISIC 2018 with a validation lesion that also has training images; ISIC 2020 listing duplicates."""
    make_isic2018(tmp_path / "isic2018", {
        "Training": [("MEL", "HAM_0000001"), ("MEL", "HAM_0000001"), ("NV", "HAM_0000002"), ("BKL", "HAM_0000003")],
        "Validation": [("MEL", "HAM_0000001"), ("NV", "HAM_0000004")],
    }, masks=False)
    assert main(["data", "check", str(tmp_path / "isic2018"), "--task", "isic2018-7class", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    leaks = [f for f in report["findings"] if f["kind"] == "leak"]
    assert len(leaks) == 1 and "lesion_id HAM_0000001" in leaks[0]["message"] and len(leaks[0]["paths"]) == 3
    assert [f["kind"] for f in report["findings"] if f["severity"] != "info" and f["kind"] != "small_image"] == ["leak"]
    splits = report["datasets"][0]["splits"]
    assert (splits["train"]["groups"], splits["val"]["groups"]) == ({"lesion_id": 3}, {"lesion_id": 2})

    rows = [("benign", "IP_1", "IL_1"), ("malignant", "IP_2", "IL_2"), ("benign", "IP_3", "IL_3"), ("benign", "IP_1", "IL_4")]
    make_isic2020(tmp_path / "isic2020", rows, duplicates=[(0, 2)])
    report = check_datasets([tmp_path / "isic2020"], decode=False)
    listed = report.of_kind("listed_duplicate")
    assert len(listed) == 1 and listed[0].severity == "warning" and report.ok    # one split: kept together, not a leak
    text = report.to_text()
    assert "masks 0 present, 4 missing; 4 lesions; 3 patients" in text


def test_left_out_classes_are_counted_and_reported_not_errors(tmp_path, capsys):
    make_isic2019(tmp_path, [("MEL", None), ("NV", None), ("UNK", None), ("SCC", None), ("UNK", None)])
    assert main(["data", "check", str(tmp_path), "--task", "isic2019-8class", "--no-decode"]) == 0
    text = capsys.readouterr().out
    assert "left out: UNK 2" in text and "INFO other_class (2)" in text
    assert "which task 'isic2019-8class' leaves out" in text
