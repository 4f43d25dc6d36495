"""Accumulation schedules and optimizer-step counting (pure Python).

A schedule maps a *key* (an epoch, or an optimizer step for ``interval="step"``) to an integer: an accumulation
factor, or an effective batch size that a micro-batch size turns into factors. Nothing here imports torch or
lightning, so the arithmetic can be checked on its own.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from numbers import Integral
from typing import Callable, Union

Scheduling = Union[Mapping[int, int], Callable[[int], int]]
EffectiveBatchSize = Union[int, Mapping[int, int]]

INTERVALS = ("epoch", "step")

__all__ = [
    "INTERVALS",
    "EffectiveBatchSize",
    "EpochSchedule",
    "Schedule",
    "Scheduling",
    "count_optimizer_steps",
    "factors_for_micro_batch",
    "largest_dividing_micro_batch",
]


def _is_int(value: object) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _check_value(value: object, quantity: str, where: str) -> int:
    if not _is_int(value) or value < 1:  # type: ignore[operator]
        raise ValueError(f"Expected the {quantity} {where} to be an integer >= 1 (not a bool), but received {value!r}.")
    return int(value)  # type: ignore[call-overload]


class Schedule:
    """A key -> integer schedule, keyed by epoch or by optimizer step.

    Args:
        scheduling: a mapping ``{first_key: value}`` (the value holds from that key until the next one; key 0
            defaults to ``default`` when absent; the mapping is copied, never mutated), or a callable
            ``key -> value``.
        interval: ``"epoch"`` (keys are epochs) or ``"step"`` (keys are optimizer steps, ``trainer.global_step``).
        quantity: what the values are, for error messages (``"accumulation factor"``, ``"effective batch size"``).
        name: the argument's name, for error messages.
        default: the value of key 0 when a mapping does not give one; ``None`` makes key 0 required.

    Raises:
        ValueError: for an empty mapping, keys that are negative or not ints, values that are bools, below 1 or
            not ints, a missing key 0 when there is no default, or an unknown ``interval``. The message names the
            bad value.
        TypeError: if ``scheduling`` is neither a mapping nor a callable.

    Example:
        >>> s = Schedule({0: 1, 500: 4}, interval="step")
        >>> [s.value(k) for k in (0, 499, 500, 10_000)]
        [1, 1, 4, 4]
        >>> Schedule({0: 0})
        Traceback (most recent call last):
        ...
        ValueError: Expected the accumulation factor for epoch 0 to be an integer >= 1 (not a bool), but received 0.
    """

    def __init__(
        self,
        scheduling: Scheduling,
        *,
        interval: str = "epoch",
        quantity: str = "accumulation factor",
        name: str = "scheduling",
        default: int | None = 1,
    ) -> None:
        if interval not in INTERVALS:
            raise ValueError(f"Expected argument `interval` to be one of {INTERVALS}, but received {interval!r}.")
        self.interval = interval
        self.quantity = quantity
        self.name = name
        if isinstance(scheduling, Mapping):
            if len(scheduling) == 0:
                raise ValueError(
                    f"Expected argument `{name}` to be a non-empty dict {{{interval}: value}}, but received {{}}."
                    " Use {0: k} for a constant value."
                )
            table: dict[int, int] = {}
            for key, value in scheduling.items():
                if not _is_int(key) or key < 0:
                    raise ValueError(
                        f"Expected the {interval}s (keys) of `{name}` to be integers >= 0, but received {key!r}."
                    )
                table[int(key)] = _check_value(value, quantity, f"for {interval} {key}")
            if 0 not in table:
                if default is None:
                    raise ValueError(
                        f"Expected `{name}` to give the {quantity} of {interval} 0, but its first key is"
                        f" {min(table)}: received {dict(scheduling)!r}."
                    )
                table[0] = default
            self._table: dict[int, int] | None = dict(sorted(table.items()))
            self._keys = list(self._table)
            self._fn: Callable[[int], int] | None = None
        elif callable(scheduling):
            self._table = None
            self._keys = []
            self._fn = scheduling
            self.value(0)  # fail early on a callable that returns nonsense
        else:
            raise TypeError(
                f"Expected argument `{name}` to be a dict {{{interval}: value}} or a callable {interval} -> value,"
                f" but received {type(scheduling).__name__}: {scheduling!r}."
            )

    @property
    def table(self) -> dict[int, int] | None:
        """A copy of the ``{key: value}`` table, or ``None`` for a callable schedule."""
        return None if self._table is None else dict(self._table)

    @property
    def fn(self) -> Callable[[int], int] | None:
        """The callable, or ``None`` for a table."""
        return self._fn

    def value(self, key: int) -> int:
        """The value scheduled at ``key`` (checked: an integer >= 1)."""
        if self._fn is not None:
            return _check_value(self._fn(key), self.quantity, f"returned by `{self.name}({key})`")
        assert self._table is not None
        current = 1
        for first, value in self._table.items():
            if first > key:
                break
            current = value
        return current

    factor = value  # the name used by factor schedules

    def next_change(self, key: int) -> int | None:
        """The first table key after ``key`` (``None`` past the last one, or for a callable)."""
        for first in self._keys:
            if first > key:
                return first
        return None

    def values(self) -> list[int]:
        """The distinct values of a table, in key order (a callable has none known)."""
        return [] if self._table is None else list(self._table.values())

    def __repr__(self) -> str:
        inner = self._table if self._table is not None else self._fn
        return f"{type(self).__name__}({inner!r}, interval={self.interval!r})"


class EpochSchedule(Schedule):
    """An epoch -> accumulation factor schedule.

    Args:
        scheduling: either a mapping ``{first_epoch: factor}`` (the factor holds from that epoch until the next key;
            epoch 0 defaults to 1 when absent), or a callable ``epoch -> factor``.

    Example:
        >>> s = EpochSchedule({2: 4, 5: 1})
        >>> [s.factor(e) for e in range(7)]
        [1, 1, 4, 4, 4, 1, 1]
        >>> EpochSchedule(lambda epoch: 2 ** min(epoch, 3)).factor(10)
        8
    """

    def __init__(self, scheduling: Scheduling) -> None:
        super().__init__(scheduling, interval="epoch")

    def factors(self, num_epochs: int) -> list[int]:
        """The factors of epochs ``0 .. num_epochs - 1``."""
        return [self.factor(e) for e in range(num_epochs)]


def largest_dividing_micro_batch(limit: int, targets: Iterable[int], world_size: int = 1) -> int:
    """The largest micro-batch ``m <= limit`` with ``m * world_size`` dividing every target.

    Raises:
        ValueError: if ``world_size`` does not divide every target (no micro-batch can reach them).

    Example:
        >>> largest_dividing_micro_batch(11, [32, 128])
        8
        >>> largest_dividing_micro_batch(50, [96], world_size=2)
        48
    """
    targets = list(targets)
    if limit < 1:
        raise ValueError(f"Expected the micro-batch size limit to be >= 1, but received {limit}.")
    g = 0
    for t in targets:
        g = math.gcd(g, int(t))
    if g == 0:
        raise ValueError("Expected at least one effective batch size, but received none.")
    if g % world_size:
        raise ValueError(
            f"Expected every effective batch size ({sorted(set(targets))}) to be a multiple of the {world_size}"
            " processes, but it is not: no micro-batch size reaches it."
        )
    per_process = g // world_size
    return max(d for d in range(1, min(limit, per_process) + 1) if per_process % d == 0)


def factors_for_micro_batch(targets: Schedule, micro_batch_size: int, world_size: int = 1) -> Schedule:
    """The factor schedule that reaches ``targets`` (effective batch sizes) with this micro-batch and world size.

    Factor = target / (micro-batch x world size), per key; the result has the same interval.

    Raises:
        ValueError: if a target is not a multiple of micro-batch x world size; the message names both numbers.

    Example:
        >>> targets = Schedule({0: 32, 1: 128}, quantity="effective batch size")
        >>> factors_for_micro_batch(targets, 8).table
        {0: 4, 1: 16}
    """
    if not _is_int(micro_batch_size) or micro_batch_size < 1:
        raise ValueError(f"Expected the micro-batch size to be an integer >= 1, but received {micro_batch_size!r}.")
    table = targets.table
    if table is None:
        raise TypeError("Expected the effective batch sizes as a table {key: size}, but received a callable.")
    per_step = micro_batch_size * world_size
    factors: dict[int, int] = {}
    for key, target in table.items():
        if target % per_step:
            procs = f" x {world_size} processes = {per_step}" if world_size > 1 else ""
            try:
                hint = f"; micro-batch {largest_dividing_micro_batch(micro_batch_size, [target], world_size)} would"
            except ValueError:
                hint = ""
            raise ValueError(
                f"Expected the effective batch size {target} ({targets.interval} {key}) to be a multiple of the"
                f" micro-batch size {micro_batch_size}{procs}, but {target} / {per_step} is not an integer{hint}."
            )
        factors[key] = target // per_step
    return Schedule(factors, interval=targets.interval)


def count_optimizer_steps(batches_per_epoch: int, schedule: Schedule, max_epochs: int, max_steps: int = -1) -> int:
    """The number of optimizer steps of a fit, capped by ``max_steps``.

    Every epoch starts a fresh window at its first batch, and Lightning always steps on the last batch of an epoch.
    With ``interval="epoch"`` an epoch of ``b`` batches and factor ``k`` takes ``ceil(b / k)`` steps. With
    ``interval="step"`` each window's factor is the schedule's value at the optimizer steps made before it, so a
    change takes effect at the next window boundary. Every factor the fit reaches is evaluated (and so checked),
    and no other.

    Args:
        batches_per_epoch: training batches per epoch on one process (after ``limit_train_batches``).
        schedule: the factor schedule (epoch- or step-keyed).
        max_epochs: number of epochs; ``-1`` means unbounded (then ``max_steps`` must be set).
        max_steps: Lightning's ``max_steps``; ``-1`` means no cap.

    Example:
        >>> count_optimizer_steps(10, EpochSchedule({0: 4, 1: 2}), max_epochs=3)
        13
        >>> count_optimizer_steps(10, EpochSchedule({0: 4, 1: 2}), max_epochs=3, max_steps=5)
        5
        >>> count_optimizer_steps(10, Schedule({0: 1, 3: 4}, interval="step"), max_epochs=2)
        8
    """
    if batches_per_epoch < 0:
        raise ValueError(f"Expected `batches_per_epoch` >= 0, but received {batches_per_epoch}.")
    max_epochs = -1 if max_epochs is None else max_epochs
    max_steps = -1 if max_steps is None else max_steps
    if max_epochs < 0 and max_steps < 0:
        raise ValueError("The number of optimizer steps is unbounded: set `max_epochs` or `max_steps` on the Trainer.")
    if batches_per_epoch == 0 or max_epochs == 0 or max_steps == 0:
        return 0
    cap = max_steps if max_steps >= 0 else math.inf
    steps, epoch = 0, 0
    while (max_epochs < 0 or epoch < max_epochs) and steps < cap:
        key = epoch if schedule.interval == "epoch" else steps
        if schedule.table is not None and schedule.next_change(key) is None:
            # past the last key every epoch is alike: ceil(b / k) steps each
            if max_epochs < 0:
                return int(cap)
            steps += math.ceil(batches_per_epoch / schedule.value(key)) * (max_epochs - epoch)
            break
        if schedule.interval == "epoch":
            steps += math.ceil(batches_per_epoch / schedule.value(epoch))
        else:
            steps = _one_epoch_of_step_windows(batches_per_epoch, schedule, steps, cap)
        epoch += 1
    return int(min(steps, cap))


def _one_epoch_of_step_windows(batches: int, schedule: Schedule, step: int, cap: float) -> int:
    """Run one epoch of step-keyed windows from optimizer step ``step``; return the step count after it."""
    start = 0
    while start < batches and step < cap:
        k = schedule.value(step)
        if schedule.table is None:
            start += k
            step += 1
            continue
        # the factor stays k until the next key: take as many k-windows as fit before it, the epoch's end and the cap
        windows = math.ceil((batches - start) / k)
        nxt = schedule.next_change(step)
        if nxt is not None:
            windows = min(windows, nxt - step)
        if cap != math.inf:
            windows = min(windows, int(cap) - step)
        start += windows * k
        step += windows
    return step
