"""The run: data, model, Trainer and callbacks, then the report."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader

from finetune.cli import parse_schedule
from finetune.data import Collate, TextDataset, load_text_splits, subsample
from finetune.model import TextClassifier, load_model
from finetune.report import report
from lightning_ci import AccumulationScheduler


def parse_devices(text: str) -> Any:
    """``"auto"`` stays a string, ``"2"`` is a count, ``"0,1"`` a list of device indices."""
    text = text.strip()
    return int(text) if text.isdigit() else text


def run(args: argparse.Namespace) -> None:
    """Load data and model, fit, then report. Raises :class:`ExampleError` for bad input."""
    schedule = parse_schedule(args.schedule)
    pl.seed_everything(args.seed, workers=True, verbose=False)
    out = Path(args.output_dir)

    data = load_text_splits(args.dataset, args.text_column, args.label_column, args.seed)
    train_texts, train_labels = subsample(data.train_texts, data.train_labels, args.max_train_samples, args.seed)
    val_texts, val_labels = subsample(data.val_texts, data.val_labels, args.max_val_samples, args.seed + 1)
    model, tokenizer = load_model(args.model, data.num_labels)

    collate = Collate(tokenizer, args.max_length)
    train_loader = DataLoader(
        TextDataset(train_texts, train_labels),
        batch_size=args.batch_size,
        shuffle=True,
        collate_fn=collate,
        num_workers=args.num_workers,
    )
    val_loader = DataLoader(
        TextDataset(val_texts, val_labels),
        batch_size=4 * args.batch_size,
        collate_fn=collate,
        num_workers=args.num_workers,
    )

    module = TextClassifier(
        model,
        data.num_labels,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_ratio=args.warmup_ratio,
        num_bootstraps=args.num_bootstraps,
        confidence_level=args.confidence_level,
        seed=args.seed,
    )
    # Small effective batches early (more, noisier steps while far from a solution), larger ones later.
    # Every optimizer step averages over all the samples of its window, including the last, short window.
    accumulation = AccumulationScheduler(schedule)
    checkpoint = ModelCheckpoint(
        dirpath=out / "checkpoints",
        filename=f"best-epoch{{epoch:02d}}-{args.monitor}{{{args.monitor}:.4f}}",
        monitor=args.monitor,
        mode="max",
        save_top_k=1,
        auto_insert_metric_name=False,
        save_weights_only=True,
    )
    loggers: list[Any] = [CSVLogger(out, name="", version="csv")]
    try:
        import tensorboard  # noqa: F401  (optional)

        loggers.append(TensorBoardLogger(out, name="", version="tensorboard"))
    except ImportError:
        pass
    trainer = pl.Trainer(
        max_epochs=args.epochs,
        accelerator=args.accelerator,
        devices=parse_devices(args.devices),
        precision=args.precision,
        logger=loggers,
        log_every_n_steps=5,
        num_sanity_val_steps=0 if args.smoke else 2,  # the sanity check catches bugs in validation_step early
        callbacks=[accumulation, checkpoint, LearningRateMonitor(logging_interval="step")],
    )
    rank_zero_info(
        f"train: {len(train_texts)} texts, validation: {len(val_texts)} texts,"
        f" labels: {data.label_names}, accumulation schedule (epoch: factor): {schedule}"
    )
    trainer.fit(module, train_loader, val_loader)
    if trainer.is_global_zero:
        report(checkpoint, args, out, len(val_texts))
