"""``AccumulationScheduler``: exact, epoch-scheduled gradient accumulation for Lightning."""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.data import extract_batch_size
from torch import Tensor

from lightning_ci.schedule import EpochSchedule, Scheduling, count_optimizer_steps

__all__ = ["AccumulationScheduler", "total_optimizer_steps"]

NumItems = Callable[[Any], Union[int, Tensor]]

# `state_dict` format version; read later keys with `.get()` so that old checkpoints keep loading.
_STATE_VERSION = 1
# How many epochs of a callable schedule a checkpoint records, when the fit has no finite `max_epochs`.
_MAX_RECORDED_EPOCHS = 10_000


class AccumulationScheduler(Callback):
    r"""Change gradient accumulation by epoch, with gradients exactly equal to one large batch per window.

    Lightning divides every micro-batch loss by the factor ``k`` and always steps on the last batch of an
    epoch, so a partial window is scaled ``r / k`` and micro-batches of unequal size weigh the same. This
    callback instead makes every optimizer step use

    .. math:: g = \sum_{i \in \text{window}} \frac{n_i}{N} \nabla \bar L_i, \qquad N = \sum_{i} n_i,

    where :math:`\bar L_i` is the loss ``training_step`` returns for micro-batch ``i`` and :math:`n_i` its item
    count: exactly the gradient of the mean loss over every item of the window, as one large batch would
    give. This holds for the last, partial window of an epoch, for a short last batch, and across DDP
    ranks (item counts are summed over ranks).

    **Assumption:** ``training_step`` returns a loss *averaged over its batch's items*, as PyTorch's
    ``reduction="mean"`` does. For a token-level loss (mean over non-padding tokens), pass ``num_items``
    counting those tokens; the step then uses (sum of token losses over the window) / (tokens in the
    window), which is what transformers' ``num_items_in_batch`` fix computes. The loss you log from
    ``training_step`` is left untouched (a per-item mean).

    How: the loss of micro-batch ``i`` gets a backward hook that weighs its gradient by
    ``n_i * k / c`` (``c`` is a fixed normaliser, the first batch's item count, which keeps magnitudes near
    1 for fp16 loss scaling), and ``on_before_optimizer_step``, which runs after AMP unscaling and before
    gradient clipping, multiplies the accumulated gradients by ``c * world_size / N``. Clipping therefore
    sees the final gradient, and DDP's ``no_sync`` on non-stepping micro-batches is kept.

    Each epoch it logs ``accumulation_factor`` and ``effective_batch_size`` (items per optimizer step).

    Args:
        scheduling: ``{epoch: factor}`` (the factor holds from that epoch until the next key; epoch 0 is 1 when
            absent; the dict is copied, never mutated) or a callable ``epoch -> factor``.
        num_items: optional callable ``batch -> int | Tensor`` giving a batch's item count, e.g.
            ``lambda b: (b["labels"] != -100).sum()``. Default: the batch's number of samples.

    Raises:
        ValueError: at construction, for an empty dict, negative or non-int epochs, or factors that are
            bools, below 1 or not ints (the message names the bad value); at ``fit`` start, together with
            ``Trainer(accumulate_grad_batches != 1)`` or another accumulation scheduler.
        TypeError: if ``num_items`` is not callable.
        RuntimeError: at ``fit`` start, under manual optimization or DeepSpeed.

    Example:
        >>> from lightning_ci import AccumulationScheduler
        >>> cb = AccumulationScheduler({0: 8, 4: 4, 8: 1})
        >>> [cb.factor(epoch) for epoch in (0, 3, 4, 9)]
        [8, 8, 4, 1]
        >>> AccumulationScheduler({0: True})
        Traceback (most recent call last):
        ...
        ValueError: Expected the accumulation factor for epoch 0 to be an integer >= 1 (not a bool), but received True.
    """

    def __init__(self, scheduling: Scheduling, *, num_items: Optional[NumItems] = None) -> None:
        super().__init__()
        self._schedule = EpochSchedule(scheduling)
        if num_items is not None and not callable(num_items):
            raise TypeError(
                f"Expected argument `num_items` to be a callable batch -> int | Tensor, but received {num_items!r}."
            )
        self.num_items = num_items
        self._recorded_epochs = 1
        self._reset_runtime()

    # ------------------------------------------------------------------ schedule
    @property
    def scheduling(self) -> Union[dict[int, int], Callable[[int], int]]:
        """The schedule: a copy of the ``{epoch: factor}`` table, or the callable."""
        table = self._schedule.table
        return table if table is not None else self._schedule._fn  # type: ignore[return-value]

    def factor(self, epoch: int) -> int:
        """The accumulation factor scheduled for ``epoch``."""
        return self._schedule.factor(epoch)

    def total_optimizer_steps(self, trainer: Trainer) -> int:
        """The number of optimizer steps the whole fit takes under this schedule.

        ``sum_e ceil(batches_e / k_e)`` over the epochs the fit runs, honouring ``limit_train_batches``,
        ``max_epochs`` and ``max_steps``. It may be called from ``configure_optimizers`` (it sets up the
        train dataloader if needed, as ``trainer.estimated_stepping_batches`` does), so that ``OneCycleLR``
        or a warmup-then-decay schedule is sized to the real number of steps. It counts from epoch 0, so it
        is the same number on a resumed fit.

        Raises:
            ValueError: if the training loader has no length and ``max_steps`` is not set, or if neither
                ``max_epochs`` nor ``max_steps`` bounds the fit.
        """
        if trainer.train_dataloader is None:
            trainer.fit_loop.setup_data()
        batches = trainer.num_training_batches
        max_steps = trainer.max_steps if trainer.max_steps is not None else -1
        if batches == float("inf"):
            if max_steps < 0:
                raise ValueError(
                    "The training dataloader has no length, so the number of optimizer steps is unknown:"
                    " set `Trainer(max_steps=...)`."
                )
            return max_steps
        max_epochs = trainer.max_epochs if trainer.max_epochs is not None else -1
        return count_optimizer_steps(int(batches), self._schedule, max_epochs, max_steps)

    # ------------------------------------------------------------------ runtime state
    def _reset_runtime(self) -> None:
        self._pending: Optional[Tensor] = None  # items of the batch whose backward is next
        self._window_items: Optional[Tensor] = None  # items backpropagated since the last step (this rank)
        self._norm: Optional[Tensor] = None  # the normaliser c, equal on all ranks
        self._epoch_items: Optional[Tensor] = None  # global items stepped this epoch
        self._epoch_steps = 0
        self._current_factor: Optional[int] = None
        self._factor_epoch: Optional[int] = None

    def _apply_factor(self, trainer: Trainer) -> int:
        k = self._schedule.factor(trainer.current_epoch)
        trainer.accumulate_grad_batches = k
        self._current_factor = k
        self._factor_epoch = trainer.current_epoch
        return k

    def _count_items(self, batch: Any, device: torch.device) -> Tensor:
        dtype = torch.float32 if device.type == "mps" else torch.float64
        if self.num_items is not None:
            n = self.num_items(batch)
        else:
            try:
                n = extract_batch_size(batch)
            except Exception as err:  # lightning raises MisconfigurationException
                raise TypeError(
                    "AccumulationScheduler could not find the number of samples in the batch; pass"
                    " `num_items=lambda batch: ...` to say how many items each batch holds."
                ) from err
        if isinstance(n, Tensor):
            return n.detach().to(device=device, dtype=dtype).reshape(())
        return torch.tensor(float(n), dtype=dtype, device=device)

    # ------------------------------------------------------------------ hooks
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if not pl_module.automatic_optimization:
            raise RuntimeError(
                "AccumulationScheduler needs automatic optimization, but `automatic_optimization` is False."
                " Remove the callback and accumulate in your `training_step` (call `optimizer.step()` every k"
                " batches and weigh each loss by its share of the window's items), or switch to automatic"
                " optimization."
            )
        if any("DeepSpeed" in cls.__name__ for cls in type(trainer.strategy).__mro__):
            raise RuntimeError(
                "AccumulationScheduler cannot drive DeepSpeed: DeepSpeed accumulates inside its engine and cannot"
                " change the factor between epochs. Remove the callback and set `gradient_accumulation_steps`"
                " in the DeepSpeed config, or use the 'ddp' or 'fsdp' strategy."
            )
        if trainer.accumulate_grad_batches != 1:
            raise ValueError(
                f"`Trainer(accumulate_grad_batches={trainer.accumulate_grad_batches})` cannot be combined with"
                " AccumulationScheduler, which sets the factor every epoch. Remove `accumulate_grad_batches`"
                " from the Trainer; for a constant factor k use `AccumulationScheduler({0: k})`."
            )
        from lightning.pytorch.callbacks import GradientAccumulationScheduler

        others = [
            cb
            for cb in trainer.callbacks
            if cb is not self and isinstance(cb, (GradientAccumulationScheduler, AccumulationScheduler))
        ]
        if others:
            raise ValueError(
                f"Found another accumulation callback ({type(others[0]).__name__}) next to AccumulationScheduler."
                " Keep exactly one; AccumulationScheduler alone handles every schedule."
            )
        max_epochs = trainer.max_epochs if trainer.max_epochs is not None else -1
        self._recorded_epochs = max_epochs if 0 < max_epochs <= _MAX_RECORDED_EPOCHS else 1
        self._reset_runtime()
        # Set the first epoch's factor now, so that `trainer.estimated_stepping_batches` is right at least for a
        # constant schedule (it reads the factor once); `total_optimizer_steps` is right for every schedule.
        self._apply_factor(trainer)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # A mid-epoch restart skips `on_train_epoch_start`: set the factor here and on every batch too.
        self._apply_factor(trainer)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        k = self._apply_factor(trainer)
        self._epoch_items = None
        self._epoch_steps = 0
        self._recorded_epochs = max(self._recorded_epochs, trainer.current_epoch + 1)
        batches = trainer.num_training_batches
        if batches != float("inf") and batches < k:
            rank_zero_warn(
                f"Epoch {trainer.current_epoch} has {int(batches)} training batches, fewer than its accumulation"
                f" factor {k}: the whole epoch makes a single optimizer step (its gradient is still exact)."
            )

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if self._factor_epoch != trainer.current_epoch:
            self._apply_factor(trainer)
        self._pending = self._count_items(batch, pl_module.device)

    def on_before_backward(self, trainer: Trainer, pl_module: LightningModule, loss: Tensor) -> None:
        n = self._pending
        if n is None or not loss.requires_grad:
            return
        self._pending = None
        if self._norm is None:
            norm = n.clamp(min=1.0)
            if trainer.world_size > 1:
                norm = trainer.strategy.reduce(norm.clone(), reduce_op="mean")
            self._norm = norm
        k = trainer.accumulate_grad_batches
        # Lightning divided this loss by k; weigh its gradient by n_i / c instead.
        weight = n * k / self._norm
        loss.register_hook(lambda grad: grad * weight.to(grad.dtype))
        self._window_items = n if self._window_items is None else self._window_items + n

    def on_before_optimizer_step(
        self, trainer: Trainer, pl_module: LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if self._window_items is None or self._norm is None:
            return
        items = self._window_items
        self._window_items = None
        if trainer.world_size > 1:
            items = trainer.strategy.reduce(items.clone(), reduce_op="sum")
        # DDP averaged the gradients over ranks; undo that, and divide by the window's items.
        scale = self._norm * trainer.world_size / items.clamp(min=1.0)
        _scale_grads(optimizer, scale)
        self._epoch_items = items if self._epoch_items is None else self._epoch_items + items
        self._epoch_steps += 1

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        k = self._current_factor if self._current_factor is not None else self._apply_factor(trainer)
        metrics: dict[str, float] = {"accumulation_factor": float(k)}
        if self._epoch_items is not None and self._epoch_steps > 0:
            metrics["effective_batch_size"] = float(self._epoch_items) / self._epoch_steps
        pl_module.log_dict(metrics, on_step=False, on_epoch=True, batch_size=1, sync_dist=True)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit":
            trainer.accumulate_grad_batches = 1  # leave the Trainer as we found it, for a later fit
            self._reset_runtime()

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict[str, Any]:
        return {
            "version": _STATE_VERSION,
            "factors": self._schedule.factors(self._recorded_epochs),
            "scheduling": self._schedule.table,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = list(state_dict.get("factors", []))
        ours = self._schedule.factors(len(saved))
        if saved != ours:
            first = next(e for e, (a, b) in enumerate(zip(saved, ours)) if a != b)
            rank_zero_warn(
                "The checkpoint was saved with a different accumulation schedule: epochs 0..{} had factors {},"
                " this run schedules {} (first difference at epoch {}). The new schedule applies from now on,"
                " and `total_optimizer_steps` counts with the new one.".format(len(saved) - 1, saved, ours, first)
            )
        self._recorded_epochs = max(self._recorded_epochs, len(saved))

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for key in ("_pending", "_window_items", "_norm", "_epoch_items"):
            state[key] = None
        return state


@torch.no_grad()
def _scale_grads(optimizer: torch.optim.Optimizer, scale: Tensor) -> None:
    """Multiply every gradient by ``scale`` in place, with one fused call per (device, dtype) group."""
    groups: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            if p.grad is not None:
                groups.setdefault((p.grad.device, p.grad.dtype), []).append(p.grad)
    for (device, dtype), grads in groups.items():
        factor = scale.to(device=device, dtype=dtype)
        if all(not g.is_sparse for g in grads):
            torch._foreach_mul_(grads, factor)
        else:
            for g in grads:
                g.mul_(factor)


def total_optimizer_steps(trainer: Trainer) -> int:
    """The true number of optimizer steps of ``trainer``'s fit.

    With an :class:`AccumulationScheduler` among the callbacks, this is its
    :meth:`~AccumulationScheduler.total_optimizer_steps`; without one, it is the count for Lightning's constant
    ``accumulate_grad_batches``. Call it from ``configure_optimizers`` to size an LR schedule.
    """
    for cb in trainer.callbacks:
        if isinstance(cb, AccumulationScheduler):
            return cb.total_optimizer_steps(trainer)
    constant = AccumulationScheduler({0: int(trainer.accumulate_grad_batches)})
    return constant.total_optimizer_steps(trainer)
