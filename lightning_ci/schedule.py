"""Epoch -> accumulation factor schedules and optimizer-step counting (pure Python).

Nothing here imports torch or lightning, so the arithmetic can be checked on its own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from numbers import Integral
from typing import Callable, Union

Scheduling = Union[Mapping[int, int], Callable[[int], int]]

__all__ = ["EpochSchedule", "Scheduling", "count_optimizer_steps"]


def _is_int(value: object) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _check_factor(factor: object, where: str) -> int:
    if not _is_int(factor) or factor < 1:  # type: ignore[operator]
        raise ValueError(
            f"Expected the accumulation factor {where} to be an integer >= 1 (not a bool), but received {factor!r}."
        )
    return int(factor)  # type: ignore[call-overload]


class EpochSchedule:
    """An epoch -> accumulation factor schedule.

    Args:
        scheduling: either a mapping ``{first_epoch: factor}`` (the factor holds from that epoch until the next
            key; epoch 0 defaults to 1 when absent), or a callable ``epoch -> factor``.

    Raises:
        ValueError: for an empty mapping, keys that are negative or not ints, and factors that are bools,
            below 1 or not ints. The message names the bad value.
        TypeError: if ``scheduling`` is neither a mapping nor a callable.

    Example:
        >>> s = EpochSchedule({2: 4, 5: 1})
        >>> [s.factor(e) for e in range(7)]
        [1, 1, 4, 4, 4, 1, 1]
        >>> EpochSchedule(lambda epoch: 2 ** min(epoch, 3)).factor(10)
        8
    """

    def __init__(self, scheduling: Scheduling) -> None:
        if isinstance(scheduling, Mapping):
            if len(scheduling) == 0:
                raise ValueError(
                    "Expected argument `scheduling` to be a non-empty dict {epoch: factor}, but received {}."
                    " Use {0: k} for a constant factor."
                )
            table: dict[int, int] = {}
            for epoch, factor in scheduling.items():
                if not _is_int(epoch) or epoch < 0:
                    raise ValueError(
                        f"Expected the epochs (keys) of `scheduling` to be integers >= 0, but received {epoch!r}."
                    )
                table[int(epoch)] = _check_factor(factor, f"for epoch {epoch}")
            table.setdefault(0, 1)  # a copy: the caller's dict is never mutated
            self._table: dict[int, int] | None = dict(sorted(table.items()))
            self._fn: Callable[[int], int] | None = None
        elif callable(scheduling):
            self._table = None
            self._fn = scheduling
            self.factor(0)  # fail early on a callable that returns nonsense
        else:
            raise TypeError(
                "Expected argument `scheduling` to be a dict {epoch: factor} or a callable epoch -> factor,"
                f" but received {type(scheduling).__name__}: {scheduling!r}."
            )

    @property
    def table(self) -> dict[int, int] | None:
        """A copy of the ``{epoch: factor}`` table, or ``None`` for a callable schedule."""
        return None if self._table is None else dict(self._table)

    def factor(self, epoch: int) -> int:
        """The accumulation factor of ``epoch``."""
        if self._fn is not None:
            return _check_factor(self._fn(epoch), f"returned by `scheduling({epoch})`")
        assert self._table is not None
        current = 1
        for first_epoch, factor in self._table.items():
            if first_epoch > epoch:
                break
            current = factor
        return current

    def factors(self, num_epochs: int) -> list[int]:
        """The factors of epochs ``0 .. num_epochs - 1``."""
        return [self.factor(e) for e in range(num_epochs)]

    def __repr__(self) -> str:
        inner = self._table if self._table is not None else self._fn
        return f"{type(self).__name__}({inner!r})"


def count_optimizer_steps(batches_per_epoch: int, schedule: EpochSchedule, max_epochs: int, max_steps: int = -1) -> int:
    """The number of optimizer steps of a fit: ``sum_e ceil(batches_per_epoch / k_e)``, capped by ``max_steps``.

    Lightning always steps on the last batch of an epoch, so an epoch of ``b`` batches with factor ``k``
    takes ``ceil(b / k)`` steps.

    Args:
        batches_per_epoch: training batches per epoch on one process (after ``limit_train_batches``).
        schedule: the accumulation schedule.
        max_epochs: number of epochs; ``-1`` means unbounded (then ``max_steps`` must be set).
        max_steps: Lightning's ``max_steps``; ``-1`` means no cap.

    Example:
        >>> count_optimizer_steps(10, EpochSchedule({0: 4, 1: 2}), max_epochs=3)
        13
        >>> count_optimizer_steps(10, EpochSchedule({0: 4, 1: 2}), max_epochs=3, max_steps=5)
        5
    """
    if batches_per_epoch < 0:
        raise ValueError(f"Expected `batches_per_epoch` >= 0, but received {batches_per_epoch}.")
    if max_epochs is None or max_epochs < 0:
        if max_steps is None or max_steps < 0:
            raise ValueError(
                "The number of optimizer steps is unbounded: set `max_epochs` or `max_steps` on the Trainer."
            )
        return max_steps
    total = 0
    for epoch in range(max_epochs):
        total += math.ceil(batches_per_epoch / schedule.factor(epoch))
        if 0 <= max_steps <= total:
            return max_steps
    return total
