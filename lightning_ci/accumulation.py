"""``AccumulationScheduler``: exact, scheduled gradient accumulation for Lightning."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, Callable, Optional, Union

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor

from lightning_ci.schedule import (
    INTERVALS,
    EffectiveBatchSize,
    Schedule,
    Scheduling,
    _is_int,
    count_optimizer_steps,
    factors_for_micro_batch,
    largest_dividing_micro_batch,
)

__all__ = ["AccumulationScheduler", "total_optimizer_steps"]

NumItems = Callable[[Any], Union[int, Tensor]]

# `state_dict` format version; read later keys with `.get()` so that old checkpoints keep loading.
# 1: {"factors": factors of epochs 0..max_epochs-1, "scheduling"}; 2: adds "history", "interval", "window", ...
_STATE_VERSION = 2


class AccumulationScheduler(Callback):
    r"""Scheduled gradient accumulation whose every optimizer step equals one large batch over its window.

    Lightning divides every micro-batch loss by the factor ``k`` and always steps on the last batch of an
    epoch, so a partial window is scaled ``r / k`` and micro-batches of unequal size weigh the same. This
    callback instead makes every optimizer step use

    .. math:: g = \sum_{i \in \text{window}} \frac{n_i}{N} \nabla \bar L_i, \qquad N = \sum_{i} n_i,

    where :math:`\bar L_i` is the loss ``training_step`` returns for micro-batch ``i`` and :math:`n_i` its item
    count: exactly the gradient of the mean loss over every item of the window, as one large batch would
    give. This holds for the last, partial window of an epoch, for a short last batch, at the change points of
    a schedule, and across DDP ranks (item counts are summed over ranks).

    **What to schedule.** Give either accumulation factors (``scheduling``) or the effective batch size itself
    (``effective_batch_size``, items per optimizer step over all processes); keyed by epoch (default) or by
    optimizer step (``interval="step"``, keys count ``trainer.global_step`` as Lightning's LR-scheduler
    ``"interval": "step"`` does). With ``effective_batch_size`` the factor of each period is
    ``target / (micro-batch x world size)``, read from the train loader's ``batch_size`` when the fit starts.
    With Lightning's ``BatchSizeFinder`` in the same Trainer, the scheduler takes the largest micro-batch at or
    below the one the finder found that divides every target, sets it on the module (as the finder does) and
    reloads the loader, so the effective batch stays exactly the target.

    A step-keyed change takes effect at the next window boundary: the window that starts after optimizer step
    ``s`` accumulates ``factor(s)`` micro-batches (or up to the end of the epoch; every epoch starts a fresh
    window, as in Lightning).

    **Assumption:** ``training_step`` returns a loss *averaged over its batch's items*, as PyTorch's
    ``reduction="mean"`` does. For a token-level loss (mean over non-padding tokens), pass ``num_items``
    counting those tokens; the step then uses (sum of token losses over the window) / (tokens in the
    window), which is what transformers' ``num_items_in_batch`` fix computes. The loss you log from
    ``training_step`` is left untouched (a per-item mean). By default a batch counts the first dimension of
    its tensors, with a warning when its tensors disagree (sequence-first ``x[T, B, ...]``, or a 0-d tensor).

    How: the loss of micro-batch ``i`` gets a backward hook that weighs its gradient by ``n_i * k / c`` (``c``
    is a fixed normaliser, the first batch's item count, which keeps magnitudes near 1 for fp16 loss scaling;
    ``k`` is the divisor Lightning applied), and right after the backward of a window's last micro-batch the
    accumulated gradients are multiplied by ``c * world_size / N``. Every ``on_before_optimizer_step`` hook,
    whatever the callbacks' order, and gradient clipping therefore see the final gradient, and DDP's
    ``no_sync`` on non-stepping micro-batches is kept. A window that Lightning abandons (``on_train_batch_start``
    returning -1, or a loader yielding ``None``) is dropped with its item count.

    Each epoch it logs ``accumulation_factor`` (the factor of the epoch's last window),
    ``effective_batch_size`` (items per optimizer step, averaged over the epoch's steps) and, with
    ``effective_batch_size=``, ``micro_batch_size`` (the one it read or chose).

    Args:
        scheduling: ``{key: factor}`` (the factor holds from that key until the next one; key 0 is 1 when
            absent; the dict is copied, never mutated) or a callable ``key -> factor``. Keys are epochs, or
            optimizer steps with ``interval="step"``.
        effective_batch_size: instead of ``scheduling``: an int (a constant target) or ``{key: items per
            optimizer step}``, giving key 0. Under DDP the target is global: micro-batch x factor x world size.
        interval: ``"epoch"`` (default) or ``"step"``: what the keys count.
        num_items: optional callable ``batch -> int | Tensor`` giving a batch's item count, e.g. the non-padding
            tokens. Make it a module-level function (not a lambda) so that it pickles under ``ddp_spawn``.

    Raises:
        ValueError: at construction, for an empty dict, negative or non-int keys, values that are bools, below 1
            or not ints (the message names the bad value), both or neither of ``scheduling`` and
            ``effective_batch_size``, or an unknown ``interval``; when the fit starts, for a target that micro-batch
            x world size does not divide (the message names the numbers), a scheduled factor the fit will reach
            that is not an integer >= 1, ``Trainer(accumulate_grad_batches != 1)`` or another accumulation
            callback.
        TypeError: if ``num_items`` is not callable, or ``effective_batch_size`` is not an int or a dict.
        RuntimeError: at ``fit`` start, under manual optimization or DeepSpeed.

    Example:
        >>> from lightning_ci import AccumulationScheduler
        >>> cb = AccumulationScheduler({0: 8, 4: 4, 8: 1})
        >>> [cb.factor(epoch) for epoch in (0, 3, 4, 9)]
        [8, 8, 4, 1]
        >>> warmup = AccumulationScheduler({0: 1, 500: 4}, interval="step")
        >>> [warmup.factor(step) for step in (0, 499, 500)]
        [1, 1, 4]
        >>> target = AccumulationScheduler(effective_batch_size={0: 32, 1: 128})
        >>> target.effective_batch_size
        {0: 32, 1: 128}
        >>> AccumulationScheduler({0: True})
        Traceback (most recent call last):
        ...
        ValueError: Expected the accumulation factor for epoch 0 to be an integer >= 1 (not a bool), but received True.
    """

    def __init__(
        self,
        scheduling: Optional[Scheduling] = None,
        *,
        effective_batch_size: Optional[EffectiveBatchSize] = None,
        interval: str = "epoch",
        num_items: Optional[NumItems] = None,
    ) -> None:
        super().__init__()
        if interval not in INTERVALS:
            raise ValueError(f"Expected argument `interval` to be one of {INTERVALS}, but received {interval!r}.")
        if (scheduling is None) == (effective_batch_size is None):
            raise ValueError(
                "Expected exactly one of `scheduling` (accumulation factors) and `effective_batch_size` (items per"
                f" optimizer step), but received {'both' if scheduling is not None else 'neither'}."
            )
        self.interval = interval
        self._targets: Optional[Schedule] = None
        self._factors: Optional[Schedule] = None
        if scheduling is not None:
            self._factors = Schedule(scheduling, interval=interval)
        else:
            if _is_int(effective_batch_size):
                effective_batch_size = {0: int(effective_batch_size)}  # type: ignore[arg-type]
            if not isinstance(effective_batch_size, Mapping):
                raise TypeError(
                    "Expected argument `effective_batch_size` to be an int or a dict {"
                    f"{interval}: items per optimizer step}}, but received {type(effective_batch_size).__name__}:"
                    f" {effective_batch_size!r}."
                )
            self._targets = Schedule(
                effective_batch_size,
                interval=interval,
                quantity="effective batch size",
                name="effective_batch_size",
                default=None,
            )
        if num_items is not None and not callable(num_items):
            raise TypeError(
                f"Expected argument `num_items` to be a callable batch -> int | Tensor, but received {num_items!r}."
            )
        self.num_items = num_items
        self.micro_batch_size: Optional[int] = None
        self._history: list[list[int]] = []  # [key, value] wherever the applied factor (or target) changed
        self._reached: Optional[int] = None  # the last key (epoch or step) a window started at
        self._loaded: Optional[dict[str, Any]] = None  # a checkpoint's state, compared with ours when the fit starts
        self._window: Optional[tuple[int, int, int]] = None  # (epoch, first batch_idx, factor) of the current window
        self._promised_steps: Optional[int] = None
        self._reset_runtime()

    # ------------------------------------------------------------------ schedule
    @property
    def scheduling(self) -> Union[dict[int, int], Callable[[int], int], None]:
        """The factor schedule: a copy of the ``{key: factor}`` table, or the callable.

        With ``effective_batch_size`` it is ``None`` until the fit starts, then the factors derived from the
        micro-batch size.
        """
        if self._factors is None:
            return None
        table = self._factors.table
        return table if table is not None else self._factors.fn

    @property
    def effective_batch_size(self) -> Optional[dict[int, int]]:
        """A copy of the ``{key: items per optimizer step}`` targets, or ``None`` when scheduling factors."""
        return None if self._targets is None else self._targets.table

    def factor(self, key: int) -> int:
        """The accumulation factor scheduled at ``key`` (an epoch, or an optimizer step for ``interval="step"``).

        Raises:
            RuntimeError: for ``effective_batch_size`` before the fit has read the micro-batch size.
        """
        if self._factors is None:
            raise RuntimeError(
                "The accumulation factors of `effective_batch_size` depend on the micro-batch size, which is read"
                " when the fit starts; call `factor` after that (or `total_optimizer_steps(trainer)` during it)."
            )
        return self._factors.value(key)

    def total_optimizer_steps(self, trainer: Trainer) -> int:
        """The number of optimizer steps the whole fit takes under this schedule.

        ``sum_e ceil(batches_e / k_e)`` over the epochs the fit runs (or, with ``interval="step"``, the windows
        laid out step by step), honouring ``limit_train_batches``, ``max_epochs`` and ``max_steps``. Call it from
        ``configure_optimizers`` to size ``OneCycleLR`` or a warmup-then-decay schedule. If the train loader is
        not set up yet, it sets it up to count its batches and then puts it back as it found it, so that a
        resumable loader is still restored from the checkpoint. It counts from epoch 0, so it is the same number
        on a resumed fit. With ``effective_batch_size`` it counts with the loader's micro-batch size at the time
        (with a ``BatchSizeFinder`` still to run: the largest micro-batch at or below it that divides the targets,
        which gives the same count unless ``limit_train_batches`` counts batches); the fit warns if the micro-batch
        it then uses gives another count.

        Raises:
            ValueError: if the training loader has no length and ``max_steps`` is not set, or if neither
                ``max_epochs`` nor ``max_steps`` bounds the fit.
        """
        batches, micro, samples = self._training_batches(trainer)
        max_steps = trainer.max_steps if trainer.max_steps is not None else -1
        if batches == float("inf"):
            if max_steps < 0:
                raise ValueError(
                    "The training dataloader has no length, so the number of optimizer steps is unknown:"
                    " set `Trainer(max_steps=...)`."
                )
            rank_zero_warn(
                f"The training dataloader has no length, so `total_optimizer_steps` returns `max_steps={max_steps}`,"
                " an upper bound: the fit takes fewer steps if `max_epochs` ends it first. Give the loader a"
                " `__len__` (or set `max_epochs=-1`) to make the count exact."
            )
            return max_steps
        factors = self._factors
        if factors is None:
            assert self._targets is not None and micro is not None
            if _finder(trainer) is not None:
                # The finder searches later (in `on_fit_start`); count with a micro-batch that divides the targets.
                # With every sample in every epoch the count does not depend on which one: ceil(samples / target).
                provisional = largest_dividing_micro_batch(micro, self._targets.values(), trainer.world_size)
                if provisional != micro and samples is not None:
                    batches = _limit_batches(trainer, samples, provisional)
                micro = provisional
            factors = factors_for_micro_batch(self._targets, micro, trainer.world_size)
        max_epochs = trainer.max_epochs if trainer.max_epochs is not None else -1
        total = count_optimizer_steps(int(batches), factors, max_epochs, max_steps)
        if self._factors is None:
            self._promised_steps = total
        return total

    def _training_batches(self, trainer: Trainer) -> tuple[Union[int, float], Optional[int], Optional[tuple]]:
        """(batches per epoch, the loader's micro-batch size and (samples, drop_last) if needed).

        Leaves the loader as it found it.
        """
        if trainer.limit_train_batches == 0:
            return 0, None, None
        fit_loop = trainer.fit_loop
        set_up_here = trainer.train_dataloader is None
        if set_up_here:
            fit_loop.setup_data()
        try:
            batches = trainer.num_training_batches
            micro = _loader_batch_size(trainer) if self._factors is None else None
            samples = _loader_samples(trainer) if self._factors is None else None
        finally:
            if set_up_here:
                # `setup_data` loads a resumable loader's state only if the checkpoint's loop state is there, which
                # `configure_optimizers` precedes: undo it, so that the fit's own `setup_data` does it again.
                fetcher = getattr(fit_loop, "_data_fetcher", None)
                if fetcher is not None:
                    fetcher.teardown()
                    fit_loop._data_fetcher = None
                fit_loop._combined_loader = None
        return batches, micro, samples

    # ------------------------------------------------------------------ runtime state
    def _reset_runtime(self) -> None:
        self._pending: Optional[Tensor] = None  # items of the batch whose backward is next
        self._window_items: Optional[Tensor] = None  # items backpropagated since the last zero_grad (this rank)
        self._norm: Optional[Tensor] = None  # the normaliser c, equal on all ranks
        self._epoch_items: Optional[Tensor] = None  # global items stepped this epoch
        self._epoch_steps = 0
        self._current_factor: Optional[int] = None
        self._epoch_factor: Optional[tuple[int, int]] = None  # (epoch, factor), epoch interval
        self._warned_count = False

    def _count_items(self, batch: Any, device: torch.device) -> Tensor:
        dtype = torch.float32 if device.type == "mps" else torch.float64
        n = self.num_items(batch) if self.num_items is not None else self._default_count(batch)
        if isinstance(n, Tensor):
            return n.detach().to(device=device, dtype=dtype).reshape(())
        return torch.tensor(float(n), dtype=dtype, device=device)

    def _default_count(self, batch: Any) -> int:
        sizes: list[int] = []
        scalars = 0
        for t in _tensors(batch):
            if t.ndim == 0:
                scalars += 1
            else:
                sizes.append(int(t.shape[0]))
        if not sizes:
            raise TypeError(
                "AccumulationScheduler could not find the number of samples in the batch (no tensor with a batch"
                " dimension); pass `num_items=` a module-level function batch -> int | Tensor that says how many"
                " items each batch holds."
            )
        n = sizes[0]
        if (scalars or any(s != n for s in sizes)) and not self._warned_count:
            self._warned_count = True
            found = f"leading dimensions {sizes[:8]}" + (f" and {scalars} 0-d tensor(s)" if scalars else "")
            rank_zero_warn(
                f"AccumulationScheduler counts {n} items in this batch (the first dimension of its first tensor with"
                f" one), but the batch's tensors disagree ({found}). Sequence-first batches (x[T, B, ...]) or extra"
                " tensors make the default count ambiguous, and a wrong count weighs the micro-batches wrongly."
                " Pass `num_items=` a module-level function batch -> int | Tensor that counts the items your loss"
                " averages over."
            )
        return n

    def _resolve_factors(self, trainer: Trainer) -> Schedule:
        """The factor schedule; with `effective_batch_size`, derived from the loader's micro-batch size now."""
        if self._targets is None:
            assert self._factors is not None
            return self._factors
        micro = _loader_batch_size(trainer)
        world = trainer.world_size
        factors = factors_for_micro_batch(self._targets, micro, world)
        self._factors, self.micro_batch_size = factors, micro
        procs = f" x {world} processes" if world > 1 else ""
        rank_zero_info(
            f"AccumulationScheduler: effective batch sizes {self._targets.table} by {self.interval} = micro-batch"
            f" {micro}{procs} x accumulation factors {factors.table}."
        )
        return factors

    def _value_at(self, key: int) -> int:
        """What the history records at `key`: the target with `effective_batch_size`, else the factor."""
        return (self._targets if self._targets is not None else self._factors).value(key)  # type: ignore[union-attr]

    def _note(self, key: int) -> None:
        self._reached = key
        value = self._value_at(key)
        if self._history and self._history[-1][0] >= key:  # entries past `key` (an old run's future) go
            self._history = [h for h in self._history if h[0] < key]
        if not self._history or self._history[-1][1] != value:
            self._history.append([key, value])

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
        from lightning.pytorch.strategies import DeepSpeedStrategy

        if isinstance(trainer.strategy, DeepSpeedStrategy):
            raise RuntimeError(
                "AccumulationScheduler cannot drive DeepSpeed: DeepSpeed accumulates inside its engine and cannot"
                " change the factor during the fit. Remove the callback and set `gradient_accumulation_steps`"
                " in the DeepSpeed config, or use the 'ddp' or 'fsdp' strategy."
            )
        if trainer.accumulate_grad_batches != 1:
            raise ValueError(
                f"`Trainer(accumulate_grad_batches={trainer.accumulate_grad_batches})` cannot be combined with"
                " AccumulationScheduler, which sets the factor itself. Remove `accumulate_grad_batches`"
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
        self._reset_runtime()
        self._window = None
        self._promised_steps = None
        if self._targets is not None:
            self._factors, self.micro_batch_size = None, None  # read from the loader when the fit starts
        else:
            # Set the first factor now, so that `trainer.estimated_stepping_batches` is right at least for a constant
            # schedule (it reads the factor once); `total_optimizer_steps` is right for every schedule.
            assert self._factors is not None
            trainer.accumulate_grad_batches = self._factors.value(0)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        finder = _finder(trainer)
        if self._targets is None or finder is None or finder.optimal_batch_size is None:
            return
        # Lightning runs tuner callbacks first, so the finder has searched by now (its trials ran without callbacks).
        from lightning.pytorch.utilities.parsing import lightning_getattr, lightning_setattr

        found = int(finder.optimal_batch_size)
        chosen = largest_dividing_micro_batch(found, self._targets.values(), trainer.world_size)
        arg = getattr(finder, "_batch_arg_name", "batch_size")
        if lightning_getattr(pl_module, arg) != chosen:
            lightning_setattr(pl_module, arg, chosen)
            _reload_dataloaders(trainer)
        rank_zero_info(
            f"AccumulationScheduler: BatchSizeFinder found micro-batch {found}; using {chosen}, the largest at or"
            f" below it that divides the effective batch sizes {sorted(set(self._targets.values()))}."
        )

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        factors = self._resolve_factors(trainer)
        batches = trainer.num_training_batches
        max_epochs = trainer.max_epochs if trainer.max_epochs is not None else -1
        max_steps = trainer.max_steps if trainer.max_steps is not None else -1
        if batches != float("inf") and (max_epochs >= 0 or max_steps >= 0):
            # The one place where every factor the fit will reach is evaluated and checked (a callable's too).
            total = count_optimizer_steps(int(batches), factors, max_epochs, max_steps)
            if self._promised_steps is not None and self._promised_steps != total:
                rank_zero_warn(
                    f"`total_optimizer_steps` returned {self._promised_steps} before the fit chose micro-batch"
                    f" {self.micro_batch_size}; with it the fit takes {total} optimizer steps. An LR schedule sized"
                    " from the first number ends early or late: set `limit_train_batches` as a fraction, or size it"
                    " after the micro-batch is known."
                )
        self._check_loaded_history(trainer)
        # A mid-epoch restart skips `on_train_epoch_start`: set the factor here and on every batch too.
        trainer.accumulate_grad_batches = self._restart_modulus(trainer)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._epoch_items = None
        self._epoch_steps = 0
        self._window = None
        key = trainer.current_epoch if self.interval == "epoch" else trainer.global_step
        k = self.factor(key)
        if self.interval == "epoch":
            trainer.accumulate_grad_batches = k
        batches = trainer.num_training_batches
        if batches != float("inf") and batches < k:
            rank_zero_warn(
                f"Epoch {trainer.current_epoch} has {int(batches)} training batches, fewer than its accumulation"
                f" factor {k}: the whole epoch makes a single optimizer step (its gradient is still exact)."
            )

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        epoch = trainer.current_epoch
        if self.interval == "epoch":
            if self._epoch_factor is None or self._epoch_factor[0] != epoch:
                self._epoch_factor = (epoch, self.factor(epoch))
                self._note(epoch)
            k = self._epoch_factor[1]
            modulus, zero_here = k, False  # Lightning's own windows: batch_idx multiples of k
        else:
            w = self._window
            if w is None or w[0] != epoch or not w[1] <= batch_idx < w[1] + w[2]:
                step = trainer.global_step
                w = self._window = (epoch, batch_idx, self.factor(step))
                self._note(step)
            k = w[2]
            modulus, zero_here = _modulus(batch_idx, w[1], k)
        self._current_factor = k
        trainer.accumulate_grad_batches = modulus
        if zero_here:
            _zero_grad(trainer, batch_idx)
        self._pending = self._count_items(batch, pl_module.device)

    def on_before_zero_grad(self, trainer: Trainer, pl_module: LightningModule, optimizer: Any) -> None:
        # Lightning starts a new window here; whatever was backpropagated before (a window it abandoned after an
        # `on_train_batch_start` returning -1 or a `None` batch) is being zeroed and must not count.
        self._window_items = None

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
        divisor = trainer.accumulate_grad_batches
        # Lightning divided this loss by `divisor`; weigh its gradient by n_i / c instead.
        weight = n * divisor / self._norm
        loss.register_hook(lambda grad: grad * weight.to(grad.dtype))
        self._window_items = n if self._window_items is None else self._window_items + n

    def on_after_backward(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Finish the window right after its last backward, so that every `on_before_optimizer_step` hook (in any
        # callback order) and gradient clipping see the final gradient.
        if self._window_items is not None and _steps_now(trainer):
            self._finish_window(trainer)

    def on_before_optimizer_step(
        self, trainer: Trainer, pl_module: LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        # Fallback: a window whose last micro-batch had no backward (its `training_step` returned None).
        if self._window_items is not None:
            self._finish_window(trainer)

    def _finish_window(self, trainer: Trainer) -> None:
        items = self._window_items
        self._window_items = None
        if items is None or self._norm is None:
            return
        if trainer.world_size > 1:
            items = trainer.strategy.reduce(items.clone(), reduce_op="sum")
        # DDP averaged the gradients over ranks; undo that, and divide by the window's items.
        scale = self._norm * trainer.world_size / items.clamp(min=1.0)
        for optimizer in trainer.optimizers:
            _scale_grads(optimizer, scale)
        self._epoch_items = items if self._epoch_items is None else self._epoch_items + items
        self._epoch_steps += 1

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        k = self._current_factor
        if k is None:
            k = self.factor(trainer.current_epoch if self.interval == "epoch" else trainer.global_step)
        metrics: dict[str, float] = {"accumulation_factor": float(k)}
        if self._epoch_items is not None and self._epoch_steps > 0:
            metrics["effective_batch_size"] = float(self._epoch_items) / self._epoch_steps
        if self.micro_batch_size is not None:
            metrics["micro_batch_size"] = float(self.micro_batch_size)
        pl_module.log_dict(metrics, on_step=False, on_epoch=True, batch_size=1, sync_dist=True)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit":
            self._leave(trainer)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        # `teardown` does not run after an exception: leave the Trainer as we found it here too.
        self._leave(trainer)

    def _leave(self, trainer: Trainer) -> None:
        trainer.accumulate_grad_batches = 1  # as `setup` found it, so that a later fit on this Trainer is not refused
        self._reset_runtime()

    # ------------------------------------------------------------------ restarts
    def _restart_modulus(self, trainer: Trainer) -> int:
        """The divisor to show Lightning before the first batch: a mid-epoch restart reads its position with it."""
        if self.interval == "epoch":
            return self.factor(trainer.current_epoch)
        try:
            done = int(trainer.fit_loop.epoch_loop.batch_progress.current.ready)
        except AttributeError:
            done = 0
        w = self._window
        if done == 0 or w is None or w[0] != trainer.current_epoch:
            return self.factor(trainer.global_step)
        # Lightning asks `done % divisor == 0` for "the last batch before the restart stepped".
        return done if done == w[1] + w[2] else done + 1

    def _check_loaded_history(self, trainer: Trainer) -> None:
        loaded, self._loaded = self._loaded, None
        if not loaded:
            return
        saved = _saved_history(loaded)
        reached = trainer.current_epoch + 1 if self.interval == "epoch" else trainer.global_step
        quantity = "effective batch size" if self._targets is not None else "accumulation factor"
        if loaded.get("interval", "epoch") != self.interval or bool(loaded.get("effective_batch_size")) != bool(
            self._targets
        ):
            rank_zero_warn(
                "The checkpoint was saved with a different accumulation schedule (another interval, or factors"
                " against effective batch sizes). The new schedule applies from now on, and"
                " `total_optimizer_steps` counts with the new one."
            )
            return
        for key, value in saved:
            if key >= reached:
                break
            ours = self._value_at(key)
            if ours != value:
                rank_zero_warn(
                    f"The checkpoint was saved with a different accumulation schedule: at {self.interval} {key} its"
                    f" {quantity} was {value}, this run schedules {ours} (saved history {saved}). The new schedule"
                    " applies from now on, and `total_optimizer_steps` counts with the new one."
                )
                return

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "version": _STATE_VERSION,
            "interval": self.interval,
            "scheduling": self._factors.table if self._targets is None and self._factors is not None else None,
            "effective_batch_size": self.effective_batch_size,
            "micro_batch_size": self.micro_batch_size,
            "history": [list(h) for h in self._history],
            "reached": self._reached,
            "window": list(self._window) if self._window is not None else None,
        }
        if self.interval == "epoch" and self._targets is None and self._reached is not None:
            # version 1's key: the factors of the epochs so far (only epochs that started, never evaluated anew)
            state["factors"] = _expand(self._history, self._reached + 1)
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._loaded = dict(state_dict)
        self._history = [list(h) for h in _saved_history(state_dict)]
        reached = state_dict.get("reached")
        if reached is None and state_dict.get("factors"):
            reached = len(state_dict["factors"]) - 1
        self._reached = reached
        window = state_dict.get("window")
        self._window = tuple(window) if window else None  # type: ignore[assignment]

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for key in ("_pending", "_window_items", "_norm", "_epoch_items"):
            state[key] = None
        return state


# ---------------------------------------------------------------------- helpers
def _tensors(batch: Any):
    """The tensors of a batch, in order (mappings, sequences and dataclasses are searched)."""
    if isinstance(batch, Tensor):
        yield batch
    elif isinstance(batch, Mapping):
        for value in batch.values():
            yield from _tensors(value)
    elif isinstance(batch, (list, tuple)):
        for value in batch:
            yield from _tensors(value)
    elif dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        for field in dataclasses.fields(batch):
            yield from _tensors(getattr(batch, field.name))


def _modulus(batch_idx: int, start: int, k: int) -> tuple[int, bool]:
    """The divisor that makes Lightning zero and step at the window ``[start, start + k)``, and whether to zero here.

    Lightning zeroes the gradients before batch ``i`` when ``i % divisor == 0`` and steps after it when
    ``(i + 1) % divisor == 0`` (or at the epoch's last batch). Windows aligned on multiples of ``k`` use ``k`` itself;
    a misaligned one (after a step-keyed change) uses a divisor chosen per batch. The one case no divisor covers, a
    window of several batches starting at batch 1, zeroes the gradients itself.
    """
    i = batch_idx
    if k == 1:
        return 1, False
    if i == start:  # zero, do not step: divisor | i, divisor does not divide i + 1
        if i % k == 0:
            return k, False
        if i == 1:
            return (k if k >= 3 else 3), True  # neither zero nor step; we zero
        return _smallest_divisor(i), False
    if i == start + k - 1:  # step, do not zero: divisor | i + 1 (then it cannot divide i)
        return (k if (i + 1) % k == 0 else _smallest_divisor(i + 1)), False
    # neither: i >= 1 here, and i + 2 divides neither i nor i + 1
    if i % k and (i + 1) % k:
        return k, False
    return next(d for d in range(3, i + 3) if i % d and (i + 1) % d), False


def _smallest_divisor(n: int) -> int:
    """The smallest divisor >= 2 of ``n >= 2``."""
    for d in range(2, math.isqrt(n) + 1):
        if n % d == 0:
            return d
    return n


def _zero_grad(trainer: Trainer, batch_idx: int) -> None:
    """Zero the gradients as Lightning does at a window's start (its hooks and its `optimizer_zero_grad`)."""
    loop = trainer.fit_loop.epoch_loop.automatic_optimization
    for optimizer in trainer.optimizers:
        if hasattr(loop, "_on_before_zero_grad") and hasattr(loop, "_optimizer_zero_grad"):
            loop._on_before_zero_grad(optimizer)
            loop._optimizer_zero_grad(batch_idx, optimizer)
        else:  # pragma: no cover - other Lightning versions
            trainer.lightning_module.optimizer_zero_grad(trainer.current_epoch, batch_idx, optimizer)


def _steps_now(trainer: Trainer) -> bool:
    """Whether the batch in flight ends its window (Lightning steps after it)."""
    should_accumulate = getattr(trainer.fit_loop, "_should_accumulate", None)
    if should_accumulate is None:  # pragma: no cover - other Lightning versions: finish in on_before_optimizer_step
        return False
    return not should_accumulate()


def _finder(trainer: Trainer) -> Any:
    from lightning.pytorch.callbacks import BatchSizeFinder

    return next((cb for cb in trainer.callbacks if isinstance(cb, BatchSizeFinder)), None)


def _loader_batch_size(trainer: Trainer) -> int:
    loader = trainer.train_dataloader
    size = getattr(loader, "batch_size", None)
    if size is None:
        size = getattr(getattr(loader, "batch_sampler", None), "batch_size", None)
    if not _is_int(size) or size < 1:
        raise TypeError(
            "AccumulationScheduler(effective_batch_size=...) reads the micro-batch size from the train DataLoader's"
            f" `batch_size`, but the train loader ({type(loader).__name__}) has none. Use a DataLoader with"
            " `batch_size=`, or schedule accumulation factors with `scheduling=` instead."
        )
    return int(size)


def _loader_samples(trainer: Trainer) -> Optional[tuple]:
    """(samples per epoch on this process, drop_last) of a DataLoader with a sized sampler, else None."""
    loader = trainer.train_dataloader
    try:
        return len(loader.sampler), bool(loader.drop_last)  # type: ignore[union-attr, arg-type]
    except (AttributeError, TypeError):
        return None


def _limit_batches(trainer: Trainer, samples: tuple, micro: int) -> int:
    """The batches per epoch at micro-batch ``micro``, after ``limit_train_batches`` (as Lightning parses it)."""
    n, drop_last = samples
    batches = n // micro if drop_last else -(-n // micro)
    limit = trainer.limit_train_batches
    if isinstance(limit, int):
        return min(batches, limit)
    return int(batches * limit) if limit is not None else batches


def _reload_dataloaders(trainer: Trainer) -> None:
    """Reload the fit's loaders after the batch size changed, as Lightning's batch-size finder does."""
    try:
        from lightning.pytorch.tuner.batch_size_scaling import _reset_dataloaders
    except ImportError:  # pragma: no cover - other Lightning versions
        trainer.fit_loop._combined_loader = None
        trainer.fit_loop.setup_data()
        return
    _reset_dataloaders(trainer)


def _saved_history(state: dict[str, Any]) -> list[list[int]]:
    if "history" in state:
        return [list(h) for h in state["history"]]
    out: list[list[int]] = []  # version 1: the factors of epochs 0..n-1
    for epoch, factor in enumerate(state.get("factors", [])):
        if not out or out[-1][1] != factor:
            out.append([epoch, factor])
    return out


def _expand(history: list[list[int]], n: int) -> list[int]:
    out, j, current = [], 0, 1
    for key in range(n):
        while j < len(history) and history[j][0] <= key:
            current = history[j][1]
            j += 1
        out.append(current)
    return out


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
