"""The development yardstick: one training recipe judged on several sites at once.

A choice made on one split of 150 validation images has shipped a regression on the benchmark it
could not see. Here a recipe is trained once per fold of a cross-validation grouped by photograph
over the first dataset's pooled labelled images (ISIC 2017 train+val: near-identical photographs
stay in one fold), the other training datasets always in training less their held-out lesions. Each
fold keeps its last epoch (``train.keep_epoch=last``), so no choice is made on the images it is
scored on. It reports:

- **out of fold**: each pooled image predicted by the one fold model that never saw it, scored as
  one set (ROC AUC with its DeLong interval) and fold by fold;
- **held-out sites**: every fold model on the same unseen lesions of each ``site`` dataset (the
  same lesions whether or not the recipe trains on the rest of that dataset), fold by fold and the
  fold models averaged;
- **the stored rule**: the threshold at 85% sensitivity, as the shipped model stores it, cross-fitted:
  fold k is judged at the threshold fitted on the other folds' out-of-fold predictions, and the held-out
  sites at the one fitted on all of them;
- **stride-16 Jaccard** of the attention against the lesion masks, where a site has masks;
- **the worst site**: the lowest single-model ROC AUC of the sites.

Every fold is an ordinary training run that resumes (``--resume``) and every fold's scores are
cached beside it, so the yardstick goes on across sessions where it stopped.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from attnmel.checkpoints.format import BEST_FILE
from attnmel.config import Config, load_config
from attnmel.data.masks import RoiSpec
from attnmel.data.readers import read_dataset
from attnmel.data.records import Sample, get_task
from attnmel.data.sources import DataSource, data_sources, held_out_images
from attnmel.data.splits import SPLIT_FILE, SplitRecord
from attnmel.errors import ConfigError, DataError
from attnmel.evaluation.attention_quality import score_predictions
from attnmel.evaluation.operating_point import (
    DEFAULT_TARGET_SENSITIVITY,
    sensitivity_threshold,
    wilson_interval,
)
from attnmel.inference import InferenceSettings, load_model
from attnmel.io import atomic_write_json, atomic_write_text, file_sha256
from attnmel.metrics.intervals import Interval, delong_interval, delong_test
from attnmel.training.loop import train
from attnmel.training.resume import STATE_FILE

#: the attention layer the yardstick scores (MobileNetV2's pool-4 equivalent; VGG's pool-4 is "pool4")
JACCARD_LAYERS = ("stage4", "pool4", "cam")
#: which pooled splits cross-validation runs over
DEFAULT_POOL = "train+val"
DEFAULT_HELD_OUT_SHARE = 0.1
SCORES_FILE = "yardstick-scores.json"
RESULT_FILE = "yardstick.json"
TABLE_FILE = "yardstick.md"
#: how the folds are scored: raw probabilities (no temperature), quietly
_RAW = InferenceSettings(use_temperature=False, progress=False)


@dataclass(frozen=True)
class SiteScores:
    """One fold model's answers on one site: what the yardstick caches per fold."""

    image_ids: list[str]
    labels: list[int]
    #: P(positive class), raw
    scores: list[float]
    #: stride-16 Jaccard per image (NaN without a mask, null once cached); empty when the site has no masks
    jaccard: list[float | None] = field(default_factory=list)

    @property
    def positive(self) -> np.ndarray:
        return np.asarray(self.labels, dtype=bool)


@dataclass(frozen=True)
class Rates:
    """Sensitivity and specificity at a threshold, with 95% Wilson intervals."""

    threshold: float
    sensitivity: float
    sensitivity_interval: tuple[float, float]
    specificity: float
    specificity_interval: tuple[float, float]

    @classmethod
    def measure(cls, positive: np.ndarray, scores: np.ndarray, threshold: float | np.ndarray) -> Rates:
        called = scores > threshold
        tp, fn = int((called & positive).sum()), int((~called & positive).sum())
        tn, fp = int((~called & ~positive).sum()), int((called & ~positive).sum())
        return cls(float(np.mean(threshold)), tp / max(1, tp + fn), wilson_interval(tp, tp + fn),
                   tn / max(1, tn + fp), wilson_interval(tn, tn + fp))

    @classmethod
    def over_folds(cls, positive: np.ndarray, scores: Sequence[np.ndarray], threshold: float) -> Rates:
        """The fold models' mean rates on one site, with Wilson intervals at the site's size (the folds
        see the same images, so they are not more evidence)."""
        tp = round(float(np.mean([(s[positive] > threshold).sum() for s in scores])))
        tn = round(float(np.mean([(s[~positive] <= threshold).sum() for s in scores])))
        positives, negatives = int(positive.sum()), int((~positive).sum())
        return cls(threshold, tp / max(1, positives), wilson_interval(tp, positives),
                   tn / max(1, negatives), wilson_interval(tn, negatives))


@dataclass(frozen=True)
class SiteResult:
    """One site of one seed: the single-model figure, its interval, and the fold-by-fold values."""

    name: str
    kind: str  # "out of fold" or "held out"
    images: int
    positives: int
    #: out of fold: the pooled predictions' AUC; held out: the mean of the fold models' AUCs
    roc_auc: float
    #: DeLong interval of the pooled out-of-fold AUC, or of the fold models averaged (held out)
    interval: Interval
    per_fold_auc: list[float]
    #: held out: the fold models averaged (an ensemble), for comparison
    averaged_auc: float | None
    rates: Rates
    jaccard: float | None

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["interval"] = self.interval.to_dict()
        return out


@dataclass
class YardstickResult:
    """Every seed's sites and the worst site; ``to_dict()`` is ``yardstick.json``, ``to_markdown()`` its table."""

    recipe: str
    overrides: list[str]
    training: list[str]
    folds: int
    seeds: list[int]
    pool: str
    #: seed -> its sites, the out-of-fold one first
    sites: dict[int, list[SiteResult]]
    #: folds (seed, fold) not finished yet: the table is partial until they are
    missing: list[tuple[int, int]] = field(default_factory=list)

    def worst_site(self, seed: int) -> SiteResult:
        return min(self.sites[seed], key=lambda site: site.roc_auc)

    def to_dict(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe, "overrides": self.overrides, "training": self.training, "folds": self.folds,
            "seeds": self.seeds, "pool": self.pool, "missing": [list(m) for m in self.missing],
            "sites": {str(seed): [site.to_dict() for site in sites] for seed, sites in self.sites.items()},
            "worst": {str(seed): self.worst_site(seed).name for seed in self.sites},
        }

    def to_markdown(self) -> str:
        lines = [f"Recipe `{self.recipe}`" + (f" with `{' '.join(self.overrides)}`" if self.overrides else "")
                 + f"; trained on {', '.join(self.training)}; {self.folds}-fold cross-validation grouped by "
                 f"photograph over {self.pool} of {self.training[0]}; every fold keeps its last epoch.", ""]
        if self.missing:
            lines += [f"**Partial**: folds still to run (seed, fold): {self.missing}; each seed's rows cover its "
                      "finished folds only (out of fold: their images; held out: their models).", ""]
        lines += ["| seed | site (images, melanomas) | ROC AUC [95% CI] | per fold | folds averaged | "
                  "sensitivity / specificity at the stored rule | stride-16 Jaccard |",
                  "|---|---|---|---|---|---|---|"]
        for seed, sites in self.sites.items():
            worst = self.worst_site(seed)
            for site in sites:
                rates = site.rates
                lines.append(
                    f"| {seed} | {site.name}, {site.kind} ({site.images}, {site.positives}) | "
                    f"{site.roc_auc:.3f} [{site.interval.low:.3f}, {site.interval.high:.3f}] | "
                    + " ".join(f"{a:.3f}" for a in site.per_fold_auc) + " | "
                    + ("" if site.averaged_auc is None else f"{site.averaged_auc:.3f}") + " | "
                    f"{rates.sensitivity:.3f} [{rates.sensitivity_interval[0]:.2f}, {rates.sensitivity_interval[1]:.2f}]"
                    f" / {rates.specificity:.3f} [{rates.specificity_interval[0]:.2f}, {rates.specificity_interval[1]:.2f}] | "
                    + ("" if site.jaccard is None else f"{site.jaccard:.3f}") + " |")
            lines.append(f"| {seed} | **worst site** | **{worst.roc_auc:.3f}** ({worst.name}) | | | | |")
        if len(self.sites) > 1:
            names = [site.name for site in next(iter(self.sites.values()))]
            for k, name in enumerate(names):
                values = [sites[k].roc_auc for sites in self.sites.values()]
                lines.append(f"| mean ± sd | {name} | {statistics.mean(values):.3f} ± {statistics.stdev(values):.3f} | | | | |")
            worst = [self.worst_site(seed).roc_auc for seed in self.sites]
            lines.append(f"| mean ± sd | **worst site** | **{statistics.mean(worst):.3f} ± {statistics.stdev(worst):.3f}** | | | | |")
        return "\n".join(lines) + "\n"


def fold_config(recipe: str | Path, overrides: Sequence[str], pool: str, folds: int, fold: int, seed: int,
                held_out: dict[str, float]) -> Config:
    """The recipe as fold ``fold`` of ``folds`` of seed ``seed``: grouped by photograph over ``pool``,
    the last epoch kept, and exactly the scored sites' unseen lesions held out (the recipe's own
    ``data.held_out`` gives way: every recipe is scored on the same lesions)."""
    config = load_config(str(recipe), [
        *overrides, "data.split=grouped", "data.group_by=photograph", f"data.train_split={pool}",
        f"data.folds={folds}", f"data.fold={fold}", f"train.seed={seed}", "train.keep_epoch=last",
    ])
    return dataclasses.replace(config, data=dataclasses.replace(config.data, held_out=dict(held_out)))


def run_yardstick(
    recipe: str | Path,
    data: Sequence[str | Path],
    runs: str | Path,
    *,
    sites: Sequence[str | Path] = (),
    overrides: Sequence[str] = (),
    folds: int = 5,
    seeds: Sequence[int] = (0,),
    pool: str = DEFAULT_POOL,
    held_out_share: float = DEFAULT_HELD_OUT_SHARE,
    train_missing: bool = True,
    log: Callable[[str], None] = print,
) -> YardstickResult:
    """Train what is missing (``train_missing``), score every finished fold, and write ``yardstick.json``
    and ``yardstick.md`` into ``runs``. ``data`` are the recipe's training datasets (the first is
    cross-validated); ``sites`` are datasets whose held-out lesions are scored (a site that is also
    trained on is held out of training by the same share)."""
    if folds < 2:
        raise ConfigError(f"--folds must be at least 2, not {folds}.")
    if not 0 < held_out_share < 1:
        raise ConfigError(f"--held-out-share must be strictly between 0 and 1, not {held_out_share}.")
    training = data_sources(data)
    site_sources = data_sources(sites) if sites else []
    trained_names = {source.name for source in training}
    if training[0].name in {source.name for source in site_sources}:
        raise ConfigError(f"{training[0].name} is cross-validated already; --site names the other datasets.")
    held_out = {source.name: held_out_share for source in site_sources if source.name in trained_names}
    runs = Path(runs)
    missing: list[tuple[int, int]] = []
    per_seed: dict[int, list[SiteResult]] = {}
    for seed in seeds:
        scored: list[tuple[SiteScores, dict[str, SiteScores]]] = []
        site_images = {source.name: _site_images(source, recipe, overrides, seed, held_out_share)
                       for source in site_sources}
        for fold in range(folds):
            run = runs / f"seed{seed}" / f"fold{fold}"
            config = fold_config(recipe, overrides, pool, folds, fold, seed, held_out)
            if not _finished(run, config) and train_missing:
                log(f"seed {seed} fold {fold}/{folds}: training {run}")
                train(config, [str(s.path) for s in training], run, resume=(run / STATE_FILE).is_file(),
                      progress=False, log=log)
            if not _finished(run, config):
                missing.append((seed, fold))
                continue
            scored.append(_fold_scores(run, training[0], pool, site_images, held_out, log))
        if len(scored) >= 2:  # a partial seed is scored on its finished folds, and the table says so
            per_seed[seed] = _seed_sites(training[0].name, scored, [s.name for s in site_sources])
    result = YardstickResult(str(recipe), list(overrides), [s.name for s in training], folds, list(seeds), pool,
                             per_seed, missing)
    if per_seed:
        atomic_write_json(runs / RESULT_FILE, result.to_dict())
        atomic_write_text(runs / TABLE_FILE, result.to_markdown())
    return result


def _finished(run: Path, config: Config) -> bool:
    metrics = run / "metrics.csv"
    if not (run / BEST_FILE).is_file() or not metrics.is_file():
        return False
    with metrics.open(encoding="utf-8") as handle:
        return sum(1 for _ in handle) - 1 >= config.train.epochs


def _site_images(source: DataSource, recipe: str | Path, overrides: Sequence[str], seed: int,
                 share: float) -> list[Sample]:
    """The unseen lesions of ``source`` that every recipe is scored on (held out with the recipe's task)."""
    config = load_config(str(recipe), list(overrides))
    spec = dataclasses.replace(config.data.split_spec(seed), held_out=((source.name, share),), layout=None)
    return held_out_images(source, spec)


def read_fold_scores(path: Path) -> tuple[dict[str, Any], SiteScores, dict[str, SiteScores]]:
    """A fold's cached scores (``yardstick-scores.json``): its cache key, out-of-fold scores, and the held-out
    sites' scores; the one reader of the file."""
    payload = json.loads(path.read_text(encoding="utf-8"))
    return (payload.get("key"), SiteScores(**payload["out_of_fold"]),
            {name: SiteScores(**scores) for name, scores in payload["sites"].items()})


def scored_folds(runs: Path, seed: int | None = None) -> list[Path]:
    """The cached score files of one seed's finished folds (every seed's with ``seed`` None)."""
    return sorted(runs.glob(f"{'seed*' if seed is None else f'seed{seed}'}/fold*/{SCORES_FILE}"))


def _fold_scores(run: Path, primary: DataSource, pool: str, site_images: dict[str, list[Sample]],
                 held_out: dict[str, float], log: Callable[[str], None]) -> tuple[SiteScores, dict[str, SiteScores]]:
    """(out-of-fold scores, held-out site scores) of one fold run, computed once and cached beside it."""
    record = SplitRecord.read(run / SPLIT_FILE)
    checkpoint = run / BEST_FILE
    key = {"checkpoint_sha256": file_sha256(checkpoint), "val": list(record.val),
           "sites": {name: sorted(s.image_id for s in samples) for name, samples in site_images.items()}}
    cache = run / SCORES_FILE
    if cache.is_file():
        try:
            cached_key, out_of_fold, sites = read_fold_scores(cache)
            if cached_key == key:
                return out_of_fold, sites
        except (ValueError, TypeError, KeyError):
            pass  # a cache this version cannot read is recomputed
    for name, samples in site_images.items():
        trained_held = {item.split("/", 1)[1] for item in record.held_out if item.startswith(f"{name}/")}
        if name in held_out and trained_held != {s.image_id for s in samples}:
            raise DataError(run / SPLIT_FILE, f"the run held out other {name} images than the yardstick scores.",
                            "start the yardstick in a new --runs folder.")
    loaded = load_model(run, _RAW)
    index = read_dataset(primary.path, loaded.task)
    by_id = {sample.image_id: sample for sample in index.split(pool)}
    absent = [image_id for image_id in record.val if image_id not in by_id]
    if absent:
        raise DataError(primary.path, f"{len(absent)} validation images of {run} are not in its {pool} "
                                      f"(e.g. {absent[0]}).", "give the dataset the folds were trained on.")
    log(f"scoring {run}")
    out_of_fold = _score(loaded, [by_id[image_id] for image_id in record.val])
    sites = {name: _score(loaded, samples) for name, samples in site_images.items()}
    atomic_write_json(cache, {"key": key, "out_of_fold": dataclasses.asdict(out_of_fold),
                              "sites": {name: dataclasses.asdict(s) for name, s in sites.items()}})
    return out_of_fold, sites


def _score(loaded, samples: list[Sample]) -> SiteScores:
    positive = get_task(loaded.task).positive_index
    has_masks = any(sample.mask_path is not None for sample in samples)
    predictions = loaded.infer(samples, _RAW, roi=RoiSpec("lesion") if has_masks else None,
                               keep=("attention",) if has_masks else ())
    jaccard: list[float] = []
    if has_masks:
        quality = score_predictions(predictions, roi="lesion", kinds=loaded.map_kinds)
        layer = next((name for name in JACCARD_LAYERS if name in quality.jaccard), None)
        if layer is not None:
            jaccard = [float(v) for v in quality.jaccard[layer]]
    return SiteScores(list(predictions.image_ids), [int(v == positive) for v in predictions.labels],
                      [float(v) for v in predictions.probabilities[:, positive]], jaccard)


def _mean_jaccard(values: Sequence[float | None]) -> float | None:
    """The mean over images with a mask: NaN when computed, null when read back from the JSON cache."""
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(finite)) if finite else None


def _seed_sites(primary: str, scored: list[tuple[SiteScores, dict[str, SiteScores]]],
                site_names: list[str]) -> list[SiteResult]:
    """One seed's sites from its folds' scores."""
    oof = [fold for fold, _ in scored]
    positive = np.concatenate([fold.positive for fold in oof])
    scores = np.concatenate([np.asarray(fold.scores) for fold in oof])
    # fold k at the threshold fitted on every other fold's out-of-fold predictions
    thresholds = np.concatenate([
        np.full(len(fold.scores), sensitivity_threshold(
            np.concatenate([f.positive for j, f in enumerate(oof) if j != k]),
            np.concatenate([np.asarray(f.scores) for j, f in enumerate(oof) if j != k]), DEFAULT_TARGET_SENSITIVITY))
        for k, fold in enumerate(oof)])
    sites = [SiteResult(
        primary, "out of fold", len(scores), int(positive.sum()), float(roc_auc_score(positive, scores)),
        delong_interval(positive.astype(int), scores), [float(roc_auc_score(f.positive, f.scores)) for f in oof], None,
        Rates.measure(positive, scores, thresholds), _mean_jaccard([v for f in oof for v in f.jaccard]))]
    stored = sensitivity_threshold(positive, scores, DEFAULT_TARGET_SENSITIVITY)
    for name in site_names:
        folds = [site_scores[name] for _, site_scores in scored]
        truth = folds[0].positive
        per_fold = [float(roc_auc_score(truth, f.scores)) for f in folds]
        averaged = np.mean([np.asarray(f.scores) for f in folds], axis=0)
        jaccards = [j for j in (_mean_jaccard(f.jaccard) for f in folds) if j is not None]
        sites.append(SiteResult(
            name, "held out", len(truth), int(truth.sum()), float(np.mean(per_fold)),
            delong_interval(truth.astype(int), averaged), per_fold, float(roc_auc_score(truth, averaged)),
            Rates.over_folds(truth, [np.asarray(f.scores) for f in folds], stored),
            float(np.mean(jaccards)) if jaccards else None))
    return sites


@dataclass(frozen=True)
class SiteDifference:
    """One recipe against the baseline on one site's images: paired, since both answered every image."""

    site: str
    kind: str  # "out of fold" or "held out (folds averaged)"
    images: int
    positives: int
    baseline_auc: float
    auc: float
    #: AUC(recipe) - AUC(baseline) with its paired DeLong interval and two-sided p-value
    difference: Interval
    p_value: float
    #: a subgroup row: every melanoma of the site against only its other images of this stratum
    stratum: str | None = None


@dataclass(frozen=True)
class RecipeComparison:
    """Recipes judged by their yardsticks on the same images, each against the first (the baseline)."""

    seed: int
    names: list[str]
    #: recipe name -> its differences to the baseline, one per site
    differences: dict[str, list[SiteDifference]]

    def to_markdown(self) -> str:
        baseline = self.names[0]
        lines = [f"Seed {self.seed}; each recipe against `{baseline}` on the same images (paired DeLong). Out of "
                 "fold: every pooled image answered by the fold model that never saw it; held out: the fold "
                 "models averaged.", "",
                 f"| recipe | site (images, melanomas) | ROC AUC | {baseline} | difference [95% CI] | p |",
                 "|---|---|---|---|---|---|"]
        for name, rows in self.differences.items():
            for row in rows:
                site = row.site if row.stratum is None else f"{row.site}: melanomas against its {row.stratum} others"
                lines.append(f"| {name} | {site}, {row.kind} ({row.images}, {row.positives}) | {row.auc:.3f} | "
                             f"{row.baseline_auc:.3f} | {row.difference.estimate:+.3f} [{row.difference.low:+.3f}, "
                             f"{row.difference.high:+.3f}] | {row.p_value:.3f} |")
        return "\n".join(lines) + "\n"


def _pooled_scores(runs: Path, seed: int) -> tuple[dict[str, tuple[int, float]], dict[str, dict[str, tuple[int, float]]]]:
    """A finished yardstick's cached answers of one seed: out of fold by image, and each held-out site's
    fold models averaged by image."""
    files = scored_folds(runs, seed)
    if len(files) < 2:
        raise DataError(runs, f"no scored folds of seed {seed} (fold*/{SCORES_FILE}).",
                        "run attnmel yardstick there first, or give a seed it ran.")
    out_of_fold: dict[str, tuple[int, float]] = {}
    per_site: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for path in files:
        _, fold, sites = read_fold_scores(path)
        out_of_fold.update(zip(fold.image_ids, zip(fold.labels, fold.scores, strict=True), strict=True))
        for name, site in sites.items():
            for image_id, label, score in zip(site.image_ids, site.labels, site.scores, strict=True):
                per_site.setdefault(name, {}).setdefault(image_id, []).append((label, score))
    averaged = {name: {image_id: (answers[0][0], float(np.mean([s for _, s in answers])))
                       for image_id, answers in images.items()} for name, images in per_site.items()}
    return out_of_fold, averaged


#: how a held-out site's row of a comparison is scored
HELD_OUT_AVERAGED = "held out (folds averaged)"


def _paired(site: str, kind: str, base: dict[str, tuple[int, float]], other: dict[str, tuple[int, float]],
            stratum: str | None = None) -> SiteDifference:
    common = sorted(set(base) & set(other))
    labels = [base[i][0] for i in common]
    test = delong_test(labels, [base[i][1] for i in common], [other[i][1] for i in common])
    return SiteDifference(site, kind, len(common), int(sum(labels)), test.auc_a, test.auc_b, test.difference,
                          test.p_value, stratum)


def _by_stratum(site: str, kind: str, base: dict[str, tuple[int, float]], other: dict[str, tuple[int, float]],
                strata: Mapping[str, str] | None) -> list[SiteDifference]:
    """One row per stratum of the site's negatives: every positive against only that stratum's negatives
    (none where the site is not split)."""
    if strata is None:
        return []
    common = set(base) & set(other)
    values = sorted({strata[i] for i in common if base[i][0] == 0 and i in strata})
    rows = []
    for value in values:
        kept = {i for i in common if base[i][0] == 1 or strata.get(i) == value}
        if any(base[i][0] == 1 for i in kept):
            rows.append(_paired(site, kind, {i: base[i] for i in kept}, {i: other[i] for i in kept}, value))
    return rows


def read_strata(path: str | Path, column: str, id_column: str = "image_id") -> dict[str, str]:
    """Image id -> its value in ``column`` of a metadata CSV: the subgroups a site's negatives are split
    by. HAM10000's ``dx_type`` says how each diagnosis was confirmed, and its follow-up series is nearly
    all nevi: a gain against those alone may come from how they were photographed, not from the lesions."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "the metadata CSV does not exist.", "give the CSV that lists the site's images.")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        for wanted in (id_column, column):
            if wanted not in header:
                raise DataError(path, f"has no column {wanted!r} (it has {', '.join(header) or 'none'}).",
                                "name one of its columns.")
        return {row[id_column]: row[column] for row in reader if row.get(id_column)}


def compare_recipes(runs: Sequence[str | Path], seed: int = 0, names: Sequence[str] | None = None,
                    strata: Mapping[str, Mapping[str, str]] | None = None) -> RecipeComparison:
    """Each yardstick in ``runs`` against the first, site by site on the images both answered: the
    evidence for a recipe decision. The pairing is by image, not by fold: both recipes answered every
    pooled image out of fold and every held-out lesion. ``strata`` (site name -> image id -> subgroup,
    e.g. from :func:`read_strata`) adds a row per subgroup of that site's negatives."""
    folders = [Path(r) for r in runs]
    if len(folders) < 2:
        raise ConfigError("compare at least two yardstick --runs folders: the first is the baseline.")
    labels = list(names) if names else [folder.name for folder in folders]
    if len(labels) != len(folders) or len(set(labels)) != len(labels):
        raise ConfigError(f"one distinct name per yardstick folder, not {labels}.")
    strata = dict(strata or {})
    base_oof, base_sites = _pooled_scores(folders[0], seed)
    # the cross-validated dataset's name, from whichever yardstick has written its table (a partial one may not)
    result_files = [folder / RESULT_FILE for folder in folders if (folder / RESULT_FILE).is_file()]
    primary = json.loads(result_files[0].read_text(encoding="utf-8"))["training"][0] if result_files else "pooled"
    unknown = sorted(set(strata) - {primary} - set(base_sites))
    if unknown:
        raise ConfigError(f"no site {unknown[0]!r} in {folders[0]}: its sites are "
                          f"{', '.join([primary, *base_sites])}; split one of those.")
    differences = {}
    for label, folder in zip(labels[1:], folders[1:], strict=True):
        oof, sites = _pooled_scores(folder, seed)
        rows = [_paired(primary, "out of fold", base_oof, oof)]
        rows += _by_stratum(primary, "out of fold", base_oof, oof, strata.get(primary))
        for name in (name for name in base_sites if name in sites):
            rows.append(_paired(name, HELD_OUT_AVERAGED, base_sites[name], sites[name]))
            rows += _by_stratum(name, HELD_OUT_AVERAGED, base_sites[name], sites[name], strata.get(name))
        differences[label] = rows
    return RecipeComparison(seed, labels, differences)
