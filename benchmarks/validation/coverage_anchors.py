"""The anchors of the coverage study: closed-form intervals, scipy BCa and torchmetrics' ``BootStrapper``.

- ``wald`` / ``wilson``: the normal-approximation and Wilson score intervals for accuracy.
- ``delong``: DeLong's interval for AUROC, with the midrank algorithm of Sun & Xu (2014), unclipped.
- ``scipy_bca``: ``scipy.stats.bootstrap(..., paired=True, method="BCa")`` over (preds, target) with a
  vectorised statistic (accuracy, torchmetrics' macro-F1 convention, rank AUROC with ties counting 1/2);
  ``fast=True`` runs the same bootstrap through ``index_statistic`` (same draws, bit-identical values).
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

  ``real_bootstrapper_interval`` and ``real_bootstrapper_values`` run the real ``BootStrapper`` on the same data,
  for ``coverage.validation_run`` (intervals) and ``coverage.distribution_run`` (copy values).
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


def _signed_from_confmat(metric: str, cm: np.ndarray) -> np.ndarray:
    """MCC (binary) or Cohen's kappa (unweighted) of confusion matrices ``[..., C, C]`` (rows = target).

    Both are what torchmetrics computes whenever no marginal is empty (MCC) and p_e < 1 (kappa); where they are
    undefined this gives 0 (never reached by the study's tables at n >= 50 but for a vanishing fraction).
    """
    cm = cm.astype(np.float64)
    m = cm.sum((-2, -1))
    rows, cols = cm.sum(-1), cm.sum(-2)
    if metric == "mcc":
        num = cm[..., 1, 1] * cm[..., 0, 0] - cm[..., 1, 0] * cm[..., 0, 1]
        den = rows[..., 0] * rows[..., 1] * cols[..., 0] * cols[..., 1]
        return np.where(den > 0, num / np.sqrt(np.where(den > 0, den, 1.0)), 0.0)
    p_o = np.trace(cm, axis1=-2, axis2=-1) / m
    p_e = (rows * cols).sum(-1) / m**2
    return np.where(p_e < 1, (p_o - p_e) / np.where(p_e < 1, 1 - p_e, 1.0), 0.0)


def _confmat(p: np.ndarray, t: np.ndarray, c: int, axis: int = -1) -> np.ndarray:
    """Confusion matrices ``[..., C, C]`` of label arrays along ``axis`` (rows = target)."""
    p, t = np.moveaxis(p, axis, -1), np.moveaxis(t, axis, -1)
    return np.stack([np.stack([((t == i) & (p == j)).sum(-1) for j in range(c)], -1) for i in range(c)], -2)


def _stat_mcc(p: np.ndarray, t: np.ndarray, axis: int = -1) -> np.ndarray:
    return _signed_from_confmat("mcc", _confmat(p, t, 2, axis))


def _stat_kappa(p: np.ndarray, t: np.ndarray, axis: int = -1) -> np.ndarray:
    return _signed_from_confmat("kappa", _confmat(p, t, 3, axis))


SCIPY_STATISTICS = {
    "accuracy": _stat_accuracy,
    "macro_f1": _stat_macro_f1,
    "auroc": _stat_auroc,
    "mcc": _stat_mcc,
    "kappa": _stat_kappa,
}
NUM_CLASSES = {"accuracy": 2, "macro_f1": 3, "mcc": 2, "kappa": 3}


def _rowcounts(values: np.ndarray, k: int) -> np.ndarray:
    """Per-row bincount of non-negative ints ``values [R, m]`` into ``[R, k]`` (int64)."""
    rows = values.shape[0]
    flat = (values + k * np.arange(rows)[:, None]).ravel()
    return np.bincount(flat, minlength=rows * k).reshape(rows, k)


def index_statistic(metric: str, preds: np.ndarray, target: np.ndarray):
    """The statistic of ``SCIPY_STATISTICS[metric]`` as a function of resampled *indices* into (preds, target).

    ``scipy.stats.bootstrap(..., paired=True)`` is implemented as a one-sample bootstrap of ``arange(n)`` whose
    statistic gathers every sample at the drawn indices (``scipy/stats/_resampling.py``, ``_bootstrap_iv``), so
    ``bootstrap((arange(n),), index_statistic(...))`` draws the same resamples and jackknife sets as the paired
    call. The statistic works from per-row counts instead of gathering and ranking: the confusion metrics count
    cell codes; AUROC counts each sample's multiplicity and sweeps the scores in sorted order, O(n) per row
    instead of a sort. Every intermediate is an exact integer (or half-integer) and the final value is one
    division, as in the rank statistic, so the values are bit-identical. ``coverage.group_scipy`` compares the
    intervals with the plain paired call on the timed sets, and ``tests/test_validation_anchors.py`` checks both.
    """
    n = preds.shape[-1]
    if metric in NUM_CLASSES:
        c = NUM_CLASSES[metric]
        codes = target.astype(np.int64) * c + preds.astype(np.int64)

        def stat(idx: np.ndarray, axis: int = -1) -> np.ndarray:
            shape, m = idx.shape[:-1], idx.shape[-1]
            cm = _rowcounts(codes[idx.reshape(-1, m)], c * c).reshape(-1, c, c)
            if metric in ("mcc", "kappa"):
                out = _signed_from_confmat(metric, cm)
            elif metric == "accuracy":
                out = np.trace(cm, axis1=1, axis2=2) / m
            else:
                tp = np.diagonal(cm, axis1=1, axis2=2)
                fp, fn = cm.sum(1) - tp, cm.sum(2) - tp
                den = 2 * tp + fp + fn
                score = np.where(den > 0, 2 * tp / np.maximum(den, 1), 0.0)
                w = (den > 0).astype(np.float64)
                out = (score * w).sum(1) / np.maximum(w.sum(1), 1)
            return out.reshape(shape)

        return stat
    if metric != "auroc":
        raise ValueError(metric)
    sorted_auroc = SortedAUROC(preds, target)

    def stat(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        shape, m = idx.shape[:-1], idx.shape[-1]
        w = _rowcounts(sorted_auroc.pos_of[idx.reshape(-1, m)], n)  # multiplicity of each sorted position
        return sorted_auroc(w).reshape(shape)

    return stat


class SortedAUROC:
    """AUROC of integer per-sample weights given in score-descending order (ties count 1/2).

    ``self(w)`` for ``w [R, n]`` (``w[:, j]`` = multiplicity of the sample at sorted position j) returns the R
    AUROCs, 0 where a row has no positive or no negative weight (torchmetrics' fill). ``pos_of[i]`` is the
    sorted position of sample i. With integer weights, U = sum over negatives of (positives above + positives
    tied / 2) is computed exactly as 2U in int64 and divided once, so the value is bit-identical to the rank
    formula ``(sum of positive midranks - npos (npos + 1) / 2) / (npos nneg)``.
    """

    def __init__(self, scores: np.ndarray, target: np.ndarray) -> None:
        n = scores.shape[-1]
        order = np.argsort(-scores, kind="stable")
        self.pos_of = np.empty(n, dtype=np.int64)
        self.pos_of[order] = np.arange(n)
        s_sorted = scores[order]
        self.y_sorted = target[order].astype(bool)
        new = np.concatenate([[True], s_sorted[1:] != s_sorted[:-1]])
        starts = np.flatnonzero(new)
        ends = np.concatenate([starts[1:], [n]])  # one past the last position of each tie group
        gid = np.cumsum(new) - 1  # tie group of each sorted position
        self.neg_cols = np.flatnonzero(~self.y_sorted)
        # for a negative in a tie group [start, end): with cpos[:, j] the positive weight at positions < j,
        # positives strictly above = cpos[start] and positives above or tied = cpos[end]
        self.above_at, self.through_at = starts[gid[self.neg_cols]], ends[gid[self.neg_cols]]
        self.n = n

    def __call__(self, w: np.ndarray) -> np.ndarray:
        cpos = np.zeros((w.shape[0], self.n + 1), dtype=np.int64)
        np.cumsum(np.where(self.y_sorted, w, 0), axis=1, out=cpos[:, 1:])
        wneg = w[:, self.neg_cols]
        num2 = (wneg * (cpos[:, self.above_at] + cpos[:, self.through_at])).sum(1)  # 2U
        npos, nneg = cpos[:, -1], wneg.sum(1)
        den = npos * nneg
        return np.where(den > 0, num2 / np.where(den > 0, 2 * den, 1), 0.0)


def scipy_bca(
    metric: str,
    preds: np.ndarray,
    target: np.ndarray,
    num_bootstraps: int,
    seed: int,
    fast: bool = True,
) -> tuple[float, float]:
    """``scipy.stats.bootstrap`` BCa, paired over (preds, target); NaN bounds are returned as NaN.

    ``fast=False`` is the call a user would write (``paired=True`` with the gather-and-rank statistic);
    ``fast=True`` is the same bootstrap through ``index_statistic`` (same draws, same values).
    """
    if fast:
        data, stat, paired = (np.arange(preds.shape[-1]),), index_statistic(metric, preds, target), False
    else:
        data, stat, paired = (preds, target), SCIPY_STATISTICS[metric], True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = scipy.stats.bootstrap(
            data,
            stat,
            paired=paired,
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


def bootstrapper_auroc(
    scores: np.ndarray,
    target: np.ndarray,
    batch_size: int,
    strategy: str,
    num_bootstraps: int,
    rng: np.random.Generator,
    chunk: int = 250,
) -> torch.Tensor:
    """Copy values ``[B]`` of a ``BootStrapper(BinaryAUROC())`` fed the samples in batches.

    Poisson: every sample gets an independent Poisson(1) count, so the counts are drawn directly in score order.
    Multinomial: each batch's ``s`` draws are indices within the batch, mapped to score order and counted.
    ``batch_size=1`` multinomial gives every copy exactly the data (all values equal the plain AUROC).
    """
    n = scores.size
    sorted_auroc = SortedAUROC(scores, target)
    if strategy == "multinomial" and batch_size == 1:
        return torch.from_numpy(sorted_auroc(np.ones((1, n), dtype=np.int64)).repeat(num_bootstraps))
    out = []
    bounds = _batches(n, batch_size)
    starts = np.concatenate([np.full(e - s, s) for s, e in bounds])
    sizes = np.concatenate([np.full(e - s, e - s) for s, e in bounds])
    for b0 in range(0, num_bootstraps, chunk):
        rows = min(chunk, num_bootstraps - b0)
        if strategy == "poisson":
            w = rng.poisson(1.0, size=(rows, n))
        else:
            idx = starts + np.floor(rng.random((rows, n)) * sizes).astype(np.int64)
            w = _rowcounts(sorted_auroc.pos_of[idx], n)
        out.append(sorted_auroc(w))
    return torch.from_numpy(np.concatenate(out))


def quantile_interval(values: torch.Tensor | np.ndarray) -> tuple[float, float]:
    """``torch.quantile`` over the copies at (0.025, 0.975), as ``BootStrapper(quantile=...)`` takes it."""
    q = torch.quantile(torch.as_tensor(values).double(), torch.tensor(QUANTILES, dtype=torch.float64))
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
        BinaryAccuracy(),
        num_bootstraps=num_bootstraps,
        mean=False,
        std=False,
        quantile=torch.tensor(QUANTILES),
        sampling_strategy=strategy,
    )
    for s, e in _batches(preds.numel(), batch_size):
        bs.update(preds[s:e], target[s:e])
    q = bs.compute()["quantile"]
    return float(q[0]), float(q[1]), time.process_time() - t0


def real_bootstrapper_values(
    metric: str,
    preds: torch.Tensor,
    target: torch.Tensor,
    batch_size: int,
    strategy: str,
    num_bootstraps: int,
    seed: int,
) -> np.ndarray:
    """The ``[B]`` copy values (``raw=True``) of the real ``BootStrapper`` over ``metric``'s torchmetrics class."""
    from torchmetrics.classification import BinaryAccuracy, BinaryAUROC, MulticlassF1Score
    from torchmetrics.wrappers import BootStrapper

    base = {
        "accuracy": lambda: BinaryAccuracy(),
        "macro_f1": lambda: MulticlassF1Score(num_classes=3, average="macro"),
        "auroc": lambda: BinaryAUROC(),
    }[metric]()
    torch.manual_seed(seed)
    bs = BootStrapper(base, num_bootstraps=num_bootstraps, mean=False, std=False, raw=True, sampling_strategy=strategy)
    for s, e in _batches(preds.numel(), batch_size):
        bs.update(preds[s:e], target[s:e])
    return bs.compute()["raw"].double().numpy()


def reimpl_bootstrapper_values(
    metric: str,
    preds: torch.Tensor,
    target: torch.Tensor,
    batch_size: int,
    strategy: str,
    num_bootstraps: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """The ``[B]`` copy values (float64) of the re-implementation, fed ``(preds, target)`` in batches."""
    if metric == "auroc":
        vals = bootstrapper_auroc(preds.numpy(), target.numpy(), batch_size, strategy, num_bootstraps, rng)
    else:
        c = 2 if metric == "accuracy" else 3
        codes = (target * c + preds).numpy()
        vals = bootstrapper_confusion(metric, codes, batch_size, strategy, num_bootstraps, rng)
    return vals.double().numpy()
