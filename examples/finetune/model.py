"""The model: a transformers sequence classifier (encoder or decoder, full or LoRA) in a LightningModule whose
validation metrics carry bootstrap confidence intervals."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info
from torchmetrics import MeanMetric
from torchmetrics.classification import BinaryAUROC, MulticlassAccuracy, MulticlassAUROC, MulticlassF1Score
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from finetune import METRICS, ExampleError
from finetune.hub import check_hub_reachable, describe_hub_error, hub_offline, looks_like_path
from lightning_ci import BootstrapMetric, total_optimizer_steps

# Attention projections by architecture, first match wins: Llama, Mistral, Qwen, Gemma, Phi-3 (q/k/v/o_proj);
# BERT, MiniLM, RoBERTa, ELECTRA (query/key/value); DistilBERT (q_lin/...); GPT-2 (c_attn); Falcon, BLOOM
# (query_key_value); T5 (q/k/v/o).
LORA_TARGETS: tuple[tuple[str, ...], ...] = (
    ("q_proj", "k_proj", "v_proj", "o_proj"),
    ("query", "key", "value"),
    ("q_lin", "k_lin", "v_lin", "out_lin"),
    ("c_attn",),
    ("query_key_value",),
    ("q", "k", "v", "o"),
)


class TrainingDiverged(ExampleError):
    """The training loss or the weights stopped being finite (exit status 1)."""

    exit_code = 1


@dataclass
class LoraOptions:
    """``--lora``: rank, alpha, dropout and the target modules (``None``: guessed from the architecture)."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: Optional[list[str]] = None


def guess_lora_targets(model: torch.nn.Module) -> list[str]:
    """The attention projections of ``model`` that LoRA adapts by default (see :data:`LORA_TARGETS`)."""
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    for group in LORA_TARGETS:
        found = [n for n in group if n in names]
        if found:
            return found
    raise ExampleError(
        f"--lora: could not guess the attention layers of {type(model).__name__}: name them with"
        " --lora-target-modules (e.g. q_proj,v_proj)"
    )


def apply_lora(model: Any, options: LoraOptions) -> Any:
    """Wrap ``model`` with peft LoRA adapters; the classification head stays fully trainable."""
    try:
        from peft import LoraConfig, TaskType, get_peft_model
    except ImportError:
        raise ExampleError("--lora needs the `peft` package: pip install peft") from None
    targets = options.target_modules or guess_lora_targets(model)
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    unknown = [t for t in targets if t not in names]
    if unknown:
        raise ExampleError(f"--lora-target-modules: {unknown} are not module names of {type(model).__name__}")
    config = LoraConfig(
        task_type=TaskType.SEQ_CLS, r=options.r, lora_alpha=options.alpha, lora_dropout=options.dropout,
        target_modules=targets,
    )  # fmt: skip
    model = get_peft_model(model, config)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    rank_zero_info(
        f"LoRA (r={options.r}, alpha={options.alpha}) on {targets}: {trainable:,} of {total:,} parameters train"
    )
    return model


def load_model(
    name: str,
    num_labels: int,
    max_length: Optional[int] = None,
    *,
    lora: Optional[LoraOptions] = None,
    gradient_checkpointing: bool = False,
    torch_dtype: Optional[torch.dtype] = None,
) -> tuple[Any, Any]:
    """``AutoModelForSequenceClassification`` and its tokenizer from a local folder or a hub name.

    A new classification head with ``num_labels`` outputs is put on the pretrained model (transformers reports
    its weights as newly initialised: that is expected). Decoder models (Llama, Mistral, Qwen) often ship
    without a pad token: the EOS token is then used for padding, and ``config.pad_token_id`` is set, which is
    how their classification head finds the last real token of each text. ``max_length`` is checked against
    the model's positions before any weights are read.
    """
    path = Path(name).expanduser()
    is_local = path.exists()
    if is_local and not (path / "config.json").is_file():
        raise ExampleError(f"--model {name!r}: this folder is not a transformers model (it has no config.json)")
    if not is_local and looks_like_path(name):
        raise ExampleError(f"--model {name!r}: no such model folder (give a local folder or a hub name)")
    offline = hub_offline()
    local_only = True if is_local else check_hub_reachable("--model", name)
    source = str(path) if is_local else name
    try:
        # The config first: for a hub name it is the cheapest request, so a missing network shows up early.
        config = AutoConfig.from_pretrained(source, num_labels=num_labels, local_files_only=local_only)
        positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
        if max_length is not None and isinstance(positions, int) and max_length > positions:
            raise ExampleError(
                f"--max-length {max_length} is more than the {positions} token positions of --model {name!r}:"
                f" use --max-length {positions} or less"
            )
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
        if tokenizer.pad_token is None:
            if tokenizer.eos_token is None:
                raise ExampleError(f"--model {name!r}: its tokenizer has neither a pad token nor an EOS token")
            tokenizer.pad_token = tokenizer.eos_token  # decoder LLMs: pad with EOS
        config.pad_token_id = tokenizer.pad_token_id
        kwargs: dict[str, Any] = {"torch_dtype": torch_dtype} if torch_dtype is not None else {}
        model = AutoModelForSequenceClassification.from_pretrained(
            source, config=config, local_files_only=local_only, **kwargs
        )
    except ExampleError:
        raise
    except Exception as err:  # transformers raises OSError, ValueError or hub errors: all become one line
        if is_local:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ExampleError(f"--model {name!r}: could not load the model folder ({first})") from None
        raise ExampleError(describe_hub_error("--model", name, err, offline)) from None
    if gradient_checkpointing:
        if not getattr(model, "supports_gradient_checkpointing", False):
            raise ExampleError(f"--gradient-checkpointing: {type(model).__name__} does not support it")
        # Non-reentrant checkpointing: works with frozen inputs (LoRA) without enable_input_require_grads.
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if lora is not None:
        model = apply_lora(model, lora)
    return model, tokenizer


def base_metric(name: str, num_classes: int) -> Any:
    """The torchmetrics metric behind ``val_acc``, ``val_f1`` or ``val_auroc``."""
    if name == "val_acc":
        return MulticlassAccuracy(num_classes=num_classes, average="micro")
    if name == "val_f1":
        return MulticlassF1Score(num_classes=num_classes, average="macro")
    return BinaryAUROC() if num_classes == 2 else MulticlassAUROC(num_classes=num_classes)


def metric_input(name: str, probs: torch.Tensor) -> torch.Tensor:
    """What :func:`base_metric` takes from the class probabilities: the positive class's for a binary AUROC."""
    return probs[:, 1] if name == "val_auroc" and probs.shape[1] == 2 else probs


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warmup then linear decay, with every one of the ``total`` steps at a nonzero learning rate.

    Step ``s`` (0-based) of the warmup runs at ``(s + 1) / (warmup + 1)`` of the peak, so even a run with one
    optimizer step learns; the decay runs from the peak down to ``1 / (total - warmup)`` at the last step.
    """
    if step < warmup:
        return (step + 1) / (warmup + 1)
    return max(0.0, (total - step) / max(1, total - warmup))


class TextClassifier(pl.LightningModule):
    """A transformers sequence classifier with bootstrap-interval validation metrics.

    Args:
        model: an ``AutoModelForSequenceClassification`` (its loss is the per-sample cross-entropy mean),
            possibly wrapped by peft.
        num_labels: number of classes.
        lr, weight_decay, warmup_ratio: AdamW and the linear warmup-then-decay schedule.
        num_bootstraps, confidence_level, seed: for the :class:`~lightning_ci.BootstrapMetric` intervals.
        undefined: metrics that are undefined on the validation data, with the reason: they are logged as NaN
            (shown as n/a) instead of a number.
        keep_predictions: keep every validation epoch's predictions (this rank's share, on the CPU) in
            :attr:`predictions`, ``{epoch: (probs, labels, groups)}``, for the paired comparison of epochs.
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
        undefined: Optional[dict[str, str]] = None,
        keep_predictions: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["model"])
        self.model = model
        self.model.train()  # from_pretrained returns eval mode (no dropout); Lightning keeps the mode it finds
        self.undefined = dict(undefined or {})
        c = num_labels

        # Each is a torchmetrics Metric: states are synced across DDP ranks before compute().
        self.val_metrics = torch.nn.ModuleDict({
            name: BootstrapMetric(base_metric(name, c), num_bootstraps=num_bootstraps,
                                  confidence_level=confidence_level, seed=seed)
            for name in METRICS if name not in self.undefined
        })  # fmt: skip
        self.keep_predictions = keep_predictions
        self.predictions: dict[int, tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]] = {}
        self._epoch_preds: list[tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]] = []
        self.val_loss = MeanMetric()  # weighted by batch size: exact under DDP however the shards split
        # With LoRA the checkpoints hold the trained weights only (see on_save_checkpoint): load them non-strictly.
        self.strict_loading = not any(not p.requires_grad for p in self.model.parameters())

    def forward(self, batch: dict[str, torch.Tensor]) -> Any:
        return self.model(**{k: v for k, v in batch.items() if k != "groups"})

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        # `out.loss` is the mean over the batch's samples, which is what AccumulationScheduler's default
        # item count (samples per batch) assumes. A token-level loss (language modelling) would be the mean
        # over non-padding tokens instead: then count tokens with
        #   AccumulationScheduler(schedule, num_items=lambda b: (b["labels"] != -100).sum())
        # so that every optimizer step weighs each token equally, however the tokens fall into micro-batches.
        loss = self(batch).loss
        diverged = self.trainer.strategy.reduce_boolean_decision(not bool(torch.isfinite(loss)), all=False)
        if diverged:
            raise TrainingDiverged(
                f"training diverged: the training loss became {float(loss.detach())} at optimizer step"
                f" {self.trainer.global_step} (epoch {self.current_epoch}), so the run stops here and no"
                f" checkpoint is written from these weights; try a lower --lr (now {self.hparams.lr:g})"
            )
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(batch["labels"]))
        return loss

    def _check_finite_weights(self) -> None:
        if self.trainer.sanity_checking:
            return
        bad = next((n for n, p in self.named_parameters() if not bool(torch.isfinite(p).all())), None)
        if self.trainer.strategy.reduce_boolean_decision(bad is not None, all=False):
            raise TrainingDiverged(
                f"training diverged: the weights are no longer finite ({bad} has NaN or inf) after optimizer"
                f" step {self.trainer.global_step}, so no checkpoint is written from them; try a lower --lr"
                f" (now {self.hparams.lr:g})"
            )

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        out = self(batch)
        probs = out.logits.float().softmax(dim=-1)
        labels, groups = batch["labels"], batch.get("groups")
        if self.keep_predictions and not self.trainer.sanity_checking:
            cpu = (probs.detach().cpu(), labels.cpu(), None if groups is None else groups.cpu())
            self._epoch_preds.append(cpu)
        for name, metric in self.val_metrics.items():
            # groups (from --group-column): a cluster bootstrap, resampling whole sources
            metric.update(metric_input(name, probs), labels, groups=groups)
            # value, lower and upper: Lightning computes (once), syncs across DDP ranks and resets at epoch end
            self.log_dict(metric.loggable(name), on_epoch=True)
        self.val_loss.update(out.loss.float(), weight=len(labels))
        self.log("val_loss", self.val_loss, prog_bar=True, on_epoch=True)

    def on_validation_epoch_start(self) -> None:
        self._epoch_preds = []
        self._check_finite_weights()

    def on_validation_epoch_end(self) -> None:
        if self._epoch_preds and not self.trainer.sanity_checking:
            probs, labels, groups = zip(*self._epoch_preds)
            self.predictions[self.current_epoch] = (
                torch.cat(probs),
                torch.cat(labels),
                None if groups[0] is None else torch.cat(groups),
            )
        self._epoch_preds = []
        for name in self.undefined:  # NaN in the CSV, "n/a" in the table and the plot
            nan = torch.tensor(math.nan, device=self.device)
            self.log_dict({name: nan, f"{name}_lower": nan, f"{name}_upper": nan})

    def configure_optimizers(self) -> dict[str, Any]:
        no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        params = [
            {"params": [p for n, p in named if not n.endswith(no_decay)], "weight_decay": self.hparams.weight_decay},
            {"params": [p for n, p in named if n.endswith(no_decay)], "weight_decay": 0.0},
        ]
        optimizer = torch.optim.AdamW([g for g in params if g["params"]], lr=self.hparams.lr)
        # The true number of optimizer steps under the accumulation schedule. Lightning's
        # `trainer.estimated_stepping_batches` would count every micro-batch of the epochs whose factor is > 1
        # as a step, and the LR would still be high when training ends.
        total_steps = total_optimizer_steps(self.trainer)
        warmup_steps = math.ceil(self.hparams.warmup_ratio * total_steps)
        rank_zero_info(f"LR schedule: {total_steps} optimizer steps, the first {warmup_steps} warming up")
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, warmup_steps, total_steps))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """With LoRA, keep only the trained weights (adapters and head): the frozen base is ``--model``."""
        frozen = {f"model.{n}" for n, p in self.model.named_parameters() if not p.requires_grad}
        if frozen and len(frozen) < len(checkpoint["state_dict"]):
            checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k not in frozen}


def check_monitor(monitor: str, undefined: dict[str, str], metrics: Sequence[str] = METRICS) -> None:
    """``--monitor`` must name a metric that is defined on this validation set."""
    if monitor in undefined:
        usable = [m for m in metrics if m not in undefined]
        raise ExampleError(
            f"--monitor {monitor}: it is undefined on this validation set ({undefined[monitor]});"
            f" choose one of {usable}"
        )
