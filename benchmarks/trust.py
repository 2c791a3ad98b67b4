"""Trust figures of a checkpoint (issue 23): OOD detection, conformal coverage, the attention check,
and the operating point off ISIC 2017. One table per part, in Markdown, for benchmarks/RESULTS.md.

    python benchmarks/trust.py --shared ../shared [--checkpoint FILE] [--cache DIR]

Features come from the model's own forward pass (``keep_features``), cached per dataset in
``--cache`` so that a second run only recomputes the tables. The OOD set is
``benchmarks/ood_images.py`` (photo crops, blanks, gradients, noise, textures, screenshots).
The detector is compared with k-nearest-neighbour distance (Sun et al., ICML 2022: cosine distance
of normalised features to the k-th nearest training image); thresholds are set on one half of ISIC
2017 val and the false-flag rate read on the other half, over many random halves.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from attnmel.evaluation.operating_point import choose_operating_point, wilson_interval
from attnmel.evaluation.split_predictions import read_split
from attnmel.evaluation.trust import DEFAULT_COMPONENTS, DetectorData, conformal_quantile, fit_ood
from attnmel.inference import DataSplit, InferenceSettings, load_model
from attnmel.inference.trust import attention_warning, feature_tap
from attnmel.io import atomic_write_json
from attnmel.metrics.intervals import delong_interval

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ood_images import ood_images  # noqa: E402

#: name: (dataset folder, split, images drawn at random with seed 0; None: all)
SETS = {"isic2017-train": ("isic2017", "train", None), "isic2017-val": ("isic2017", "val", None),
        "ham10000": ("ham10000", "train", 2000), "isic2016-test": ("isic2016", "test", None)}


def ood_arrays(loaded) -> dict[str, np.ndarray]:
    pairs = ood_images()
    features, probabilities, maps = [], [], {}
    for start in range(0, len(pairs), 32):
        batch = torch.stack([loaded.preprocessing(image) for _, image in pairs[start:start + 32]])
        with feature_tap(loaded.predictor.models) as tapped:
            p, attention = loaded.predictor(batch)
        features.append(tapped.features())
        probabilities.append(p.numpy())
        for name, amap in attention.items():
            maps.setdefault(name, []).append(amap[:, 0].float().numpy())
    return {"features": np.concatenate(features), "probabilities": np.concatenate(probabilities),
            "labels": np.zeros(len(pairs), dtype=int), "kinds": np.array([k for k, _ in pairs]),
            **{f"map_{n}": np.concatenate(m) for n, m in maps.items()}}


def cached(loaded, shared: Path, cache: Path, name: str) -> dict[str, np.ndarray]:
    path = cache / f"{name}.npz"
    if path.is_file():
        return dict(np.load(path))
    if name == "ood":
        arrays = ood_arrays(loaded)
    else:
        folder, split, limit = SETS[name]
        _, samples = read_split(DataSplit(shared / "data" / folder, split), loaded.task)
        if limit is not None and limit < len(samples):
            samples = [samples[i] for i in sorted(np.random.default_rng(0).choice(len(samples), limit, replace=False))]
        out = loaded.infer(samples, InferenceSettings(device="cpu"), keep=("features", "attention"), desc=name)
        arrays = {"features": out.features, "probabilities": out.probabilities, "labels": out.labels,
                  **{f"map_{n}": m for n, m in out.attention.items()}}
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    print(f"cached {name}: {len(arrays['labels'])} images", file=sys.stderr)
    return arrays


def knn_scores(bank: np.ndarray, features: np.ndarray, k: int = 10) -> np.ndarray:
    def unit(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)
    similarity = unit(features) @ unit(bank).T
    return 1.0 - np.sort(similarity, axis=1)[:, -k]


def half_split_flags(val_scores: np.ndarray, others: dict[str, np.ndarray], rng, splits: int = 200) -> dict[str, float]:
    """Threshold on a random half of val (<= 5% flagged); flag rates of the other half and of ``others``."""
    rates: dict[str, list[float]] = {"val (held-out half)": [], **{k: [] for k in others}}
    n = len(val_scores)
    for _ in range(splits):
        order = rng.permutation(n)
        fit, held = val_scores[order[: n // 2]], val_scores[order[n // 2:]]
        ranked = np.sort(fit)
        threshold = ranked[len(ranked) - int(0.05 * len(ranked)) - 1]
        rates["val (held-out half)"].append(float((held > threshold).mean()))
        for key, scores in others.items():
            rates[key].append(float((scores > threshold).mean()))
    return {k: float(np.mean(v)) for k, v in rates.items()}


def ood_table(data: dict[str, dict[str, np.ndarray]], figures: dict) -> list[str]:
    train, val, ood = data["isic2017-train"]["features"], data["isic2017-val"]["features"], data["ood"]["features"]
    def features(x: np.ndarray) -> DetectorData:
        return DetectorData(x, None, None, "features")

    methods = {f"PPCA Mahalanobis, signed sqrt, k={k}":
               (lambda x, d=fit_ood(features(train), features(val), inputs=("features",), components=k): d.score(x))
               for k in (8, 16, 32, 64)}
    methods.update({f"kNN cosine, k={k}": (lambda x, k=k: knn_scores(train, x, k)) for k in (1, 10)})
    lines = ["| detector | OOD AUROC (val vs OOD set) | false flags, val (threshold on other half) | HAM10000 flagged | "
             "ISIC 2016 test flagged | OOD set flagged |", "|---|---|---|---|---|---|"]
    for name, score in methods.items():
        s_val, s_ood = score(val), score(ood)
        isic2016 = score(data["isic2016-test"]["features"])
        auroc = roc_auc_score(np.r_[np.zeros(len(s_val)), np.ones(len(s_ood))], np.r_[s_val, s_ood])
        rates = half_split_flags(s_val, {"ham": score(data["ham10000"]["features"]), "isic2016": isic2016, "ood": s_ood},
                                 np.random.default_rng(0))
        lines.append(f"| {name} | {auroc:.3f} | {rates['val (held-out half)']:.3f} | {rates['ham']:.3f} | "
                     f"{rates['isic2016']:.3f} | {rates['ood']:.3f} |")
        if name == f"PPCA Mahalanobis, signed sqrt, k={DEFAULT_COMPONENTS}":
            figures["ood"] = (f"AUROC {auroc:.3f} between ISIC 2017 val and {len(s_ood)} non-dermoscopy images "
                              f"(photo crops, blanks, gradients, noise, textures, screenshots); flagged: ISIC 2017 val "
                              f"{rates['val (held-out half)']:.1%} (threshold set on the other half), HAM10000 "
                              f"{rates['ham']:.1%}, ISIC 2016 test {rates['isic2016']:.1%}, the OOD set {rates['ood']:.1%}")
    kinds = data["ood"]["kinds"]
    detector = fit_ood(features(train), features(val), inputs=("features",))
    s_val, s_ood = detector.score(val), detector.score(ood)
    lines += ["", "Per kind of OOD image, the default detector (threshold fitted on all of val):", "",
              "| kind | images | AUROC vs val | flagged |", "|---|---|---|---|"]
    for kind in dict.fromkeys(kinds):
        part = s_ood[kinds == kind]
        auroc = roc_auc_score(np.r_[np.zeros(len(s_val)), np.ones(len(part))], np.r_[s_val, part])
        lines.append(f"| {kind} | {len(part)} | {auroc:.3f} | {(part > 1.0).mean():.3f} |")
    return lines


def conformal_table(val: dict[str, np.ndarray], figures: dict, alphas=(0.05, 0.1, 0.2), splits: int = 1000) -> list[str]:
    labels, probabilities = val["labels"], val["probabilities"]
    rng = np.random.default_rng(0)
    lines = ["| alpha | target coverage | mean coverage (held-out half) | spread (sd) | mean set size | uncertain share |",
             "|---|---|---|---|---|---|"]
    n = len(labels)
    for alpha in alphas:
        coverage, sizes, uncertain = [], [], []
        for _ in range(splits):
            order = rng.permutation(n)
            fit, held = order[: n // 2], order[n // 2:]
            q = conformal_quantile(labels[fit], probabilities[fit], alpha)
            inside = 1.0 - probabilities[held] <= q + 1e-12
            coverage.append(inside[np.arange(len(held)), labels[held]].mean())
            sizes.append(inside.sum(axis=1).mean())
            uncertain.append((inside.sum(axis=1) > 1).mean())
        lines.append(f"| {alpha} | {1 - alpha:.2f} | {np.mean(coverage):.3f} | {np.std(coverage):.3f} | "
                     f"{np.mean(sizes):.2f} | {np.mean(uncertain):.3f} |")
        if alpha == 0.1:
            figures["prediction_sets"] = (f"alpha 0.1 on ISIC 2017 val, fitted on one half and scored on the other "
                                          f"({splits} splits): coverage {np.mean(coverage):.3f}, uncertain (both "
                                          f"classes) {np.mean(uncertain):.1%} of answers")
    return lines


def attention_table(data: dict[str, dict[str, np.ndarray]], kinds, figures: dict) -> list[str]:
    threshold = choose_operating_point(data["isic2017-val"]["labels"] == 1, data["isic2017-val"]["probabilities"][:, 1],
                                       data="isic2017 val").threshold
    lines = ["| data | images | warnings | share [95% CI] | AUC flagged [95% CI] | AUC unflagged [95% CI] | "
             f"accuracy at {threshold:.3f}: flagged / unflagged |", "|---|---|---|---|---|---|---|"]
    for name in ("isic2017-val", "ham10000", "isic2016-test"):
        arrays = data[name]
        layers = [k[4:] for k in arrays if k.startswith("map_")]
        flagged = np.array([attention_warning({layer: arrays[f"map_{layer}"][i] for layer in layers}, kinds) is not None
                            for i in range(len(arrays["labels"]))])
        positive, score = arrays["labels"] == 1, arrays["probabilities"][:, 1]
        low, high = wilson_interval(int(flagged.sum()), len(flagged))
        cells = []
        for rows in (flagged, ~flagged):
            if positive[rows].sum() >= 2 and (~positive[rows]).sum() >= 2:
                iv = delong_interval(positive[rows].astype(int), score[rows])
                cells.append(f"{iv.estimate:.3f} [{iv.low:.2f}, {iv.high:.2f}] (n {rows.sum()})")
            else:
                cells.append(f"n/a (n {rows.sum()}: {positive[rows].sum()} melanoma)")
        correct = (score > threshold) == positive
        cells.append(f"{correct[flagged].mean():.3f} / {correct[~flagged].mean():.3f}")
        lines.append(f"| {name} | {len(flagged)} | {flagged.sum()} | {flagged.mean():.3f} [{low:.3f}, {high:.3f}] | "
                     f"{cells[0]} | {cells[1]} | {cells[2]} |")
        figures[f"attention_check_on_{name}"] = (f"fires on {flagged.mean():.1%}; ROC AUC flagged {cells[0]}, unflagged "
                                                 f"{cells[1]}; accuracy flagged / unflagged {cells[2]}")
    return lines


def operating_table(data: dict[str, dict[str, np.ndarray]], figures: dict) -> list[str]:
    val = data["isic2017-val"]
    lines = ["| rule (chosen on ISIC 2017 val) | threshold | data | sensitivity [95% CI] | specificity [95% CI] |",
             "|---|---|---|---|---|"]
    for rule in ("sensitivity", "youden"):
        point = choose_operating_point(val["labels"] == 1, val["probabilities"][:, 1], rule=rule, data="isic2017 val")
        for name in ("isic2017-val", "ham10000", "isic2016-test"):
            check = choose_operating_point(data[name]["labels"] == 1, data[name]["probabilities"][:, 1], rule="fixed",
                                           fixed=point.threshold, data=name)
            lines.append(f"| {point.describe()} | {point.threshold:.4f} | {name} | {check.sensitivity:.3f} "
                         f"[{check.sensitivity_interval[0]:.2f}, {check.sensitivity_interval[1]:.2f}] | "
                         f"{check.specificity:.3f} [{check.specificity_interval[0]:.2f}, {check.specificity_interval[1]:.2f}] |")
            if rule == "sensitivity" and name != "isic2017-val":
                figures[f"threshold_on_{name}"] = (f"sensitivity {check.sensitivity:.3f} [{check.sensitivity_interval[0]:.2f}, "
                                                   f"{check.sensitivity_interval[1]:.2f}], specificity {check.specificity:.3f}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--checkpoint", default=None, help="default: the shipped model")
    parser.add_argument("--cache", type=Path, default=Path("benchmarks/.trust-cache"))
    parser.add_argument("--json", type=Path, help="also write the headline figures here (for a model card's release record)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    loaded = load_model(args.checkpoint, InferenceSettings(device="cpu"))
    data = {name: cached(loaded, args.shared, args.cache, name) for name in (*SETS, "ood")}
    print(f"checkpoint: {loaded.sources[0]}; OOD set: {len(data['ood']['labels'])} images\n")
    figures: dict[str, str] = {}
    for title, lines in (("OOD detection", ood_table(data, figures)),
                         ("Conformal sets, ISIC 2017 val, 1000 random halves", conformal_table(data["isic2017-val"], figures)),
                         ("Attention check", attention_table(data, loaded.map_kinds, figures)),
                         ("Operating point off ISIC 2017", operating_table(data, figures))):
        print(f"### {title}\n\n" + "\n".join(lines) + "\n")
    if args.json:
        atomic_write_json(args.json, figures)


if __name__ == "__main__":
    main()
