"""Small float64 models, data and a plain-PyTorch reference loop shared by the accumulation tests."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Callable

import torch
from lightning.pytorch import LightningModule, Trainer
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_ci.schedule import EpochSchedule


def make_regression(n: int = 46, d: int = 3, seed: int = 0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = x @ torch.tensor([1.5, -2.0, 0.5], dtype=torch.float64)[:d] + 0.3 * torch.randn(
        n, generator=g, dtype=torch.float64
    )
    return x, y.unsqueeze(1)


def make_tokens(n: int = 30, t: int = 7, d: int = 4, c: int = 5, seed: int = 1) -> tuple[Tensor, Tensor]:
    """Padded sequences of lengths 1..t with -100 labels on the padding."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, t, d, generator=g, dtype=torch.float64)
    labels = torch.randint(c, (n, t), generator=g)
    lengths = torch.randint(1, t + 1, (n,), generator=g)
    labels[torch.arange(t).expand(n, t) >= lengths.unsqueeze(1)] = -100
    return x, labels


def make_optimizer(name: str, params) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=0.1, momentum=0.9)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=0.05, weight_decay=0.01)
    raise ValueError(name)


class Regressor(LightningModule):
    """Linear regression with a batch-mean MSE loss."""

    def __init__(self, optimizer: str = "sgd", d: int = 3, seed: int = 0, lr_schedule: Callable | None = None):
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Linear(d, 1).double()
        self.optimizer_name = optimizer
        self.lr_schedule = lr_schedule
        self.seen_factors: list[int] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.seen_factors.append(self.trainer.accumulate_grad_batches)
        loss = nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss, on_step=True, on_epoch=False)
        return loss

    def configure_optimizers(self):
        opt = make_optimizer(self.optimizer_name, self.parameters())
        if self.lr_schedule is None:
            return opt
        return {"optimizer": opt, "lr_scheduler": {"scheduler": self.lr_schedule(self, opt), "interval": "step"}}


class Tagger(LightningModule):
    """Per-token linear classifier with a token-mean cross-entropy over non-padding tokens."""

    def __init__(self, d: int = 4, c: int = 5, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Linear(d, c).double()

    def training_step(self, batch, batch_idx):
        x, labels = batch
        logits = self.net(x)
        return nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.2, momentum=0.9)


def loader(x: Tensor, y: Tensor, batch_size: int = 4) -> DataLoader:
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=False)


def trainer(callbacks, max_epochs: int, **kwargs) -> Trainer:
    defaults = dict(
        accelerator="cpu",
        devices=1,
        precision="64-true",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        max_epochs=max_epochs,
    )
    defaults.update(kwargs)
    return Trainer(callbacks=callbacks, **defaults)


def windows(num_batches: int, k: int) -> list[range]:
    return [range(s, min(s + k, num_batches)) for s in range(0, num_batches, k)]


def reference_fit(
    module: LightningModule,
    batches: list[tuple[Tensor, Tensor]],
    schedule: EpochSchedule,
    epochs: int,
    loss_fn: Callable[[LightningModule, Tensor, Tensor], Tensor],
    clip_norm: float | None = None,
) -> LightningModule:
    """Plain PyTorch: one optimizer step per window, on the concatenated samples of the window."""
    opt = module.configure_optimizers()
    opt = opt["optimizer"] if isinstance(opt, dict) else opt
    for epoch in range(epochs):
        for window in windows(len(batches), schedule.factor(epoch)):
            x = torch.cat([batches[i][0] for i in window])
            y = torch.cat([batches[i][1] for i in window])
            opt.zero_grad()
            loss_fn(module, x, y).backward()
            if clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(module.parameters(), clip_norm)
            opt.step()
    return module


def reference_windows(
    module: LightningModule,
    windows: list[list[tuple[Tensor, Tensor]]],
    loss_fn: Callable[[LightningModule, Tensor, Tensor], Tensor],
    clip_norm: float | None = None,
) -> LightningModule:
    """Plain PyTorch over explicit windows: one optimizer step per window, on its concatenated batches."""
    opt = module.configure_optimizers()
    opt = opt["optimizer"] if isinstance(opt, dict) else opt
    for window in windows:
        x = torch.cat([b[0] for b in window])
        y = torch.cat([b[1] for b in window])
        opt.zero_grad()
        loss_fn(module, x, y).backward()
        if clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(module.parameters(), clip_norm)
        opt.step()
    return module


def plan_windows(
    num_batches: int | list[int],
    factor_of: Callable[[int], int],
    epochs: int,
    interval: str = "epoch",
    max_steps: int = -1,
) -> list[list[tuple[int, int]]]:
    """The windows a fit steps on, written out the slow, obvious way: ``[[(epoch, batch_idx), ...], ...]``.

    Every epoch starts a fresh window at batch 0 and the last batch of an epoch always steps (Lightning). The
    factor of a window is ``factor_of(epoch)`` (``interval="epoch"``) or ``factor_of(optimizer steps so far)``
    (``interval="step"``), read when the window starts.
    """
    out: list[list[tuple[int, int]]] = []
    for epoch in range(epochs):
        b = num_batches[epoch] if isinstance(num_batches, list) else num_batches
        start = 0
        while start < b:
            if 0 <= max_steps <= len(out):
                return out
            k = factor_of(epoch if interval == "epoch" else len(out))
            out.append([(epoch, i) for i in range(start, min(start + k, b))])
            start += k
    return out


def mse(module: LightningModule, x: Tensor, y: Tensor) -> Tensor:
    return nn.functional.mse_loss(module.net(x), y)


def token_ce(module: LightningModule, x: Tensor, labels: Tensor) -> Tensor:
    return nn.functional.cross_entropy(module.net(x).flatten(0, 1), labels.flatten(), ignore_index=-100)


def max_param_diff(a: nn.Module, b: nn.Module) -> float:
    return max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters()))


def tokens_of(batch) -> Tensor:
    """`num_items` for the tagger: the non-padding tokens of a batch (module level, so it pickles)."""
    return (batch[1] != -100).sum()


def steps_per_epoch(num_batches: int, k: int) -> int:
    return math.ceil(num_batches / k)


def load_script(path: Path, name: str) -> ModuleType:
    """Import a script (example or benchmark) as module ``name``; registered in ``sys.modules`` for dataclasses."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
