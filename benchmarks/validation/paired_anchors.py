"""The anchors of the paired study: the tests a user could run instead of ``PairedBootstrapMetric``.

- ``mcnemar_exact``: McNemar's exact test (1947), a two-sided binomial test of the discordant pairs
  (b = A right and B wrong, c = A wrong and B right) against Binomial(b + c, 1/2). Vectorised over sets.
- ``delong_paired``: DeLong, DeLong and Clarke-Pearson (1988) for two correlated AUROCs, computed with Sun and
  Xu's (2014) midrank algorithm in O(n log n); ``delong_paired_slow`` is the direct O(m k) definition from the
  placement values ψ(X_i, Y_j), the reference for the fast one in ``tests/test_validation_paired_smoke.py``.
- ``unpaired_z``: the two-sample z-test that treats the two models' results as independent, from each model's
  own standard error (what lm-evaluation-harness #3831/#3835 found its comparator doing on paired data).
- ``overlap_reject``: the overlap rule, "different if the two marginal 95% intervals do not overlap".
- ``scipy_paired``: ``scipy.stats.bootstrap`` with ``paired=True`` over (preds_a, preds_b, target) and the
  difference statistic ``stat(preds_a, target) - stat(preds_b, target)``. The study runs it through an index
  statistic (the same resamples, bit-identical values; see ``coverage_anchors.index_statistic``); the plain
  paired call is run on the first sets of each cell and the largest difference is reported.
"""

from __future__ import annotations

import math
import sys
import warnings
from pathlib import Path

import numpy as np
import scipy.stats

sys.path.insert(0, str(Path(__file__).resolve().parent))

import coverage_anchors

SCIPY_STATISTICS = coverage_anchors.SCIPY_STATISTICS


def _two_sided_normal_p(z: np.ndarray) -> np.ndarray:
    return 2.0 * scipy.stats.norm.sf(np.abs(z))


def mcnemar_exact(b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Two-sided exact McNemar p-values for discordant counts ``b`` and ``c`` (arrays of equal shape).

    p = min(1, 2 · P(X ≤ min(b, c))) with X ~ Binomial(b + c, 1/2); p = 1 when there is no discordant pair. For
    a success probability of 1/2 this equals ``scipy.stats.binomtest(b, b + c).pvalue`` (the binomial is
    symmetric, so "as or less likely" is "as or more extreme on either side").
    """
    b, c = np.asarray(b, dtype=np.int64), np.asarray(c, dtype=np.int64)
    m = b + c
    p = 2.0 * scipy.stats.binom.cdf(np.minimum(b, c), np.maximum(m, 1), 0.5)
    return np.where(m > 0, np.minimum(p, 1.0), 1.0)


def discordant_counts(preds_a: np.ndarray, preds_b: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(b, c) = (# A right and B wrong, # A wrong and B right) along the last axis."""
    ra, rb = preds_a == target, preds_b == target
    return (ra & ~rb).sum(-1), (~ra & rb).sum(-1)


def _midrank_components(scores: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AUC and the placement values (V10 over positives, V01 over negatives) by Sun and Xu's midranks."""
    y = target.astype(bool)
    pos, neg = scores[y].astype(np.float64), scores[~y].astype(np.float64)
    m, k = pos.size, neg.size
    tz = scipy.stats.rankdata(np.concatenate([pos, neg]))
    tx, ty = scipy.stats.rankdata(pos), scipy.stats.rankdata(neg)
    auc = (tz[:m].sum() - m * (m + 1) / 2) / (m * k)
    v10 = (tz[:m] - tx) / k  # fraction of negatives below positive i (ties 1/2)
    v01 = 1.0 - (tz[m:] - ty) / m  # fraction of positives above negative j (ties 1/2)
    return auc, v10, v01


def _delong_from_components(comps: list[tuple[float, np.ndarray, np.ndarray]]) -> dict[str, float]:
    (auc_a, v10a, v01a), (auc_b, v10b, v01b) = comps
    m, k = v10a.size, v01a.size
    s10 = np.cov(np.stack([v10a, v10b]), ddof=1)
    s01 = np.cov(np.stack([v01a, v01b]), ddof=1)
    s = s10 / m + s01 / k
    var_diff = float(s[0, 0] + s[1, 1] - 2 * s[0, 1])
    diff = auc_a - auc_b
    p = float(_two_sided_normal_p(diff / math.sqrt(var_diff))) if var_diff > 0 else 1.0 if diff == 0 else 0.0
    return {
        "auc_a": auc_a,
        "auc_b": auc_b,
        "var_a": float(s[0, 0]),
        "var_b": float(s[1, 1]),
        "var_diff": var_diff,
        "p_value": p,
    }


def delong_paired(scores_a: np.ndarray, scores_b: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """DeLong's paired test of AUC_A = AUC_B, O(n log n) (Sun and Xu's midranks).

    Returns the two AUCs, their variances, the variance of the difference and the two-sided p-value of
    z = (AUC_A - AUC_B) / sqrt(var_diff). Requires at least two positives and two negatives.
    """
    return _delong_from_components([_midrank_components(s, target) for s in (scores_a, scores_b)])


def delong_paired_slow(scores_a: np.ndarray, scores_b: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """The same test from its definition: ψ(x, y) = 1 if x > y, 1/2 if x = y, 0 otherwise, O(m k)."""
    y = target.astype(bool)
    comps = []
    for s in (scores_a, scores_b):
        pos, neg = s[y].astype(np.float64), s[~y].astype(np.float64)
        psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        comps.append((float(psi.mean()), psi.mean(1), psi.mean(0)))
    return _delong_from_components(comps)


def unpaired_z(value_a: np.ndarray, value_b: np.ndarray, se_a: np.ndarray, se_b: np.ndarray) -> np.ndarray:
    """Two-sided p-value of z = (value_a - value_b) / sqrt(se_a² + se_b²) (independence assumed)."""
    value_a, value_b = np.asarray(value_a, dtype=np.float64), np.asarray(value_b, dtype=np.float64)
    se = np.sqrt(np.asarray(se_a, dtype=np.float64) ** 2 + np.asarray(se_b, dtype=np.float64) ** 2)
    diff = value_a - value_b
    with np.errstate(divide="ignore", invalid="ignore"):
        p = _two_sided_normal_p(diff / se)
    return np.where(se > 0, p, np.where(diff == 0, 1.0, 0.0))


def overlap_reject(lo_a: np.ndarray, hi_a: np.ndarray, lo_b: np.ndarray, hi_b: np.ndarray) -> np.ndarray:
    """True where the two intervals are disjoint (NaN bounds never reject)."""
    lo_a, hi_a, lo_b, hi_b = (np.asarray(x, dtype=np.float64) for x in (lo_a, hi_a, lo_b, hi_b))
    return (lo_a > hi_b) | (lo_b > hi_a)


def paired_index_statistic(metric: str, preds_a: np.ndarray, preds_b: np.ndarray, target: np.ndarray):
    """``stat(A) - stat(B)`` as a function of the resampled indices (one index vector shared by both models)."""
    sa = coverage_anchors.index_statistic(metric, preds_a, target)
    sb = coverage_anchors.index_statistic(metric, preds_b, target)

    def stat(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        return sa(idx, axis) - sb(idx, axis)

    return stat


def plain_difference_statistic(metric: str):
    """The statistic a user writes for ``scipy.stats.bootstrap((preds_a, preds_b, target), ..., paired=True)``."""
    base = SCIPY_STATISTICS[metric]

    def stat(pa: np.ndarray, pb: np.ndarray, t: np.ndarray, axis: int = -1) -> np.ndarray:
        return base(pa, t, axis=axis) - base(pb, t, axis=axis)

    return stat


def scipy_paired(
    metric: str,
    preds_a: np.ndarray,
    preds_b: np.ndarray,
    target: np.ndarray,
    num_bootstraps: int,
    seed: int,
    method: str = "BCa",
    fast: bool = True,
) -> tuple[float, float]:
    """The interval of ``scipy.stats.bootstrap`` for the paired difference; NaN bounds are returned as NaN.

    ``fast=False`` is the call a user writes; ``fast=True`` draws the same resamples (``paired=True`` is a
    bootstrap of ``arange(n)``) and evaluates the difference from counts instead of gathering and ranking.
    """
    if fast:
        data, stat, paired = (
            (np.arange(target.shape[-1]),),
            paired_index_statistic(metric, preds_a, preds_b, target),
            False,
        )
    else:
        data, stat, paired = (preds_a, preds_b, target), plain_difference_statistic(metric), True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = scipy.stats.bootstrap(
            data,
            stat,
            paired=paired,
            vectorized=True,
            n_resamples=num_bootstraps,
            method=method,
            confidence_level=0.95,
            batch=250,
            rng=np.random.default_rng(seed),
        )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)
