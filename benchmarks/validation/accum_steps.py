"""LR-schedule step totals: ``total_optimizer_steps`` vs ``trainer.estimated_stepping_batches`` vs the real count.

For each case, two fits of the same float64 linear model (plain SGD, lr 0.1 at the peak):

1. with ``AccumulationScheduler(schedule)``; ``configure_optimizers`` records ``total_optimizer_steps(trainer)``
   and ``trainer.estimated_stepping_batches``, and sizes a linear decay ``lr = peak * max(0, 1 - step / total)``
   with ``total_optimizer_steps``;
2. with Lightning's ``GradientAccumulationScheduler(schedule)`` (or ``Trainer(accumulate_grad_batches=k)`` for
   a constant factor), the linear decay sized with ``trainer.estimated_stepping_batches``, as a Lightning user
   would size it.

After each fit, the real number of optimizer steps is ``trainer.global_step``, and the LR left at the end is
read from the optimizer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

import torch
from accum_exact import lightning_fit
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import GradientAccumulationScheduler
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_ci import AccumulationScheduler, total_optimizer_steps

PEAK_LR = 0.1


class LinearDecayModule(LightningModule):
    """Linear regression; its LR decays linearly to 0 over ``size(trainer)`` optimizer steps."""

    def __init__(self, size: Callable[[Trainer], int]) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Linear(3, 1).double()
        self.size = size
        self.sized: dict[str, Any] = {}
        self.lrs: list[float] = []  # the LR used by each optimizer step

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        self.lrs.append(optimizer.param_groups[0]["lr"])

    def configure_optimizers(self) -> dict[str, Any]:
        self.sized = {
            "total_optimizer_steps": total_optimizer_steps(self.trainer),
            "estimated_stepping_batches": self.trainer.estimated_stepping_batches,
        }
        total = self.size(self.trainer)
        self.sized["lr_schedule_total"] = total
        opt = torch.optim.SGD(self.parameters(), lr=PEAK_LR)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: max(0.0, 1.0 - step / total))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


@dataclass(frozen=True)
class StepCase:
    schedule: Union[dict[int, int], Callable[[int], int]]
    label: str  # how the schedule is written in the table
    n: int  # samples, in micro-batches of 4
    epochs: int
    trainer_kwargs: dict = field(default_factory=dict)
    constant: Optional[int] = None  # run Lightning's side as Trainer(accumulate_grad_batches=k)

    def factors(self) -> list[int]:
        f = self.schedule if callable(self.schedule) else None
        out = []
        for e in range(self.epochs):
            if f is not None:
                out.append(f(e))
            else:
                keys = [k for k in sorted(self.schedule) if k <= e]  # type: ignore[arg-type]
                out.append(self.schedule[keys[-1]] if keys else 1)  # type: ignore[index]
        return out


def _plus_one(epoch: int) -> int:
    return epoch + 1


CASES: tuple[StepCase, ...] = (
    StepCase({0: 4, 1: 2}, "{0: 4, 1: 2}", 40, 3),
    StepCase({0: 1, 1: 2, 2: 4}, "{0: 1, 1: 2, 2: 4} (the example's)", 200, 3),
    StepCase({0: 5, 1: 3}, "{0: 5, 1: 3}", 46, 3),
    StepCase({0: 8, 2: 2}, "{0: 8, 2: 2}", 400, 4),
    StepCase({2: 3}, "{2: 3}", 46, 4, {"limit_train_batches": 7}),
    StepCase(_plus_one, "epoch -> epoch + 1 (callable)", 46, 3, {"limit_train_batches": 0.5}),
    StepCase({0: 3, 1: 1}, "{0: 3, 1: 1}", 46, 3, {"max_steps": 6}),
    StepCase({0: 4, 1: 1}, "{0: 4, 1: 1}", 80, 3, {"max_steps": 30}),
    StepCase({0: 4}, "constant 4 (control)", 40, 3, constant=4),
)


def _fit(case: StepCase, callbacks: list, size: Callable[[Trainer], int], k: int = 1) -> tuple[Trainer, Any]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(case.n, 3, generator=g, dtype=torch.float64)
    y = (x @ torch.tensor([1.5, -2.0, 0.5], dtype=torch.float64)).unsqueeze(1)
    module = LinearDecayModule(size)
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    trainer = lightning_fit(module, loader, case.epochs, callbacks, k, **case.trainer_kwargs)
    return trainer, module


def run_case(case: StepCase) -> dict[str, Any]:
    ours_t, ours_m = _fit(case, [AccumulationScheduler(case.schedule)], total_optimizer_steps)

    def estimate(trainer: Trainer) -> int:
        return int(trainer.estimated_stepping_batches)

    if case.constant is not None:
        lit_t, lit_m = _fit(case, [], estimate, case.constant)
    else:
        table = {e: f for e, f in enumerate(case.factors())}
        lit_t, lit_m = _fit(case, [GradientAccumulationScheduler(table)], estimate)
    end_lr = lambda t: t.optimizers[0].param_groups[0]["lr"] / PEAK_LR  # noqa: E731
    batches = int(ours_t.num_training_batches)
    est, ours_total = ours_m.sized["estimated_stepping_batches"], ours_m.sized["total_optimizer_steps"]
    real = ours_t.global_step
    return {
        "schedule": case.label,
        "factors": case.factors(),
        "batches_per_epoch": batches,
        "epochs": case.epochs,
        "limits": ", ".join(f"{k}={v}" for k, v in case.trainer_kwargs.items()) or "-",
        "lightning_side": f"Trainer(accumulate_grad_batches={case.constant})" if case.constant else "GAS",
        "total_optimizer_steps": ours_total,
        "estimated_stepping_batches": int(est),
        "estimate_under_lightning": int(lit_m.sized["estimated_stepping_batches"]),
        "global_step_ours": real,
        "global_step_lightning": lit_t.global_step,
        "expected_sum_ceil": _expected(batches, case.factors(), case.trainer_kwargs.get("max_steps", -1)),
        "end_lr_frac_ours": end_lr(ours_t),
        "end_lr_frac_estimate": end_lr(lit_t),
        "estimate_over_real": int(lit_m.sized["estimated_stepping_batches"]) / real if real else math.nan,
        "lr_trace_ours": ours_m.lrs,
        "lr_trace_estimate": lit_m.lrs,
    }


def _expected(batches: int, factors: list[int], max_steps: int) -> int:
    total = sum(math.ceil(batches / k) for k in factors)
    return min(total, max_steps) if max_steps > 0 else total


# --quick: the headline case, limit_train_batches, max_steps and the constant control
QUICK = (0, 4, 6, 8)


def run_step_totals(quick: bool = False, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    rows = []
    for case in [CASES[i] for i in QUICK] if quick else CASES:
        row = run_case(case)
        rows.append(row)
        log(
            f"  {row['schedule']:36s} ours={row['total_optimizer_steps']:4d} est={row['estimated_stepping_batches']:4d}"
            f" real={row['global_step_ours']:4d}/{row['global_step_lightning']:4d}"
            f" end LR ours={row['end_lr_frac_ours']:.3f} est={row['end_lr_frac_estimate']:.3f}"
        )
    return rows
