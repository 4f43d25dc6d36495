"""The contract every replicate engine follows.

An *engine* is a private torchmetrics ``Metric`` that knows how to make bootstrap replicates for one
family of metrics (confusion counts, ranking scores, or anything through the generic path). Because it
is a ``Metric``, its states are declared with ``add_state`` and torchmetrics syncs them under DDP when
``compute()`` runs: one collective per state.

``BootstrapMetric`` (``lightning_ci/bootstrap/metric.py``) picks an engine with ``supports`` and then only
calls ``update``, ``compute`` and ``reset`` on it. Engines never import lightning.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Optional

import torch
from torch import Tensor
from torchmetrics import Metric

RESAMPLING_MODES = ("multinomial", "poisson", "bayesian")
# the engines' states that hold group ids (the cluster bootstrap); left out of ``state_dict`` while empty
GROUP_STATES = ("group_ids", "group_cells", "group_counts", "_groups")


class GroupsError(ValueError, TypeError):
    """A bad ``groups=`` argument (both a ``ValueError`` and, for ids of the wrong dtype, a ``TypeError``)."""


def expand_groups(groups: Tensor, num_samples: int, num_units: int) -> Tensor:
    """Check the group ids of one batch and give one id per *unit* (element of the flattened input).

    Args:
        groups: one integer id per sample (dim 0 of the target; per row for multilabel).
        num_samples: the batch's number of samples (``target.shape[0]``).
        num_units: the number of units the engine made of the batch (samples times extra positions).

    Returns:
        ``[num_units]`` long ids (each sample's id repeated over its positions).

    Raises:
        GroupsError: if ``groups`` is not a 1-d integer tensor of ``num_samples`` ids.
    """
    if not isinstance(groups, Tensor):
        raise GroupsError(f"Expected argument `groups` to be an integer tensor but received {type(groups).__name__}")
    if groups.is_floating_point() or groups.is_complex() or groups.dtype == torch.bool:
        raise GroupsError(f"Expected argument `groups` to hold integer ids but received dtype {groups.dtype}")
    if groups.ndim != 1 or groups.shape[0] != num_samples:
        raise GroupsError(
            f"Expected argument `groups` to have one id per sample, shape ({num_samples},), but received shape "
            f"{tuple(groups.shape)}"
        )
    groups = groups.long()
    if num_samples == 0 or num_units == num_samples:
        return groups
    return groups.repeat_interleave(num_units // num_samples)


# a dense tabulation (``bincount`` over the key range, then ``nonzero``) replaces a sort when the key range is at
# most this many times the number of keys, plus a constant: O(n + range) instead of O(n log n), the same result
_DENSE_SPAN_PER_KEY = 4
_DENSE_SPAN_SLACK = 1 << 16


def _dense(span: int, num_keys: int) -> bool:
    """Whether keys in ``[0, span)`` are tabulated densely (``bincount``) rather than sorted (``unique``)."""
    return span <= _DENSE_SPAN_PER_KEY * num_keys + _DENSE_SPAN_SLACK


def count_pairs(ids: Tensor, cells: Tensor, num_cells: int) -> tuple[Tensor, Tensor, Tensor]:
    """Tabulate one batch per (group, cell): the distinct pairs and their counts (1-d sorts only, no ``dim=``).

    Args:
        ids: ``[m]`` group ids (any integers).
        cells: ``[m]`` cell indices in ``[0, num_cells)``.
        num_cells: the number of cells.

    Returns:
        ``(group_ids, cells, counts)`` of the distinct pairs, sorted by (group id, cell).
    """
    if ids.numel():
        lo, hi = int(ids.min()), int(ids.max())
        span = (hi - lo + 1) * num_cells  # Python ints: no overflow
        if _dense(span, ids.numel()):  # ids in a compact range (say 0..G-1): a bincount, no sort
            counts = torch.bincount((ids - lo) * num_cells + cells, minlength=span)
            keys = torch.nonzero(counts).flatten()
            return keys // num_cells + lo, keys % num_cells, counts[keys]
        if lo >= 0 and hi < (1 << 62) // num_cells:
            # one sort over int64 (group, cell) keys instead of two
            keys, counts = torch.unique(ids * num_cells + cells, return_counts=True)
            return keys // num_cells, keys % num_cells, counts
    uniq, inverse = torch.unique(ids, return_inverse=True)
    keys, counts = torch.unique(inverse * num_cells + cells, return_counts=True)
    return uniq[keys // num_cells], keys % num_cells, counts


def group_index(ids: Tensor) -> tuple[int, Tensor]:
    """The number of distinct ids and each id's rank among them: ``torch.unique(ids, return_inverse=True)`` without
    the sort when the ids lie in a compact range.

    Returns:
        ``(G, inverse)``: ``inverse[i]`` in ``[0, G)`` is the rank of ``ids[i]`` among the distinct ids.
    """
    if ids.numel():
        lo, hi = int(ids.min()), int(ids.max())
        if _dense(hi - lo + 1, ids.numel()):
            offset = ids - lo
            seen = torch.bincount(offset, minlength=hi - lo + 1) > 0
            rank = torch.cumsum(seen, 0) - 1
            return int(rank[-1]) + 1, rank[offset]
    uniq, inverse = torch.unique(ids, return_inverse=True)
    return uniq.numel(), inverse


def unique_rows(rows: Tensor) -> tuple[Tensor, Tensor]:
    """``torch.unique(rows, dim=0, return_counts=True)`` for non-negative integer rows, through one int64 key per
    row when the rows fit in 62 bits (a 1-d sort, or a ``bincount`` over a small key range, is much faster than
    ``dim=0``); the rows come back sorted by that key.

    Returns:
        ``(distinct rows, multiplicities)``.
    """
    if rows.numel() == 0 or rows.shape[1] == 0:
        return torch.unique(rows, dim=0, return_counts=True)
    base = int(rows.max()) + 1
    if rows.shape[1] * math.log2(max(base, 2)) > 62:
        return torch.unique(rows, dim=0, return_counts=True)
    powers = base ** torch.arange(rows.shape[1], device=rows.device, dtype=torch.int64)
    keys = (rows.long() * powers).sum(1)
    span = base ** rows.shape[1]
    if _dense(span, rows.shape[0]):  # small key range: count every key, decode the distinct ones (same result)
        counts = torch.bincount(keys, minlength=span)
        distinct = torch.nonzero(counts).flatten()
        return (distinct.unsqueeze(1) // powers % base).to(rows.dtype), counts[distinct]
    uniq, inverse, counts = torch.unique(keys, return_inverse=True, return_counts=True)
    first = torch.zeros(uniq.numel(), dtype=torch.long, device=rows.device)
    first = first.scatter(0, inverse, torch.arange(rows.shape[0], device=rows.device))
    return rows[first], counts


@dataclass
class EngineOutput:
    """What an engine's ``compute()`` returns.

    Attributes:
        value: the wrapped metric on all the data seen, shape ``S`` (``()`` for a scalar metric).
            Must equal ``base_metric.compute()`` on the same data.
        replicates: the metric on each bootstrap replicate, shape ``[B, *S]``. Entries may be NaN where
            the metric is undefined for that replicate; the interval code drops them with a warning.
        jackknife: leave-one-out values for BCa, shape ``[m, *S]``, or ``None`` when not requested.
            Only the *distinct* leave-one-out values are needed: ``jackknife_weights[j]`` says how many
            samples give value ``jackknife[j]`` (for the confusion family m <= C², weight = cell count).
        jackknife_weights: shape ``[m]``, non-negative, summing to n. ``None`` means all ones.
    """

    value: Tensor
    replicates: Tensor
    jackknife: Optional[Tensor] = None
    jackknife_weights: Optional[Tensor] = None


def _stream_seed(seed: int, stream: int) -> int:
    """A 63-bit seed for stream ``stream`` of a base seed, stable across processes and platforms."""
    digest = hashlib.blake2b(f"{seed}:{stream}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


class BootstrapEngine(Metric):
    """Base class of the replicate engines.

    Subclasses implement ``supports`` (classmethod), ``update`` and ``compute`` (returning
    :class:`EngineOutput`), and declare their states in ``__init__`` with ``add_state``.

    Randomness comes only from :meth:`generator`, never from the global RNG: ``generator(device, stream)``
    returns a fresh ``torch.Generator`` on ``device`` seeded from ``(self.seed, stream)``. Every engine draws
    its replicates in ``compute`` (``stream=0``), so that the result is a pure function of the synced state
    and the seed: the same under any batching, sample order, DDP launcher or number of ranks.

    States are only ever replaced in ``update`` (``self.x = self.x + d``), never written in place: the
    ``ddp_spawn`` launcher pickles the module through ``torch.multiprocessing``, which moves tensors into
    shared memory, so an in-place update would add every rank's data into one storage (which the sync then
    sums again). Unpickling also gives every tensor state of the engine and of the metric it wraps (whose own
    ``update`` may add in place) a private copy, so that no two processes ever write into one storage.
    """

    full_state_update: ClassVar[bool] = False
    is_differentiable: ClassVar[bool] = False

    def __init__(
        self,
        base_metric: Metric,
        num_bootstraps: int,
        resampling: str,
        seed: int,
        need_jackknife: bool,
        paired: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.base_metric = base_metric
        self.num_bootstraps = int(num_bootstraps)
        self.resampling = resampling
        self.seed = int(seed)
        self.need_jackknife = bool(need_jackknife)
        # paired: ``update(preds_a, preds_b, target)``; value/replicates/jackknife get a model axis of size 2
        # after the first (``[2, *S]``, ``[B, 2, *S]``, ``[m, 2, *S]``), both models under one weight per unit
        self.paired = bool(paired)
        self._persistent_mode = False

    @classmethod
    def supports(cls, base_metric: Metric, resampling: str) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def _bind_inputs(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """``update``'s tensors by name: ``preds, target`` (``preds_a, preds_b, target`` when paired), given by
        position or keyword.

        Raises:
            TypeError: if an argument is missing, repeated or unknown.
        """
        names = ("preds_a", "preds_b", "target") if self.paired else ("preds", "target")
        bound = dict(zip(names, args))
        if len(args) > len(names) or set(bound) & set(kwargs) or set(bound) | set(kwargs) != set(names):
            raise TypeError(
                f"Expected `update({', '.join(names)}[, groups=...])` but received {len(args)} positional "
                f"argument(s) and the keyword(s) {sorted(kwargs)}"
            )
        bound.update(kwargs)
        return bound

    def generator(self, device: torch.device, stream: int = 0) -> torch.Generator:
        gen = torch.Generator(device=device)
        gen.manual_seed(_stream_seed(self.seed, stream))
        return gen

    def persistent(self, mode: bool = False) -> None:
        """Save the bootstrap state (every engine state, and the seed) in ``state_dict`` (or not)."""
        super().persistent(mode)
        self._persistent_mode = bool(mode)

    def state_dict(self, destination: Any = None, prefix: str = "", keep_vars: bool = False) -> Any:
        destination = super().state_dict(destination=destination, prefix=prefix, keep_vars=keep_vars)
        if self._persistent_mode:  # a resumed evaluation must draw the same replicates
            destination[prefix + "_bootstrap_seed"] = torch.tensor(self.seed, dtype=torch.int64)
            for name in GROUP_STATES:  # no groups given: the state_dict is what it was before groups existed
                value = getattr(self, name, None)
                if prefix + name in destination and (
                    (isinstance(value, list) and all(v.numel() == 0 for v in value))
                    or (isinstance(value, Tensor) and value.numel() == 0)
                ):
                    del destination[prefix + name]
        return destination

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        seed = state_dict.pop(prefix + "_bootstrap_seed", None)
        if seed is not None:
            self.seed = int(seed)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._computed = None
        loaded = [getattr(self, name) for name in self._defaults]
        if any(len(v) > 0 if isinstance(v, list) else bool(v.any()) for v in loaded):
            self._update_count = max(self._update_count, 1)  # the loaded state counts as updated

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        for metric in self.modules():
            if isinstance(metric, Metric):
                _unshare_states(metric)


def _unshare_states(metric: Metric) -> None:
    """Replace every tensor state of ``metric`` that lives in shared memory by a private copy.

    ``torch.multiprocessing`` (the ``ddp_spawn`` launcher) moves pickled tensors into shared memory; after
    unpickling in two worker processes, both would otherwise hold one storage.
    """
    for name in metric._defaults:
        value = getattr(metric, name)
        if isinstance(value, Tensor) and value.is_shared():
            setattr(metric, name, value.clone())
        elif isinstance(value, list) and any(isinstance(v, Tensor) and v.is_shared() for v in value):
            setattr(metric, name, [v.clone() if isinstance(v, Tensor) and v.is_shared() else v for v in value])
