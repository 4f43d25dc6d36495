"""The run: checks, data, model, Trainer and callbacks, then the report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import BatchSizeFinder, Callback, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader

from finetune import METRICS, ExampleError
from finetune.cli import clear_output_dir, is_launched_worker
from finetune.data import (
    Collate,
    TextDataset,
    count_overlap,
    group_ids,
    load_text_splits,
    subsample,
    undefined_metrics,
)
from finetune.model import LoraOptions, TextClassifier, base_metric, check_monitor, load_model, metric_input
from finetune.report import report
from lightning_ci import AccumulationScheduler, IntervalReport, PairedBootstrapMetric, paired_verdict


class TextDataModule(pl.LightningDataModule):
    """Train and validation loaders. ``batch_size`` is the micro-batch (``BatchSizeFinder`` tunes it).

    Validation under DDP uses Lightning's ``UnrepeatedDistributedSampler``: every text is scored exactly once
    on one rank. The default ``DistributedSampler`` pads the shards to equal length with repeated texts, and
    every metric (ours and any other) would then count those twice.
    """

    def __init__(self, train: TextDataset, val: TextDataset, collate: Collate, batch_size: int, val_batch_size: int,
                 num_workers: int) -> None:  # fmt: skip
        super().__init__()
        self.train_set, self.val_set, self.collate = train, val, collate
        self.batch_size, self.val_batch_size, self.num_workers = batch_size, val_batch_size, num_workers

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, collate_fn=self.collate,
                          num_workers=self.num_workers)  # fmt: skip

    def val_dataloader(self) -> DataLoader:
        sampler = None
        if self.trainer is not None and self.trainer.world_size > 1:
            sampler = UnrepeatedDistributedSampler(
                self.val_set, num_replicas=self.trainer.world_size, rank=self.trainer.global_rank, shuffle=False
            )
        return DataLoader(self.val_set, batch_size=self.val_batch_size, sampler=sampler, collate_fn=self.collate,
                          num_workers=self.num_workers)  # fmt: skip


class StepLearningRate(Callback):
    """Logs the learning rate of every optimizer step, once (Lightning's ``LearningRateMonitor`` logs it per
    micro-batch, so each step repeats ``factor`` times under accumulation)."""

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        lr = optimizer.param_groups[0]["lr"]
        for logger in trainer.loggers:
            logger.log_metrics({"lr": lr}, step=trainer.global_step)


class ProgressBar(TQDMProgressBar):
    """The progress bar without the logger's version (one run per --output-dir: nothing to tell apart)."""

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return items


class PairedEpochs(Callback):
    """At the end of training, compare the best epoch with every other epoch, paired on the same validation texts.

    Both epochs' predictions are on the same texts, and they mostly agree, so the bootstrap of their
    *difference* (:class:`~lightning_ci.PairedBootstrapMetric`, one resample shared by both) is far sharper than
    asking whether two marginal intervals overlap. The verdicts replace the overlap sentence of the report. Runs
    on every rank (the metric syncs across DDP ranks); with ``--group-column`` the sources are resampled.
    """

    def __init__(self, report: IntervalReport, monitor: str, num_classes: int, num_bootstraps: int,
                 confidence_level: float, seed: int) -> None:  # fmt: skip
        self.report, self.monitor, self.num_classes = report, monitor, num_classes
        self.num_bootstraps, self.confidence_level, self.seed = num_bootstraps, confidence_level, seed
        self.best: Optional[int] = None
        self.verdicts: dict[int, Any] = {}

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        predictions = getattr(pl_module, "predictions", {})
        self.best = self.report.best_epoch()
        if self.best is None or self.best not in predictions:
            return
        probs_a, target, groups = predictions[self.best]
        device = pl_module.device
        for epoch in sorted(e for e in predictions if e != self.best):
            probs_b = predictions[epoch][0]
            metric = PairedBootstrapMetric(base_metric(self.monitor, self.num_classes), self.num_bootstraps,
                                           self.confidence_level, seed=self.seed).to(device)  # fmt: skip
            preds_a, preds_b = (metric_input(self.monitor, p).to(device) for p in (probs_a, probs_b))
            metric.update(preds_a, preds_b, target.to(device), groups=None if groups is None else groups.to(device))
            result = metric.compute()  # synced across DDP ranks: every validation text, once
            self.verdicts[epoch] = paired_verdict(result, names=(f"epoch {self.best}", f"epoch {epoch}"))
        self.report.comparison = self.sentence

    def sentence(self, best: dict[str, float], others: list[dict[str, float]]) -> str:
        """The verdicts, in place of the overlap rule (``IntervalReport(comparison=...)``)."""
        level = f"{round(100 * self.confidence_level, 6):g}%"
        parts = [str(self.verdicts[int(r["epoch"])]) for r in others if int(r["epoch"]) in self.verdicts]
        if not parts:
            return self.report.overlap_sentence(best, others)
        return (
            f"Paired on the same validation texts ({level} bootstrap interval of the difference): "
            + "; ".join(parts)
            + "."
        )


def parse_devices(text: str) -> Any:
    """``"auto"`` stays a string, ``"2"`` is a count, ``"0,1"`` a list of device indices."""
    text = text.strip()
    return int(text) if text.isdigit() else text


def model_dtype(precision: str) -> Optional[torch.dtype]:
    """Load the weights in bf16/fp16 for ``*-true`` precisions (no full-precision copy in memory first)."""
    return {"bf16-true": torch.bfloat16, "16-true": torch.float16}.get(precision)


def build_trainer(args: argparse.Namespace, out: Path, callbacks: list[Callback]) -> pl.Trainer:
    """The Trainer, built before the model: bad --accelerator, --devices or --precision fail here, in a second."""
    loggers: list[Any] = [CSVLogger(out, name="", version="csv")]
    try:
        import tensorboard  # noqa: F401  (optional)

        loggers.append(TensorBoardLogger(out, name="", version="tensorboard"))
    except ImportError:
        pass
    try:
        return pl.Trainer(
            max_epochs=args.epochs, accelerator=args.accelerator, devices=parse_devices(args.devices),
            precision=args.precision, logger=loggers, log_every_n_steps=5,
            num_sanity_val_steps=0 if args.smoke else 2,  # the sanity check catches bugs in validation_step early
            callbacks=[*callbacks, ProgressBar()],
        )  # fmt: skip
    except Exception as err:  # Lightning raises MisconfigurationException, ValueError or RuntimeError
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ExampleError(
            f"--accelerator {args.accelerator!r} --devices {args.devices!r} --precision {args.precision!r}: {first}"
        ) from None


def run(args: argparse.Namespace) -> None:
    """Check, load data and model, fit, then report. Raises :class:`ExampleError` for bad input."""
    pl.seed_everything(args.seed, workers=True, verbose=False)
    out = Path(args.output_dir)

    if args.effective_batch_size is not None:
        accumulation = AccumulationScheduler(effective_batch_size=args.effective_batch_size,
                                             interval=args.schedule_interval)  # fmt: skip
    else:
        accumulation = AccumulationScheduler(args.schedule_dict, interval=args.schedule_interval)
    checkpoint = ModelCheckpoint(
        dirpath=out / "checkpoints", filename=f"best-epoch{{epoch:02d}}-{args.monitor}{{{args.monitor}:.4f}}",
        monitor=args.monitor, mode="max", save_top_k=1, auto_insert_metric_name=False, save_weights_only=True,
    )  # fmt: skip
    interval_report = IntervalReport(
        monitor=args.monitor, plot=False, verbose=False, metrics=METRICS, confidence_level=args.confidence_level,
        extra_metrics=["train_loss_epoch"],
    )  # fmt: skip
    # BatchSizeFinder runs first (it must come before the scheduler, which then fits the micro-batch to the target).
    finder = [BatchSizeFinder(mode="binsearch", init_val=2)] if args.find_micro_batch_size else []
    callbacks: list[Callback] = [*finder, accumulation, checkpoint, interval_report, StepLearningRate()]
    trainer = build_trainer(args, out, callbacks)

    group_col = getattr(args, "group_column", None)
    data = load_text_splits(args.dataset, args.text_column, args.label_column, args.seed, group_col)
    train_texts, train_labels = subsample(data.train_texts, data.train_labels, args.max_train_samples, args.seed)
    val_texts, val_labels, *val_groups = subsample(
        data.val_texts, data.val_labels, args.max_val_samples, args.seed + 1, *([data.val_groups] if group_col else [])
    )
    groups = group_ids(val_groups[0]) if group_col else None
    if len(val_texts) < 2:
        raise ExampleError(
            f"{len(val_texts)} validation text(s): a bootstrap interval needs at least two (--max-val-samples)"
        )
    undefined = undefined_metrics(val_labels, data.label_names)
    check_monitor(args.monitor, undefined)
    overlap = count_overlap(train_texts, val_texts)
    if overlap and trainer.is_global_zero:
        print(
            f"warning: {overlap} of {len(val_texts)} validation texts also appear in the training data: the"
            " validation metrics will be optimistic (deduplicate the splits)",
            file=sys.stderr,
        )
    lora = None
    if args.lora:
        lora = LoraOptions(args.lora_r, args.lora_alpha, args.lora_dropout, args.lora_target_modules)
    model, tokenizer = load_model(
        args.model, data.num_labels, args.max_length, lora=lora, gradient_checkpointing=args.gradient_checkpointing,
        torch_dtype=model_dtype(args.precision),
    )  # fmt: skip

    collate = Collate(tokenizer, args.max_length)
    datamodule = TextDataModule(
        TextDataset(train_texts, train_labels), TextDataset(val_texts, val_labels, groups), collate,
        batch_size=2 if args.find_micro_batch_size else args.batch_size,  # the finder starts at its init_val
        val_batch_size=4 * args.batch_size, num_workers=args.num_workers,
    )  # fmt: skip
    module = TextClassifier(
        model, data.num_labels, lr=args.lr, weight_decay=args.weight_decay, warmup_ratio=args.warmup_ratio,
        num_bootstraps=args.num_bootstraps, confidence_level=args.confidence_level, seed=args.seed,
        undefined=undefined,
    )  # fmt: skip
    trainer.callbacks.append(PairedEpochs(interval_report, args.monitor, data.num_labels, args.num_bootstraps,
                                          args.confidence_level, args.seed))  # fmt: skip
    if args.overwrite and not is_launched_worker():
        clear_output_dir(out)  # every check has passed: only now does the previous run go
    how = (
        f"effective batch ({args.schedule_interval}: samples per step): {args.effective_batch_size}"
        if args.effective_batch_size is not None
        else f"accumulation schedule ({args.schedule_interval}: factor): {args.schedule_dict}"
    )
    sources = f" from {len(set(groups))} sources (--group-column)" if groups is not None else ""
    rank_zero_info(
        f"train: {len(train_texts)} texts, validation: {len(val_texts)} texts{sources}, labels: {data.label_names},"
        f" {how}"
    )
    trainer.fit(module, datamodule=datamodule)
    if trainer.is_global_zero:
        report(interval_report, checkpoint, args, out, len(val_texts), undefined)
