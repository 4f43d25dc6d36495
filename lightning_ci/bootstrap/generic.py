"""The generic replicate engine: any torchmetrics ``Metric``, correct but slow.

It stores the tensor inputs of every ``update`` as ``cat`` states (dim 0 = samples, so they sync across
DDP ranks like any torchmetrics cat state) and, at ``compute``, re-runs ``update``/``compute`` of a private
clone of the metric once per bootstrap replicate. This is the only place in lightning-ci with a Python
loop over the replicates; it says so once per instance with a ``UserWarning``.

Before drawing, the stored samples are put in a canonical order defined by their content (the bit patterns
of all their tensor inputs), so the replicates depend only on the multiset of samples and the seed: not on
batch sizes, the order of the batches, or how DDP ranks interleaved the samples.
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

from lightning_ci.bootstrap._engine import BootstrapEngine, EngineOutput, expand_groups
from lightning_ci.intervals import _rank_zero_warn

__all__ = ["GenericEngine"]

_WEIGHT_ARG_NAMES = ("sample_weight", "sample_weights", "weight", "weights")
# above this many key columns per sample, the canonical order sorts by two 64-bit hashes of the sample
_EXACT_KEY_COLUMNS = 16


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


def _weight_position(base_metric: Metric, name: Optional[str]) -> Optional[int]:
    """Position of the weight argument ``name`` among the positional parameters of ``base_metric.update``."""
    if name is None:
        return None
    try:
        params = list(inspect.signature(base_metric.update).parameters.values())
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return None
    positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return positional.index(name) if name in positional else None


def _bits(t: Tensor, n: int) -> Tensor:
    """``[n, d]`` int64 view of a tensor's samples: equal rows iff bit-identical samples."""
    t = t.detach().reshape(n, -1)
    if t.is_complex():
        t = torch.view_as_real(t).reshape(n, -1)
    if t.is_floating_point():
        t = t.contiguous().view({8: torch.int64, 4: torch.int32, 2: torch.int16}[t.element_size()])
    return t.long()


def canonical_order(tensors: list[Tensor], n: int) -> Tensor:
    """A permutation of the ``n`` samples that depends only on their content.

    Samples are sorted lexicographically by the bit patterns of all their tensor inputs (or, for samples of
    more than ``_EXACT_KEY_COLUMNS`` values, by two 64-bit hashes of them). Bit-identical samples are
    interchangeable, so the permuted data is the same whatever order the samples arrived in.

    Args:
        tensors: the stored inputs, each with the samples along dim 0.
        n: the number of samples.

    Returns:
        ``[n]`` long indices.
    """
    device = tensors[0].device
    if n <= 1:
        return torch.arange(n, device=device)
    key = torch.cat([_bits(t.to(device), n) for t in tensors], dim=1)
    if key.shape[1] > _EXACT_KEY_COLUMNS:
        # wrapping int64 multiply-adds with fixed odd multipliers: deterministic on every platform
        gen = torch.Generator().manual_seed(0x5EED)
        mult = torch.randint(-(2**62), 2**62, (key.shape[1], 2), generator=gen).mul_(2).add_(1).to(device)
        key = torch.stack([(key * mult[:, 0]).sum(1), (key * mult[:, 1]).sum(1)], dim=1)
    inverse = torch.unique(key, dim=0, return_inverse=True)[1]
    return torch.sort(inverse, stable=True).indices


def _name(metric: Metric) -> str:
    """How messages name the wrapped metric (a paired comparison's clones name the metric they compare)."""
    return getattr(metric, "display_name", metric.__class__.__name__)


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
        paired: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(base_metric, num_bootstraps, resampling, seed, need_jackknife, paired, **kwargs)
        # group ids (cluster bootstrap), one per stored sample, aligned with the stored inputs
        self.add_state("_groups", default=[], dist_reduce_fx="cat")
        self._weight_arg = _weight_argument(base_metric)
        self._weight_pos = _weight_position(base_metric, self._weight_arg)
        if resampling == "bayesian" and self._weight_arg is None:
            raise ValueError(
                f"The Bayesian bootstrap is not available for {_name(base_metric)}: the generic path "
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
            self._declare((pos, kw))
            return
        if (pos, kw) != self._arg_spec:
            raise ValueError(
                "BootstrapMetric (generic path) expects every `update` call to take the same arguments: tensors in "
                "the same positions and identical non-tensor values."
            )

    def _declare(self, spec: tuple[tuple[Any, ...], tuple[tuple[str, Any], ...]]) -> None:
        """Add the ``cat`` states of an argument spec ``(positional kinds, keyword kinds)``."""
        pos, kw = spec
        for i, kind in enumerate(pos):
            if kind == "tensor":
                self.add_state(f"_arg_{i}", default=[], dist_reduce_fx="cat", persistent=self._persistent_mode)
        for name, kind in kw:
            if kind == "tensor":
                self.add_state(f"_kw_{name}", default=[], dist_reduce_fx="cat", persistent=self._persistent_mode)
        self._arg_spec = spec

    def persistent(self, mode: bool = False) -> None:
        """Save the stored samples, and the point-estimate copy's states, in ``state_dict`` (or not)."""
        super().persistent(mode)
        self.base_metric.persistent(mode)

    def state_dict(self, destination: Any = None, prefix: str = "", keep_vars: bool = False) -> Any:
        destination = super().state_dict(destination=destination, prefix=prefix, keep_vars=keep_vars)
        if self._persistent_mode and self._arg_spec is not None:  # which arguments the stored states are
            destination[prefix + "_arg_spec"] = self._arg_spec
        return destination

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        spec = state_dict.pop(prefix + "_arg_spec", None)
        if spec is not None:
            spec = (tuple(spec[0]), tuple(tuple(item) for item in spec[1]))
            if self._arg_spec is None:
                self._declare(spec)
            elif spec != self._arg_spec:
                raise ValueError(
                    "Expected a BootstrapMetric state with the same `update` arguments as this metric's, but the "
                    f"state was saved with {spec} and this metric has {self._arg_spec}."
                )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def update(self, *args: Any, groups: Optional[Tensor] = None, **kwargs: Any) -> None:
        """Store the tensor inputs (samples along dim 0) and update the point-estimate copy.

        ``groups`` (one integer id per sample) makes the groups the resampled units.

        An empty batch (no samples) is skipped, as the fast engines skip it: torchmetrics' own ``update``
        rejects one for many metrics (``MulticlassAccuracy(top_k=2)``, ``PearsonCorrCoef``).
        """
        sizes = {a.shape[0] for a in list(args) + list(kwargs.values()) if isinstance(a, Tensor) and a.ndim > 0}
        if any(isinstance(a, Tensor) and a.ndim == 0 for a in list(args) + list(kwargs.values())):
            raise ValueError("BootstrapMetric (generic path) needs every tensor input to have samples along dim 0.")
        if len(sizes) != 1:
            raise ValueError(
                "BootstrapMetric (generic path) needs at least one tensor input and the same number of samples "
                f"(dim 0) in every tensor input, but received sizes {sorted(sizes)}."
            )
        ids = None if groups is None else expand_groups(groups, next(iter(sizes)), next(iter(sizes)))
        self._register(args, kwargs)
        if sizes == {0}:  # an empty batch adds no sample (many torchmetrics metrics cannot format one)
            return
        if ids is not None:
            self._groups.append(ids)
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
    def _evaluate(
        metric: Metric, args: list[Any], kwargs: dict[str, Any], index: Optional[Tensor], shape: torch.Size
    ) -> Tensor:
        """The metric on the samples ``index`` (all when None) of a replicate or a leave-one-out set.

        NaN of ``shape`` where the metric is undefined on that set: an empty replicate, or one the metric rejects
        (``R2Score`` on a single sample raises); the full data was computed without error before.
        """
        metric.reset()
        if index is not None:
            args = [a[index] if isinstance(a, Tensor) else a for a in args]
            kwargs = {k: v[index] if isinstance(v, Tensor) else v for k, v in kwargs.items()}
            if int(index.numel()) == 0:
                return torch.full(shape, float("nan"))
        try:
            metric.update(*args, **kwargs)
            value = metric.compute()
        except (ValueError, RuntimeError, IndexError, ZeroDivisionError):
            return torch.full(shape, float("nan"))
        if not isinstance(value, Tensor):
            raise TypeError(
                "BootstrapMetric supports metrics whose `compute` returns a tensor, but "
                f"{metric.__class__.__name__} returned {type(value).__name__}."
            )
        return value.detach().to(torch.get_default_dtype() if not value.is_floating_point() else value.dtype)

    def _has_samples(self) -> bool:
        """Whether any sample was stored (a tensor state of the first tensor argument is non-empty)."""
        name = next((n for n in self._defaults if n.startswith(("_arg_", "_kw_"))), None)
        if name is None:
            return False
        value = getattr(self, name)
        return value.numel() > 0 if isinstance(value, Tensor) else any(v.numel() > 0 for v in value)

    def _empty_output(self) -> EngineOutput:
        """No samples: the wrapped metric's own value on no data (NaN if it cannot compute one), no replicates."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                value = self.base_metric.compute()
        except Exception:  # e.g. a cat state with nothing to concatenate
            value = torch.tensor(float("nan"))
        if not isinstance(value, Tensor):
            value = torch.tensor(float("nan"))
        return EngineOutput(value=value, replicates=value.new_zeros((0, *value.shape), dtype=torch.float32))

    def _bayesian_arguments(
        self, args: list[Any], kwargs: dict[str, Any], w: Tensor, n: int
    ) -> tuple[list[Any], dict[str, Any]]:
        """Pass the Dirichlet weights ``w`` ``[n]`` as the weight argument, times the caller's own weights."""
        positional = self._weight_pos is not None and len(args) > self._weight_pos
        user_w = args[self._weight_pos] if positional else kwargs.get(self._weight_arg)
        if isinstance(user_w, Tensor):  # the caller's own weights compose with the Dirichlet ones
            w = w.reshape((n,) + (1,) * (user_w.ndim - 1)) * user_w
        else:
            ref = next(a for a in list(args) + list(kwargs.values()) if isinstance(a, Tensor))
            w = w.reshape((n,) + (1,) * (ref.ndim - 1))
            if isinstance(user_w, (int, float)) and not isinstance(user_w, bool):
                w = w * user_w
        if positional:
            return [w if i == self._weight_pos else a for i, a in enumerate(args)], kwargs
        return args, {**kwargs, self._weight_arg: w}

    def compute(self) -> EngineOutput:
        """Run the ``B`` replicates (and the jackknife if requested) on the gathered samples."""
        if self._arg_spec is None or not self._has_samples():
            return self._empty_output()
        if not self._warned_slow:
            self._warned_slow = True
            _rank_zero_warn(
                f"BootstrapMetric has no fast engine for {_name(self.base_metric)} with "
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
        if n == 0:
            return self._empty_output()
        tensors = [a for a in list(args) + list(kwargs.values()) if isinstance(a, Tensor)]
        device = tensors[0].device
        ids = dim_zero_cat(self._groups).to(device) if len(self._groups) else None
        # content-defined order: the replicates do not depend on how the samples arrived (batches, DDP ranks)
        order = canonical_order(tensors if ids is None else [ids, *tensors], n)
        args = [a[order] if isinstance(a, Tensor) else a for a in args]
        kwargs = {k: v[order] if isinstance(v, Tensor) else v for k, v in kwargs.items()}
        # the units: samples, or groups (``unit[i]`` is the group of sample i, groups in sorted-id order)
        unit = torch.arange(n, device=device) if ids is None else torch.unique(ids[order], return_inverse=True)[1]
        num_units = n if ids is None else int(unit.max()) + 1
        shape = value.shape
        work = _no_sync(deepcopy(self.base_metric))
        gen = self.generator(device, stream=0)
        if self.need_jackknife and not self._warned_jackknife:
            self._warned_jackknife = True
            _rank_zero_warn(
                f"BCa on the generic path computes the jackknife by brute force: n = {n} re-evaluations of "
                f"{_name(self.base_metric)} (O(n))."
            )
        replicates = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # undefined replicates are reported by the interval code
            for _ in range(self.num_bootstraps):
                if self.resampling == "multinomial" and ids is None:
                    idx = torch.randint(n, (n,), generator=gen, device=device)
                    replicates.append(self._evaluate(work, args, kwargs, idx, shape))
                elif self.resampling in ("multinomial", "poisson"):
                    if self.resampling == "multinomial":  # G groups drawn with replacement
                        draw = torch.randint(num_units, (num_units,), generator=gen, device=device)
                        counts = torch.bincount(draw, minlength=num_units)
                    else:
                        counts = torch.poisson(torch.ones(num_units, device=device), generator=gen).long()
                    counts = counts[unit]  # every sample of a group comes with it
                    idx = torch.repeat_interleave(torch.arange(n, device=device), counts, output_size=int(counts.sum()))
                    replicates.append(self._evaluate(work, args, kwargs, idx, shape))
                else:  # bayesian: Dirichlet(1, ..., 1) weights over the units, scaled to sum to n
                    w = torch.empty(num_units, device=device, dtype=torch.float64).exponential_(generator=gen)[unit]
                    w = (w * (n / w.sum())).to(torch.get_default_dtype())
                    b_args, b_kwargs = self._bayesian_arguments(args, kwargs, w, n)
                    replicates.append(self._evaluate(work, b_args, b_kwargs, None, shape))
            reps = torch.stack([r.to(device).reshape(value.shape) for r in replicates])

            jackknife = None
            if self.need_jackknife:
                if num_units < 2:
                    jackknife = torch.full((1, *value.shape), float("nan"), device=device)
                else:  # leave one unit (sample or group) out
                    rows = [
                        self._evaluate(work, args, kwargs, (unit != i).nonzero().squeeze(1), shape)
                        for i in range(num_units)
                    ]
                    jackknife = torch.stack([r.to(device).reshape(value.shape) for r in rows])
        return EngineOutput(value=value, replicates=reps, jackknife=jackknife, jackknife_weights=None)
