"""The generic replicate engine: any torchmetrics ``Metric``, correct but slow.

It stores the tensor inputs of every ``update`` as ``cat`` states (dim 0 = samples, so they sync across
DDP ranks like any torchmetrics cat state) and, at ``compute``, re-runs ``update``/``compute`` of a private
clone of the metric once per bootstrap replicate. This is the only place in lightning-ci with a Python
loop over the replicates; it says so once per instance with a ``UserWarning``.
"""

from __future__ import annotations

import inspect
import warnings
from copy import deepcopy
from typing import Any, Optional

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from lightning_ci.bootstrap._engine import BootstrapEngine, EngineOutput
from lightning_ci.intervals import _rank_zero_warn

__all__ = ["GenericEngine"]

_WEIGHT_ARG_NAMES = ("sample_weight", "sample_weights", "weight", "weights")


def _weight_argument(base_metric: Metric) -> Optional[str]:
    """Name of the per-sample weight argument of ``base_metric.update``, or ``None`` if it takes none."""
    try:
        params = inspect.signature(base_metric.update).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return None
    for name in _WEIGHT_ARG_NAMES:
        if name in params:
            return name
    return None


def _no_sync(metric: Metric) -> Metric:
    """Make ``metric`` (and its child metrics) compute locally: the data are already gathered."""
    for m in metric.modules():
        if isinstance(m, Metric):
            m.sync_on_compute = False
            m._to_sync = False
            m.dist_sync_on_step = False
    return metric


class GenericEngine(BootstrapEngine):
    """Bootstrap any torchmetrics ``Metric`` by storing its inputs and re-evaluating it per replicate.

    Every tensor passed to ``update`` (positional or keyword) must have the samples along dim 0, with the
    same length for all tensors of one call. Non-tensor arguments must be the same in every call.

    - ``"multinomial"``: each replicate indexes the stored samples with ``randint(n, (n,))``.
    - ``"poisson"``: each replicate repeats sample ``i`` ``Poisson(1)`` times (drawn at compute time).
    - ``"bayesian"``: each replicate passes Dirichlet(1, ..., 1) weights (scaled to sum to ``n``) to the
      metric's per-sample weight argument (``sample_weight``/``weight``/...). Metrics without one cannot
      be Bayesian-bootstrapped generically and raise at construction.

    The point estimate comes from an untouched copy of the metric updated batch by batch, so it equals the
    unwrapped metric exactly. The jackknife (for BCa) re-evaluates the metric ``n`` times.

    Args:
        base_metric: the metric to bootstrap (owned by the engine; pass a copy).
        num_bootstraps: number of replicates ``B``.
        resampling: ``"multinomial"``, ``"poisson"`` or ``"bayesian"``.
        seed: base seed of the engine's generators.
        need_jackknife: compute leave-one-out values for BCa.
        kwargs: torchmetrics ``Metric`` keyword arguments (``sync_on_compute``, ``process_group``, ...).

    Raises:
        ValueError: for ``resampling="bayesian"`` when ``base_metric.update`` takes no sample weights.
    """

    def __init__(
        self,
        base_metric: Metric,
        num_bootstraps: int,
        resampling: str,
        seed: int,
        need_jackknife: bool,
        **kwargs: Any,
    ) -> None:
        super().__init__(base_metric, num_bootstraps, resampling, seed, need_jackknife, **kwargs)
        self._weight_arg = _weight_argument(base_metric)
        if resampling == "bayesian" and self._weight_arg is None:
            raise ValueError(
                f"The Bayesian bootstrap is not available for {base_metric.__class__.__name__}: the generic path "
                "needs per-sample weights, but its `update` takes no `sample_weight`/`weight` argument. Use "
                "`resampling='multinomial'` or `'poisson'`."
            )
        # the point-estimate copy follows the engine's own sync settings
        for m in self.base_metric.modules():
            if isinstance(m, Metric):
                m.sync_on_compute = self.sync_on_compute
                m._to_sync = self.sync_on_compute
                m.process_group = self.process_group
                m.dist_sync_fn = self.dist_sync_fn
        self._arg_spec: Optional[tuple[tuple[Any, ...], tuple[tuple[str, Any], ...]]] = None
        self._warned_slow = False
        self._warned_jackknife = False

    @classmethod
    def supports(cls, base_metric: Metric, resampling: str) -> bool:
        """Any metric with multinomial/Poisson; Bayesian only with a per-sample weight argument."""
        if resampling == "bayesian":
            return _weight_argument(base_metric) is not None
        return isinstance(base_metric, Metric)

    # ------------------------------------------------------------------ update
    def _register(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Declare one ``cat`` state per tensor argument, on the first update."""
        pos = tuple("tensor" if isinstance(a, Tensor) else ("const", a) for a in args)
        kw = tuple((k, "tensor" if isinstance(v, Tensor) else ("const", v)) for k, v in sorted(kwargs.items()))
        if self._arg_spec is None:
            for i, kind in enumerate(pos):
                if kind == "tensor":
                    self.add_state(f"_arg_{i}", default=[], dist_reduce_fx="cat")
            for name, kind in kw:
                if kind == "tensor":
                    self.add_state(f"_kw_{name}", default=[], dist_reduce_fx="cat")
            self._arg_spec = (pos, kw)
            return
        if (pos, kw) != self._arg_spec:
            raise ValueError(
                "BootstrapMetric (generic path) expects every `update` call to take the same arguments: tensors in "
                "the same positions and identical non-tensor values."
            )

    def update(self, *args: Any, **kwargs: Any) -> None:
        """Store the tensor inputs (samples along dim 0) and update the point-estimate copy."""
        sizes = {a.shape[0] for a in list(args) + list(kwargs.values()) if isinstance(a, Tensor) and a.ndim > 0}
        if any(isinstance(a, Tensor) and a.ndim == 0 for a in list(args) + list(kwargs.values())):
            raise ValueError("BootstrapMetric (generic path) needs every tensor input to have samples along dim 0.")
        if len(sizes) != 1:
            raise ValueError(
                "BootstrapMetric (generic path) needs at least one tensor input and the same number of samples "
                f"(dim 0) in every tensor input, but received sizes {sorted(sizes)}."
            )
        self._register(args, kwargs)
        for i, a in enumerate(args):
            if isinstance(a, Tensor):
                getattr(self, f"_arg_{i}").append(a.detach())
        for k, v in kwargs.items():
            if isinstance(v, Tensor):
                getattr(self, f"_kw_{k}").append(v.detach())
        self.base_metric.update(*args, **kwargs)

    def reset(self) -> None:
        """Forget the stored samples and the point-estimate copy's state."""
        super().reset()
        self.base_metric.reset()

    # ----------------------------------------------------------------- compute
    def _stored(self) -> tuple[list[Any], dict[str, Any], int]:
        assert self._arg_spec is not None
        pos, kw = self._arg_spec
        args = [dim_zero_cat(getattr(self, f"_arg_{i}")) if k == "tensor" else k[1] for i, k in enumerate(pos)]
        kwargs = {name: dim_zero_cat(getattr(self, f"_kw_{name}")) if k == "tensor" else k[1] for name, k in kw}
        n = next(a.shape[0] for a in list(args) + list(kwargs.values()) if isinstance(a, Tensor))
        return args, kwargs, n

    @staticmethod
    def _evaluate(metric: Metric, args: list[Any], kwargs: dict[str, Any], index: Optional[Tensor]) -> Tensor:
        metric.reset()
        if index is not None:
            args = [a[index] if isinstance(a, Tensor) else a for a in args]
            kwargs = {k: v[index] if isinstance(v, Tensor) else v for k, v in kwargs.items()}
            if int(index.numel()) == 0:
                return torch.tensor(float("nan"))
        metric.update(*args, **kwargs)
        value = metric.compute()
        if not isinstance(value, Tensor):
            raise TypeError(
                "BootstrapMetric supports metrics whose `compute` returns a tensor, but "
                f"{metric.__class__.__name__} returned {type(value).__name__}."
            )
        return value.detach().to(torch.get_default_dtype() if not value.is_floating_point() else value.dtype)

    def compute(self) -> EngineOutput:
        """Run the ``B`` replicates (and the jackknife if requested) on the gathered samples."""
        if self._arg_spec is None:
            raise RuntimeError("BootstrapMetric.compute() was called before any update.")
        if not self._warned_slow:
            self._warned_slow = True
            _rank_zero_warn(
                f"BootstrapMetric has no fast engine for {self.base_metric.__class__.__name__} with "
                f"resampling='{self.resampling}'; it uses the generic path, which re-runs update/compute "
                f"{self.num_bootstraps} times in a Python loop (slow).",
            )
        value = self.base_metric.compute()
        if not isinstance(value, Tensor):
            raise TypeError(
                "BootstrapMetric supports metrics whose `compute` returns a tensor, but "
                f"{self.base_metric.__class__.__name__} returned {type(value).__name__}."
            )
        args, kwargs, n = self._stored()
        device = next(a.device for a in list(args) + list(kwargs.values()) if isinstance(a, Tensor))
        work = _no_sync(deepcopy(self.base_metric))
        gen = self.generator(device, stream=0)
        if self.need_jackknife and not self._warned_jackknife:
            self._warned_jackknife = True
            _rank_zero_warn(
                f"BCa on the generic path computes the jackknife by brute force: n = {n} re-evaluations of "
                f"{self.base_metric.__class__.__name__} (O(n))."
            )
        replicates = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # undefined replicates are reported by the interval code
            for _ in range(self.num_bootstraps):
                if self.resampling == "multinomial":
                    idx = torch.randint(n, (n,), generator=gen, device=device)
                    replicates.append(self._evaluate(work, args, kwargs, idx))
                elif self.resampling == "poisson":
                    counts = torch.poisson(torch.ones(n, device=device), generator=gen).long()
                    idx = torch.repeat_interleave(torch.arange(n, device=device), counts, output_size=int(counts.sum()))
                    replicates.append(self._evaluate(work, args, kwargs, idx))
                else:  # bayesian: Dirichlet(1, ..., 1) weights, scaled to sum to n
                    w = torch.empty(n, device=device, dtype=torch.float64).exponential_(generator=gen)
                    w = (w * (n / w.sum())).to(torch.get_default_dtype())
                    ref = (
                        args[0]
                        if args and isinstance(args[0], Tensor)
                        else next(v for v in kwargs.values() if isinstance(v, Tensor))
                    )
                    user_w = kwargs.get(self._weight_arg)
                    if isinstance(user_w, Tensor):  # the caller's own weights compose with the Dirichlet ones
                        w = w.reshape((n,) + (1,) * (user_w.ndim - 1)) * user_w
                    else:
                        w = w.reshape((n,) + (1,) * (ref.ndim - 1))
                    replicates.append(self._evaluate(work, args, {**kwargs, self._weight_arg: w}, None))
            reps = torch.stack([r.to(device).reshape(value.shape) for r in replicates])

            jackknife = None
            if self.need_jackknife:
                if n < 2:
                    jackknife = torch.full((1, *value.shape), float("nan"), device=device)
                else:
                    keep = torch.ones(n, dtype=torch.bool, device=device)
                    rows = []
                    for i in range(n):
                        keep[i] = False
                        rows.append(self._evaluate(work, args, kwargs, keep.nonzero().squeeze(1)))
                        keep[i] = True
                    jackknife = torch.stack([r.to(device).reshape(value.shape) for r in rows])
        return EngineOutput(value=value, replicates=reps, jackknife=jackknife, jackknife_weights=None)
