"""``PairedBootstrapMetric``: is model A better than model B on the same examples? And ``paired_verdict``.

A paired comparison changes only the *statistic* of the bootstrap: each replicate is one resample of the
examples (one weight per unit), shared by both models, and the statistic returns both models' metric on it.
The engines do it without a loop over replicates:

- confusion family: the joint (target, pred_a, pred_b) cells (C³, or 8 per label for multilabel) are counted;
  a replicate reweights the joint cells, and each model's confusion matrix is a marginal of them;
- ranking family (AUROC, average precision, exact thresholds): one weight vector per replicate over the
  samples, applied to both score vectors;
- anything else: the generic path evaluates two clones of the metric on the same resample (slow; warns once).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from copy import deepcopy
from dataclasses import dataclass
from typing import Any, ClassVar, Optional, Union

import torch
from torch import Tensor
from torchmetrics import Metric

from lightning_ci.bootstrap._engine import EngineOutput
from lightning_ci.bootstrap.metric import BootstrapMetric
from lightning_ci.intervals import _bca_levels, _rank_zero_warn, _sorted_valid, _span, bootstrap_std

__all__ = ["PairedBootstrapMetric", "PairedClones", "PairedVerdict", "interval_p_value", "paired_verdict"]


class PairedClones(Metric):
    """Two clones of a metric updated side by side: ``update(preds_a, preds_b, target, *rest)``.

    ``compute()`` stacks both values (``[2, *S]``). The generic engine bootstraps it like any metric, so a
    replicate resamples the examples once for both models.
    """

    full_state_update: ClassVar[bool] = False

    def __init__(self, base_metric: Metric) -> None:
        super().__init__()
        self.metric_a = deepcopy(base_metric)
        self.metric_b = deepcopy(base_metric)

    @property
    def display_name(self) -> str:
        """The compared metric's class name, for messages (``"MeanSquaredError (paired)"``)."""
        return f"{self.metric_a.__class__.__name__} (paired)"

    def update(self, preds_a: Any, preds_b: Any, target: Any, *args: Any, **kwargs: Any) -> None:
        self.metric_a.update(preds_a, target, *args, **kwargs)
        self.metric_b.update(preds_b, target, *args, **kwargs)

    def compute(self) -> Tensor:
        return torch.stack([torch.as_tensor(self.metric_a.compute()), torch.as_tensor(self.metric_b.compute())])

    def reset(self) -> None:
        super().reset()
        self.metric_a.reset()
        self.metric_b.reset()

    def persistent(self, mode: bool = False) -> None:
        """Save both clones' states in ``state_dict`` (or not), so that a paired evaluation resumes."""
        super().persistent(mode)
        self.metric_a.persistent(mode)
        self.metric_b.persistent(mode)


# --------------------------------------------------------------------------------------------------------------
# p-value: the inverted interval
# --------------------------------------------------------------------------------------------------------------
def _crossing_levels(sorted_reps: Tensor, counts: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """Where the linear-interpolation quantile function ``Q`` of the valid replicates crosses ``t``.

    Returns:
        ``(q_up, q_lo)`` per element: ``q_up = max{q : Q(q) <= t}`` (0 if ``Q(0) > t``) and
        ``q_lo = min{q : Q(q) >= t}`` (1 if ``Q(1) < t``). ``Q`` is continuous and non-decreasing, so
        ``Q(q) > t`` iff ``q > q_up`` and ``Q(q) < t`` iff ``q < q_lo``.
    """
    valid = ~torch.isnan(sorted_reps)
    t0 = t.unsqueeze(0)
    m = counts.clamp(min=1)
    last = (m - 1).clamp(min=1).double()

    def level(k: Tensor, strict: bool) -> Tensor:
        # k = #{x <= t} (strict False) or #{x < t} (strict True); the crossing lies between x[k-1] and x[k]
        lo_i = (k - 1).clamp(min=0, max=None)
        hi_i = torch.minimum(k, m - 1)
        x_lo = torch.gather(sorted_reps, 0, lo_i.unsqueeze(0)).squeeze(0)
        x_hi = torch.gather(sorted_reps, 0, hi_i.unsqueeze(0)).squeeze(0)
        gap = x_hi - x_lo
        frac = torch.where(gap > 0, (t - x_lo) / torch.where(gap > 0, gap, torch.ones_like(gap)), 0.0)
        if not strict:  # max{q : Q(q) <= t}: at x[k-1] <= t < x[k]
            pos = lo_i.double() + frac.clamp(0, 1)
            out = torch.where(k == 0, 0.0, torch.where(k >= m, 1.0, pos / last))
        else:  # min{q : Q(q) >= t}: at x[k-1] < t <= x[k]
            pos = lo_i.double() + frac.clamp(0, 1)
            out = torch.where(k == 0, 0.0, torch.where(k >= m, 1.0, pos / last))
        return torch.where(m > 1, out, torch.where(k == 0, 0.0, 1.0))

    below_eq = ((sorted_reps <= t0) & valid).sum(0)
    below = ((sorted_reps < t0) & valid).sum(0)
    return level(below_eq, False), level(below, True)


def interval_p_value(
    replicates: Tensor,
    estimate: Tensor,
    *,
    method: str,
    null: float = 0.0,
    jackknife: Optional[Tensor] = None,
    jackknife_weights: Optional[Tensor] = None,
) -> Tensor:
    """Two-sided p-value of ``estimate == null`` by inverting the bootstrap interval of ``method``.

    ``p`` is the smallest ``alpha`` at which the two-sided ``(1 - alpha)`` interval (as
    :func:`lightning_ci.intervals.confidence_interval` makes it, widened to contain the estimate as
    :class:`BootstrapMetric` does) excludes ``null``: so ``p < alpha`` exactly when that interval excludes
    ``null``. Degenerate elements (all replicates equal) have the point interval: ``p = 0`` if the estimate
    differs from ``null``, else 1. NaN where the estimate is NaN or no replicate is valid.

    Args:
        replicates: ``[B, *S]``.
        estimate: ``S``.
        method: ``"percentile"``, ``"basic"``, ``"normal"`` or ``"bca"``.
        null: the value tested.
        jackknife: ``[m, *S]`` leave-one-out values (BCa).
        jackknife_weights: ``[m]`` their multiplicities.

    Returns:
        float64 tensor of shape ``S`` in ``[0, 1]``.

    Example:
        >>> import torch
        >>> reps = torch.linspace(-1.0, 9.0, 101)  # 10 of 100 gaps below 0: Q(0.1) = 0
        >>> interval_p_value(reps, torch.tensor(4.0), method="percentile")
        tensor(0.2000, dtype=torch.float64)
    """
    reps = replicates.double()
    est = torch.as_tensor(estimate, device=reps.device).double()
    sorted_reps, counts = _sorted_valid(reps)
    t = torch.full_like(est, float(null))
    if method == "normal":
        se = bootstrap_std(reps).double()
        z = (est - t).abs() / torch.where(se > 0, se, torch.ones_like(se))
        p = torch.where(se > 0, 2 * torch.special.ndtr(-z), torch.ones_like(z))
        p_low = p_high = p  # symmetric: one side excludes exactly when the other does not matter
        side_low, side_high = est > t, est < t
        p = torch.where(side_low | side_high, p, torch.ones_like(p))
    else:
        if method == "basic":  # [2θ - Q(1-α/2), 2θ - Q(α/2)]: lower > t iff Q(1-α/2) < 2θ - t
            q_up, q_lo = _crossing_levels(sorted_reps, counts, 2 * est - t)
            p_low = 2 * (1 - q_lo)  # lower bound above t
            p_high = 2 * q_up  # upper bound below t
        else:
            q_up, q_lo = _crossing_levels(sorted_reps, counts, t)
            p_low = 2 * q_up  # Q(a1) > t iff a1 > q_up
            p_high = 2 * (1 - q_lo)  # Q(a2) < t iff a2 < q_lo
            if method == "bca":
                if jackknife is None:
                    raise ValueError("Method `bca` needs the jackknife values (argument `jackknife`) but received None")
                # the BCa levels use this alpha only for the usable mask; a1(alpha) = Φ(z0 + w/(1 - a·w)),
                # w = z0 + z_{alpha/2}, inverted: w = w'/(1 + a·w'), w' = Φ⁻¹(level) - z0
                _, _, usable = _bca_levels(
                    sorted_reps, counts, est, 0.025, jackknife.to(reps.device), jackknife_weights
                )
                z0, a = _bca_z0_a(sorted_reps, counts, est, jackknife.to(reps.device), jackknife_weights)

                def invert(level: Tensor, upper: bool) -> Tensor:
                    w1 = torch.special.ndtri(level.clamp(0, 1)) - z0
                    w = w1 / (1 + a * w1)
                    z = w - z0  # z_{alpha/2} (lower) or z_{1-alpha/2} (upper)
                    alpha = 2 * torch.special.ndtr(z) if not upper else 2 * (1 - torch.special.ndtr(z))
                    alpha = torch.where(level <= 0, 0.0 if not upper else 2.0, alpha)
                    alpha = torch.where(level >= 1, 2.0 if not upper else 0.0, alpha)
                    return torch.nan_to_num(alpha, nan=2.0)

                p_low = torch.where(usable, invert(q_up, False), p_low)
                p_high = torch.where(usable, invert(q_lo, True), p_high)
        # the interval is widened to contain the estimate: a side can only exclude t if the estimate does too
        p_low = torch.where(est > t, p_low, torch.full_like(p_low, 2.0))
        p_high = torch.where(est < t, p_high, torch.full_like(p_high, 2.0))
        p = torch.minimum(p_low, p_high)
    degenerate = (counts > 0) & (_span(sorted_reps, counts) == 0)
    p = torch.where(degenerate, torch.where(est != t, 0.0, 1.0), p)
    p = torch.where((counts == 0) | torch.isnan(est), float("nan"), p)
    return p.clamp(0.0, 1.0)


def _bca_z0_a(
    sorted_reps: Tensor, counts: Tensor, est: Tensor, jackknife: Tensor, weights: Optional[Tensor]
) -> tuple[Tensor, Tensor]:
    """BCa's bias correction ``z0`` and acceleration ``a``, as :func:`lightning_ci.intervals._bca_levels`."""
    valid = ~torch.isnan(sorted_reps)
    theta = est.unsqueeze(0)
    below = ((sorted_reps < theta) & valid).sum(0)
    below_eq = ((sorted_reps <= theta) & valid).sum(0)
    z0 = torch.special.ndtri((below + below_eq).double() / (2.0 * counts.clamp(min=1).double()))
    jk = jackknife.double()
    shape = (jk.shape[0],) + (1,) * (jk.ndim - 1)
    w = (
        torch.ones(shape, dtype=torch.float64, device=jk.device)
        if weights is None
        else weights.to(device=jk.device, dtype=torch.float64).reshape(shape)
    )
    w = torch.where(torch.isnan(jk), torch.zeros_like(jk), w.expand_as(jk))
    jk = torch.nan_to_num(jk, nan=0.0)
    jbar = (w * jk).sum(0) / w.sum(0).clamp(min=torch.finfo(torch.float64).tiny)
    d = jbar.unsqueeze(0) - jk
    a = (w * d**3).sum(0) / (6.0 * (w * d**2).sum(0).clamp(min=torch.finfo(torch.float64).tiny) ** 1.5)
    return z0, a


# --------------------------------------------------------------------------------------------------------------
# the metric
# --------------------------------------------------------------------------------------------------------------
class PairedBootstrapMetric(BootstrapMetric):
    r"""Paired bootstrap comparison of two models scored on the same examples: is A better than B?

    ``update(preds_a, preds_b, target)`` takes both models' predictions on the same examples, each in the
    wrapped metric's input format (and, like :class:`BootstrapMetric`, an optional ``groups=`` of one id per
    example for a cluster bootstrap). Every bootstrap replicate is one resample of the examples, shared by
    both models: that is what makes the comparison *paired*. When the two models mostly agree, the
    difference is far less uncertain than either model's metric, and the overlap of two marginal intervals is
    a much weaker test than this one.

    ``compute()`` returns a dict of tensors (each of the wrapped metric's shape):

    - ``"value_a"``, ``"value_b"``: the unwrapped metric on each model's predictions;
    - ``"difference"``: ``value_a - value_b``;
    - ``"lower"``, ``"upper"``: the interval for the difference at ``confidence_level`` (same methods and
      degenerate-case handling as :class:`BootstrapMetric`; clipped to the range of a difference of the
      metric, e.g. ``[-1, 1]`` for accuracy). ``method="auto"`` is the normal interval here,
      ``difference ± z·std``, not BCa or the percentile interval (the Bayesian bootstrap keeps the percentile
      interval). When few examples are classified differently by the two models, the bootstrap distribution
      of the difference is discrete and lumpy, and both intervals that follow its shape were too liberal on a
      true null at ``alpha = 0.05``: BCa up to 10% (accuracy with 5 discordant pairs, macro-F1 at n = 100), the
      percentile interval up to 7% (macro-F1 at n = 100). The sampling distribution of a difference between two
      models is close to symmetric about its centre, and the symmetric normal interval held the level on the
      same simulated sets (``docs/validation.md``, Parts 4, 4b and 4d);
    - ``"std"``: the bootstrap standard error of the difference;
    - ``"p_value"``: two-sided, for the null of no difference.

    **The p-value is the inverted interval.** ``p_value`` is the smallest ``alpha`` at which the two-sided
    ``(1 - alpha)`` interval of the method in use excludes 0, so ``p < alpha`` exactly when the ``1 - alpha``
    interval excludes 0, and the p-value and the interval never disagree. Why this and not the shifted null
    distribution (Berg-Kirkpatrick et al., 2012: the fraction of replicates whose difference exceeds twice the
    observed one)? The shifted test assumes the bootstrap distribution of the difference has the same shape
    under the null as around the estimate, which the BCa interval explicitly does not assume (it corrects bias
    and skew); inverting the interval is defined for every method and resampling mode, and cannot contradict
    the interval printed next to it. For the default (normal) interval it is ``2·Φ(-|difference| / std)``; for
    the percentile method it is twice the smaller tail fraction of replicates beyond 0 (with linear
    interpolation, as the quantiles), and 0 when no replicate lies beyond 0: read that as ``p < 1/B``.
    Identical predictions give a degenerate (point) interval at 0 and ``p = 1``, with a warning.

    The engines (chosen automatically, vectorised over replicates):

    - confusion family (accuracy, precision, recall, F-beta, specificity, Jaccard, MCC, Cohen's kappa):
      joint (target, pred_a, pred_b) cells, C³ for multiclass and 8 per label for multilabel, so a replicate
      costs ``O(B·C³)`` whatever n is, and the BCa jackknife has at most C³ distinct values;
    - ranking family (AUROC, average precision with ``thresholds=None``): one weight vector per replicate over
      the samples, shared by both score vectors;
    - anything else: the generic path (two clones evaluated on the same resample; slow, warns once). Binned
      ranking metrics go there too.

    Use :func:`paired_verdict` to turn a result (and an optional equivalence margin) into a decision.

    Args:
        base_metric: the metric both models are scored with. It is copied; the instance passed in is not
            modified.
        num_bootstraps: number of bootstrap replicates ``B`` (an integer of at least 2).
        confidence_level: nominal level of the two-sided interval of the difference, in ``(0, 1)``.
        method: ``"auto"`` (default: ``"normal"``, or ``"percentile"`` with ``resampling="bayesian"``; see
            above), ``"percentile"``, ``"basic"``, ``"normal"`` or ``"bca"``.
        resampling: ``"multinomial"``, ``"poisson"`` or ``"bayesian"`` (as :class:`BootstrapMetric`).
        seed: fixes the result; ``None`` draws one with :mod:`secrets` (the global torch RNG is never used).
        kwargs: torchmetrics ``Metric`` keyword arguments, passed on to the replicate engine.

    Raises:
        TypeError: if ``base_metric`` is not a torchmetrics ``Metric`` or ``seed`` is not an int or None.
        ValueError: on the bad arguments :class:`BootstrapMetric` refuses, and in ``update`` when
            ``preds_a``, ``preds_b`` and ``target`` do not have matching shapes.

    Example:
        >>> import torch
        >>> from torchmetrics.classification import BinaryAccuracy
        >>> from lightning_ci import PairedBootstrapMetric, paired_verdict
        >>> target = torch.tensor([1, 0, 1, 1, 0, 1, 0, 0, 1, 0] * 30)
        >>> preds_a = target.clone()
        >>> preds_a[::10] = 1 - preds_a[::10]  # A is wrong on 10% of the examples
        >>> preds_b = preds_a.clone()
        >>> preds_b[1::5] = 1 - preds_b[1::5]  # B is wrong on 20% more
        >>> metric = PairedBootstrapMetric(BinaryAccuracy(), num_bootstraps=500, seed=0)
        >>> metric.update(preds_a, preds_b, target)
        >>> result = metric.compute()
        >>> sorted(result)
        ['difference', 'lower', 'p_value', 'std', 'upper', 'value_a', 'value_b']
        >>> result["value_a"], result["value_b"], result["difference"]
        (tensor(0.9000), tensor(0.7000), tensor(0.2000))
        >>> bool(0 < result["lower"] < result["difference"] < result["upper"])
        True
        >>> paired_verdict(result).verdict
        'A better'
    """

    _paired: ClassVar[bool] = True
    _view_kinds: ClassVar[tuple[str, ...]] = ("difference", "lower", "upper", "p_value", "std")
    _view_suffix: ClassVar[dict[str, str]] = {
        "difference": "",
        "lower": "_lower",
        "upper": "_upper",
        "p_value": "_p_value",
        "std": "_std",
    }

    def __init__(
        self,
        base_metric: Metric,
        num_bootstraps: int = 1000,
        confidence_level: float = 0.95,
        method: str = "auto",
        resampling: str = "multinomial",
        seed: Optional[int] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(base_metric, num_bootstraps, confidence_level, method, resampling, seed, **kwargs)
        low, high = self._range
        self._metric_range = self._range
        # the range of a difference of two values of the metric
        self._range = (low - high, high - low) if low is not None and high is not None else (None, None)
        self._batch_pair: Optional[PairedClones] = None

    @staticmethod
    def _check_shapes(preds_a: Any, preds_b: Any, target: Any) -> None:
        for name, value in (("preds_a", preds_a), ("preds_b", preds_b), ("target", target)):
            if not isinstance(value, Tensor):
                raise TypeError(f"Expected argument `{name}` to be a tensor but received {type(value).__name__}")
        if preds_a.shape != preds_b.shape:
            raise ValueError(
                "Expected `preds_a` and `preds_b` to have the same shape (two models' predictions on the same "
                f"examples) but received {tuple(preds_a.shape)} and {tuple(preds_b.shape)}"
            )
        if preds_a.ndim == 0 or target.ndim == 0 or preds_a.shape[0] != target.shape[0]:
            raise ValueError(
                "Expected `preds_a`, `preds_b` and `target` to have the same number of examples (dim 0) but "
                f"received shapes {tuple(preds_a.shape)}, {tuple(preds_b.shape)} and {tuple(target.shape)}"
            )

    def update(  # type: ignore[override]
        self,
        preds_a: Tensor,
        preds_b: Tensor,
        target: Tensor,
        *args: Any,
        groups: Optional[Tensor] = None,
        **kwargs: Any,
    ) -> None:
        """Add both models' predictions on a batch of the same examples.

        Args:
            preds_a: model A's predictions, in the wrapped metric's input format.
            preds_b: model B's predictions, of the same shape.
            target: the targets, shared by both.
            args: further positional arguments of the wrapped metric (generic path only).
            groups: optional integer tensor, one group id per example: resample groups (cluster bootstrap),
                as in :meth:`BootstrapMetric.update`.
            kwargs: further keyword arguments of the wrapped metric (generic path only).

        Raises:
            ValueError: on mismatched shapes of ``preds_a``, ``preds_b`` and ``target``, and on the ``groups``
                errors of :meth:`BootstrapMetric.update`.
            TypeError: if an input is not a tensor.
        """
        self._check_shapes(preds_a, preds_b, target)
        super().update(preds_a, preds_b, target, *args, groups=groups, **kwargs)

    def forward(  # type: ignore[override]
        self,
        preds_a: Tensor,
        preds_b: Tensor,
        target: Tensor,
        *args: Any,
        groups: Optional[Tensor] = None,
        **kwargs: Any,
    ) -> Tensor:
        """Update the state and return ``[value_a, value_b]`` on this batch alone (stacked on dim 0)."""
        self.update(preds_a, preds_b, target, *args, groups=groups, **kwargs)
        if self._batch_pair is None:
            self._batch_pair = PairedClones(self._template).to(self.device)
        self._batch_pair.reset()
        self._batch_pair.update(preds_a, preds_b, target, *args, **kwargs)
        value = self._batch_pair.compute()
        self._batch_pair.reset()
        return value

    def compute(self) -> dict[str, Tensor]:  # type: ignore[override]
        """Both values, their difference, its interval, standard error and p-value.

        Returns:
            ``{"value_a", "value_b", "difference", "lower", "upper", "std", "p_value"}``.
        """
        self._sync_seed()
        import warnings

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*was called before the ``update`` method.*")
            out = self.engine.compute()
        value = out.value
        shape = value.shape[1:]
        dtype = value.dtype if value.is_floating_point() else torch.get_default_dtype()
        value_a, value_b = value[0], value[1]
        diff = value_a.to(dtype) - value_b.to(dtype)
        result = {"value_a": value_a, "value_b": value_b, "difference": diff}
        if out.replicates.shape[0] == 0:
            _rank_zero_warn(
                "PairedBootstrapMetric.compute() found no samples to resample (it was called before any `update`, "
                "or every sample was ignored or empty); the bounds, std and p-value are NaN."
            )
            nan = torch.full(shape, float("nan"), dtype=dtype, device=value.device)
            return {**result, "lower": nan, "upper": nan.clone(), "std": nan.clone(), "p_value": nan.clone()}
        reps = out.replicates.reshape(out.replicates.shape[0], 2, *shape)
        diff_reps = reps[:, 0] - reps[:, 1]
        jack = None if out.jackknife is None else out.jackknife.reshape(-1, 2, *shape)
        jack = None if jack is None else jack[:, 0] - jack[:, 1]
        weights = out.jackknife_weights
        diff_out = EngineOutput(value=diff, replicates=diff_reps, jackknife=jack, jackknife_weights=weights)
        lower, upper = self._interval(diff_out, self.method)
        p_value = interval_p_value(
            diff_reps, diff, method=self.method, jackknife=jack,
            jackknife_weights=None if weights is None else weights.reshape(-1),
        )  # fmt: skip
        std = bootstrap_std(diff_reps).to(dtype)
        return {**result, "lower": lower, "upper": upper, "std": std, "p_value": p_value.to(dtype)}

    def reset(self) -> None:
        """Reset to a fresh state (the seed is kept)."""
        super().reset()
        if self._batch_pair is not None:
            self._batch_pair.reset()

    def plot(
        self,
        val: Optional[Union[dict[str, Tensor], Sequence[dict[str, Tensor]]]] = None,
        ax: Optional[Any] = None,
    ) -> tuple[Any, Any]:
        """Plot the difference A − B with its interval (one result), or a band over a sequence of results.

        Args:
            val: a result of :meth:`compute`, or a sequence of them. If ``None``, :meth:`compute` is called.
            ax: a matplotlib axis to draw on; a new figure is made if ``None``.

        Returns:
            ``(figure, axis)``, with a dashed line at 0.
        """
        val = self.compute() if val is None else val

        def as_plain(r: dict[str, Tensor]) -> dict[str, Tensor]:
            return {"value": r["difference"], "lower": r["lower"], "upper": r["upper"]}

        if isinstance(val, dict):
            plain: Any = as_plain(val)
        elif isinstance(val, Sequence) and len(val) > 0 and all(isinstance(v, dict) for v in val):
            plain = [as_plain(v) for v in val]
        else:
            raise ValueError("Expected `val` to be a result dict of `compute()` or a non-empty sequence of them.")
        saved = self.__dict__["plot_lower_bound"], self.__dict__["plot_upper_bound"]
        self.__dict__["plot_lower_bound"] = self.__dict__["plot_upper_bound"] = None
        try:
            fig, ax = BootstrapMetric.plot(self, plain, ax)
        finally:
            self.__dict__["plot_lower_bound"], self.__dict__["plot_upper_bound"] = saved
        ax.axhline(0.0, color="gray", linestyle="--", linewidth=1)
        ax.set_ylabel(f"{self._template.__class__.__name__}: A − B")
        return fig, ax

    def loggable(self, name: str, include_std: bool = False) -> dict[str, Metric]:
        """Views of the result for ``LightningModule.log_dict``, as :meth:`BootstrapMetric.loggable`.

        Returns ``{name, f"{name}_lower", f"{name}_upper", f"{name}_p_value"[, f"{name}_std"]}``: the
        difference A − B, its bounds and p-value (per element ``f"{name}_{i}"``... for vector metrics).

        Args:
            name: the logging name, e.g. ``"val_acc_diff"``.
            include_std: also return the ``f"{name}_std"`` view(s).

        Returns:
            An ordered ``dict`` of names to stateless ``Metric`` views.
        """
        return super().loggable(name, include_std)


# --------------------------------------------------------------------------------------------------------------
# the decision
# --------------------------------------------------------------------------------------------------------------
VERDICTS = ("A better", "B better", "equivalent within ±margin", "inconclusive")


@dataclass(frozen=True)
class PairedVerdict:
    """The decision of :func:`paired_verdict`.

    Attributes:
        verdict: one of ``"A better"``, ``"B better"``, ``"equivalent within ±margin"``, ``"inconclusive"``.
        sentence: one line, e.g. ``A − B = +1.5 pt [+0.4, +2.6], p = 0.008: A is better``.
        difference: A − B (metric units).
        lower: lower bound of its interval.
        upper: upper bound.
        p_value: the two-sided p-value of no difference.
        margin: the equivalence margin used (metric units).
    """

    verdict: str
    sentence: str
    difference: float
    lower: float
    upper: float
    p_value: float
    margin: float

    def __str__(self) -> str:
        return self.sentence


def _format_p(p: float) -> str:
    if math.isnan(p):
        return "p = nan"
    if p < 0.001:
        return "p < 0.001"
    return f"p = {p:.3f}"


def paired_verdict(
    result: dict[str, Tensor],
    margin: float = 0.0,
    *,
    scale: float = 100.0,
    unit: str = "pt",
    digits: int = 1,
    names: tuple[str, str] = ("A", "B"),
    index: Optional[int] = None,
) -> PairedVerdict:
    """Turn a :class:`PairedBootstrapMetric` result into a verdict with a one-line explanation.

    With ``[lower, upper]`` the interval of ``A − B`` and ``m = margin``:

    - ``"A better"``: the interval lies above ``+m`` (``lower > m``);
    - ``"B better"``: the interval lies below ``−m`` (``upper < −m``);
    - ``"equivalent within ±margin"``: the interval lies inside ``[−m, +m]`` (two one-sided tests at the
      interval's level; give a margin > 0 to ask "is B as good as A within m?");
    - ``"inconclusive"``: anything else. A non-significant difference is *not* equivalence.

    ``margin`` is in the metric's own units (0.01 is one point of accuracy). ``scale`` and ``unit`` only format
    the sentence: the default shows a [0, 1] metric in points (``scale=100, unit="pt"``); use ``scale=1,
    unit=""`` for metrics on another scale (e.g. MCC or an error).

    Args:
        result: the dict returned by :meth:`PairedBootstrapMetric.compute`.
        margin: the equivalence margin, ``>= 0``, in metric units.
        scale: multiplies the numbers in the sentence.
        unit: the unit written after the difference (``""`` for none).
        digits: decimals of the numbers in the sentence.
        names: how the sentence names the two models.
        index: the element of a vector result (``average=None``); required when the result has several.

    Returns:
        A :class:`PairedVerdict`; ``str()`` of it is the sentence.

    Raises:
        ValueError: if ``result`` lacks a key, ``margin`` is negative or not finite, or a vector result is
            given without ``index``.

    Example:
        >>> import torch
        >>> result = {"difference": torch.tensor(0.015), "lower": torch.tensor(0.004),
        ...           "upper": torch.tensor(0.026), "p_value": torch.tensor(0.008)}
        >>> print(paired_verdict(result))
        A − B = +1.5 pt [+0.4, +2.6], p = 0.008: A is better
        >>> paired_verdict(result, margin=0.03).verdict
        'equivalent within ±margin'
    """
    missing = [k for k in ("difference", "lower", "upper", "p_value") if k not in result]
    if missing:
        raise ValueError(f"Expected a PairedBootstrapMetric result, but the keys {missing} are missing")
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not math.isfinite(margin) or margin < 0:
        raise ValueError(f"Expected argument `margin` to be a finite number >= 0 but received {margin!r}")

    def pick(key: str) -> float:
        t = torch.as_tensor(result[key]).detach().reshape(-1)
        if index is None:
            if t.numel() != 1:
                raise ValueError(
                    f"Expected a scalar result, but `{key}` has {t.numel()} elements: pass `index` to choose one"
                )
            return float(t[0])
        return float(t[index])

    diff, lower, upper, p = pick("difference"), pick("lower"), pick("upper"), pick("p_value")
    m = float(margin)
    a, b = names
    u = f" {unit}" if unit else ""
    if lower > m:
        verdict, tail = "A better", f"{a} is better"
    elif upper < -m:
        verdict, tail = "B better", f"{b} is better"
    elif -m <= lower and upper <= m:
        verdict, tail = "equivalent within ±margin", f"equivalent within ±{m * scale:.{digits}f}{u}"
    else:
        verdict, tail = "inconclusive", "inconclusive"
    sentence = (
        f"{a} − {b} = {diff * scale:+.{digits}f}{u} [{lower * scale:+.{digits}f}, {upper * scale:+.{digits}f}], "
        f"{_format_p(p)}: {tail}"
    )
    return PairedVerdict(verdict, sentence, diff, lower, upper, p, m)
