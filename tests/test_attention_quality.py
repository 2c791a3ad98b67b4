"""Attention quality: Jaccard/Dice of binarised maps against lesion masks, CAMs, and a prior that measurably
moves attention onto a known region."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.metrics import f1_score, jaccard_score

from attnmel import create_model
from attnmel.checkpoints.format import read_metadata, save_model_checkpoint
from attnmel.checkpoints.meta import Architecture
from attnmel.cli import main
from attnmel.config import load_config
from attnmel.errors import ConfigError
from attnmel.evaluation.attention_quality import (
    attention_quality,
    binarize_maps,
    overlap_scores,
    score_attention,
)
from attnmel.inference import DataSplit
from attnmel.models import with_maps
from attnmel.predict import predict_images
from attnmel.training.loop import train

from .conftest import make_isic2017_subset, tiny

# ------------------------------------------------------------------------------------------ the numbers


def test_jaccard_and_dice_on_hand_made_maps():
    maps = np.zeros((2, 4, 4), dtype=np.float32)
    maps[:, :2] = 1.0  # attends the top half (rows 0-3 after upsampling to 8 x 8)
    masks = np.zeros((2, 8, 8), dtype=bool)
    masks[0, :4] = True  # the same top half
    masks[1, :, :4] = True  # the left half: 16 of 48 pixels in the union
    quality = score_attention({"pool4": maps}, masks, np.array([True, True]), ["a", "b"])
    np.testing.assert_allclose(quality.jaccard["pool4"], [1.0, 1 / 3])
    np.testing.assert_allclose(quality.dice["pool4"], [1.0, 0.5])
    assert quality.mean("pool4") == pytest.approx(2 / 3) and quality.mean("pool4", "dice") == pytest.approx(0.75)


def test_min_max_normalisation_ignores_scale_and_offset():
    rng = np.random.default_rng(0)
    maps = rng.random((5, 7, 7)).astype(np.float32)
    reference, flat = binarize_maps(maps, (28, 28))
    assert not flat.any()
    for kind in ("score", "distribution"):  # unbounded maps: scale and offset do not matter
        assert torch.equal(reference, binarize_maps(maps * 40 - 3, (28, 28), kind=kind)[0])
    assert torch.equal(reference, binarize_maps(torch.from_numpy(maps), (28, 28))[0])


def test_a_flat_map_is_reported_flat_and_never_stretched():
    """A sigmoid map spanning 0.001 would min-max stretch into bold structure; it is uniform attention."""
    rng = np.random.default_rng(0)
    noise = rng.random((3, 7, 7)).astype(np.float32) * 1e-3
    attended, flat = binarize_maps(noise + np.array([0.998, 0.2, 0.6], dtype=np.float32)[:, None, None], (28, 28))
    assert flat.tolist() == [True, True, True]
    assert attended[0].all() and not attended[1].any() and attended[2].all()  # its value against the threshold
    masks = np.zeros((3, 28, 28), dtype=bool)
    masks[:, 7:21, 7:21] = True
    quality = score_attention({"stage4": noise + 0.998}, masks, np.ones(3, dtype=bool), ["a", "b", "c"])
    assert quality.flat_count("stage4") == 3 and quality.to_dict()["layers"]["stage4"]["flat_maps"] == 3
    np.testing.assert_allclose(quality.jaccard["stage4"], 14 * 14 / (28 * 28))  # the lesion's share, not a region
    cam_attended, cam_flat = binarize_maps(noise * 1e-3 + 5.0, (28, 28), kind="score")  # relative to its size
    assert cam_flat.all() and cam_attended.all()


def test_threshold_edges():
    ramp = np.repeat((np.arange(8) / 7.0)[:, None], 8, axis=1)[None].astype(np.float32)  # row r has value r/7
    attended_rows = lambda t: binarize_maps(ramp, (8, 8), t)[0][0].all(dim=1).nonzero().flatten().tolist()  # noqa: E731
    assert attended_rows(0.5) == [4, 5, 6, 7]  # strictly above: 4/7 > 0.5 > 3/7
    assert attended_rows(0.0) == list(range(1, 8))  # the minimum itself is never attended
    assert attended_rows(0.99) == [7]
    for bad in (1.0, 1.5, -0.1):
        with pytest.raises(ConfigError, match="threshold"):
            binarize_maps(ramp, (8, 8), bad)


def test_constant_maps_attend_by_their_value_and_empty_agreement_scores_one():
    low = np.full((2, 4, 4), 0.3, dtype=np.float32)
    assert not binarize_maps(low, (8, 8))[0].any() and binarize_maps(low, (8, 8), 0.2)[0].all()
    masks = np.zeros((2, 8, 8), dtype=bool)
    masks[0, 2:5, 2:5] = True  # a lesion the low constant map misses; image 1 has an empty mask
    jaccard, dice = overlap_scores(binarize_maps(low, (8, 8))[0], masks)
    assert jaccard.tolist() == [0.0, 1.0] and dice.tolist() == [0.0, 1.0]


def test_overlap_scores_agree_with_scikit_learn():
    rng = np.random.default_rng(1)
    attended = rng.random((6, 16, 16)) > 0.6
    masks = rng.random((6, 16, 16)) > 0.4
    jaccard, dice = overlap_scores(attended, masks)
    for i in range(6):
        assert jaccard[i] == pytest.approx(jaccard_score(masks[i].ravel(), attended[i].ravel()))
        assert dice[i] == pytest.approx(f1_score(masks[i].ravel(), attended[i].ravel()))


def test_images_without_mask_are_counted_not_scored(tmp_path):
    rng = np.random.default_rng(2)
    maps = {"pool3": rng.random((3, 8, 8)), "pool4": rng.random((3, 4, 4))}
    masks = rng.random((3, 16, 16)) > 0.5
    quality = score_attention(maps, masks, np.array([True, False, True]), ["i0", "i1", "i2"], threshold=0.3)
    assert (quality.images_with_mask, quality.images_without_mask) == (2, 1)
    alone = score_attention({k: v[[0, 2]] for k, v in maps.items()}, masks[[0, 2]], np.array([True, True]),
                            ["i0", "i2"], threshold=0.3)
    for layer in ("pool3", "pool4"):
        assert quality.mean(layer) == pytest.approx(alone.mean(layer))
    frame = pd.read_csv(quality.write_csv(tmp_path / "attention_quality.csv"))
    assert list(frame.columns) == ["image", "has_mask", "pool3_jaccard", "pool3_dice", "pool3_flat",
                                   "pool4_jaccard", "pool4_dice", "pool4_flat"]
    assert frame["image"].tolist() == ["i0", "i1", "i2"] and frame["has_mask"].tolist() == [True, False, True]
    assert frame.loc[1, ["pool3_jaccard", "pool4_dice"]].isna().all()
    assert frame["pool4_jaccard"].mean() == pytest.approx(quality.mean("pool4"))  # pandas skips the empty cell
    summary = quality.to_dict()
    assert summary["images_without_mask"] == 1 and summary["threshold"] == 0.3
    assert summary["layers"]["pool3"]["dice"] == pytest.approx(quality.mean("pool3", "dice"))


# ------------------------------------------------------------------------------------------ CAM view


def test_cam_view_matches_the_gap_model():
    model = create_model("gap", backbone="mobilenet_v2").eval()
    view = with_maps(model, class_index=1)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        output = view(x)
        features = model.forward_features(x)["stage5"]
        manual = torch.einsum("nchw,c->nhw", features, model.classifier.weight[1])[:, None]
        torch.testing.assert_close(output.logits, model(x).logits)
        torch.testing.assert_close(output.attention["cam"], manual, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(output.attention["cam"], model.class_activation_map(x))
    attnmel = create_model("attnmel", backbone="mobilenet_v2")
    assert with_maps(attnmel) is attnmel and view.attention_layers == ["cam"]


# ------------------------------------------------------------------------------------------ the prior moves attention


def make_toy_problem(root: Path, n_train: int = 48, n_val: int = 16, size: int = 64, seed: int = 0) -> Path:
    """Grey noise with a dark disk (the 'lesion', marked by the mask) at a random place; the class is decided
    elsewhere: melanoma images carry a small red square outside the disk. Nothing in the classification
    signal pulls attention onto the disk, so only the prior can."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    root.mkdir(parents=True, exist_ok=True)
    rows = ["image,label,mask,split"]
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            label = i % 2
            image = rng.normal(170, 12, (size, size, 3))
            radius = rng.integers(13, 19)
            cy, cx = rng.integers(radius + 2, size - radius - 2, 2)
            disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius * radius
            image[disk] = rng.normal(80, 12, (int(disk.sum()), 3)) * np.array([1.0, 0.75, 0.6])
            if label:
                while True:
                    sy, sx = rng.integers(0, size - 6, 2)
                    if not disk[sy : sy + 6, sx : sx + 6].any():
                        break
                image[sy : sy + 6, sx : sx + 6] = (230, 30, 30)
            name = f"{split}_{i:03d}"
            Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(root / f"{name}.png")
            Image.fromarray(disk.astype(np.uint8) * 255).save(root / f"{name}_mask.png")
            rows.append(f"{name}.png,{label},{name}_mask.png,{split}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root / "manifest.csv"


@pytest.mark.slow
def test_lesion_prior_moves_attention_onto_the_marked_region(tmp_path):
    """The prior dominates the loss (weight 10, AdamW), so the effect is large by construction.

    Over twelve seeds on one machine the prior's Jaccard was at least 0.75 (stride 8) and 0.55
    (stride 16) and the plain model's at most 0.25; seeded float results differ between CPU kinds
    (a run on another processor is like another seed), so the bounds below sit far from both."""
    data = make_toy_problem(tmp_path / "toy")
    common = [
        "model.backbone=mobilenet_v2", "model.attention_channels=32", "model.weights=null",
        "data.crop_ratio=1.0", "data.resize=64", "data.image_size=64", "data.normalization=imagenet",
        "data.sampler=uniform", "data.num_workers=0", "loss.name=cross_entropy",
        "optim.name=adamw", "optim.lr=0.003", "optim.weight_decay=0", "optim.schedule=constant",
        "train.batch_size=4", "train.eval_batch_size=16", "train.epochs=1", "train.passes_per_epoch=8",
        "train.threads=1", "train.seed=0",
    ]
    scores = {}
    for name, extra in (("plain", []), ("prior", ["data.roi=lesion", "loss.prior_weights=[10.0,10.0]"])):
        train(load_config(None, [*common, *extra]), data, tmp_path / name, progress=False, log=lambda *_: None)
        quality = attention_quality(tmp_path / name, DataSplit(data, "val"))
        assert quality.images_with_mask == 16 and quality.layers == ["stage3", "stage4"]
        scores[name] = {layer: quality.mean(layer) for layer in quality.layers}
    for layer in ("stage3", "stage4"):  # same initialisation, same batches: only the prior differs
        assert scores["prior"][layer] > 0.45, scores
        assert scores["prior"][layer] > scores["plain"][layer] + 0.25, scores


# ------------------------------------------------------------------------------------------ through the CLI


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny AttnMel-CNN-Lesion run and a tiny GAP run on real images; 2 of 6 val images lose their mask."""
    root = tmp_path_factory.mktemp("quality")
    data = make_isic2017_subset(root / "data", n_train=8, n_val=6)
    for mask in sorted((data / "ISIC-2017_Validation_Part1_GroundTruth").glob("*.png"))[:2]:
        mask.unlink()
    silent = dict(progress=False, log=lambda *_: None)
    train(load_config("isic2017/attnmel-lesion", tiny()), data, root / "lesion", **silent)
    train(load_config("isic2017/vgg16-gap", tiny("model.name=gap")), data, root / "gap", **silent)
    return data, root


def test_evaluate_masks_reports_jaccard_per_layer_and_missing_masks(runs, tmp_path, capsys):
    data, root = runs
    out = tmp_path / "eval"
    code = main(["evaluate", "--checkpoint", str(root / "lesion"), "--data", str(data), "--split", "val",
                 "--output", str(out), "--masks", "--mask-threshold", "0.4"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "Jaccard" in printed and "4 of 6 images scored, 2 without a mask" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    quality = metrics["attention_quality"]
    assert (quality["images_with_mask"], quality["images_without_mask"], quality["threshold"]) == (4, 2, 0.4)
    assert set(quality["layers"]) == {"stage3", "stage4"}
    assert metrics["paper_row"] == "AttnMel-CNN-Lesion" and metrics["layout"] == "isic2017"
    frame = pd.read_csv(out / "attention_quality.csv")
    assert len(frame) == 6 and int(frame["has_mask"].sum()) == 4
    library = attention_quality(root / "lesion", DataSplit(data, "val"), threshold=0.4)
    for layer in ("stage3", "stage4"):
        assert quality["layers"][layer]["jaccard"] == pytest.approx(library.mean(layer))
        assert frame[f"{layer}_jaccard"].mean() == pytest.approx(library.mean(layer))


def test_gap_models_are_scored_and_drawn_with_their_class_activation_map(runs, tmp_path):
    data, root = runs
    out = tmp_path / "eval"
    assert main(["evaluate", "--checkpoint", str(root / "gap"), "--data", str(data), "--split", "val",
                 "--output", str(out), "--masks"]) == 0
    quality = json.loads((out / "metrics.json").read_text())["attention_quality"]
    assert list(quality["layers"]) == ["cam"] and 0 <= quality["layers"]["cam"]["jaccard"] <= 1
    figures = tmp_path / "pred"
    assert main(["predict", str(data / "ISIC-2017_Validation_Data"), "--checkpoint", str(root / "gap"),
                 "--output", str(figures)]) == 0
    assert len(list((figures / "figures").glob("*.png"))) == 6
    outcome = predict_images(root / "gap", data / "ISIC-2017_Validation_Data", None)
    assert all(list(r.prediction.raw_attention) == ["cam"] for r in outcome.results)


def test_masks_need_attention_or_cam_and_a_valid_threshold(runs, tmp_path, capsys):
    data, root = runs
    melcnn = create_model("melcnn", backbone="mobilenet_v2")
    meta = read_metadata(root / "lesion").replace(architecture=Architecture.of(melcnn))
    save_model_checkpoint(tmp_path / "melcnn" / "best.safetensors", melcnn, meta)
    assert main(["evaluate", "--checkpoint", str(tmp_path / "melcnn"), "--data", str(data), "--masks"]) == 2
    assert "neither attention maps nor a class activation map" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(root / "lesion"), "--data", str(data), "--masks",
                 "--mask-threshold", "1.5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "threshold" in err and "Traceback" not in err


def test_report_puts_runs_next_to_the_paper(runs, tmp_path, capsys):
    data, root = runs
    for run in ("lesion", "gap"):
        assert main(["evaluate", "--checkpoint", str(root / run), "--data", str(data), "--split", "val",
                     "--output", str(root / run / "eval-val"), "--masks", "--json"]) == 0
    capsys.readouterr()
    html = tmp_path / "report.html"
    assert main(["report", str(root / "lesion"), str(root / "gap" / "eval-val"), "--output", str(html)]) == 0
    markdown = capsys.readouterr().out
    lesion_row = next(line for line in markdown.splitlines() if line.startswith("| lesion/eval-val | AttnMel-CNN-Lesion | isic2017"))
    assert lesion_row.endswith("| 0.883 (isic2017 test) |")
    gap_row = next(line for line in markdown.splitlines() if line.startswith("| gap/eval-val | VGG-16-GAP | isic2017"))
    assert gap_row.endswith("| not reported here |")
    assert "| gap/eval-val | VGG-16-GAP | val | cam |" in markdown
    assert "| lesion/eval-val | AttnMel-CNN-Lesion | val | stage4 |" in markdown  # no paper number for MobileNet stages
    assert "a val number is not the paper's test number" in markdown
    page = html.read_text()
    assert "AttnMel-CNN-Lesion" in page and "0.883 (isic2017 test)" in page and "not the paper" in page
