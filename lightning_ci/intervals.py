"""Bootstrap confidence intervals from replicates: percentile, basic, normal and BCa.

Pure torch (no lightning, no torchmetrics). Every function works element-wise on a metric of any shape
``S``: replicates are ``[B, *S]`` and quantiles are always taken along ``dim=0``, never pooled across
elements (classes).

Conventions follow :func:`scipy.stats.bootstrap`:

- quantiles use linear interpolation between order statistics (``method="linear"``, numpy's default);
- the BCa bias correction ``z0`` counts replicates below the estimate with ties split in half
  (``(#{θ* < θ̂} + #{θ* <= θ̂}) / 2B``);
- the BCa acceleration comes from the (weighted) jackknife,
  ``a = Σ w (θ̄ - θ_i)^3 / (6 (Σ w (θ̄ - θ_i)^2)^{3/2})``;
- the standard error uses ``correction=1``.

Degenerate inputs never crash and never give a silent NaN: they give a sensible finite interval and a
``UserWarning`` (emitted on rank zero only under ``torch.distributed``).
"""

from __future__ import annotations

import warnings
from typing import Optional

import torch
from torch import Tensor

__all__ = ["INTERVAL_METHODS", "bootstrap_std", "confidence_interval"]

INTERVAL_METHODS = ("percentile", "basic", "normal", "bca")


def _rank_zero_warn(message: str, stacklevel: int = 3) -> None:
    """Warn once per process group: only rank 0 warns when ``torch.distributed`` is initialised."""
    if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
        return
    warnings.warn(message, UserWarning, stacklevel=stacklevel)


def _sorted_valid(replicates: Tensor) -> tuple[Tensor, Tensor]:
    """Sort along dim 0 with NaN last; return the sorted tensor and the number of non-NaN entries per element."""
    counts = (~torch.isnan(replicates)).sum(dim=0)
    # torch.sort puts NaN last in ascending order
    return torch.sort(replicates, dim=0).values, counts


def _quantile_sorted(sorted_reps: Tensor, counts: Tensor, q: Tensor) -> Tensor:
    """Linear-interpolation quantile (numpy/scipy ``"linear"``) per element, with per-element ``q``.

    Args:
        sorted_reps: ``[B, *S]`` sorted along dim 0, NaN last.
        counts: ``S`` number of valid (non-NaN) entries per element (entries with 0 give NaN).
        q: ``S`` (or broadcastable) probabilities in ``[0, 1]``.
    """
    q = torch.broadcast_to(q, counts.shape).to(sorted_reps.dtype)
    last = (counts - 1).clamp(min=0).to(sorted_reps.dtype)
    pos = q.clamp(0.0, 1.0) * last
    lo = pos.floor().clamp(min=0)
    hi = torch.minimum(lo + 1, last)
    frac = (pos - lo).unsqueeze(0)
    x_lo = torch.gather(sorted_reps, 0, lo.long().unsqueeze(0))
    x_hi = torch.gather(sorted_reps, 0, hi.long().unsqueeze(0))
    out = (x_lo + frac * (x_hi - x_lo)).squeeze(0)
    return torch.where(counts > 0, out, torch.full_like(out, float("nan")))


def bootstrap_std(replicates: Tensor) -> Tensor:
    """Bootstrap standard error: the standard deviation of the replicates along dim 0, ignoring NaN.

    Uses ``correction=1`` like :func:`scipy.stats.bootstrap`. Elements with fewer than two valid
    replicates get ``0`` (a single replicate carries no spread information).

    Args:
        replicates: ``[B, *S]`` metric values on bootstrap replicates; NaN marks an undefined replicate.

    Returns:
        Tensor of shape ``S``.
    """
    reps = replicates.double()
    valid = ~torch.isnan(reps)
    n = valid.sum(dim=0)
    filled = torch.where(valid, reps, torch.zeros_like(reps))
    mean = filled.sum(dim=0) / n.clamp(min=1)
    sq = torch.where(valid, (reps - mean) ** 2, torch.zeros_like(reps)).sum(dim=0)
    std = torch.sqrt(sq / (n - 1).clamp(min=1))
    std = torch.where(n >= 2, std, torch.zeros_like(std))
    out_dtype = replicates.dtype if replicates.is_floating_point() else torch.get_default_dtype()
    return std.to(out_dtype)


def _bca_levels(
    sorted_reps: Tensor,
    counts: Tensor,
    estimate: Tensor,
    alpha: float,
    jackknife: Tensor,
    jackknife_weights: Optional[Tensor],
) -> tuple[Tensor, Tensor, Tensor]:
    """BCa quantile levels ``(alpha_1, alpha_2)`` per element and a mask of elements where BCa is usable."""
    reps = sorted_reps
    valid = ~torch.isnan(reps)
    theta = estimate.unsqueeze(0)
    below = ((reps < theta) & valid).sum(dim=0)
    below_eq = ((reps <= theta) & valid).sum(dim=0)
    frac = (below + below_eq).double() / (2.0 * counts.clamp(min=1).double())
    z0 = torch.special.ndtri(frac)

    jk = jackknife.double()
    shape = (jk.shape[0],) + (1,) * (jk.ndim - 1)
    if jackknife_weights is None:
        w = torch.ones(shape, dtype=torch.float64, device=jk.device)
    else:
        w = jackknife_weights.to(device=jk.device, dtype=torch.float64).reshape(shape)
    w = torch.where(torch.isnan(jk), torch.zeros_like(jk), w.expand_as(jk))
    jk = torch.nan_to_num(jk, nan=0.0)
    wsum = w.sum(dim=0)
    jbar = (w * jk).sum(dim=0) / wsum.clamp(min=torch.finfo(torch.float64).tiny)
    d = jbar.unsqueeze(0) - jk
    num = (w * d**3).sum(dim=0)
    den = (w * d**2).sum(dim=0)
    a = num / (6.0 * den.clamp(min=torch.finfo(torch.float64).tiny) ** 1.5)
    # relative tolerance: a jackknife spread at rounding level is "zero variance"
    scale = jbar.abs().clamp(min=1.0)
    usable = torch.isfinite(z0) & (wsum > 0) & (den > (1e-12 * scale) ** 2 * wsum) & (counts > 0)

    z_alpha = float(torch.special.ndtri(torch.tensor(alpha, dtype=torch.float64)))
    z0s = torch.where(usable, z0, torch.zeros_like(z0))
    a = torch.where(usable, a, torch.zeros_like(a))
    num1 = z0s + z_alpha
    num2 = z0s - z_alpha
    alpha_1 = torch.special.ndtr(z0s + num1 / (1 - a * num1))
    alpha_2 = torch.special.ndtr(z0s + num2 / (1 - a * num2))
    usable = usable & torch.isfinite(alpha_1) & torch.isfinite(alpha_2)
    return alpha_1, alpha_2, usable


def confidence_interval(
    replicates: Tensor,
    estimate: Tensor,
    *,
    confidence_level: float,
    method: str,
    jackknife: Optional[Tensor] = None,
    jackknife_weights: Optional[Tensor] = None,
    bounds: tuple[Optional[float], Optional[float]] = (None, None),
) -> tuple[Tensor, Tensor]:
    """Two-sided bootstrap confidence interval, element-wise along dim 0 of ``replicates``.

    Args:
        replicates: ``[B, *S]`` metric on each bootstrap replicate. NaN entries (metric undefined on that
            replicate) are dropped per element with a warning giving the fraction dropped.
        estimate: ``S`` the metric on the full data (θ̂).
        confidence_level: nominal coverage in ``(0, 1)``, e.g. ``0.95``.
        method: ``"percentile"`` (``(q_{α/2}, q_{1-α/2})``), ``"basic"`` (``2θ̂ - q``), ``"normal"``
            (``θ̂ ± z·se``) or ``"bca"`` (bias-corrected and accelerated, needs ``jackknife``).
        jackknife: ``[m, *S]`` distinct leave-one-out values of the metric (BCa only).
        jackknife_weights: ``[m]`` multiplicity of each leave-one-out value; ``None`` means all ones.
        bounds: ``(low, high)`` range of the metric; the interval is clipped to it. ``None`` = unbounded.

    Returns:
        ``(lower, upper)``, each of shape ``S`` and the floating dtype of ``replicates``.

    Raises:
        ValueError: on an unknown ``method``, a ``confidence_level`` outside ``(0, 1)``, BCa without
            ``jackknife``, or mismatched shapes.

    Degenerate cases (each with a ``UserWarning``, never an exception or a silent NaN):

    - all valid replicates equal: the point interval ``[θ̂, θ̂]``;
    - all replicates NaN for an element: ``[θ̂, θ̂]`` if θ̂ is finite, otherwise NaN;
    - BCa with zero jackknife variance or an infinite ``z0``: the percentile interval for that element.

    Example:
        >>> import torch
        >>> reps = torch.linspace(0.0, 1.0, 101)
        >>> lower, upper = confidence_interval(reps, torch.tensor(0.5), confidence_level=0.9, method="percentile")
        >>> round(lower.item(), 4), round(upper.item(), 4)
        (0.05, 0.95)
    """
    if method not in INTERVAL_METHODS:
        raise ValueError(f"Expected argument `method` to be one of {INTERVAL_METHODS} but received {method}")
    if not (isinstance(confidence_level, (float, int)) and 0 < float(confidence_level) < 1):
        raise ValueError(
            f"Expected argument `confidence_level` to be a float in (0, 1) but received {confidence_level}"
        )
    if method == "bca" and jackknife is None:
        raise ValueError("Method `bca` needs the jackknife values (argument `jackknife`) but received None")
    estimate = torch.as_tensor(estimate, device=replicates.device)
    if replicates.shape[1:] != estimate.shape:
        raise ValueError(
            f"Expected `replicates` of shape [B, *{tuple(estimate.shape)}] but received {tuple(replicates.shape)}"
        )
    out_dtype = replicates.dtype if replicates.is_floating_point() else torch.get_default_dtype()
    reps = replicates.double()
    est = estimate.double()
    alpha = (1.0 - float(confidence_level)) / 2.0
    num_reps = reps.shape[0]

    sorted_reps, counts = _sorted_valid(reps)
    n_nan = num_reps - counts
    partial = (n_nan > 0) & (counts > 0)  # elements with no valid replicate at all get their own warning
    if bool(partial.any()):
        frac = torch.where(partial, n_nan.double() / max(num_reps, 1), torch.zeros_like(est))
        _rank_zero_warn(
            f"The metric was undefined (NaN) in some bootstrap replicates; they were dropped per element "
            f"(at most {100 * frac.max().item():.1f}% of {num_reps} replicates for one element, "
            f"{100 * frac[partial].mean().item():.1f}% on average over those elements)."
        )

    q_lo = torch.full_like(est, alpha)
    q_hi = torch.full_like(est, 1.0 - alpha)
    if method == "bca":
        jk = jackknife.to(reps.device)  # type: ignore[union-attr]
        if jk.shape[1:] != est.shape:
            raise ValueError(f"Expected `jackknife` of shape [m, *{tuple(est.shape)}] but received {tuple(jk.shape)}")
        a1, a2, usable = _bca_levels(sorted_reps, counts, est, alpha, jk, jackknife_weights)
        has_valid = counts > 0
        not_degenerate = _span(sorted_reps, counts) > 0
        fallback = ~usable & has_valid & not_degenerate
        if bool(fallback.any()):
            _rank_zero_warn(
                "BCa interval is undefined for some elements (zero jackknife variance or the estimate outside "
                f"the bootstrap distribution); using the percentile interval for {int(fallback.sum())} of "
                f"{fallback.numel()} element(s)."
            )
        q_lo = torch.where(usable, a1, q_lo)
        q_hi = torch.where(usable, a2, q_hi)

    if method == "normal":
        se = bootstrap_std(reps).double()
        z = float(torch.special.ndtri(torch.tensor(1.0 - alpha, dtype=torch.float64)))
        lower, upper = est - z * se, est + z * se
    else:
        ql = _quantile_sorted(sorted_reps, counts, q_lo)
        qh = _quantile_sorted(sorted_reps, counts, q_hi)
        if method == "basic":
            lower, upper = 2 * est - qh, 2 * est - ql
        else:
            lower, upper = ql, qh

    # degenerate elements: every valid replicate equal -> point interval at the estimate
    span = _span(sorted_reps, counts)
    degenerate = (counts > 0) & (span == 0)
    if bool(degenerate.any()):
        _rank_zero_warn(
            f"The bootstrap distribution is degenerate (all replicates equal) for {int(degenerate.sum())} of "
            f"{degenerate.numel()} element(s); returning the point interval at the estimate."
        )
        point = torch.where(torch.isfinite(est), est, sorted_reps[0])
        lower = torch.where(degenerate, point, lower)
        upper = torch.where(degenerate, point, upper)

    # elements with no valid replicate at all
    empty = counts == 0
    if bool(empty.any()):
        _rank_zero_warn(
            f"The metric was undefined (NaN) in every bootstrap replicate for {int(empty.sum())} of "
            f"{empty.numel()} element(s); the interval collapses to the estimate (NaN where the estimate is "
            "undefined too)."
        )
        lower = torch.where(empty, est, lower)
        upper = torch.where(empty, est, upper)

    low, high = bounds
    if low is not None:
        lower, upper = lower.clamp(min=float(low)), upper.clamp(min=float(low))
    if high is not None:
        lower, upper = lower.clamp(max=float(high)), upper.clamp(max=float(high))

    nan_out = (torch.isnan(lower) | torch.isnan(upper)) & ~empty
    if bool(nan_out.any()):
        _rank_zero_warn(
            f"The confidence interval is NaN for {int(nan_out.sum())} of {nan_out.numel()} element(s) because "
            "the estimate itself is undefined (NaN) on the full data."
        )
    return lower.to(out_dtype), upper.to(out_dtype)


def _span(sorted_reps: Tensor, counts: Tensor) -> Tensor:
    """Max minus min of the valid replicates per element (0 where fewer than one valid replicate)."""
    first = sorted_reps[0]
    last = torch.gather(sorted_reps, 0, (counts - 1).clamp(min=0).unsqueeze(0)).squeeze(0)
    span = last - first
    return torch.where(counts > 0, span, torch.zeros_like(span))
