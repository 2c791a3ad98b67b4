"""The smoke task's checks of single code paths: models in bf16 and channels_last, the device
augmentation, the decode-once cache and the Trainer end to end."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

from .settings import FAST, Settings


def relative_error(out, ref) -> float:
    return float((out.float() - ref.float()).norm() / ref.float().norm().clamp_min(1e-12))


def check_model(name: str, backbone: str, device, size: int, batch: int) -> str:
    """fp32 NCHW is the reference; fp32 channels_last must match it closely, bf16 autocast loosely;
    then one bf16 + channels_last training step must give every parameter a finite gradient."""
    import torch

    from attnmel import create_model
    from attnmel.training.losses import FocalLoss

    torch.manual_seed(0)
    model = create_model(name, 2, backbone=backbone).to(device).eval()
    x = torch.randn(batch, 3, size, size, device=device)
    with torch.no_grad():
        reference = model(x)
        model = model.to(memory_format=torch.channels_last)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        channels_last = model(x_cl)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            bf16 = model(x_cl)
    errors = {"channels_last": relative_error(channels_last.logits, reference.logits),
              "bf16": relative_error(bf16.logits, reference.logits)}
    for layer, amap in reference.attention.items():
        errors[f"bf16 {layer}"] = relative_error(bf16.attention[layer], amap)
    bounds = {"channels_last": 1e-2}  # other cuDNN algorithms (Winograd, FFT) round differently; a layout bug gives ~1
    for key, value in errors.items():
        if not value <= bounds.get(key, 0.1):  # NaN fails too
            raise AssertionError(f"{key} relative error {value:.2e} against fp32 NCHW (bound {bounds.get(key, 0.1)})")
    model.train()
    with torch.autocast(device.type, dtype=torch.bfloat16):
        out = model(x_cl)
    labels = torch.arange(batch, device=device) % 2
    loss = FocalLoss(2.0)(out.logits.float(), labels) + sum(a.float().mean() for a in out.attention.values())
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not bool(torch.isfinite(p.grad).all()))]
    if missing or not math.isfinite(loss.item()):
        raise AssertionError(f"loss {loss.item()}; no or non-finite gradient for {missing[:3]}")
    return (f"channels_last {errors['channels_last']:.1e}, bf16 {errors['bf16']:.1e}"
            + (f", maps {max(v for k, v in errors.items() if ' ' in k):.1e}" if reference.attention else "")
            + f"; logits {bf16.logits.dtype}, step ok")


def augment_inputs(subset: Path, resize: int, size: int):
    from attnmel.data.readers import read_dataset
    from attnmel.data.transforms import NORMALIZATION_PRESETS, Preprocessing

    samples = read_dataset(subset).split("train")
    mean, std = NORMALIZATION_PRESETS["isic2017"]
    return samples, Preprocessing(0.8, resize, size, mean, std), mean, std


def check_augment(subset: Path, device, resize: int, size: int) -> str:
    """Every training key and every evaluation view: the device batches equal the per-sample v2 path."""
    import torch
    from torchvision.transforms import v2

    from attnmel.data.dataset import IsicDataset
    from attnmel.data.masks import RoiSpec
    from attnmel.data.pipelines import DeviceBatches
    from attnmel.data.transforms import eval_augment, geometry, train_augment

    samples, prep, mean, std = augment_inputs(subset, resize, size)
    roi = RoiSpec("lesion")
    keys = [(i % len(samples), 7919 * i + 11) for i in range(2 * len(samples))]
    source = DeviceBatches(samples, prep, roi, device)
    if device.type == "cuda" and not source.on_device:
        raise AssertionError(f"the split stayed in host memory ({source.placement})")
    reference = IsicDataset(samples, v2.Compose([geometry(resize, 0.8), train_augment(size, mean, std)]), roi)
    position = 0
    for b in source.train(keys, 8):
        if b["image"].device.type != device.type:
            raise AssertionError(f"batch made on {b['image'].device}, not {device}")
        for n in range(len(b["index"])):
            expected = reference[keys[position]]
            if not torch.equal(b["mask"][n].cpu(), expected["mask"]):
                raise AssertionError(f"key {keys[position]}: mask differs")
            torch.testing.assert_close(b["image"][n].cpu(), expected["image"], rtol=0, atol=1e-6)
            if int(b["label"][n]) != int(expected["label"]) or bool(b["has_mask"][n]) != bool(expected["has_mask"]):
                raise AssertionError(f"key {keys[position]}: label or has_mask differs")
            position += 1
    evaluation = IsicDataset(samples, v2.Compose([geometry(resize, 0.8), eval_augment(size, mean, std)]), None)
    seen = 0
    for b in source.evaluate(range(len(samples)), 8):
        for n in range(len(b["index"])):
            torch.testing.assert_close(b["image"][n].cpu(), evaluation[seen]["image"], rtol=0, atol=1e-6)
            seen += 1
    if position != len(keys) or seen != len(samples):
        raise AssertionError(f"{position} of {len(keys)} training keys and {seen} of {len(samples)} views compared")
    return f"{position} training samples and {seen} evaluation views equal ({source.placement})"


def check_cache(subset: Path, device, cache_dir: Path, resize: int, size: int) -> str:
    """Cached geometry = fresh decode, the second prepare decodes nothing, and the device pipeline
    built from the cache holds the same pixels as one built by decoding."""
    import torch

    from attnmel.data.cache import GeometryCache, decode_geometry
    from attnmel.data.masks import RoiSpec
    from attnmel.data.pipelines import DeviceBatches

    samples, prep, _, _ = augment_inputs(subset, resize, size)
    roi = RoiSpec("lesion")
    shutil.rmtree(cache_dir, ignore_errors=True)
    cache = GeometryCache(cache_dir, resize, 0.8)
    cached = cache.prepare(samples, roi, num_workers=2)
    again = cache.prepare(samples, roi, num_workers=0)
    if cached.images_built != len(samples) or again.images_built != 0:
        raise AssertionError(f"decoded {cached.images_built} then {again.images_built} of {len(samples)} images")
    for sample in samples:
        image, mask, has = cached.load(sample)
        fresh = decode_geometry(sample, roi, resize, 0.8)
        if not (torch.equal(image, fresh[0]) and torch.equal(mask, fresh[1]) and has == fresh[2]):
            raise AssertionError(f"{sample.image_id}: cached geometry differs from a fresh decode")
    from_cache = DeviceBatches(samples, prep, roi, device, cached=again)
    decoded = DeviceBatches(samples, prep, roi, device)
    if not (torch.equal(from_cache.images, decoded.images) and torch.equal(from_cache.masks, decoded.masks)):
        raise AssertionError("the device pipeline holds other pixels when built from the cache")
    return f"{len(samples)} images and regions equal to a fresh decode; reused without decoding ({from_cache.placement})"


def check_trainer(s: Settings, subset: Path, device, size: int, resize: int) -> str:
    """The Trainer with every fast option on the device: 1 epoch, --resume to 2, then evaluation with masks."""
    from attnmel.config import load_config
    from attnmel.evaluation.evaluate import EvaluationOptions, evaluate_checkpoint
    from attnmel.inference import DataSplit, InferenceSettings
    from attnmel.training.loop import Trainer

    run = Path(s.work) / "smoke-run"
    shutil.rmtree(run, ignore_errors=True)
    overrides = [*FAST, "model.weights=null", f"data.image_size={size}", f"data.resize={resize}", "train.batch_size=8",
                 f"data.cache_dir={Path(s.work) / 'smoke-cache'}", f"train.device={device}", "data.num_workers=2",
                 *(["train.threads=1"] if s.smoke else [])]
    config = load_config("isic2017/attnmel-mobilenetv2-lesion", [*overrides, "train.epochs=1"])
    Trainer(config, subset, run, progress=False, log=lambda *_: None).run()
    trainer = Trainer(load_config("isic2017/attnmel-mobilenetv2-lesion", [*overrides, "train.epochs=2"]), subset, run,
                      resume=True, progress=False, log=lambda *_: None)
    result = trainer.run()
    history = result.history
    if len(history) != 2 or not all(math.isfinite(r["train_loss"]) and r["train_prior_samples"] > 0 for r in history):
        raise AssertionError(f"history {history}")
    evaluation = evaluate_checkpoint(run, DataSplit(subset, "val"), run / "eval", EvaluationOptions(masks=True),
                                     InferenceSettings(device=str(device), progress=False))
    jaccard = {layer: evaluation.attention_quality.mean(layer) for layer in evaluation.attention_quality.layers}
    if not jaccard or not all(math.isfinite(v) for v in jaccard.values()):
        raise AssertionError(f"attention Jaccard {jaccard}")
    return (f"2 epochs (the second resumed) at {size} px on {device}, {history[-1]['images_per_second']:.0f} img/s; "
            f"val AUC {evaluation.classification['melanoma'].roc_auc:.3f}, Jaccard "
            + ", ".join(f"{k} {v:.2f}" for k, v in jaccard.items()))
