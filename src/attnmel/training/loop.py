"""Training: the paper's recipe by default, reproducible and resumable.

An epoch is a pure function of (seed, epoch): the sampler order and every sample's augmentation
are seeded from them, so ``--resume`` after a crash reproduces the uninterrupted run exactly (on
the same device, thread count and process count). Neither the input pipeline (``training.batches``)
nor the number of processes (``training.distributed``) changes which samples a step sees. After
each epoch the run folder gets, atomically:
``last-state.safetensors`` (everything needed to resume), ``metrics.csv``, TensorBoard events, and
``best.safetensors`` (+ ``best.json``) when the validation metric improves. With
``train.ema_decay`` set, the averaged weights are the ones validated and saved (``training/ema.py``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from attnmel.checkpoints.format import (
    BEST_FILE,
    load_training_state,
    save_model_checkpoint,
    save_training_state,
)
from attnmel.checkpoints.loader import start_from_checkpoint
from attnmel.checkpoints.meta import Architecture, CheckpointMeta, TrainingRecord
from attnmel.checkpoints.pretrained import create_model
from attnmel.config import Config, load_config
from attnmel.data.masks import RoiSpec
from attnmel.data.sampling import derive_seed, epoch_indices, epoch_size
from attnmel.data.splits import SPLIT_FILE, SplitRecord, prepare_data
from attnmel.data.transforms import denormalize
from attnmel.devices import configure_torch, fast_path
from attnmel.errors import CheckpointError, TrainingError
from attnmel.inference import eval_loader, run_inference
from attnmel.io import atomic_write_text, progress_bar, remove_stale_temporaries
from attnmel.metrics.classification import ClassificationReport, classification_report
from attnmel.metrics.intervals import delong_intervals
from attnmel.models import map_kind, with_maps
from attnmel.training.batches import build_batch_sources
from attnmel.training.distributed import Distributed
from attnmel.training.ema import create_ema
from attnmel.training.logs import RunLog, flat_hyperparameters
from attnmel.training.losses import attention_prior_loss, classification_loss, consistency_loss, pixel_noise
from attnmel.training.optim import build_optimizer, build_scheduler
from attnmel.training.resume import CONFIG_FILE, STATE_FILE, check_new_run_folder, resumable_config
from attnmel.visualize.figures import Panel, attention_figure

#: the validation metrics logged per epoch (besides the NLL)
HISTORY_METRICS = ("roc_auc", "average_precision", "accuracy", "sensitivity", "specificity", "balanced_accuracy",
                   "sensitivity_at_90_specificity")


@dataclass
class TrainResult:
    output_dir: Path
    best_checkpoint: Path
    best_epoch: int
    best_metric: float
    history: list[dict[str, Any]]


@dataclass
class StepValues:
    """One step's losses (global means over processes) and how many samples carried a prior region."""

    loss: float
    cls_loss: float
    prior_loss: float
    consistency_loss: float
    prior_samples: int


class Trainer:
    """One training run in ``output_dir``; ``run()`` trains (or resumes) to the last epoch."""

    def __init__(
        self,
        config: Config,
        data: str | Path | Sequence[str | Path] | Mapping[str, str | Path],
        output_dir: str | Path,
        *,
        resume: bool = False,
        progress: bool = True,
        log: Callable[[str], None] = print,
    ):
        self.output_dir = Path(output_dir)
        self.dist = Distributed.from_environment(config.train.device)
        self.progress = progress and self.dist.is_main
        self.log = log if self.dist.is_main else _quiet
        self.resume_state: dict[str, Any] | None = None
        if resume:
            for path in remove_stale_temporaries(self.output_dir) if self.dist.is_main else []:
                log(f"removed {path.name}, left by a write that was interrupted")
            self.resume_state = load_training_state(self.output_dir / STATE_FILE)
            config = resumable_config(config, self.resume_state["config"], self.output_dir)
        elif (self.output_dir / STATE_FILE).exists():
            raise CheckpointError(
                f"{self.output_dir}: already holds a training run; pass --resume to continue it or choose another --output."
            )
        elif self.dist.is_main:  # before any process writes (the others would see rank 0's config.yaml)
            check_new_run_folder(self.output_dir)
        self.config = config
        configure_torch(config.train.threads, config.train.deterministic)
        self.device = self.dist.device(config.train.device)
        self.roi = config.data.roi_spec()
        self.preprocessing = config.data.preprocessing()
        # a resumed run checks again: what data.leaks=drop left out must be left out the same way
        self.data = prepare_data(data, config.data.split_spec(config.train.seed))
        if self.resume_state is not None:
            check_same_data(self.output_dir, self.data.split, self.log)
        self.task = self.data.index.task
        self.fast = fast_path(self.device, config.train.amp, config.train.channels_last)

        torch.manual_seed(config.train.seed)
        options = config.model.options()
        if resume:
            options.pop("weights", None)  # the state holds the weights
        model = create_model(config.model.name, self.task.num_classes, **options)
        #: the checkpoint a fine-tuning run started from (a resumed run reads it back from its state)
        self.started_from = (start_from_checkpoint(model, config.model.init_from, self.task.class_names)
                             if config.model.init_from and not resume else None)
        model = self.dist.prepare_model(model, self.device, config.train.sync_batchnorm)
        self.model = model.to(self.device)
        if self.fast.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.ema = create_ema(self.model, config.train.ema_decay)
        self.criterion = classification_loss(config.loss)
        self.optimizer = build_optimizer(self.model, config.optim)
        #: what trains: the model, wrapped for DDP and compiled where configured (checkpoints use self.model)
        self.train_model = self.dist.wrap(self.model, self.device)
        if config.train.compile:
            self.train_model = cast(torch.nn.Module, torch.compile(self.train_model))  # an OptimizedModule
        self.train_batches, val_batches = build_batch_sources(
            config, self.data.train, self.data.val, self.preprocessing, self.roi, self.device, self.dist,
            progress=self.progress, log=self.log,
        )
        self.steps_per_pass = self._batches_per_pass()
        self.scheduler = build_scheduler(
            self.optimizer, config.optim, self.steps_per_pass * config.train.passes_per_epoch, config.train.epochs
        )
        self.val_loader = val_batches.evaluate(self.dist.eval_indices(len(self.data.val)), config.train.eval_batch_size)
        self.start_epoch = 0
        self.best_metric = -math.inf
        self.best_epoch = -1
        self.history: list[dict[str, Any]] = []
        self.global_step = 0
        if self.resume_state is not None:
            self._restore(self.resume_state)
        self.run_log = RunLog(self.output_dir, self.task.class_names, self.task.score_columns)
        self.figure_samples = [s for s in self.data.val if s.mask_path is not None][: config.train.tensorboard_figures]
        #: (labels, probabilities) of the last validation, for the DeLong intervals stored with a checkpoint
        self._val_scores: tuple[np.ndarray, np.ndarray] | None = None

    # ------------------------------------------------------------------ bookkeeping

    def _batches_per_pass(self) -> int:
        data = self.config.data
        n = epoch_size([s.label for s in self.data.train], data.sampler, positive=self.task.positive_index,
                       factor=data.oversample, datasets=[s.dataset for s in self.data.train],
                       weights=data.dataset_weights)
        batch = self.config.train.batch_size
        return n // batch if n > batch else 1

    def _restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.start_epoch = int(state["epoch"])
        self.best_metric = float(state["best_metric"])
        self.best_epoch = int(state["best_epoch"])
        self.history = list(state["history"])
        self.global_step = int(state["global_step"])
        self.started_from = state.get("started_from")
        self.log(f"resuming {self.output_dir} after epoch {self.start_epoch} (best {self.best_metric:.4f} at epoch {self.best_epoch})")

    def _state(self, epoch: int) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "model": self.model.state_dict(),
            **({"ema": self.ema.state_dict()} if self.ema is not None else {}),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": epoch,
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
            "history": self.history,
            "global_step": self.global_step,
            **({"started_from": self.started_from} if self.started_from else {}),
        }

    def checkpoint_metadata(self, epoch: int, val_report: ClassificationReport, val_nll: float) -> CheckpointMeta:
        train = self.config.train
        return CheckpointMeta(
            architecture=Architecture.of(self.model),
            task=self.task.name,
            class_names=self.task.class_names,
            score_columns=self.task.score_columns,
            preprocessing=self.preprocessing,
            training=TrainingRecord(
                run=self.config.name,
                paper_row=self.config.paper_row,
                epoch=epoch,
                kept_epoch=train.keep_epoch,
                seed=train.seed,
                ema_decay=train.ema_decay,
                backbone_weights=self.config.model.weights,
                data=self.data.summary(self.roi),
                prior=None if self.roi is None else {"roi": self.roi.kind, "weights": self.config.loss.prior_weights},
                started_from=self.started_from,
            ),
            metrics={"val": {**val_report.to_dict(), "val_nll": val_nll}, **self._val_intervals()},
        )

    def _val_intervals(self) -> dict[str, Any]:
        """``val_intervals``: DeLong's 95% interval of each scored class's val ROC AUC, for the model
        card (cheap; the bootstrap intervals of the other metrics are ``attnmel evaluate``'s)."""
        if self._val_scores is None:
            return {}
        found = delong_intervals(*self._val_scores, self.task.class_names, self.task.score_columns)
        return {"val_intervals": {column: {"roc_auc": interval.to_dict()} for column, interval in found.items()}}

    # ------------------------------------------------------------------ the loop

    def _train_loader(self, epoch: int, pass_index: int) -> Iterable[dict]:
        cfg = self.config
        generator = torch.Generator().manual_seed(derive_seed(cfg.train.seed, epoch, pass_index, 1))
        order = epoch_indices(
            [s.label for s in self.data.train],
            cfg.data.sampler,
            generator,
            positive=self.task.positive_index,
            factor=cfg.data.oversample,
            datasets=[s.dataset for s in self.data.train],
            weights=cfg.data.dataset_weights,
        )
        keys = [(index, derive_seed(cfg.train.seed, epoch, pass_index, 2, position)) for position, index in enumerate(order)]
        return self.train_batches.train(self.dist.shard(keys, cfg.train.batch_size), self.dist.per_rank_batch(cfg.train.batch_size))

    def _losses(self, batch: dict) -> tuple[torch.Tensor, ...]:
        """(total loss, classification loss, prior loss, consistency loss, samples with a prior region)
        for one batch. With ``loss.consistency_weight`` the batch goes through once more with pixel
        noise, in the same forward pass; the classification and prior losses read the clean half."""
        images = batch["image"].to(self.device, non_blocking=True)
        labels = batch["label"].to(self.device, non_blocking=True)
        loss_config = self.config.loss
        paired = loss_config.consistency_weight > 0
        if paired:
            images = torch.cat([images, pixel_noise(images, self.preprocessing.std, loss_config.consistency_noise)])
        if self.fast.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.fast.amp):
            output = self.train_model(images)
        logits = output.logits.float()  # losses in fp32 whatever the forward used
        consistency = torch.zeros((), device=self.device)
        if paired:
            logits, noisy_logits = logits.chunk(2)
            consistency = consistency_loss(logits, noisy_logits)
            output = output._replace(attention={name: amap.chunk(2)[0] for name, amap in output.attention.items()})
        cls_loss = self.criterion(logits, labels)
        prior = torch.zeros((), device=self.device)
        has_mask = batch["has_mask"].to(self.device, non_blocking=True)
        if self.roi is not None:
            prior, _ = attention_prior_loss(
                {name: amap.float() for name, amap in output.attention.items()},
                batch["mask"].to(self.device, non_blocking=True),
                has_mask,
                self.config.loss.prior_weights,
                softmax_maps=self.model.architecture.normalize == "softmax",
                reduce=self.dist.differentiable_sum if self.dist.enabled else None,
            )
        total = cls_loss + prior + loss_config.consistency_weight * consistency
        return total, cls_loss, prior, consistency, has_mask.sum()

    def _global_values(self, loss, cls_loss, prior, consistency, prior_samples) -> StepValues:
        """The step's values summed over processes (one transfer), so every rank logs and stops alike."""
        totals = torch.stack([loss.detach(), cls_loss.detach(), prior.detach(), consistency.detach(),
                              prior_samples.float()]).float()
        *sums, samples = self.dist.all_reduce_sum(totals).tolist()
        mean_loss, mean_cls, mean_prior, mean_consistency = (value / self.dist.world_size for value in sums)
        return StepValues(mean_loss, mean_cls, mean_prior, mean_consistency, int(samples) if self.roi is not None else 0)

    def _optimizer_step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        self.scheduler.step()
        self.global_step += 1

    def _step(self, batch: dict, epoch: int, step_in_epoch: int) -> StepValues:
        losses = self._losses(batch)
        values = self._global_values(*losses)
        if not math.isfinite(values.loss):
            kept = (f"the last good checkpoint (after epoch {epoch}) is "
                    f"kept in {self.output_dir}" if (self.output_dir / STATE_FILE).is_file()
                    else "no checkpoint was written (no epoch completed)")
            raise TrainingError(
                f"loss became {values.loss} at epoch {epoch + 1}, step {step_in_epoch + 1}; the run stopped and "
                f"{kept}. Lower optim.lr or check the inputs."
            )
        self._optimizer_step(losses[0])
        return values

    def training_mode(self) -> None:
        """The model in training mode as this run trains it (batch norm on its kept statistics where asked)."""
        self.model.train()
        if self.config.train.batchnorm_statistics == "pretrained":
            keep_batchnorm_statistics(self.model)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        cfg = self.config
        # dropout etc.; each process draws its own stream
        torch.manual_seed(derive_seed(cfg.train.seed, epoch, 0, *([self.dist.rank] if self.dist.enabled else [])))
        self.training_mode()
        sums = {"loss": 0.0, "cls_loss": 0.0, "prior_loss": 0.0, "consistency_loss": 0.0, "prior_samples": 0}
        steps = images = 0
        skipped: list[str] = []
        for pass_index in range(cfg.train.passes_per_epoch):
            loader = self._train_loader(epoch, pass_index)
            desc = f"epoch {epoch + 1}/{cfg.train.epochs}" + (
                f" pass {pass_index + 1}/{cfg.train.passes_per_epoch}" if cfg.train.passes_per_epoch > 1 else ""
            )
            bar = progress_bar(loader, desc=desc, show=self.progress, leave=False, unit="batch")
            for batch in bar:
                skipped += batch.get("skipped", [])  # data.skip_bad: images that failed to decode this epoch
                if "label" not in batch:
                    continue
                try:
                    values = self._step(batch, epoch, steps)
                except torch.cuda.OutOfMemoryError:
                    raise TrainingError(
                        f"the GPU ran out of memory at batch size {cfg.train.batch_size}; try "
                        f"--set train.batch_size={max(1, cfg.train.batch_size // 2)} (the last good checkpoint is kept)."
                    ) from None
                for key in sums:
                    sums[key] += getattr(values, key)
                steps += 1
                images += len(batch["label"]) * self.dist.world_size
                bar.set_postfix(loss=f"{values.loss:.4f}")
        out = {key: (value / max(steps, 1) if key != "prior_samples" else value) for key, value in sums.items()}
        out["images"] = images
        out["skipped"] = len(skipped)
        for message in skipped:
            self.log(f"warning: epoch {epoch + 1}: skipped an image that does not decode: {message}")
        return out

    @property
    def selected_model(self) -> torch.nn.Module:
        """The weights that are validated and saved as best: the EMA average when it is on."""
        return self.model if self.ema is None else self.ema.module

    def validate(self) -> tuple[ClassificationReport, float]:
        """(the validation report, its negative log-likelihood) over the whole split, on every rank."""
        predictions = run_inference(
            self.selected_model, self.val_loader, self.device, progress=self.progress, desc="validate"
        )
        for message in predictions.skipped:
            self.log(f"warning: validation skipped an image that does not decode: {message}")
        labels, probabilities = self.dist.gather_rows(predictions.labels), self.dist.gather_rows(predictions.probabilities)
        report = classification_report(labels, probabilities, self.task.class_names, self.task.score_columns)
        self._val_scores = (labels, probabilities)
        picked = probabilities[np.arange(len(labels)), labels]
        return report, float(-np.log(np.clip(picked, 1e-12, 1)).mean())

    def run(self) -> TrainResult:
        cfg = self.config
        main = self.dist.is_main
        if main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.output_dir / CONFIG_FILE, cfg.to_yaml())
            if self.resume_state is None:  # a resumed run keeps the record it started with (check_same_data)
                self.data.split.write(self.output_dir / SPLIT_FILE)
        self.log(self.fast.note)
        summary = self.data.summary(self.roi)
        if self.start_epoch == 0:
            self.log(
                f"training {cfg.model.name} ({self.model.architecture.backbone}) on {summary['train']['images']} images, "
                f"validating on {summary['val']['images']}; device {self.device}; output {self.output_dir}"
            )
            split = self.data.split
            if split.mode != "official":
                how = f"fold {split.fold} of {split.folds}" if split.folds else f"{split.val_fraction:.0%}"
                self.log(f"validation: {how} carved from {split.train_split}, " + (
                    f"grouped by {split.group_by} ({split.groups['train']} training / {split.groups['val']} validation "
                    "groups)"
                    if split.mode == "grouped" else "stratified by class") + f", seed {split.seed}")
            if self.roi is not None:
                self.log(
                    f"attention prior '{self.roi.kind}': {summary['train']['with_prior']} of {summary['train']['images']} "
                    "training images carry a region; the rest contribute the classification loss only"
                )
            for share in split.datasets:
                weight = cfg.data.dataset_weights.get(share.name, 1.0)
                self.log(f"dataset {share.name} ({share.layout}): {share.train} training images "
                         + ", ".join(f"{n} {cls}" for cls, n in share.classes.items())
                         + (f", weight {weight:g}" if weight != 1 else "")
                         + (f"; {share.val} validation" if share.val else "")
                         + (f"; {share.held_out} held out" if share.held_out else ""))
            for problem in self.data.problems:
                self.log(f"warning: {problem.path}: {problem.message}" if problem.path else f"warning: {problem.message}")
        for epoch in range(self.start_epoch, cfg.train.epochs):
            started = time.perf_counter()
            train_values = self.train_epoch(epoch)
            val_report, val_nll = self.validate()
            positive = val_report[self.task.positive_class]
            multiclass = val_report.multiclass
            metric = (multiclass.balanced_accuracy if cfg.train.select_metric == "balanced_multiclass_accuracy"
                      else getattr(positive, cfg.train.select_metric))
            seconds = time.perf_counter() - started
            improved = (cfg.train.keep_epoch == "last" or self.best_epoch < 0
                        or not math.isnan(metric) and metric > self.best_metric)
            if improved:
                self.best_metric = metric if not math.isnan(metric) else -math.inf
                self.best_epoch = epoch + 1
            row = {
                "epoch": epoch + 1,
                "lr": self.optimizer.param_groups[0]["lr"],
                **{f"train_{k}": v for k, v in train_values.items()},
                **{f"val_{k}": getattr(positive, k) for k in HISTORY_METRICS},
                **({"val_balanced_multiclass_accuracy": multiclass.balanced_accuracy} if multiclass else {}),
                "val_nll": val_nll,
                "seconds": round(seconds, 2),
                "images_per_second": round(train_values["images"] / seconds, 2),
                "best": improved,
            }
            self.history.append(row)
            if main:
                if improved:
                    save_model_checkpoint(self.output_dir / BEST_FILE, self.selected_model,
                                          self.checkpoint_metadata(epoch + 1, val_report, val_nll))
                save_training_state(self.output_dir / STATE_FILE, self._state(epoch + 1))
                assert self._val_scores is not None  # set by this epoch's validation
                self.run_log.epoch(self.history, *self._val_scores, self.attention_figures())
            self.log(
                f"epoch {epoch + 1}/{cfg.train.epochs}: loss {row['train_loss']:.4f}, val AUC {row['val_roc_auc']:.4f}, "
                f"AP {row['val_average_precision']:.4f}, {row['images_per_second']:.1f} img/s" + ("  [best]" if improved else "")
            )
        if main and self.best_epoch > 0:
            best = self.history[self.best_epoch - 1] if self.best_epoch <= len(self.history) else {}
            self.run_log.finish(flat_hyperparameters(cfg.to_dict()), {k: v for k, v in best.items() if k.startswith("val_")})
        return TrainResult(self.output_dir, self.output_dir / BEST_FILE, self.best_epoch, self.best_metric, self.history)

    @torch.no_grad()
    def attention_figures(self) -> list[tuple[str, Any]]:
        """The figure of each fixed validation image (with a lesion mask) under the weights being selected."""
        if not self.figure_samples:
            return []
        model = with_maps(self.selected_model, self.task.positive_index).eval()
        kinds = {name: map_kind(name, self.model.architecture.normalize) for name in model.attention_layers}
        loader = eval_loader(self.figure_samples, self.preprocessing, len(self.figure_samples), roi=RoiSpec("lesion"))
        batch = next(iter(loader))
        output = model(batch["image"].to(self.device))
        probabilities = torch.softmax(output.logits.float(), dim=-1)[:, self.task.positive_index].cpu()
        figures = []
        for i, sample in enumerate(self.figure_samples):
            view = denormalize(batch["image"][i], self.preprocessing.mean, self.preprocessing.std)
            panels = [Panel(name, amap[i, 0].float().cpu().numpy(), kinds[name]) for name, amap in output.attention.items()]
            title = (f"{sample.image_id}: P({self.task.positive_class}) {probabilities[i]:.3f}; "
                     f"truth: {self.task.class_names[sample.label]}")
            figures.append((sample.image_id, attention_figure(view, panels, title=title,
                                                              lesion_mask=batch["mask"][i, 0].numpy() > 0.5)))
        return figures


def train(
    config: Config | str | Path,
    data: str | Path | Sequence[str | Path] | Mapping[str, str | Path],
    output_dir: str | Path,
    *,
    overrides: list[str] | None = None,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train (or resume) a run; ``config`` is a ``Config``, a YAML path or a preset name; ``data`` one
    dataset or several (``data.sources.data_sources``), validation coming from the first.

    Under ``torchrun`` every process calls this; they form one run (``training.distributed``)."""
    if not isinstance(config, Config):
        config = load_config(config, overrides)
    trainer = Trainer(config, data, output_dir, resume=resume, progress=progress, log=log)
    try:
        return trainer.run()
    finally:
        trainer.dist.close()


def check_same_data(output_dir: Path, now: SplitRecord, log: Callable[[str], None] = print) -> None:
    """A run is bound to the images it started with: resuming on other data (another --data, files
    changed or relabelled, another split) would choose its best epoch across different validation sets.
    A record older than a check is not taken as passing it: what it cannot tell is said in one line."""
    started = SplitRecord.read(output_dir / SPLIT_FILE)
    if started.fingerprints:
        differences = started.differences(now)
    else:  # written before fingerprints: the image lists are what can be compared
        differences = [f"{side}: other images" for side in ("train", "val")
                       if set(getattr(started, side)) != set(getattr(now, side))]
    if not started.learned and not differences:
        log(f"note: {output_dir / SPLIT_FILE} is from an attnmel that fingerprinted image IDs and bytes only, so "
            "whether labels, dataset names or prior masks changed since the run started is unknown (not checked); "
            "start a new run to have them checked")
    if differences:
        raise CheckpointError(f"{output_dir}: cannot resume on other data than the run started with ("
                              f"{'; '.join(differences)}); give the --data it was started with (see its split.json), "
                              "or start a new run in another --output.")


def _quiet(*_args: Any) -> None:
    """The log of processes other than rank 0."""


def keep_batchnorm_statistics(model: torch.nn.Module) -> None:
    """Run every batch-norm layer of ``model`` (in training mode) as at inference: it normalises by its
    running statistics and leaves them as they are, while its scale and shift still learn; detection
    fine-tuning's frozen batch norm, minus the freezing of the affine part."""
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()
