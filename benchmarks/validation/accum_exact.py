"""Exactness: gradient accumulation in Lightning against a plain-PyTorch large-batch loop, in float64.

Every case trains the same float64 model from the same initial weights three or four ways and reports the
largest absolute parameter difference ``max |Δw|`` after training against the *reference*: a plain PyTorch
loop that makes one optimizer step per accumulation window on the concatenated samples of that window
(for the token task: the mean cross-entropy over every non-padding token of the window).

- ``floor``: a plain PyTorch loop that accumulates micro-batch gradients with the exact weights
  ``n_i / N_window`` (``n_i`` = items of micro-batch i). It is mathematically identical to the reference, so
  its difference is float64 rounding alone: the floor that an exact method can reach.
- ``ours``: ``lightning_ci.AccumulationScheduler(schedule)`` (token task: ``num_items`` = non-padding tokens).
- ``ours, samples``: the token task with ``AccumulationScheduler`` but without ``num_items`` (weights by
  sequences instead of tokens), to show what ``num_items`` is for.
- ``GAS``: Lightning's ``GradientAccumulationScheduler(schedule)``.
- ``Trainer(k)``: ``Trainer(accumulate_grad_batches=k)``, for constant schedules only.
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import GradientAccumulationScheduler
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_ci import AccumulationScheduler

METHODS = ("floor", "ours", "ours, samples", "GAS", "Trainer(k)")


# ----------------------------------------------------------------------------------------------------------
# Data and models (float64)
# ----------------------------------------------------------------------------------------------------------
def make_regression(n: int, seed: int, d: int = 3) -> tuple[Tensor, Tensor]:
    """``y = x·w* + 0.3·noise`` with ``x ~ N(0, I_d)``, float64."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    w = torch.tensor([1.5, -2.0, 0.5, 1.0, -0.7][:d], dtype=torch.float64)
    y = x @ w + 0.3 * torch.randn(n, generator=g, dtype=torch.float64)
    return x, y.unsqueeze(1)


def make_tokens(n: int, seed: int, t: int = 7, d: int = 4, c: int = 5) -> tuple[Tensor, Tensor]:
    """Sequences of random length 1..t, padded to t; padding positions carry the label -100."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, t, d, generator=g, dtype=torch.float64)
    labels = torch.randint(c, (n, t), generator=g)
    lengths = torch.randint(1, t + 1, (n,), generator=g)
    labels[torch.arange(t).expand(n, t) >= lengths.unsqueeze(1)] = -100
    return x, labels


def make_optimizer(name: str, params: Any) -> torch.optim.Optimizer:
    if name == "SGD":
        return torch.optim.SGD(params, lr=0.1, momentum=0.9)
    if name == "AdamW":
        return torch.optim.AdamW(params, lr=0.05, weight_decay=0.01)
    raise ValueError(f"unknown optimizer {name!r}")


def mse_loss(net: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    return nn.functional.mse_loss(net(x), y)


def token_loss(net: nn.Module, x: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy over the non-padding tokens (``reduction="mean"``, ``ignore_index=-100``)."""
    return nn.functional.cross_entropy(net(x).flatten(0, 1), labels.flatten(), ignore_index=-100)


def build_net(task: str, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    if task == "linear":
        return nn.Linear(3, 1).double()
    if task == "mlp":
        return nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 1)).double()
    if task == "tokens":
        return nn.Linear(4, 5).double()
    raise ValueError(task)


class Wrapped(LightningModule):
    """A LightningModule around ``net`` whose ``training_step`` returns the batch-mean loss."""

    def __init__(self, net: nn.Module, loss_fn: Callable, optimizer: str) -> None:
        super().__init__()
        self.net, self.loss_fn, self.optimizer_name = net, loss_fn, optimizer

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self.loss_fn(self.net, *batch)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return make_optimizer(self.optimizer_name, self.parameters())


def tokens_of(batch: Any) -> Tensor:
    """``num_items`` for the token task: the non-padding tokens of a batch."""
    return (batch[1] != -100).sum()


# ----------------------------------------------------------------------------------------------------------
# Schedules, windows and the plain-PyTorch loops
# ----------------------------------------------------------------------------------------------------------
def factor_of(schedule: dict[int, int], epoch: int) -> int:
    keys = [e for e in sorted(schedule) if e <= epoch]
    return schedule[keys[-1]] if keys else 1


def windows(num_batches: int, k: int) -> list[range]:
    return [range(s, min(s + k, num_batches)) for s in range(0, num_batches, k)]


def reference_fit(net: nn.Module, batches: list, schedule: dict, epochs: int, loss_fn: Callable, opt: str) -> None:
    """One step per window on the concatenated samples of the window (the large batch)."""
    optimizer = make_optimizer(opt, net.parameters())
    for epoch in range(epochs):
        for window in windows(len(batches), factor_of(schedule, epoch)):
            x = torch.cat([batches[i][0] for i in window])
            y = torch.cat([batches[i][1] for i in window])
            optimizer.zero_grad()
            loss_fn(net, x, y).backward()
            optimizer.step()


def floor_fit(
    net: nn.Module, batches: list, schedule: dict, epochs: int, loss_fn: Callable, opt: str, count: Callable
) -> None:
    """Plain accumulation with the exact weights n_i / N: the same maths as the reference, other rounding."""
    optimizer = make_optimizer(opt, net.parameters())
    for epoch in range(epochs):
        for window in windows(len(batches), factor_of(schedule, epoch)):
            total = sum(float(count(batches[i])) for i in window)
            optimizer.zero_grad()
            for i in window:
                (loss_fn(net, *batches[i]) * (float(count(batches[i])) / total)).backward()
            optimizer.step()


def lightning_fit(
    module: LightningModule,
    loader: DataLoader,
    epochs: int,
    callbacks: list,
    accumulate_grad_batches: int = 1,
    **trainer_kwargs: Any,
) -> Trainer:
    """Fit ``module`` on CPU in float64 with nothing but the given callbacks (no logger, checkpoints, bars)."""
    trainer = Trainer(
        accelerator="cpu",
        devices=1,
        precision="64-true",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        max_epochs=epochs,
        callbacks=callbacks,
        accumulate_grad_batches=accumulate_grad_batches,
        num_sanity_val_steps=0,
        **trainer_kwargs,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "does not have many workers", "fewer batches than its factor", ...
        trainer.fit(module, loader)
    return trainer


def max_abs_diff(a: nn.Module, b: nn.Module) -> float:
    return max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters()))


# ----------------------------------------------------------------------------------------------------------
# Cases
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExactCase:
    name: str
    task: str  # "linear", "mlp" or "tokens"
    n: int  # samples (sequences for the token task)
    batch_size: int
    schedule: dict[int, int]
    epochs: int
    what: str  # what the case isolates
    optimizers: tuple[str, ...] = ("SGD", "AdamW")
    extra: dict = field(default_factory=dict)

    @property
    def constant(self) -> Optional[int]:
        factors = {factor_of(self.schedule, e) for e in range(self.epochs)}
        return factors.pop() if len(factors) == 1 else None

    def layout(self) -> str:
        """Windows per epoch in micro-batches, and the micro-batch sizes, e.g. ``e0: 4,4,2``."""
        nb = math.ceil(self.n / self.batch_size)
        last = self.n - (nb - 1) * self.batch_size
        parts = []
        for e in range(self.epochs):
            ws = ",".join(str(len(w)) for w in windows(nb, factor_of(self.schedule, e)))
            parts.append(f"e{e}: {ws}")
        # identical epochs collapse to one entry
        if len({p.split(": ")[1] for p in parts}) == 1:
            parts = [f"each epoch: {parts[0].split(': ')[1]}"]
        sizes = f"{nb} batches of {self.batch_size}" + (f" (last {last})" if last != self.batch_size else "")
        return f"{sizes}; windows {'; '.join(parts)}"


CASES: tuple[ExactCase, ...] = (
    ExactCase("full windows (control)", "linear", 40, 4, {0: 5}, 3, "nothing: every window full, equal batches"),
    ExactCase("partial last window", "linear", 40, 4, {0: 4}, 3, "the last window has 2 of 4 micro-batches"),
    ExactCase(
        "epoch shorter than k",
        "linear",
        40,
        4,
        {0: 16},
        3,
        "10 batches, factor 16: each epoch is one partial window (Lightning #21808)",
    ),
    ExactCase("short last batch", "linear", 46, 4, {0: 3}, 3, "full windows, but the last batch has 2 samples"),
    ExactCase(
        "schedule {0: 5, 1: 3}", "linear", 46, 4, {0: 5, 1: 3}, 2, "a partial window (e0) and a short last batch (e1)"
    ),
    ExactCase(
        "schedule {0: 5, 1: 3}, MLP", "mlp", 46, 4, {0: 5, 1: 3}, 2, "the same on a nonlinear model (3-16-1 tanh)"
    ),
    ExactCase(
        "tokens, full windows",
        "tokens",
        32,
        4,
        {0: 4},
        3,
        "sequences of 1-7 tokens: micro-batches hold different token counts",
    ),
    ExactCase(
        "tokens, schedule {0: 3, 1: 2}",
        "tokens",
        30,
        4,
        {0: 3, 1: 2},
        2,
        "token counts, partial windows and a short last batch together",
    ),
)


def run_case(case: ExactCase, optimizer: str, seed: int) -> dict[str, Optional[float]]:
    """``max |Δw|`` against the reference for every applicable method, for one data/initialisation seed."""
    if case.task == "tokens":
        x, y = make_tokens(case.n, seed)
        loss_fn, count = token_loss, tokens_of
    else:
        x, y = make_regression(case.n, seed)
        loss_fn, count = mse_loss, (lambda b: len(b[0]))
    loader = DataLoader(TensorDataset(x, y), batch_size=case.batch_size, shuffle=False)
    batches = list(loader)
    init = build_net(case.task, seed)

    ref = copy.deepcopy(init)
    reference_fit(ref, batches, case.schedule, case.epochs, loss_fn, optimizer)
    out: dict[str, Optional[float]] = dict.fromkeys(METHODS)

    floor = copy.deepcopy(init)
    floor_fit(floor, batches, case.schedule, case.epochs, loss_fn, optimizer, count)
    out["floor"] = max_abs_diff(floor, ref)

    def lit(callbacks: list, k: int = 1) -> float:
        module = Wrapped(copy.deepcopy(init), loss_fn, optimizer)
        lightning_fit(module, loader, case.epochs, callbacks, k)
        return max_abs_diff(module.net, ref)

    if case.task == "tokens":
        out["ours"] = lit([AccumulationScheduler(case.schedule, num_items=tokens_of)])
        out["ours, samples"] = lit([AccumulationScheduler(case.schedule)])
    else:
        out["ours"] = lit([AccumulationScheduler(case.schedule)])
    out["GAS"] = lit([GradientAccumulationScheduler(dict(case.schedule))])
    if case.constant is not None:
        out["Trainer(k)"] = lit([], case.constant)
    return out


def run_exactness(seeds: list[int], quick: bool = False, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """One row per (case, optimizer): the largest ``max |Δw|`` over ``seeds`` for each method.

    ``quick`` (``--quick``) runs SGD only and skips the MLP case.
    """
    optimizers = ("SGD",) if quick else None
    rows = []
    for case in CASES:
        if quick and case.task == "mlp":
            continue
        for optimizer in case.optimizers:
            if optimizers is not None and optimizer not in optimizers:
                continue
            per_seed = [run_case(case, optimizer, s) for s in seeds]
            worst = {
                m: (None if per_seed[0][m] is None else max(r[m] for r in per_seed))  # type: ignore[type-var]
                for m in METHODS
            }
            row = {
                "case": case.name,
                "task": case.task,
                "optimizer": optimizer,
                "n": case.n,
                "batch_size": case.batch_size,
                "schedule": {str(k): v for k, v in case.schedule.items()},
                "epochs": case.epochs,
                "layout": case.layout(),
                "isolates": case.what,
                "seeds": list(seeds),
                "max_abs_dw": worst,
                "per_seed": per_seed,
            }
            rows.append(row)
            log(
                f"  {case.name:32s} {optimizer:6s} "
                + "  ".join(f"{m}={v:.1e}" for m, v in worst.items() if v is not None)
            )
    return rows
