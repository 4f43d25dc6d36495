"""Plain NumPy references for grouped data: Miller's clustered standard error and a vectorised cluster bootstrap.

Used by the grouped coverage study (``groups.py``), the speed benchmark (``benchmarks/bench_groups.py``, as the
anchor) and the tests (against brute-force loops).

**Miller (2024), "Adding Error Bars to Evals", clustered standard error** for a mean score s̄ over n samples
in clusters c:

    SE_clustered^2 = SE_CLT^2 + (1 / n^2) * sum_c sum_i sum_{j != i} (s_ic - s̄)(s_jc - s̄),
    SE_CLT^2 = Var(s) / n  (sample variance with n - 1),

and the interval s̄ ± z_{0.975} SE (not clipped). With Var taken with 1/n instead of 1/(n - 1) this is the
usual cluster-robust (CR0) variance (1 / n^2) sum_c (sum_i (s_ic - s̄))^2; the difference is a factor
n / (n - 1) on one term.

**Cluster bootstrap** (Davison and Hinkley 1997, §3.8): a replicate draws G groups with replacement from the G
groups seen, and each drawn group brings all its samples. With ``c[b, g]`` the number of times group g is
drawn in replicate b:

- confusion metrics: per-group cell counts ``K [G, cells]``; replicate cells = ``c @ K`` (one matrix product);
- AUROC: per-sample weights ``c[b, group_i]`` on the once-sorted scores, a weighted Mann-Whitney statistic
  per replicate (ties count 1/2), one replicate at a time.

``draw_counts`` draws all ``B x G`` counts with one ``integers`` call and one ``bincount``.
"""

from __future__ import annotations

import math

import numpy as np

Z975 = 1.959963984540054


# --------------------------------------------------------------------------------------- Miller's clustered SE
def miller_clustered_se(scores: np.ndarray, groups: np.ndarray) -> tuple[float, float]:
    """``(mean, SE_clustered)`` of per-sample ``scores`` (e.g. 1 = right) with cluster ids ``groups``."""
    s = np.asarray(scores, dtype=np.float64)
    n = s.size
    mean = float(s.mean())
    r = s - mean
    _, inv = np.unique(groups, return_inverse=True)
    per_cluster = np.bincount(inv, weights=r)
    cross = float((per_cluster**2).sum() - (r**2).sum())  # sum_c sum_{i != j} r_ic r_jc
    var_clt = float((r**2).sum() / (n - 1) / n) if n > 1 else 0.0
    return mean, math.sqrt(max(var_clt + cross / n**2, 0.0))


def miller_interval(scores: np.ndarray, groups: np.ndarray, z: float = Z975) -> tuple[float, float]:
    mean, se = miller_clustered_se(scores, groups)
    return mean - z * se, mean + z * se


def clt_interval(scores: np.ndarray, z: float = Z975) -> tuple[float, float]:
    """The i.i.d. interval s̄ ± z sqrt(Var(s) / n) (Miller's SE_CLT; sample variance with n - 1)."""
    s = np.asarray(scores, dtype=np.float64)
    se = math.sqrt(s.var(ddof=1) / s.size)
    return s.mean() - z * se, s.mean() + z * se


# --------------------------------------------------------------------------------------- the cluster bootstrap
def draw_counts(rng: np.random.Generator, num_groups: int, num_bootstraps: int) -> np.ndarray:
    """``c [B, G]``: how many times each group is drawn in each replicate (G draws with replacement)."""
    idx = rng.integers(0, num_groups, size=(num_bootstraps, num_groups))
    idx += (np.arange(num_bootstraps) * num_groups)[:, None]
    return np.bincount(idx.ravel(), minlength=num_bootstraps * num_groups).reshape(num_bootstraps, num_groups)


def group_index(groups: np.ndarray) -> tuple[np.ndarray, int]:
    """Dense group index 0..G-1 per sample, and G."""
    uniq, inv = np.unique(groups, return_inverse=True)
    return inv.reshape(-1), uniq.size


def cells_per_group(preds: np.ndarray, target: np.ndarray, gidx: np.ndarray, num_groups: int, c: int) -> np.ndarray:
    """``K [G, c*c]``: confusion cell counts (cell = target * c + pred) per group."""
    cell = target.astype(np.int64) * c + preds.astype(np.int64)
    return np.bincount(gidx * c * c + cell, minlength=num_groups * c * c).reshape(num_groups, c * c)


def accuracy_from_cells(cells: np.ndarray, c: int) -> np.ndarray:
    """Accuracy from ``[..., c*c]`` cell counts."""
    diag = cells[..., :: c + 1].sum(-1)
    return diag / cells.sum(-1)


def macro_f1_from_cells(cells: np.ndarray, c: int) -> np.ndarray:
    """Macro-F1 (2 tp / (2 tp + fp + fn), 0 where that is 0/0) from ``[..., c*c]`` cell counts."""
    m = cells.reshape(*cells.shape[:-1], c, c).astype(np.float64)
    tp = np.diagonal(m, axis1=-2, axis2=-1)
    denom = m.sum(-1) + m.sum(-2)  # (tp + fn) + (tp + fp)
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return f1.mean(-1)


def confusion_replicates(
    metric: str, preds: np.ndarray, target: np.ndarray, groups: np.ndarray, counts: np.ndarray, c: int
) -> np.ndarray:
    """The metric on each replicate of the cluster bootstrap with group counts ``counts [B, G]``."""
    gidx, g = group_index(groups)
    k = cells_per_group(preds, target, gidx, g, c)
    cells = counts @ k  # [B, c*c]: one matrix product for all replicates
    return accuracy_from_cells(cells, c) if metric == "accuracy" else macro_f1_from_cells(cells, c)


def weighted_auroc_sorted(w: np.ndarray, pos: np.ndarray, starts: np.ndarray) -> float:
    """Weighted AUROC on scores sorted ascending, tie blocks starting at ``starts``; ties count 1/2."""
    wp = w * pos
    wn = w - wp
    bp = np.add.reduceat(wp, starts)
    bn = np.add.reduceat(wn, starts)
    below = np.cumsum(bn) - bn
    tot_p, tot_n = bp.sum(), bn.sum()
    if tot_p == 0 or tot_n == 0:
        return float("nan")
    return float((bp * (below + 0.5 * bn)).sum() / (tot_p * tot_n))


def sort_once(scores: np.ndarray, target: np.ndarray, gidx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort by score once: ``(group index, is-positive)`` in sorted order and the tie-block starts."""
    order = np.argsort(scores, kind="stable")
    s = scores[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    return gidx[order], target[order].astype(np.float64), starts


def auroc_replicates(scores: np.ndarray, target: np.ndarray, groups: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """AUROC on each replicate: per-sample weights from their group's count, one replicate at a time."""
    gidx, _ = group_index(groups)
    g_sorted, pos, starts = sort_once(scores, target, gidx)
    out = np.empty(counts.shape[0])
    for b in range(counts.shape[0]):
        out[b] = weighted_auroc_sorted(counts[b, g_sorted].astype(np.float64), pos, starts)
    return out


def auroc_value(scores: np.ndarray, target: np.ndarray) -> float:
    _, pos, starts = sort_once(scores, target, np.zeros(scores.size, dtype=np.int64))
    return weighted_auroc_sorted(np.ones(scores.size), pos, starts)


def cluster_bootstrap_replicates(
    metric: str,
    preds: np.ndarray,
    target: np.ndarray,
    groups: np.ndarray,
    num_bootstraps: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """The cluster-bootstrap replicates of ``metric`` ("accuracy" binary, "macro_f1" 3 classes, "auroc")."""
    _, g = group_index(groups)
    counts = draw_counts(rng, g, num_bootstraps)
    if metric == "auroc":
        return auroc_replicates(preds, target, groups, counts)
    return confusion_replicates(metric, preds, target, groups, counts, 2 if metric == "accuracy" else 3)


def percentile_interval(replicates: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    r = replicates[np.isfinite(replicates)]
    if r.size == 0:
        return float("nan"), float("nan")
    a = (1 - level) / 2
    lo, hi = np.quantile(r, [a, 1 - a])
    return float(lo), float(hi)
