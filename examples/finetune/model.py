"""The model: a transformers sequence classifier in a LightningModule with bootstrap-interval metrics."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info
from torchmetrics.classification import BinaryAUROC, MulticlassAccuracy, MulticlassAUROC, MulticlassF1Score
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    get_linear_schedule_with_warmup,
)

from finetune import ExampleError
from finetune.hub import describe_hub_error, hub_offline, looks_like_path
from lightning_ci import BootstrapMetric, to_log_dict, total_optimizer_steps


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
        model = AutoModelForSequenceClassification.from_pretrained(source, config=config, local_files_only=offline)
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
        self.val_metrics = torch.nn.ModuleDict(
            {
                "val_acc": bootstrap(MulticlassAccuracy(num_classes=c, average="micro")),
                "val_f1": bootstrap(MulticlassF1Score(num_classes=c, average="macro")),
                "val_auroc": bootstrap(BinaryAUROC() if c == 2 else MulticlassAUROC(num_classes=c)),
            }
        )

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
            {
                "params": [p for n, p in self.model.named_parameters() if not n.endswith(no_decay)],
                "weight_decay": self.hparams.weight_decay,
            },
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
