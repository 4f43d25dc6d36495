"""Loggable views: one torchmetrics ``Metric`` per scalar of a :class:`BootstrapMetric` result.

Lightning logs a torchmetrics ``Metric`` natively (``self.log(name, metric, on_epoch=True)``): at the end of
the epoch it calls ``compute()`` (which syncs the states across DDP ranks) and then ``reset()``. It needs
``compute()`` to return one tensor, while a :class:`BootstrapMetric` returns a dict (torchmetrics #919,
Lightning #19620). A *view* is a stateless ``Metric`` that reads one entry (``value``, ``lower``, ``upper`` or
``std``, one element of it for vector metrics) of its parent's result:

- ``compute()`` returns a 0-d tensor. All views of one parent share one cached result, so the bootstrap runs
  (and the states sync) once per epoch however many views are logged. The cache is keyed on the parent's
  engine state (its torchmetrics compute cache, cleared by every ``update`` and ``reset``).
- ``reset()`` resets the parent once: the first view reset after an update resets it, the others find it
  fresh and do nothing.
- views are never updated (update the parent); they warn about nothing themselves, so Lightning's
  "``compute`` called before ``update``" warning does not fire for them.

Lightning finds the ``Metric`` it is asked to log among the ``LightningModule``'s submodules, listed once per
``fit``/``validate`` call at the first ``self.log`` of a metric. The views are therefore submodules of their
parent (under ``_loggable_views``), created before that listing: :meth:`BootstrapMetric.named_modules` calls
:func:`prepare_views` first. The number of elements of a vector metric (for the names ``{name}_{i}``) comes
from a local compute of a copy of the wrapped metric (no DDP sync), from ``average``/``num_classes`` for
torchmetrics classification metrics, and is checked against the real result at ``compute()``. One case is
left: a generic-path metric whose size shows only once it has data (e.g. ``SpearmanCorrCoef(num_outputs=2)``)
gets its per-element views at the first ``loggable`` after an update; if Lightning listed the module's metrics
before that (a metric logged in ``training_step`` with the sanity check off), it cannot find them and says so.

This module imports torchmetrics and torch only (no lightning).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from copy import deepcopy
from typing import TYPE_CHECKING, Any, Optional, Union

import torch
from torch import Tensor
from torchmetrics import Metric, MetricCollection

if TYPE_CHECKING:  # pragma: no cover
    from lightning_ci.bootstrap.metric import BootstrapMetric

__all__ = ["BootstrapView", "loggable", "loggable_views", "prepare_views"]

KINDS = ("value", "lower", "upper", "std")
_SUFFIX = {"value": "", "lower": "_lower", "upper": "_upper", "std": "_std"}


def _kinds(parent: Metric) -> tuple[tuple[str, ...], dict[str, str]]:
    """The result keys a parent's views read (logged ones first, ``std`` last) and their name suffixes."""
    kinds = getattr(parent, "_view_kinds", KINDS)
    return kinds, getattr(parent, "_view_suffix", _SUFFIX)


_VIEWS_ATTR = "_loggable_views"
_CACHE_ATTR = "_loggable_cache"


class _ViewSet(torch.nn.Module):
    """The container of a parent's views (a plain module, so that ``named_modules`` reaches the views)."""

    def __init__(self) -> None:
        super().__init__()
        self.numel: Optional[int] = None  # number of elements of the result, once known
        self.probed = "never"  # "never", "empty" (probed before any update) or "done" (never probed again)

    def extra_repr(self) -> str:
        return f"numel={self.numel}"


class BootstrapView(Metric):
    """A read-only view on one scalar of a :class:`BootstrapMetric` result, for Lightning's metric logging.

    Made by :meth:`BootstrapMetric.loggable` (do not construct it directly). ``compute()`` returns the 0-d
    tensor ``parent.compute()[key]`` (element ``index`` of it for a vector metric); ``reset()`` resets the
    parent once per epoch; ``update`` is refused (update the parent).

    Args:
        parent: the :class:`BootstrapMetric` whose result is read. Not registered as a submodule (the parent
            owns its views), so moving or saving the parent does not recurse through the view.
        key: ``"value"``, ``"lower"``, ``"upper"`` or ``"std"``.
        index: the element of a vector result (flattened, as :func:`to_log_dict` numbers them), or ``None``
            for a scalar result.
    """

    is_differentiable = False
    full_state_update = False
    higher_is_better: Optional[bool] = None
    plot_lower_bound: Optional[float] = None
    plot_upper_bound: Optional[float] = None

    def __init__(self, parent: BootstrapMetric, key: str, index: Optional[int] = None) -> None:
        super().__init__()
        kinds = _kinds(parent)[0]
        if key not in kinds:
            raise ValueError(f"Expected argument `key` to be one of {kinds} but received {key!r}")
        self.__dict__["_parent"] = parent  # a plain reference: not a submodule (no cycle in the module tree)
        self.key = key
        self.index = index
        if key != "std":
            self.__dict__["higher_is_better"] = parent.higher_is_better
            self.__dict__["plot_lower_bound"] = parent.plot_lower_bound
            self.__dict__["plot_upper_bound"] = parent.plot_upper_bound

    @property
    def parent(self) -> BootstrapMetric:
        """The :class:`BootstrapMetric` this view reads."""
        return self._parent

    @property
    def update_called(self) -> bool:
        """Whether the parent has been updated since its last reset."""
        return bool(self._parent.engine.update_called)

    @property
    def update_count(self) -> int:
        """The number of updates of the parent since its last reset."""
        return int(self._parent.engine.update_count)

    def update(self, *_: Any, **__: Any) -> None:
        """Refused: a view has no state of its own."""
        raise RuntimeError(
            f"A loggable view ({self.key!r}) of a BootstrapMetric cannot be updated: call `update` on the "
            "BootstrapMetric itself and log its `loggable(name)` views."
        )

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Refused, like :meth:`update`."""
        self.update(*args, **kwargs)

    def compute(self) -> Tensor:
        """The parent's ``result[key]`` (element ``index``) as a 0-d tensor; the bootstrap runs once per state."""
        parent = self._parent
        result = bootstrap_result(parent)
        full = result[self.key]
        views = parent._modules.get(_VIEWS_ATTR)
        expected = None if views is None else views.numel
        numel = int(full.numel())
        if (self.index is None and numel != 1) or (expected is not None and numel != expected):
            raise ValueError(
                f"BootstrapMetric.loggable named its entries for a result of {expected or 1} element(s), but "
                f"{parent._template.__class__.__name__} returned {numel}. Log "
                "`to_log_dict(metric.compute(), name)` in `on_validation_epoch_end` instead, and reset the metric."
            )
        flat = full.detach().reshape(-1)
        return flat[0 if self.index is None else self.index].clone()

    def reset(self) -> None:
        """Reset the parent, unless it is already fresh (several views of one parent reset it once)."""
        super().reset()
        parent = self._parent
        parent.__dict__.pop(_CACHE_ATTR, None)
        if parent.engine.update_called:
            parent.reset()

    def _wrap_compute(self, compute: Any) -> Any:
        # no "compute before update" warning, no cache, no sync of its own: the parent does all three
        return compute

    def extra_repr(self) -> str:
        return f"key={self.key!r}" + ("" if self.index is None else f", index={self.index}")


# --------------------------------------------------------------------------------------------- the shared cache
def _state_token(engine: Metric) -> tuple[Any, ...]:
    """What identifies the engine's current state: its torchmetrics compute cache (cleared by every update and
    reset), or, with ``compute_with_cache=False``, the update count and the state objects themselves."""
    if engine._computed is not None:
        return ("computed", engine._computed)
    states = []
    for attr in engine._defaults:
        value = getattr(engine, attr)
        states.append(value)
        if isinstance(value, list):
            states.extend(value)  # list states are cleared in place on reset: hold their elements too
    return ("state", engine._update_count, tuple(states))


def _same_token(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    if a[0] != b[0]:
        return False
    if a[0] == "computed":
        return a[1] is b[1]
    return a[1] == b[1] and len(a[2]) == len(b[2]) and all(x is y for x, y in zip(a[2], b[2]))


def bootstrap_result(parent: BootstrapMetric) -> dict[str, Tensor]:
    """``parent.compute()``, computed once per state of the parent and shared by all its views."""
    cached = parent.__dict__.get(_CACHE_ATTR)
    if cached is not None and _same_token(cached[0], _state_token(parent.engine)):
        return cached[1]
    result = parent.compute()
    # the token is taken after compute: a DDP sync restores the local states as copies
    parent.__dict__[_CACHE_ATTR] = (_state_token(parent.engine), result)
    return result


# ------------------------------------------------------------------------------------------ the result's size
def _local_numel(metric: Metric) -> Optional[int]:
    """The number of elements of ``metric.compute()`` from a local copy (no DDP sync), or ``None``."""
    try:
        probe = deepcopy(metric)
        for m in probe.modules():
            if isinstance(m, Metric):
                m.sync_on_compute = False
                m._to_sync = False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = probe.compute()
    except Exception:  # an empty metric may refuse to compute (e.g. "No samples to concatenate")
        return None
    return int(value.numel()) if isinstance(value, Tensor) and value.numel() > 0 else None


def _classification_numel(metric: Metric) -> Optional[int]:
    """The result size of a torchmetrics classification metric from its ``average`` and class count."""
    average = getattr(metric, "average", "absent")
    if average in (None, "none"):
        count = getattr(metric, "num_classes", None) or getattr(metric, "num_labels", None)
        return count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else None
    if average in ("micro", "macro", "weighted", "binary") or type(metric).__name__.startswith("Binary"):
        return 1
    return None


def _result_numel(parent: BootstrapMetric) -> Optional[int]:
    template = parent.engine.base_metric  # holds the data on the generic path: its size shows after an update
    template = getattr(template, "metric_a", template)  # a paired generic engine holds two clones
    return _local_numel(template) or _classification_numel(template)


def prepare_views(parent: BootstrapMetric) -> _ViewSet:
    """Create the parent's views (all four kinds, every element when the result size is known) if missing.

    Called by :meth:`BootstrapMetric.named_modules`, so that Lightning, which lists the ``LightningModule``'s
    metrics once per ``fit``/``validate`` call, finds every view that ``loggable`` will return. Never syncs.
    """
    views = parent._modules.get(_VIEWS_ATTR)
    if views is None:
        views = _ViewSet()
        parent.add_module(_VIEWS_ATTR, views)
    updated = bool(parent.engine.update_called)
    if views.numel is None and views.probed != "done" and (updated or views.probed == "never"):
        # at most twice (once before and once after the first update): the probe copies the wrapped metric,
        # which holds every sample seen on the generic path
        views.numel = _result_numel(parent)
        views.probed = "done" if updated or views.numel is not None else "empty"
    indices: list[Optional[int]] = [None] if (views.numel or 1) == 1 else list(range(views.numel))
    for index in indices:
        for kind in _kinds(parent)[0]:
            slot = kind if index is None else f"{kind}_{index}"
            if slot not in views._modules:
                views.add_module(slot, BootstrapView(parent, kind, index))
    return views


def loggable_views(parent: BootstrapMetric, name: str, include_std: bool = False) -> dict[str, Metric]:
    """The implementation of :meth:`BootstrapMetric.loggable`."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"Expected argument `name` to be a non-empty string but received {name!r}")
    if not isinstance(include_std, bool):
        raise TypeError(f"Expected argument `include_std` to be a bool but received {include_std!r}")
    views = prepare_views(parent)
    all_kinds, suffix = _kinds(parent)
    kinds = all_kinds if include_std else all_kinds[:-1]
    if (views.numel or 1) == 1:
        return {f"{name}{suffix[k]}": views._modules[k] for k in kinds}
    return {f"{name}_{i}{suffix[k]}": views._modules[f"{k}_{i}"] for i in range(views.numel) for k in kinds}


# --------------------------------------------------------------------------------------------- collections
def loggable(metrics: Union[MetricCollection, Mapping[str, Metric]], include_std: bool = False) -> dict[str, Metric]:
    """Views for ``LightningModule.log_dict`` of a whole ``MetricCollection`` (or dict of metrics) at once.

    Every :class:`BootstrapMetric` entry named ``key`` gives ``{prefix}{key}{postfix}``, ``..._lower`` and
    ``..._upper`` (and ``..._std`` with ``include_std``), as :meth:`BootstrapMetric.loggable` names them, so
    the names do not depend on the size of the collection. Any other metric is passed through under its
    name, and Lightning logs it as usual. Update the collection as usual, then in ``validation_step``::

        self.val_metrics.update(preds, target)
        self.log_dict(loggable(self.val_metrics), on_epoch=True)

    Lightning computes, syncs and resets every metric at the end of the epoch.

    Args:
        metrics: a ``MetricCollection`` (its ``prefix`` and ``postfix`` apply) or a mapping of names to
            metrics (e.g. a ``torch.nn.ModuleDict``).
        include_std: also return the ``_std`` views of the bootstrap metrics.

    Returns:
        An ordered ``dict`` of names to ``Metric`` objects, each computing a 0-d tensor.

    Raises:
        TypeError: if ``metrics`` is not a ``MetricCollection`` or a mapping of strings to metrics.

    Example:
        >>> import torch
        >>> from torchmetrics import MetricCollection
        >>> from torchmetrics.classification import BinaryAccuracy, BinaryAUROC
        >>> from lightning_ci import BootstrapMetric, loggable
        >>> val = MetricCollection({"acc": BootstrapMetric(BinaryAccuracy(), num_bootstraps=200, seed=0),
        ...                         "auroc": BootstrapMetric(BinaryAUROC(), num_bootstraps=200, seed=0)},
        ...                        prefix="val_")
        >>> val.update(torch.tensor([0.9, 0.2, 0.7, 0.4, 0.6, 0.3]), torch.tensor([1, 0, 1, 1, 0, 0]))
        >>> views = loggable(val)
        >>> list(views)
        ['val_acc', 'val_acc_lower', 'val_acc_upper', 'val_auroc', 'val_auroc_lower', 'val_auroc_upper']
        >>> views["val_acc"].compute()
        tensor(0.6667)
    """
    from lightning_ci.bootstrap.metric import BootstrapMetric

    if isinstance(metrics, MetricCollection):
        items = list(metrics.items(keep_base=False, copy_state=False))
    elif isinstance(metrics, (Mapping, torch.nn.ModuleDict)):
        items = list(metrics.items())
    else:
        raise TypeError(
            "Expected argument `metrics` to be a `MetricCollection` or a mapping of names to metrics but received "
            f"{type(metrics).__name__}"
        )
    out: dict[str, Metric] = {}
    for key, metric in items:
        if not isinstance(key, str) or not isinstance(metric, Metric):
            raise TypeError(
                "Expected argument `metrics` to map strings to torchmetrics `Metric` objects but received "
                f"{key!r}: {type(metric).__name__}"
            )
        if isinstance(metric, BootstrapMetric):
            out.update(metric.loggable(key, include_std=include_std))
        else:
            out[key] = metric
    return out
