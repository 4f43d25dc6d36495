"""The anchors of the coverage study: closed-form intervals, scipy BCa and torchmetrics' ``BootStrapper``.

- ``wald`` / ``wilson``: the normal-approximation and Wilson score intervals for accuracy.
- ``delong``: DeLong's interval for AUROC, with the midrank algorithm of Sun & Xu (2014), unclipped.
- ``scipy_bca``: ``scipy.stats.bootstrap(..., paired=True, method="BCa")`` over (preds, target) with a
  vectorised statistic (accuracy, torchmetrics' macro-F1 convention, rank AUROC with ties counting 1/2).
- ``bootstrapper_*``: a vectorised re-implementation of the *sampling* of torchmetrics 1.9
  ``BootStrapper`` (``torchmetrics/wrappers/bootstrapping.py``), which keeps B deep copies of the metric and,
  for every ``update`` (one batch) and every copy, either draws ``Poisson(1)`` repeat counts per sample
  (``"poisson"``) or draws ``batch_size`` indices with replacement *within the batch* (``"multinomial"``).
  Its interval is ``torch.quantile`` of the B copy values at (0.025, 0.975) (linear interpolation).

  - Multinomial: a copy's total count vector over the confusion cells is the sum over batches of
    ``Multinomial(s_b, c_b / s_b)``; batches with the same size and the same count vector are merged
    exactly (a sum of r i.i.d. ``Multinomial(s, p)`` is ``Multinomial(r·s, p)``). For AUROC the per-sample
    weights are drawn as the real one draws them (indices within each batch).
  - Poisson: the Poisson(1) weight of a sample does not depend on the batch it arrives in, so the
    distribution of a copy is the same for every batch size (the real class also gives every sample its own
    Poisson(1) count). For the confusion family the weights of the m samples of a cell sum to Poisson(m).

  ``validate_bootstrapper`` runs the real ``BootStrapper`` next to the re-implementation on the same data.
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import scipy.stats
import torch
from torchmetrics.functional.classification.accuracy import _accuracy_reduce
from torchmetrics.functional.classification.f_beta import _fbeta_reduce

Z975 = float(scipy.stats.norm.ppf(0.975))
QUANTILES = (0.025, 0.975)


# ----------------------------------------------------------------------------------------------------------
# closed form
# ----------------------------------------------------------------------------------------------------------
def wald(correct_counts: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Normal-approximation interval p̂ ± z·sqrt(p̂(1−p̂)/n) (unclipped), vectorised over sims."""
    p = correct_counts / n
    half = Z975 * np.sqrt(p * (1 - p) / n)
    return p - half, p + half


def wilson(correct_counts: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval, vectorised over sims."""
    p = correct_counts / n
    z2 = Z975**2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z975 * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return centre - half, centre + half


def delong(scores: np.ndarray, target: np.ndarray) -> tuple[float, float, float]:
    """DeLong's interval for one AUROC (Sun & Xu's midrank algorithm). Returns ``(auc, lower, upper)``."""
    pos = scores[target == 1].astype(np.float64)
    neg = scores[target == 0].astype(np.float64)
    m, k = pos.size, neg.size
    tz = scipy.stats.rankdata(np.concatenate([pos, neg]))
    tx = scipy.stats.rankdata(pos)
    ty = scipy.stats.rankdata(neg)
    auc = (tz[:m].sum() - m * (m + 1) / 2) / (m * k)
    v10 = (tz[:m] - tx) / k
    v01 = 1.0 - (tz[m:] - ty) / m
    var = v10.var(ddof=1) / m + v01.var(ddof=1) / k
    half = Z975 * math.sqrt(var)
    return auc, auc - half, auc + half


# ----------------------------------------------------------------------------------------------------------
# scipy BCa
# ----------------------------------------------------------------------------------------------------------
def _stat_accuracy(p: np.ndarray, t: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(p == t, axis=axis)


def _stat_macro_f1(p: np.ndarray, t: np.ndarray, axis: int = -1) -> np.ndarray:
    """Macro-F1 as torchmetrics computes it: classes with tp + fp + fn = 0 are left out of the mean."""
    scores, weights = [], []
    for k in range(3):
        pk, tk = p == k, t == k
        tp = np.sum(pk & tk, axis=axis)
        fp = np.sum(pk & ~tk, axis=axis)
        fn = np.sum(~pk & tk, axis=axis)
        den = 2 * tp + fp + fn
        scores.append(np.where(den > 0, 2 * tp / np.maximum(den, 1), 0.0))
        weights.append((den > 0).astype(np.float64))
    s, w = np.stack(scores), np.stack(weights)
    return (s * w).sum(0) / np.maximum(w.sum(0), 1)


def _stat_auroc(s: np.ndarray, t: np.ndarray, axis: int = -1) -> np.ndarray:
    """Rank AUROC (ties count 1/2); 0 where a resample has no positive or no negative (torchmetrics' fill)."""
    ranks = scipy.stats.rankdata(s, axis=axis)
    pos = t.astype(np.float64)
    npos = pos.sum(axis=axis)
    nneg = pos.shape[axis] - npos
    num = (ranks * pos).sum(axis=axis) - npos * (npos + 1) / 2
    den = npos * nneg
    return np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)


SCIPY_STATISTICS = {"accuracy": _stat_accuracy, "macro_f1": _stat_macro_f1, "auroc": _stat_auroc}


def scipy_bca(
    metric: str, preds: np.ndarray, target: np.ndarray, num_bootstraps: int, seed: int
) -> tuple[float, float]:
    """``scipy.stats.bootstrap`` BCa, paired over (preds, target); NaN bounds are returned as NaN."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = scipy.stats.bootstrap(
            (preds, target),
            SCIPY_STATISTICS[metric],
            paired=True,
            vectorized=True,
            n_resamples=num_bootstraps,
            method="BCa",
            confidence_level=0.95,
            batch=250,
            rng=np.random.default_rng(seed),
        )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


# ----------------------------------------------------------------------------------------------------------
# BootStrapper re-implementation
# ----------------------------------------------------------------------------------------------------------
def confusion_metric(metric: str, cells: torch.Tensor) -> torch.Tensor:
    """Metric of each row of cell counts ``[R, K]`` (cell = target * C + pred), via torchmetrics' reduce."""
    c = 2 if metric == "accuracy" else 3
    cm = cells.reshape(-1, c, c).float()
    tp = cm.diagonal(dim1=-2, dim2=-1)
    fp = cm.sum(-2) - tp
    fn = cm.sum(-1) - tp
    tn = cm.sum(dim=(-2, -1)).unsqueeze(-1) - (tp + fp + fn)
    if metric == "accuracy":  # binary: the positive class is column/row 1
        return _accuracy_reduce(tp[:, 1], fp[:, 1], tn[:, 1], fn[:, 1], average="binary", multidim_average="samplewise")
    return _fbeta_reduce(tp, fp, tn, fn, 1.0, average="macro", multidim_average="samplewise")


def _batches(n: int, batch_size: int) -> list[tuple[int, int]]:
    return [(s, min(n, s + batch_size)) for s in range(0, n, batch_size)]


def bootstrapper_confusion(
    metric: str, codes: np.ndarray, batch_size: int, strategy: str, num_bootstraps: int, rng: np.random.Generator
) -> torch.Tensor:
    """Copy values ``[B]`` of a ``BootStrapper`` fed ``codes`` (cell codes in arrival order) in batches."""
    k = 4 if metric == "accuracy" else 9
    if strategy == "poisson":
        counts = np.bincount(codes, minlength=k)
        cells = rng.poisson(counts, size=(num_bootstraps, k))
    else:
        rows = []
        for s, e in _batches(codes.size, batch_size):
            rows.append(np.concatenate([[e - s], np.bincount(codes[s:e], minlength=k)]))
        groups, mult = np.unique(np.stack(rows), axis=0, return_counts=True)
        sizes = groups[:, 0] * mult
        pvals = groups[:, 1:] / groups[:, :1]
        cells = rng.multinomial(sizes, pvals, size=(num_bootstraps, sizes.size)).sum(1)
    return confusion_metric(metric, torch.from_numpy(cells))


def weighted_auroc(scores: np.ndarray, target: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUROC of ``[R, n]`` per-sample weights (ties count 1/2; 0 where a class has no weight)."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], target[order].astype(np.float64)
    w = torch.from_numpy(weights[:, order])
    yt = torch.from_numpy(y)
    # tie groups in score-descending order: first and last index of each sample's group
    new = np.concatenate([[True], s[1:] != s[:-1]])
    gid = np.cumsum(new) - 1
    starts = np.flatnonzero(new)
    ends = np.concatenate([starts[1:], [s.size]]) - 1
    start_i, end_i = torch.from_numpy(starts[gid]), torch.from_numpy(ends[gid])
    wy = w * yt
    wn = w - wy
    cpos = torch.cumsum(wy, 1)
    above = torch.where(start_i > 0, cpos[:, (start_i - 1).clamp(min=0)], torch.zeros(()))
    through = cpos[:, end_i]
    num = (wn * (above + 0.5 * (through - above))).sum(1)
    npos, nneg = cpos[:, -1], wn.sum(1)
    den = npos * nneg
    return torch.where(den > 0, num / torch.where(den > 0, den, 1.0), 0.0).numpy()


def bootstrapper_auroc(
    scores: np.ndarray, target: np.ndarray, batch_size: int, strategy: str, num_bootstraps: int,
    rng: np.random.Generator, chunk: int = 250,
) -> torch.Tensor:
    """Copy values ``[B]`` of a ``BootStrapper(BinaryAUROC())`` fed the samples in batches."""
    n = scores.size
    out = []
    bounds = _batches(n, batch_size)
    starts = np.concatenate([np.full(e - s, s) for s, e in bounds])
    sizes = np.concatenate([np.full(e - s, e - s) for s, e in bounds])
    for b0 in range(0, num_bootstraps, chunk):
        rows = min(chunk, num_bootstraps - b0)
        if strategy == "poisson":
            w = rng.poisson(1.0, size=(rows, n)).astype(np.float64)
        else:
            idx = starts + np.floor(rng.random((rows, n)) * sizes).astype(np.int64)
            w = _rowcount(idx, n)
        out.append(weighted_auroc(scores, target, w))
    return torch.from_numpy(np.concatenate(out))


def _rowcount(idx: np.ndarray, n: int) -> np.ndarray:
    """Per-row bincount of ``idx [R, n]`` into ``[R, n]``."""
    rows = idx.shape[0]
    flat = (idx + n * np.arange(rows)[:, None]).ravel()
    return np.bincount(flat, minlength=rows * n).reshape(rows, n).astype(np.float64)


def quantile_interval(values: torch.Tensor) -> tuple[float, float]:
    """``torch.quantile`` over the copies at (0.025, 0.975), as ``BootStrapper(quantile=...)`` takes it."""
    q = torch.quantile(values.double(), torch.tensor(QUANTILES, dtype=torch.float64))
    return float(q[0]), float(q[1])


# ----------------------------------------------------------------------------------------------------------
# the real BootStrapper next to the re-implementation
# ----------------------------------------------------------------------------------------------------------
def real_bootstrapper_interval(
    preds: torch.Tensor, target: torch.Tensor, batch_size: int, strategy: str, num_bootstraps: int, seed: int
) -> tuple[float, float, float]:
    """Run torchmetrics' ``BootStrapper(BinaryAccuracy())``; returns ``(lower, upper, cpu seconds)``."""
    from torchmetrics.classification import BinaryAccuracy
    from torchmetrics.wrappers import BootStrapper

    torch.manual_seed(seed)  # BootStrapper draws from the global RNG
    t0 = time.process_time()
    bs = BootStrapper(
        BinaryAccuracy(), num_bootstraps=num_bootstraps, mean=False, std=False,
        quantile=torch.tensor(QUANTILES), sampling_strategy=strategy,
    )
    for s, e in _batches(preds.numel(), batch_size):
        bs.update(preds[s:e], target[s:e])
    q = bs.compute()["quantile"]
    return float(q[0]), float(q[1]), time.process_time() - t0
