"""The several-site yardstick: pooled splits, folds grouped by photograph, the last epoch kept, and
one command that trains, resumes and scores every fold on the pooled images and the held-out sites."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from PIL import Image

from attnmel.checkpoints.card import model_card, render_markdown
from attnmel.checkpoints.format import read_metadata
from attnmel.cli import main
from attnmel.data.readers import read_dataset
from attnmel.data.sources import SplitSpec
from attnmel.data.splits import SplitRecord, prepare_data
from attnmel.errors import CheckpointError, ConfigError, DataError
from attnmel.training.loop import train
from attnmel.yardstick import (
    SCORES_FILE,
    SiteScores,
    _seed_sites,
    compare_recipes,
    read_strata,
    run_yardstick,
)

from .conftest import benchmark_script, make_isic2017_subset, tiny
from .layouts import make_two_sites

#: a tiny recipe: the demo preset at 64 px, one epoch
TINY = tiny("data.roi=lesion")


def test_a_pooled_split_joins_splits_and_refuses_unknown_or_repeated_parts(tmp_path):
    index = read_dataset(make_isic2017_subset(tmp_path, n_train=5, n_val=3), "melanoma")
    pooled = index.split("train+val")
    assert [s.image_id for s in pooled] == [s.image_id for s in index.split("train") + index.split("val")]
    for bad in ("train+test", "train+train", "validation"):
        with pytest.raises(DataError, match="no split"):
            index.split(bad)


def _plant_near_copy(isic, source_split="Validation", target_split="Training"):
    """Re-save one image's pixels (JPEG, another quality) under another image's ID: near-identical, not equal bytes."""
    source = sorted((isic / f"ISIC-2017_{source_split}_Data").glob("*.jpg"))[0]
    target = sorted((isic / f"ISIC-2017_{target_split}_Data").glob("*.jpg"))[-1]
    Image.open(source).save(target, quality=80)
    return source.stem, target.stem


@pytest.mark.parametrize("folds", [2, 3])
def test_folds_grouped_by_photograph_keep_near_identical_copies_on_one_side(tmp_path, folds):
    isic = make_isic2017_subset(tmp_path / "isic2017", n_train=10, n_val=6)
    a, b = _plant_near_copy(isic)
    seen_val: list[str] = []
    for fold in range(folds):
        data = prepare_data(isic, SplitSpec(train_split="train+val", split="grouped", group_by="photograph",
                                            folds=folds, fold=fold))
        train_ids, val_ids = {s.image_id for s in data.train}, {s.image_id for s in data.val}
        assert {a, b} <= train_ids or {a, b} <= val_ids
        # the pair counts as one group
        assert data.split.groups["train"] + data.split.groups["val"] == 16 - 1
        seen_val += sorted(val_ids)
    assert sorted(seen_val) == sorted(s.image_id for s in read_dataset(isic, "melanoma").split("train+val"))


def test_a_lesion_grouping_without_lesions_names_the_photograph_grouping(tmp_path):
    isic = make_isic2017_subset(tmp_path / "isic2017", n_train=6, n_val=3)
    with pytest.raises(DataError, match="group_by=photograph"):
        prepare_data(isic, SplitSpec(train_split="train+val", split="grouped", group_by="lesion_id", folds=2, fold=0))


@pytest.mark.parametrize(("keep", "kept"), [("last", 3), ("best", 1)])
def test_keep_epoch_last_keeps_the_last_epoch_whatever_validation_says(tmp_path, keep, kept):
    """One validation image has no ROC AUC, so no epoch improves on the first: "best" keeps it, "last" does not."""
    isic = make_isic2017_subset(tmp_path / "isic2017", n_train=8, n_val=1)
    result = train("demo", isic, tmp_path / "run", overrides=tiny("train.epochs=3", f"train.keep_epoch={keep}"),
                   progress=False, log=lambda _: None)
    assert result.best_epoch == kept
    meta = read_metadata(result.best_checkpoint)
    assert (meta.training.epoch, meta.training.kept_epoch) == (kept, keep)
    # the card says whether validation chose the epoch, so whether its figures are optimistic
    card = render_markdown(model_card(meta))
    assert f"- kept epoch: {keep}" in card
    assert ("used to pick the best epoch" in card) == (keep == "best")
    assert ("nothing was chosen on the validation split" in card) == (keep == "last")


def test_a_kept_epoch_that_is_neither_best_nor_last_is_refused():
    from attnmel.checkpoints.meta import CheckpointMeta
    from attnmel.checkpoints.pretrained import get_pretrained

    payload = get_pretrained().meta.to_dict()
    payload["training"]["kept_epoch"] = "median"
    with pytest.raises(CheckpointError, match="'training': kept_epoch 'median' is not one of best, last"):
        CheckpointMeta.from_dict(payload, "model.safetensors")


def _scores(labels, scores):
    return SiteScores([f"i{k}" for k in range(len(labels))], list(labels), list(scores))


def test_each_fold_is_judged_at_a_threshold_fitted_on_the_other_folds():
    """Fold 0 holds most melanomas, all scored above its other lesions; folds 1 and 2 score lower. Fitted on
    all predictions, 85% sensitivity sits between fold 0's classes and spares its other lesions; fitted on
    folds 1 and 2 alone, it sits far below them and calls every one of fold 0's other lesions melanoma."""
    fold0 = _scores([1] * 30 + [0] * 10, [0.8] * 30 + [0.7] * 10)
    fold12 = [_scores([1] + [0] * 10, [0.4] + [0.2] * 10) for _ in range(2)]
    pool = _seed_sites("pool", [(fold0, {}), *((f, {}) for f in fold12)], [])[0]
    assert pool.rates.sensitivity == pytest.approx(30 / 32)
    assert pool.rates.specificity == pytest.approx(20 / 30)  # pooled fitting would give 30 / 30


def test_held_out_sites_score_each_fold_model_and_their_average():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 50)
    oof = [(_scores(labels[:25], rng.random(25)), {"site": _scores(labels, labels * 0.5 + rng.random(50) * 0.6)}),
           (_scores(labels[25:], rng.random(25)), {"site": _scores(labels, labels * 0.2 + rng.random(50) * 0.9)})]
    pool, site = _seed_sites("pool", oof, ["site"])
    assert (site.kind, site.images, site.positives) == ("held out", 50, int(labels.sum()))
    assert site.roc_auc == pytest.approx(np.mean(site.per_fold_auc))
    assert site.averaged_auc is not None and site.interval.low <= site.averaged_auc <= site.interval.high
    assert pool.kind == "out of fold" and pool.images == 50


@pytest.mark.slow
def test_the_yardstick_trains_scores_resumes_and_compares_recipes_on_the_same_lesions(tmp_path, capsys):
    isic, ham = make_two_sites(tmp_path / "data")
    logged: list[str] = []
    common = dict(sites=[ham], overrides=TINY, folds=2, held_out_share=0.3, log=logged.append)
    with_ham = run_yardstick("demo", [isic, ham], tmp_path / "with-ham", **common)
    assert not with_ham.missing and sum(line.startswith("seed 0 fold") for line in logged) == 2
    pool, site = with_ham.sites[0]
    assert pool.images == 16 and site.name == "ham10000" and site.images == 4
    oof_ids = []
    for fold in range(2):
        run = tmp_path / "with-ham" / "seed0" / f"fold{fold}"
        record = SplitRecord.read(run / "split.json")
        assert not {f"ham10000/{i}" for i in json.loads((run / SCORES_FILE).read_text())["sites"]["ham10000"]["image_ids"]} \
            & set(record.train)
        oof_ids += json.loads((run / SCORES_FILE).read_text())["out_of_fold"]["image_ids"]
    assert sorted(oof_ids) == sorted(s.image_id for s in read_dataset(isic, "melanoma").split("train+val"))
    table = (tmp_path / "with-ham" / "yardstick.md").read_text()
    assert "out of fold (16," in table and "worst site" in table

    logged.clear()  # again: nothing to train, scores read from the cache
    again = run_yardstick("demo", [isic, ham], tmp_path / "with-ham", **common)
    assert not any(line.startswith(("seed 0 fold", "scoring")) for line in logged)
    assert again.to_dict() == with_ham.to_dict()

    isic_only = run_yardstick("demo", [isic], tmp_path / "isic-only", **{**common, "folds": 3})
    assert isic_only.sites[0][1].images == site.images
    # a fold lost (or not trained yet): the table covers the finished folds and says which is missing
    (tmp_path / "isic-only" / "seed0" / "fold2" / "best.safetensors").unlink()
    partial = run_yardstick("demo", [isic], tmp_path / "isic-only", train_missing=False, **{**common, "folds": 3})
    assert partial.missing == [(0, 2)] and len(partial.sites[0][0].per_fold_auc) == 2
    assert "**Partial**" in (tmp_path / "isic-only" / "yardstick.md").read_text()
    scored = json.loads((tmp_path / "isic-only" / "seed0" / "fold0" / SCORES_FILE).read_text())["sites"]["ham10000"]
    assert sorted(scored["image_ids"]) == sorted(
        json.loads((tmp_path / "with-ham" / "seed0" / "fold0" / SCORES_FILE).read_text())["sites"]["ham10000"]["image_ids"])

    # the two recipes side by side, paired on the same images (benchmarks/yardstick.py prints it)
    comparison = compare_recipes([tmp_path / "with-ham", tmp_path / "isic-only"], names=["with HAM", "ISIC only"])
    oof, held = comparison.differences["ISIC only"]
    assert (oof.site, oof.kind, oof.images) == ("isic2017", "out of fold", 16)
    assert held.site == "ham10000" and held.images == site.images
    assert oof.difference.estimate == pytest.approx(oof.auc - oof.baseline_auc)
    assert oof.baseline_auc == pytest.approx(pool.roc_auc)
    loading = benchmark_script("yardstick")
    try:
        assert next(loading).main([str(tmp_path / "with-ham"), str(tmp_path / "isic-only")]) == 0
    finally:
        loading.close()
    assert "| isic-only | isic2017, out of fold (16," in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "message"), [
    (["--folds", "1"], "--folds"),
    (["--held-out-share", "1.5"], "--held-out-share"),
    (["--site", "ISIC"], "cross-validated already"),
])
def test_bad_yardstick_options_are_one_line(tmp_path, capsys, argv, message):
    isic = make_isic2017_subset(tmp_path / "isic2017", n_train=4, n_val=2)
    argv = [a.replace("ISIC", str(isic)) for a in argv]
    code = main(["yardstick", "--config", "demo", "--data", str(isic), "--runs", str(tmp_path / "runs"), *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and "\n" not in err and "Traceback" not in err


def test_score_only_trains_nothing_and_says_what_is_missing(tmp_path, capsys):
    isic = make_isic2017_subset(tmp_path / "isic2017", n_train=4, n_val=2)
    code = main(["yardstick", "--config", "demo", "--data", str(isic), "--runs", str(tmp_path / "runs"), "--score-only"])
    assert code == 1 and "2 folds" not in capsys.readouterr().out.split("still")[0]
    assert not (tmp_path / "runs" / "seed0" / "fold0" / "best.safetensors").exists()


def test_yardstick_config_errors_name_the_option(tmp_path):
    isic = make_isic2017_subset(tmp_path / "isic2017", n_train=4, n_val=2)
    with pytest.raises(ConfigError, match="folds"):
        run_yardstick("demo", [isic], tmp_path / "runs", folds=1)


def test_a_comparison_needs_two_finished_yardsticks(tmp_path):
    with pytest.raises(ConfigError, match="at least two"):
        compare_recipes([tmp_path])
    with pytest.raises(DataError, match="no scored folds"):
        compare_recipes([tmp_path / "a", tmp_path / "b"])


def test_cached_scores_read_back_with_images_without_a_mask(tmp_path):
    """JSON has no NaN: an image without a mask is cached as null Jaccard, and a resumed yardstick scores it
    as it did before the cache (it once stopped there with a TypeError)."""
    from attnmel.io import atomic_write_json

    fresh = [SiteScores(["a", "b", "c"], [1, 0, 0], [0.9, 0.2, 0.4], [0.5, float("nan"), 0.7]),
             SiteScores(["d", "e"], [1, 0], [0.8, 0.1], [0.6, 0.4])]
    atomic_write_json(tmp_path / "scores.json", [dataclasses.asdict(s) for s in fresh])
    cached = [SiteScores(**raw) for raw in json.loads((tmp_path / "scores.json").read_text())]
    assert cached[0].jaccard[1] is None
    before, after = (_seed_sites("pool", [(s, {}) for s in scores], [])[0] for scores in (fresh, cached))
    assert after.jaccard == pytest.approx(before.jaccard) == pytest.approx(np.mean([0.5, 0.7, 0.6, 0.4]))


def _scored_yardstick(folder, oof_scores, site_scores):
    """A finished yardstick's score files, written by hand: two folds, one held-out site ("ham")."""
    from attnmel.io import atomic_write_json

    ids = sorted(oof_scores)
    for fold, part in enumerate((ids[::2], ids[1::2])):
        out_of_fold = SiteScores(part, [oof_scores[i][0] for i in part], [oof_scores[i][1] for i in part])
        site_ids = sorted(site_scores)
        site = SiteScores(site_ids, [site_scores[i][0] for i in site_ids], [site_scores[i][1] for i in site_ids])
        atomic_write_json(folder / "seed0" / f"fold{fold}" / SCORES_FILE,
                          {"key": None, "out_of_fold": dataclasses.asdict(out_of_fold),
                           "sites": {"ham": dataclasses.asdict(site)}})


def test_a_sites_negatives_split_by_a_metadata_column_show_where_a_recipe_gains(tmp_path, capsys):
    """Recipe B separates the melanomas from the follow-up nevi better and from the biopsied ones not at all:
    the whole site says B is better, the subgroup rows say where."""
    pool = {f"p{i}": (i % 2, 0.1 + 0.8 * (i % 2) + 0.01 * i) for i in range(8)}
    melanomas = {f"m{i}": (1, 0.6 + 0.05 * i) for i in range(4)}
    biopsied = {f"h{i}": (0, 0.45 + 0.1 * i) for i in range(4)}     # 0.45 .. 0.75: overlaps the melanomas
    follow_up = {f"f{i}": (0, 0.55 + 0.05 * i) for i in range(4)}    # 0.55 .. 0.70 in A
    a_site = {**melanomas, **biopsied, **follow_up}
    b_site = {**melanomas, **biopsied, **{k: (0, score - 0.5) for k, (_, score) in follow_up.items()}}
    _scored_yardstick(tmp_path / "a", pool, a_site)
    _scored_yardstick(tmp_path / "b", pool, b_site)
    metadata = tmp_path / "meta.csv"
    metadata.write_text("image_id,dx_type\n" + "".join(f"{k},histo\n" for k in [*melanomas, *biopsied])
                        + "".join(f"{k},follow_up\n" for k in follow_up))
    strata = {"ham": read_strata(metadata, "dx_type")}
    rows = {(row.site, row.stratum): row for row in compare_recipes([tmp_path / "a", tmp_path / "b"],
                                                                    strata=strata).differences["b"]}
    whole, follow, histo = rows["ham", None], rows["ham", "follow_up"], rows["ham", "histo"]
    assert whole.difference.estimate > 0.1
    assert (follow.images, follow.positives) == (8, 4) and follow.auc == 1.0 and follow.baseline_auc < 0.7
    assert (histo.images, histo.positives) == (8, 4) and histo.difference.estimate == pytest.approx(0.0)

    loading = benchmark_script("yardstick")
    try:
        module = next(loading)
        assert module.main([str(tmp_path / "a"), str(tmp_path / "b"), "--negatives-by", f"ham={metadata}:dx_type"]) == 0
        assert "ham: melanomas against its follow_up others, held out (folds averaged) (8, 4)" in capsys.readouterr().out
        for bad, message in ((f"ham={metadata}", "SITE=CSV:COLUMN"), (f"ham={metadata}:dx", "no column 'dx'"),
                             (f"ham={tmp_path / 'none.csv'}:dx_type", "does not exist"),
                             (f"isic={metadata}:dx_type", "no site 'isic'")):
            with pytest.raises(SystemExit) as stopped:
                module.main([str(tmp_path / "a"), str(tmp_path / "b"), "--negatives-by", bad])
            err = capsys.readouterr().err.strip()
            assert stopped.value.code == 2 and message in err and "\n" not in err, err
    finally:
        loading.close()
