"""The ranking-family engine: exact, vectorized bootstrap replicates of AUROC and average precision.

Supported metrics are torchmetrics' ``BinaryAUROC``, ``BinaryAveragePrecision``, ``MulticlassAUROC`` and
``MulticlassAveragePrecision``, with ``thresholds=None`` (exact curves) or binned ``thresholds`` (an int, a
list or a tensor), ``ignore_index`` and every ``average`` torchmetrics allows (``macro``, ``weighted``,
``none``/``None``). ``BinaryAUROC(max_fpr=...)`` (other than ``None``/``1``) and multilabel metrics are not
supported here; they go through the generic path.

How a replicate is made:

- Every sample gets a weight per replicate: multinomial counts (the classic bootstrap of the whole set),
  Dirichlet(1, …, 1) weights (``bayesian``) or independent Poisson(1) weights (``poisson``).
- Samples are put in a *canonical order* (sorted by score and target, lexicographically) before the weights
  are drawn, so replicates do not depend on the batch size, the batch order or the number of DDP ranks.
- Weighted cumulative true/false positive counts are taken along the score-sorted order, with tied scores
  grouped into one threshold exactly as torchmetrics' curves do, and the metric follows from them:
  AUROC is the trapezoid under the tie-grouped ROC curve (the probability that a random positive outranks a
  random negative, ties counting 1/2), AP is torchmetrics' step sum :math:`\\sum_k (R_k - R_{k-1}) P_k`.
- With heavy ties (fewer than n / 4 distinct scores) the weights are first summed per (tie group, label)
  cell, and multinomial draws are counted straight into those cells, so the work is on ``[chunk, G]``.
- Replicates are computed in chunks over B, so memory stays bounded (about ``_CHUNK_ELEMENTS`` elements per
  ``[chunk, n]`` work tensor).
- ``poisson`` with ``thresholds=None`` draws its Poisson(1) weights at compute time, from the compute generator,
  over the canonical order (the samples must be kept anyway for the value). Poisson(1) and Exp(1) variates are
  drawn by inversion of float64 uniforms from the engine's own generator; the global RNG is never used.
- Jackknife (for BCa): AUROC's leave-one-out values have a closed form from the tie-grouped counts (removing a
  positive takes away its tie-aware count of negatives below it and one positive from the denominator), and so
  does AP (prefix/suffix sums over the tie groups); both are O(n) after the sort. Samples in the same tie group
  with the same label share a value, so binary returns one value per (group, label) with its multiplicity;
  multiclass returns one value per sample. A leave-one-out value that is undefined (the only positive removed)
  is NaN. With binned thresholds there is one value per histogram cell.

torchmetrics decides per ``update`` whether scores are logits (on CPU: any kept value outside [0, 1], NaN
included, in that batch; on other devices NaN does not count) and then applies sigmoid/softmax; the engine does
the same, so ``value`` matches, but with logits the result can depend on how the data is split into batches (in
torchmetrics too). Pass probabilities for batch-invariant results. Ignored samples (``ignore_index``) are dropped
at ``update`` on CPU, before the normalisation, exactly as torchmetrics drops them (the normalised scores are then
bit-identical to torchmetrics'); on other devices they stay in the sample state with their target and are dropped
at compute, so that ``update`` never synchronises with the host.
When the wrapped metric's ``validate_args`` is true, ``update`` first runs torchmetrics' own tensor validation
(out-of-range targets raise as they do there); integer scores and floating targets are accepted as torchmetrics
accepts them without validation.

NaN scores: binned thresholds count a NaN score below every threshold (``NaN >= t`` is false), exactly as
torchmetrics does. Exact curves rank NaN scores above every other score, as torchmetrics' descending sort does,
and tie them with each other; torchmetrics takes each NaN as its own threshold in arrival order, so with NaN
scores of both labels its value depends on the sample order, and the engine warns.

Memory and randomness: every mode draws its replicate weights at compute time from the synced state and the
seed, so the result depends only on the multiset of samples (never on batching, order or DDP ranks). With
``thresholds=None`` the engine keeps every (formatted) sample, as torchmetrics does. Binary binned metrics keep
only the ``[2, T + 1]`` histogram in every mode, because multinomial, Dirichlet and Poisson(1) draws over samples
aggregate exactly into multinomial, Dirichlet and Poisson(count) draws over histogram cells. Multiclass binned
metrics keep the samples (the classes of one sample share its weight, so they must be resampled jointly).

Undefined replicates: a replicate in which the metric is undefined although it is defined on the full data
(no positives, or for AUROC no negatives, of a class) is NaN; for ``macro``/``weighted`` the whole replicate is
NaN then. Where the metric is undefined on the full data too, torchmetrics' fill-in value (0, or NaN for a
multiclass AP class that torchmetrics ignores) is kept, so ``value`` and the replicates agree.
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.classification import (
    BinaryAUROC,
    BinaryAveragePrecision,
    MulticlassAUROC,
    MulticlassAveragePrecision,
)
from torchmetrics.functional.classification.precision_recall_curve import (
    _binary_precision_recall_curve_tensor_validation,
    _multiclass_precision_recall_curve_tensor_validation,
)
from torchmetrics.utilities.data import dim_zero_cat
from torchmetrics.utilities.prints import rank_zero_warn

from lightning_ci.bootstrap._engine import (
    RESAMPLING_MODES,
    BootstrapEngine,
    EngineOutput,
    count_pairs,
    expand_groups,
    unique_rows,
)

_SUPPORTED = (BinaryAUROC, BinaryAveragePrecision, MulticlassAUROC, MulticlassAveragePrecision)
_AVERAGES = ("macro", "weighted", "none", None)
_CHUNK_ELEMENTS = 1 << 18  # elements of one [chunk, n] work tensor (1-2 MB): cache-friendly, bounded memory
_KERNEL_DTYPE = torch.float64


# ------------------------------------------------------------------------------------------------------------
# Kernels: per-class metric values from (weighted) counts, batched over a leading replicate dimension R.
# ------------------------------------------------------------------------------------------------------------


def _group_auroc(tp: Tensor, fp: Tensor) -> tuple[Tensor, Tensor]:
    """AUROC from cumulative counts ``[R, G]`` at tie-grouped thresholds (descending score): the trapezoid."""
    pos, neg = tp[:, -1], fp[:, -1]
    tp_prev = F.pad(tp[:, :-1], (1, 0))
    twice_area = _rowdot(fp - F.pad(fp[:, :-1], (1, 0)), tp + tp_prev)
    undefined = (pos <= 0) | (neg <= 0)
    return torch.where(undefined, torch.zeros_like(pos), twice_area / (2 * pos * neg)), undefined


def _group_ap(tp: Tensor, fp: Tensor) -> tuple[Tensor, Tensor]:
    """AP ``sum_k (R_k - R_{k-1}) P_k`` from cumulative counts ``[R, G]`` at tie-grouped thresholds."""
    pos = tp[:, -1]
    precision = tp / (tp + fp).clamp_min(torch.finfo(tp.dtype).tiny)
    undefined = pos <= 0
    value = _rowdot(tp - F.pad(tp[:, :-1], (1, 0)), precision) / pos
    return torch.where(undefined, torch.zeros_like(pos), value), undefined


def _rowdot(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise dot product of two ``[R, n]`` tensors without materialising their product."""
    return torch.bmm(a.unsqueeze(1), b.unsqueeze(2)).view(-1)


def _sample_auroc(w: Tensor, y: Tensor, end_idx: Optional[Tensor]) -> tuple[Tensor, Tensor]:
    """Weighted AUROC with ties counting 1/2, from per-sample weights in score-descending order.

    Within a run of tied scores the negatives must come before the positives, so that the cumulative positive
    weight at a negative is the weight of the positives strictly above it. The result equals the trapezoid
    under torchmetrics' tie-grouped ROC curve on the data with each sample repeated by its weight.

    Args:
        w: ``[R, n]`` sample weights (R replicates).
        y: ``[n]`` 1.0 for positives, 0.0 for negatives.
        end_idx: ``[n]`` index of the last sample of each sample's tie group, or None when there are no ties.

    Returns:
        ``(value [R], undefined [R])``; where undefined (no positive or no negative weight) the value is
        torchmetrics' fill-in 0.
    """
    wy = w * y
    tpc = torch.cumsum(wy, 1)
    wn = w - wy
    num = _rowdot(wn, tpc) if end_idx is None else 0.5 * _rowdot(wn, tpc + tpc.index_select(1, end_idx))
    pos, neg = tpc[:, -1], wn.sum(1)
    undefined = (pos <= 0) | (neg <= 0)
    value = torch.where(undefined, torch.zeros_like(pos), num / (pos * neg))
    return value, undefined


def _sample_auroc_sparse_ties(w: Tensor, y: Tensor, ties: Optional[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """:func:`_sample_auroc` with the tie correction restricted to the few samples it changes.

    A negative at position i gains half the positive weight of its tie group, ``tpc[end(i)] - tpc[i]``, which is
    zero unless i shares a tie group with later samples. So the numerator is ``rowdot(wn, tpc)`` plus a half
    correction over those columns only: one pass less over ``[R, n]`` and no full ``index_select``.

    Args:
        w: ``[R, n]`` sample weights in score-descending order (negatives first within a tie group).
        y: ``[n]`` 1.0 for positives, 0.0 for negatives.
        ties: ``(cols, ends)``: the negatives that are not last in their tie group and their group's last index;
            None when there are none.

    Returns:
        ``(value [R], undefined [R])``, as :func:`_sample_auroc`.
    """
    wy = w * y
    tpc = torch.cumsum(wy, 1)
    wn = w - wy
    num = _rowdot(wn, tpc)
    if ties is not None:
        cols, ends = ties
        num = num + 0.5 * _rowdot(w.index_select(1, cols), tpc.index_select(1, ends) - tpc.index_select(1, cols))
    pos, neg = tpc[:, -1], wn.sum(1)
    undefined = (pos <= 0) | (neg <= 0)
    value = torch.where(undefined, torch.zeros_like(pos), num / (pos * neg))
    return value, undefined


def _sample_ap(w: Tensor, y: Tensor, end_idx: Optional[Tensor]) -> tuple[Tensor, Tensor]:
    """Weighted average precision ``sum_k (R_k - R_{k-1}) P_k`` over tie-grouped thresholds.

    Args:
        w: ``[R, n]`` sample weights in score-descending order.
        y: ``[n]`` 1.0 for positives, 0.0 for negatives.
        end_idx: ``[n]`` index of the last sample of each sample's tie group, or None when there are no ties.

    Returns:
        ``(value [R], undefined [R])``; undefined means no positive weight (value 0 there, the caller decides).
    """
    wy = w * y
    tpc = torch.cumsum(wy, 1)
    precision = tpc / torch.cumsum(w, 1).clamp_min(torch.finfo(w.dtype).tiny)
    if end_idx is not None:
        precision = precision.index_select(1, end_idx)
    pos = tpc[:, -1]
    undefined = pos <= 0
    value = torch.where(undefined, torch.zeros_like(pos), _rowdot(wy, precision) / pos)
    return value, undefined


def _binned_rates(hist: Tensor, kt: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Counts at each threshold from a ``[R, 2, K]`` histogram (row 0 negatives, row 1 positives).

    ``kt[j]`` is the number of thresholds <= threshold j, so that ``score >= t_j`` iff ``bin(score) >= kt[j]``.

    Returns:
        ``(tps [R, T], fps [R, T], positives [R], negatives [R])``.
    """
    suffix = hist.flip(-1).cumsum(-1).flip(-1)  # suffix[..., k] = sum_{k' >= k}
    at = suffix[..., kt]  # [R, 2, T]
    return at[:, 1], at[:, 0], suffix[:, 1, 0], suffix[:, 0, 0]


def _safe_div(num: Tensor, den: Tensor) -> Tensor:
    """``num / den`` with 0 where ``den == 0`` (torchmetrics' ``_safe_divide``)."""
    return torch.where(den != 0, num / torch.where(den != 0, den, torch.ones_like(den)), torch.zeros_like(num))


def _binned_auroc(hist: Tensor, kt: Tensor) -> tuple[Tensor, Tensor]:
    """Binned AUROC exactly as torchmetrics: trapezoid over the flipped (fpr, tpr) at the given thresholds."""
    tps, fps, pos, neg = _binned_rates(hist, kt)
    tpr = _safe_div(tps, pos[:, None]).flip(-1)
    fpr = _safe_div(fps, neg[:, None]).flip(-1)
    value = ((fpr[:, 1:] - fpr[:, :-1]) * (tpr[:, 1:] + tpr[:, :-1])).sum(1) / 2
    return value, (pos <= 0) | (neg <= 0)


def _binned_ap(hist: Tensor, kt: Tensor) -> tuple[Tensor, Tensor]:
    """Binned AP exactly as torchmetrics: ``-sum((r[1:] - r[:-1]) * p[:-1])`` with (r, p) = (0, 1) appended."""
    tps, fps, pos, _ = _binned_rates(hist, kt)
    precision = _safe_div(tps, tps + fps)
    recall = _safe_div(tps, pos[:, None].expand_as(tps))
    recall_next = torch.cat([recall[:, 1:], torch.zeros_like(recall[:, :1])], 1)
    value = -((recall_next - recall) * precision).sum(1)
    return value, pos <= 0


# ------------------------------------------------------------------------------------------------------------
# Sampling helpers
# ------------------------------------------------------------------------------------------------------------


def _lexsort(keys: list[Tensor]) -> Tensor:
    """Indices sorting rows lexicographically by ``keys`` (most significant first), stable."""
    order = torch.arange(keys[0].shape[0], device=keys[0].device)
    for key in reversed(keys):
        order = order[torch.sort(key[order], stable=True).indices]
    return order


def _group_ends(sorted_scores: Tensor) -> Tensor:
    """Last index of each run of equal values in a sorted 1-D tensor (torchmetrics' distinct thresholds).

    NaN scores (sorted first in descending order, as torchmetrics sorts them) form one run: they tie.
    """
    n = sorted_scores.shape[0]
    a, b = sorted_scores[1:], sorted_scores[:-1]
    ends = torch.nonzero((a != b) & ~(torch.isnan(a) & torch.isnan(b))).flatten()
    return torch.cat([ends, torch.full((1,), n - 1, dtype=ends.dtype, device=ends.device)])


def _group_ids(ends: Tensor, n: int) -> Tensor:
    """``[n]`` tie-group index of every position, from the group ends of :func:`_group_ends`."""
    starts = torch.zeros(n, dtype=torch.long, device=ends.device)
    starts[ends[:-1] + 1] = 1
    return starts.cumsum(0)


def _poisson1_cdf(device: torch.device) -> Tensor:
    """CDF of Poisson(1) at 0, 1, ... while it is below 1 in float64 (18 values)."""
    pmf, cdf, k = math.exp(-1.0), [], 0
    total = pmf
    while total < 1.0 and k < 40:
        cdf.append(total)
        k += 1
        pmf /= k
        total += pmf
    return torch.tensor(cdf, dtype=torch.float64, device=device)


class _Draw:
    """One chunk of replicate weights over the n samples: multinomial draws are kept as indices."""

    def __init__(self, weights: Optional[Tensor] = None, idx: Optional[Tensor] = None, ones: Optional[Tensor] = None):
        self._weights, self.idx, self._ones = weights, idx, ones

    @property
    def rows(self) -> int:
        return (self.idx if self.idx is not None else self._weights).shape[0]

    def weights(self) -> Tensor:
        """``[rows, n]`` float32 weights (multinomial: the counts of each sample, built once on demand)."""
        if self._weights is None:
            rows, n = self.idx.shape
            buf = torch.zeros((rows, n), dtype=torch.float32, device=self.idx.device)
            self._weights = buf.scatter_add_(1, self.idx, self._ones[:rows])
        return self._weights


class _Workspace:
    """Reusable buffers for drawing chunks of ``[rows, n]`` sample weights."""

    def __init__(self, step: int, n: int, device: torch.device) -> None:
        self.weights = torch.empty((step, n), dtype=torch.float32, device=device)
        self.ones = torch.ones((step, n), dtype=torch.float32, device=device)
        self.cdf = _poisson1_cdf(device)

    def draw(self, mode: str, rows: int, gen: torch.Generator) -> _Draw:
        """Multinomial draws (indices), Exp(1) weights (Dirichlet up to scale) or Poisson(1) weights."""
        w = self.weights[:rows]
        n = w.shape[1]
        if mode == "multinomial":
            return _Draw(idx=torch.randint(n, (rows, n), generator=gen, device=w.device), ones=self.ones)
        u = torch.rand((rows, n), generator=gen, dtype=torch.float64, device=w.device)
        if mode == "bayesian":  # Exp(1) = Gamma(1); normalising to Dirichlet(1,...,1) changes no metric
            return _Draw(weights=w.copy_(u.neg_().log1p_().neg_()))
        return _Draw(weights=w.copy_(torch.bucketize(u, self.cdf, right=True)))


def _cell_weights(mode: str, rows: int, counts: Tensor, gen: torch.Generator) -> Tensor:
    """``[rows, cells]`` replicate weights of histogram cells holding ``counts`` samples each.

    Multinomial over samples aggregates to ``Multinomial(n, counts / n)`` over cells (drawn as sequential
    binomials); Dirichlet(1, …, 1) over samples aggregates to Dirichlet(counts) (normalised gammas; the scale
    is irrelevant to the metrics); Poisson(1) per sample aggregates to Poisson(count).
    """
    counts = counts.to(torch.float64)
    out = torch.zeros((rows, counts.numel()), dtype=torch.float64, device=counts.device)
    if mode == "poisson":
        return torch.poisson(counts.expand(rows, -1).contiguous(), generator=gen)
    nonzero = torch.nonzero(counts > 0).flatten().tolist()
    if mode == "bayesian":
        idx = torch.tensor(nonzero, device=counts.device, dtype=torch.long)
        alpha = counts[idx].expand(rows, -1).contiguous()
        out[:, idx] = torch._standard_gamma(alpha, generator=gen)
        return out
    values = counts.tolist()
    mass = float(sum(values))
    remaining = torch.full((rows,), mass, dtype=torch.float64, device=counts.device)
    for j, cell in enumerate(nonzero):
        c = values[cell]
        if j == len(nonzero) - 1:
            draw = remaining
        else:
            prob = torch.full((rows,), min(1.0, c / mass), dtype=torch.float64, device=counts.device)
            draw = torch.binomial(remaining, prob, generator=gen)
        out[:, cell] = draw
        remaining = remaining - draw
        mass -= c
    return out


# ------------------------------------------------------------------------------------------------------------
# The engine
# ------------------------------------------------------------------------------------------------------------


class RankingEngine(BootstrapEngine):
    """Bootstrap replicates of AUROC / average precision (binary and multiclass), exact and vectorized.

    See the module docstring for the algorithm. ``compute()`` returns an :class:`EngineOutput` with
    ``value`` of shape ``S`` (``()``, or ``[C]`` for ``average="none"``), ``replicates`` ``[B, *S]`` and,
    when ``need_jackknife``, the exact leave-one-out values (closed forms for AUROC and exact AP; for binned
    thresholds one value per histogram cell) with their multiplicities.

    Args:
        base_metric: a fresh ``BinaryAUROC``, ``BinaryAveragePrecision``, ``MulticlassAUROC`` or
            ``MulticlassAveragePrecision`` (see :meth:`supports`); it is read for its options, never updated.
        num_bootstraps: the number of replicates B.
        resampling: ``"multinomial"``, ``"poisson"`` or ``"bayesian"``.
        seed: the base seed of every random stream.
        need_jackknife: whether ``compute`` returns leave-one-out values (for BCa).
        kwargs: passed to ``torchmetrics.Metric`` (``dist_sync_fn``, ``compute_on_cpu``, ...).

    Raises:
        ValueError: if ``supports(base_metric, resampling)`` is False.

    Example:
        >>> import torch
        >>> from torchmetrics.classification import BinaryAUROC
        >>> engine = RankingEngine(BinaryAUROC(), 100, "multinomial", seed=0, need_jackknife=False)
        >>> engine.update(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1]))
        >>> out = engine.compute()
        >>> out.value, out.replicates.shape
        (tensor(0.7500), torch.Size([100]))
    """

    higher_is_better = True

    preds: list[Tensor]
    target: list[Tensor]
    hist: Tensor

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
        if not self.supports(base_metric, resampling):
            raise ValueError(
                f"Expected argument `base_metric` to be one of {[c.__name__ for c in _SUPPORTED]} without"
                f" `max_fpr` and `resampling` in {RESAMPLING_MODES}, but received {base_metric!r}, {resampling!r}"
            )
        self._is_auroc = isinstance(base_metric, (BinaryAUROC, MulticlassAUROC))
        self._multiclass = isinstance(base_metric, (MulticlassAUROC, MulticlassAveragePrecision))
        self._num_classes = int(base_metric.num_classes) if self._multiclass else 1
        average = getattr(base_metric, "average", None) if self._multiclass else "binary"
        self._average = "none" if average is None else average
        self._ignore_index: Optional[int] = base_metric.ignore_index
        self._normalization = getattr(base_metric, "normalization", "sigmoid") if not self._multiclass else "softmax"

        thresholds = base_metric.thresholds
        self._binned = thresholds is not None
        # multiclass binned keeps the samples too: the classes of one sample share its weight in every mode
        self._keep_samples = (not self._binned) or self._multiclass
        c = self._num_classes
        if self._binned:
            thr = thresholds.detach().clone()
            self.register_buffer("_thresholds", thr, persistent=False)
            k = thr.numel() + 1
            self.add_state("hist", default=torch.zeros(c, 2, k, dtype=torch.long), dist_reduce_fx="sum")
        if self._keep_samples:
            self.add_state("preds", default=[], dist_reduce_fx="cat")
            self.add_state("target", default=[], dist_reduce_fx="cat")
        if self.paired:  # model B's scores, aligned with ``preds`` (model A's)
            self.add_state("preds_b", default=[], dist_reduce_fx="cat")
        # groups (cluster bootstrap): one id per kept sample, aligned with ``preds``; for binary binned metrics
        # (no samples kept) the per-batch (group, histogram cell, count) triples
        self.add_state("group_ids", default=[], dist_reduce_fx="cat")
        if not self._keep_samples:
            self.add_state("group_cells", default=[], dist_reduce_fx="cat")
            self.add_state("group_counts", default=[], dist_reduce_fx="cat")

    @classmethod
    def supports(cls, base_metric: Metric, resampling: str) -> bool:
        """Whether this engine reproduces ``base_metric`` exactly.

        Args:
            base_metric: the metric to wrap.
            resampling: the resampling mode.

        Returns:
            True for ``BinaryAUROC`` (``max_fpr`` None or 1), ``BinaryAveragePrecision``, ``MulticlassAUROC`` and
            ``MulticlassAveragePrecision`` (exact classes, not subclasses) with a known resampling mode.
        """
        if resampling not in RESAMPLING_MODES or type(base_metric) not in _SUPPORTED:
            return False
        if isinstance(base_metric, BinaryAUROC) and base_metric.max_fpr not in (None, 1, 1.0):
            return False
        if isinstance(base_metric, (MulticlassAUROC, MulticlassAveragePrecision)) and (
            base_metric.average not in _AVERAGES
        ):
            return False
        if not isinstance(base_metric, (MulticlassAUROC, MulticlassAveragePrecision)) and getattr(
            base_metric, "normalization", "sigmoid"
        ) not in (None, "sigmoid", "softmax"):
            return False
        ignore = base_metric.ignore_index
        return ignore is None or isinstance(ignore, int)

    @classmethod
    def supports_paired(cls, base_metric: Metric, resampling: str) -> bool:
        """Whether the paired comparison of ``base_metric`` runs here: exact thresholds (``thresholds=None``)."""
        return cls.supports(base_metric, resampling) and base_metric.thresholds is None

    # --------------------------------------------------------------------------------------------------------
    # update
    # --------------------------------------------------------------------------------------------------------

    def _validate(self, preds: Tensor, target: Tensor) -> None:
        """The wrapped metric's own tensor validation, run when its ``validate_args`` is true (as its ``update``
        does; it syncs with the host). Out-of-range targets raise here exactly as they do in torchmetrics."""
        if not getattr(self.base_metric, "validate_args", False):
            return
        if self._multiclass:
            _multiclass_precision_recall_curve_tensor_validation(preds, target, self._num_classes, self._ignore_index)
        else:
            _binary_precision_recall_curve_tensor_validation(preds, target, self._ignore_index)

    def _format(self, preds: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Optional[Tensor]]:
        """torchmetrics' formatting without host syncs: flatten, normalise logits, mask ignored samples.

        Integer or boolean scores become floats and floating targets become integers, as torchmetrics
        accepts them when it does not validate its inputs (``BinaryAUROC`` never does).

        Returns:
            ``(preds [m] or [m, C], target [m], valid [m])``; ignored samples stay (``valid`` False) and are
            dropped at compute, so that ``update`` never needs the data-dependent size of a boolean mask.
            ``valid`` is ``None`` when there is no ``ignore_index`` and no histogram needs it.
        """
        if not preds.is_floating_point():
            preds = preds.to(torch.get_default_dtype())
        if target.is_floating_point():
            target = target.long()
        c = self._num_classes
        if self._multiclass:
            if preds.ndim != target.ndim + 1 or preds.shape[1] != c:
                raise ValueError(
                    f"Expected `preds` of shape (N, {c}, ...) and `target` of shape (N, ...),"
                    f" but got {tuple(preds.shape)} and {tuple(target.shape)}"
                )
            preds = preds.transpose(0, 1).reshape(c, -1).T
        else:
            if preds.shape != target.shape:
                raise ValueError(
                    f"Expected `preds` and `target` of the same shape, but got {preds.shape}, {target.shape}"
                )
            preds = preds.flatten()
        target = target.flatten()
        valid = target != self._ignore_index if self._ignore_index is not None else None
        if valid is not None and preds.device.type == "cpu":
            # on CPU (no device sync to avoid) drop the ignored samples first, as torchmetrics does: the sigmoid /
            # softmax then runs on the same tensor as torchmetrics', bit for bit (a vectorised kernel can round an
            # element 1 ulp differently at another position, which breaks ties in exact curves)
            preds, target, valid = preds[valid], target[valid], None
        if self._normalization:
            # torchmetrics normalises a batch when any kept score lies outside [0, 1]. On CPU it tests
            # ``not all(0 <= p <= 1)``, so a NaN score normalises the batch; on other devices it tests
            # ``any(p < 0 | p > 1)``, where NaN does not. Mirror both.
            cpu = preds.device.type == "cpu"
            outside = ~((preds >= 0) & (preds <= 1)) if cpu else (preds < 0) | (preds > 1)
            if self._multiclass:
                outside = outside.any(1)
            need = (outside if valid is None else outside & valid).any()
            if preds.device.type == "cpu":  # reading a CPU flag costs no device sync: skip the unneeded work
                if need:
                    preds = preds.sigmoid() if self._normalization == "sigmoid" else torch.softmax(preds, dim=1)
            else:
                norm = preds.sigmoid() if self._normalization == "sigmoid" else torch.softmax(preds, dim=1)
                preds = torch.where(need, norm, preds)
        if valid is None:
            valid = torch.ones_like(target, dtype=torch.bool) if self._binned else None
        return preds, target, valid

    def _bins(self, preds: Tensor) -> Tensor:
        """Histogram bin of each score: the number of thresholds <= score (``preds >= t`` iff bin >= kt).

        A NaN score is in bin 0, below every threshold: ``NaN >= t`` is false, as in torchmetrics' binned update.
        """
        dtype = torch.promote_types(preds.dtype, self._thresholds.dtype)
        sorted_thr = torch.sort(self._thresholds.to(dtype)).values
        bins = torch.searchsorted(sorted_thr, preds.to(dtype).contiguous(), right=True)
        return torch.where(torch.isnan(preds), torch.zeros_like(bins), bins)

    def _kt(self) -> Tensor:
        dtype = self._thresholds.dtype
        sorted_thr = torch.sort(self._thresholds).values
        return torch.searchsorted(sorted_thr, self._thresholds.to(dtype), right=True)

    def _cells(self, preds: Tensor, target: Tensor) -> Tensor:
        """``[m, C']`` flat histogram cell index ``c * 2K + label * K + bin`` of every sample and class."""
        k = self._thresholds.numel() + 1
        if self._multiclass:
            classes = torch.arange(self._num_classes, device=target.device)
            labels = (target[:, None] == classes).long()
            return classes * 2 * k + labels * k + self._bins(preds)
        return ((target == 1).long() * k + self._bins(preds))[:, None]

    def update(self, *args: Tensor, groups: Optional[Tensor] = None, **kwargs: Tensor) -> None:
        """Add a batch, formatted as the wrapped metric would (no host synchronisation without ``groups``).

        Args:
            args: ``preds, target`` (or ``preds_a, preds_b, target`` when paired): scores, ``(N, ...)`` for binary
                or ``(N, C, ...)`` for multiclass (probabilities or logits), and integer labels ``(N, ...)``.
            groups: optional group ids, one per sample.
            kwargs: the same arguments by name.
        """
        bound = self._bind_inputs(args, kwargs)
        preds, target = bound["preds_a" if self.paired else "preds"], bound["target"]
        self._validate(preds, target)
        if self.paired:
            self._validate(bound["preds_b"], target)
        ids = None
        if groups is not None:
            ids = expand_groups(groups, target.shape[0] if target.ndim else 1, target.numel())
            if self._ignore_index is not None and preds.device.type == "cpu":  # as ``_format`` drops them
                flat = (target.long() if target.is_floating_point() else target).reshape(-1)
                ids = ids[flat != self._ignore_index]
        raw_target = target
        preds, target, valid = self._format(preds, target)
        if self.paired:
            preds_b = self._format(bound["preds_b"], raw_target)[0]
            if preds_b.shape != preds.shape:
                raise ValueError(
                    "Expected `preds_a` and `preds_b` of the same shape, but received "
                    f"{tuple(bound['preds_a'].shape)} and {tuple(bound['preds_b'].shape)}"
                )
            self.preds_b.append(preds_b)
        if self._keep_samples:  # ignored samples keep their target (== ignore_index) and are dropped at compute
            self.preds.append(preds)
            self.target.append(target)
            if ids is not None:
                self.group_ids.append(ids.to(target.device))
        if not self._binned:
            return
        if self._multiclass and (preds.device.type == "cpu" or getattr(self.base_metric, "validate_args", False)):
            # torchmetrics' binned multiclass update one-hot encodes the kept targets, which raises on a class
            # out of range; checked where it costs no device sync, or where the metric validates anyway
            kept = target if valid is None else target[valid]
            if bool((kept < 0).any()):
                raise RuntimeError("Class values must be non-negative.")
            if bool((kept >= self._num_classes).any()):
                raise RuntimeError("Class values must be smaller than num_classes.")
        cells = self._cells(preds, target)  # [m, C']
        if ids is not None and not self._keep_samples and cells.numel() > 0:  # binary: (group, cell) counts
            kept = valid.to(cells.device)
            group_ids, group_cells, counts = count_pairs(ids.to(cells.device)[kept], cells[kept, 0], self.hist.numel())
            self.group_ids.append(group_ids)
            self.group_cells.append(group_cells)
            self.group_counts.append(counts)
        w_valid = valid.long()[:, None].expand_as(cells)
        batch = torch.zeros(self.hist.numel(), dtype=self.hist.dtype, device=self.hist.device)
        batch.scatter_add_(0, cells.reshape(-1), w_valid.reshape(-1))
        # out of place: under ddp_spawn the state tensor is in shared memory, shared by the ranks
        self.hist = self.hist + batch.view_as(self.hist)
        # every resampling mode draws at compute time (binary: per histogram cell; multiclass: per kept sample)

    # --------------------------------------------------------------------------------------------------------
    # compute
    # --------------------------------------------------------------------------------------------------------

    def grouped(self) -> bool:
        """Whether the data came with group ids (then a unit is a group: the cluster bootstrap)."""
        ids = self.group_ids
        return ids.numel() > 0 if isinstance(ids, Tensor) else any(t.numel() > 0 for t in ids)

    def _samples(self) -> tuple[Tensor, Tensor]:
        """The kept samples without ignored ones, in canonical order: ``(preds, target)``."""
        return self._samples_units()[:2]  # type: ignore[return-value]

    def _samples_units(self) -> tuple[Tensor, Tensor, Optional[Tensor], Optional[Tensor]]:
        """The kept samples without ignored ones, in canonical order (sorted by target, then scores).

        Returns:
            ``(preds, target, unit, preds_b)``: ``unit[i]`` is the index of sample i's group among the sorted
            distinct ids (None without groups); ``preds_b`` is model B's scores when paired (else None).
        """
        preds = dim_zero_cat(self.preds)
        target = dim_zero_cat(self.target)
        preds_b = dim_zero_cat(self.preds_b) if self.paired else None
        ids = dim_zero_cat(self.group_ids) if self.grouped() else None
        if self._ignore_index is not None:
            keep = target != self._ignore_index
            preds, target = preds[keep], target[keep]
            preds_b = None if preds_b is None else preds_b[keep]
            ids = None if ids is None else ids[keep.to(ids.device)]
        if self.paired and self._multiclass:
            order = _lexsort([target] + [p[:, c] for p in (preds, preds_b) for c in range(self._num_classes)])
        elif self.paired:  # (score_a descending, target, score_b): model A's score-sorted order, ties broken by B
            order = torch.sort(preds_b, stable=True).indices
            order = order[torch.sort(target[order], stable=True).indices]
            order = order[torch.sort(preds[order], descending=True, stable=True).indices]
        elif self._multiclass:
            order = _lexsort([target] + [preds[:, c] for c in range(self._num_classes)])
        else:  # (score descending, target ascending): the score-sorted order with ties grouped
            order = torch.sort(target, stable=True).indices
            order = order[torch.sort(preds[order], descending=True, stable=True).indices]
        unit = None if ids is None else torch.unique(ids.to(order.device)[order], return_inverse=True)[1]
        return preds[order], target[order], unit, None if preds_b is None else preds_b[order]

    def _reduce(
        self, vals: Tensor, undefined: Tensor, supports: Tensor, full: Optional[tuple[Tensor, Tensor]]
    ) -> Tensor:
        """Average per-class values ``[R, C']`` as torchmetrics does.

        Args:
            vals: per-class values with torchmetrics' fill-ins where undefined.
            undefined: ``[R, C']`` where the class is undefined in that row.
            supports: ``[R, C']`` (weighted) positives per class, for ``weighted``.
            full: ``(full_vals [C'], full_undefined [C'])`` of the full data; None when ``vals`` *is* the full
                data. A class undefined in a row but defined on the full data makes the row NaN (per class for
                ``none``).
        """
        if full is None:
            full_vals, new = vals[0], torch.zeros_like(undefined)
        else:
            full_vals, full_undef = full
            vals = torch.where(full_undef, full_vals.expand_as(vals), vals)
            new = undefined & ~full_undef
        nan = torch.full_like(vals, float("nan"))
        if self._average in ("binary", "none"):
            out = torch.where(new, nan, vals)
            return out[:, 0] if self._average == "binary" else out
        keep = ~torch.isnan(full_vals)
        if full is None and not bool(keep.all()):
            rank_zero_warn(
                f"Average precision score for one or more classes was `nan`. Ignoring these classes in"
                f" {self._average}-average",
                UserWarning,
            )
        if self._average == "macro":
            out = vals[:, keep].mean(1)
        else:
            w = supports[:, keep]
            w = _safe_div(w, w.sum(1, keepdim=True).expand_as(w))
            out = (vals[:, keep] * w).sum(1)
        return torch.where(new.any(1), torch.full_like(out, float("nan")), out)

    def _fill_exact_ap(self, vals: Tensor, undefined: Tensor, all_zero: bool) -> Tensor:
        """torchmetrics' AP for a multiclass class with no positives: 0 if every target is 0, else NaN."""
        if not self._multiclass or all_zero:
            return vals
        return torch.where(undefined, torch.full_like(vals, float("nan")), vals)

    def compute(self) -> EngineOutput:
        """Value, replicates and (if requested) jackknife values; see :class:`EngineOutput`."""
        if self._binned and not self._keep_samples:
            if int(self.hist.sum()) == 0:
                return self._empty_output()
            return self._compute_binned_hist()
        return self._compute_samples()

    def _empty_output(self) -> EngineOutput:
        """No sample to resample (no update, or every sample ignored): no replicates, and the wrapped metric's
        own value on no data, which is NaN where torchmetrics cannot compute one (exact thresholds)."""
        ref = copy.deepcopy(self.base_metric)
        ref.reset()
        ref.sync_on_compute = False  # every rank is here (the state is synced): nothing to gather
        ref._to_sync = False
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                value = ref.compute().float()
        except (ValueError, IndexError, RuntimeError):  # exact thresholds: "No samples to concatenate"
            shape = (self._num_classes,) if self._average == "none" else ()
            value = torch.full(shape, float("nan"), device=self.device)
        if self.paired:
            value = torch.stack([value, value.clone()])
        return EngineOutput(value=value, replicates=value.new_zeros((0, *value.shape)))

    # -- binned histogram path (binary binned, any mode) -------------------------------------------------------

    def _binned_kernel(self) -> Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]:
        return _binned_auroc if self._is_auroc else _binned_ap

    def _per_class_binned(self, hist: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Per-class values ``[R, C']``, undefined ``[R, C']`` and supports from ``[R, C', 2, K]`` histograms."""
        kernel, kt = self._binned_kernel(), self._kt().to(hist.device)
        r, c = hist.shape[:2]
        vals, undef = kernel(hist.reshape(r * c, 2, -1), kt)
        return vals.view(r, c), undef.view(r, c), hist[:, :, 1].sum(-1)

    def _group_patterns(self) -> tuple[Tensor, Tensor]:
        """Binary binned with groups: the distinct per-group histograms ``[P, 2K]`` and their multiplicities."""
        ids = dim_zero_cat(self.group_ids)
        uniq, inverse = torch.unique(ids, return_inverse=True)
        cells, counts = dim_zero_cat(self.group_cells), dim_zero_cat(self.group_counts)
        per_group = torch.zeros(uniq.numel(), self.hist.numel(), dtype=torch.long, device=ids.device)
        per_group = per_group.index_put((inverse, cells), counts, accumulate=True)
        patterns, multiplicity = unique_rows(per_group)
        return patterns.to(_KERNEL_DTYPE), multiplicity

    def _compute_binned_hist(self) -> EngineOutput:
        if self.grouped():
            return self._compute_binned_groups()
        hist = self.hist.to(_KERNEL_DTYPE)
        vals, undef, sup = self._per_class_binned(hist[None])
        full = (vals[0], undef[0])
        value = self._reduce(vals, undef, sup, None)[0]
        b = self.num_bootstraps
        gen = self.generator(hist.device)
        whist = _cell_weights(self.resampling, b, self.hist.reshape(-1), gen).view(b, *self.hist.shape)
        reps = []
        step = max(1, _CHUNK_ELEMENTS // max(1, hist.numel()))
        for s in range(0, b, step):
            rv, ru, rs = self._per_class_binned(whist[s : s + step].to(_KERNEL_DTYPE))
            reps.append(self._reduce(rv, ru, rs, full))
        out = EngineOutput(value=value.float(), replicates=torch.cat(reps).float())
        if self.need_jackknife:  # binary only here: one leave-one-out value per non-empty cell
            counts = self.hist.reshape(-1)
            cells = torch.nonzero(counts > 0).flatten()
            tables = self._binned_loo_table(hist[0])  # [2K] for the single class
            loo_v, loo_u = tables
            jack = self._reduce(loo_v[cells][:, None], loo_u[cells][:, None], None, full)
            out.jackknife = jack.float()
            out.jackknife_weights = counts[cells].float()
        return out

    def _compute_binned_groups(self) -> EngineOutput:
        """Binary binned with groups: a replicate reweights the distinct per-group histograms (patterns)."""
        hist = self.hist.to(_KERNEL_DTYPE)
        vals, undef, sup = self._per_class_binned(hist[None])
        full = (vals[0], undef[0])
        value = self._reduce(vals, undef, sup, None)[0]
        patterns, multiplicity = self._group_patterns()
        b = self.num_bootstraps
        gen = self.generator(hist.device)
        weights = _cell_weights(self.resampling, b, multiplicity, gen)  # [B, P]: groups aggregate per pattern
        reps = []
        step = max(1, _CHUNK_ELEMENTS // max(1, patterns.numel()))
        for s in range(0, b, step):
            whist = (weights[s : s + step] @ patterns).view(-1, *self.hist.shape)
            reps.append(self._reduce(*self._per_class_binned(whist), full))
        out = EngineOutput(value=value.float(), replicates=torch.cat(reps).float())
        if self.need_jackknife:  # leave one group out: one value per pattern, weighted by its multiplicity
            loo = (hist.reshape(1, -1) - patterns).view(-1, *self.hist.shape)
            out.jackknife = self._reduce(*self._per_class_binned(loo), full).float()
            out.jackknife_weights = multiplicity.float()
        return out

    def _binned_loo_table(self, hist_c: Tensor) -> tuple[Tensor, Tensor]:
        """Leave-one-out values for removing one sample from each cell of a ``[2, K]`` histogram.

        Returns:
            ``(values [2K], undefined [2K])`` indexed by ``label * K + bin``.
        """
        kernel, kt = self._binned_kernel(), self._kt().to(hist_c.device)
        cells = hist_c.numel()
        eye = torch.eye(cells, dtype=hist_c.dtype, device=hist_c.device)
        vals, undef = [], []
        step = max(1, _CHUNK_ELEMENTS // cells)
        for s in range(0, cells, step):
            loo = hist_c.reshape(1, -1) - eye[s : s + step]
            v, u = kernel(loo.view(-1, 2, hist_c.shape[-1]), kt)
            vals.append(v)
            undef.append(u)
        return torch.cat(vals), torch.cat(undef)

    # -- sample path (thresholds=None; multiclass binned multinomial/bayesian) ------------------------------

    def _compute_samples(self) -> EngineOutput:
        if len(self.target) == 0:
            return self._empty_output()
        preds, target, unit, preds_b = self._samples_units()
        n, c = target.shape[0], self._num_classes
        if n == 0:
            return self._empty_output()
        if not self._binned and any(bool(torch.isnan(p).any()) for p in (preds, preds_b) if p is not None):
            rank_zero_warn(
                "BootstrapMetric: some scores are NaN. They rank above every other score, as in torchmetrics' "
                "exact curves, and tie with each other here; torchmetrics takes NaN scores as distinct thresholds "
                "in the order the samples arrived, so its own value then depends on that order.",
                UserWarning,
            )
        device = target.device
        labels = target[:, None] == torch.arange(c, device=device) if self._multiclass else (target == 1)[:, None]

        def as_scores(p: Tensor) -> Tensor:
            return p if self._multiclass else p[:, None]

        all_zero = bool((target == 0).all())

        if self._binned:
            return self._compute_samples_binned(as_scores(preds), target, labels, unit)

        # the statistic of one model: per class, the permutation to (score descending, negatives first), the
        # tie-group ends and end index; binary unpaired samples are already in that order
        presorted = not self._multiclass  # binary: the canonical order is model A's score-sorted order
        models = [self._exact_prep(as_scores(preds), labels, presorted)]
        if preds_b is not None:
            models.append(self._exact_prep(as_scores(preds_b), labels, False))

        def statistic(draw: _Draw, full: Optional[list[tuple[Tensor, Tensor]]]) -> Tensor:
            outs = []
            for k, prep in enumerate(models):
                v, u, s = self._exact_per_class(prep, labels, draw, all_zero)
                outs.append(self._reduce(v, u, s, None if full is None else full[k]))
            return outs[0] if len(outs) == 1 else torch.stack(outs, 1)

        fulls = []
        values = []
        for prep in models:
            fv, fu, fs = self._exact_per_class(
                prep, labels, _Draw(weights=torch.ones((1, n), dtype=_KERNEL_DTYPE, device=device)), all_zero
            )
            values.append(self._reduce(fv, fu, fs, None)[0])
            fulls.append((fv[0], fu[0]))
        value = values[0] if len(values) == 1 else torch.stack(values)
        reps = self._replicates(n, lambda w: statistic(w, fulls), device, unit)
        out = EngineOutput(value=value.float(), replicates=reps.float())
        if self.need_jackknife:
            if unit is not None:
                out.jackknife = self._group_jackknife(n, unit, lambda w: statistic(w, fulls), device).float()
            else:
                jacks = [
                    self._exact_jackknife(p["perms"], p["ends"], p["ys"], labels, f, all_zero, per_sample=self.paired)
                    for p, f in zip(models, fulls)
                ]
                if len(jacks) == 1:
                    out.jackknife, out.jackknife_weights = jacks[0]
                else:  # per sample, both models: [n, 2, *S]
                    out.jackknife = torch.stack([jacks[0][0], jacks[1][0]], 1)
        return out

    def _exact_prep(self, scores: Tensor, labels: Tensor, presorted: bool) -> dict[str, Any]:
        """What one model's exact-curve statistic needs: per class the permutation from the canonical order to
        (score descending, negatives first), the tie-group ends, the end index and the labels in that order, and
        the (tie group, label) cell of every sample when ties are heavy."""
        n, c = labels.shape
        device = labels.device
        perms: list[Optional[Tensor]] = []
        ends: list[Tensor] = []
        end_idx: list[Optional[Tensor]] = []
        ys: list[Tensor] = []
        for j in range(c):
            perm: Optional[Tensor] = None  # binary unpaired: the canonical order is already this order
            if not presorted:
                perm = torch.sort(labels[:, j].to(torch.uint8), stable=True).indices
                perm = perm[torch.sort(scores[perm, j], descending=True, stable=True).indices]
            s_sorted = scores[:, j] if perm is None else scores[perm, j]
            perms.append(perm)
            e = _group_ends(s_sorted) if n > 0 else torch.zeros(0, dtype=torch.long, device=device)
            ends.append(e)
            end_idx.append(None if e.numel() == n else e[_group_ids(e, n)])
            ys.append((labels[:, j] if perm is None else labels[perm, j]).to(torch.float32))
        # with many ties (G << n) accumulate the weights per (tie group, label) cell and work on [R, G]
        cell_of: list[Optional[Tensor]] = []
        for j in range(c):
            if 4 * ends[j].numel() > n:
                cell_of.append(None)
                continue
            group = torch.empty(n, dtype=torch.long, device=device)
            group[perms[j] if perms[j] is not None else slice(None)] = _group_ids(ends[j], n)
            cell_of.append(2 * group + labels[:, j].long())
        # the negatives a tie correction changes (not last in their tie group), for the sparse AUROC kernel
        ties: list[Optional[tuple[Tensor, Tensor]]] = []
        for j in range(c):
            if end_idx[j] is None:
                ties.append(None)
                continue
            cols = torch.nonzero((end_idx[j] != torch.arange(n, device=device)) & (ys[j] == 0)).flatten()
            ties.append((cols, end_idx[j][cols]) if cols.numel() else None)
        return {"perms": perms, "ends": ends, "end_idx": end_idx, "ys": ys, "cell_of": cell_of, "ties": ties}

    def _exact_per_class(
        self, prep: dict[str, Any], labels: Tensor, draw: _Draw, all_zero: bool
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Per-class values, undefined flags and supports ``[rows, C']`` of one model under the weights ``draw``."""
        kernel = _sample_auroc if self._is_auroc else _sample_ap
        group_kernel = _group_auroc if self._is_auroc else _group_ap
        perms, ends, end_idx, ys, cell_of = prep["perms"], prep["ends"], prep["end_idx"], prep["ys"], prep["cell_of"]
        device = labels.device
        vs, us, ss = [], [], []
        for j in range(labels.shape[1]):
            if cell_of[j] is not None:
                g = ends[j].numel()
                if draw.idx is not None:  # multinomial: count the drawn samples' cells directly
                    h = torch.zeros((draw.rows, 2 * g), dtype=torch.float32, device=device)
                    h.scatter_add_(1, cell_of[j][draw.idx], draw._ones[: draw.rows])
                else:
                    w = draw.weights()
                    h = torch.zeros((draw.rows, 2 * g), dtype=w.dtype, device=device)
                    h.scatter_add_(1, cell_of[j].expand_as(w), w)
                h = h.to(_KERNEL_DTYPE).view(draw.rows, g, 2).cumsum(1)
                v, u = group_kernel(h[..., 1], h[..., 0])
                support = h[:, -1, 1]
            else:
                w = draw.weights()
                wj = w if perms[j] is None else w.index_select(1, perms[j])  # 8x faster than w[:, p]
                y = ys[j].to(w.dtype)
                if self._is_auroc and self.paired:  # one pass less; unpaired keeps its kernel (same rounding)
                    v, u = _sample_auroc_sparse_ties(wj, y, prep["ties"][j])
                else:
                    v, u = kernel(wj, y, end_idx[j])
                support = _rowdot(wj, y.expand_as(wj)) if self._average == "weighted" else v
            if not self._is_auroc:
                v = self._fill_exact_ap(v, u, all_zero)
            vs.append(v.to(_KERNEL_DTYPE))
            us.append(u)
            ss.append(support.to(_KERNEL_DTYPE))
        return torch.stack(vs, 1), torch.stack(us, 1), torch.stack(ss, 1)

    def _replicates(
        self, n: int, fn: Callable[[_Draw], Tensor], device: torch.device, unit: Optional[Tensor] = None
    ) -> Tensor:
        """Run ``fn`` on chunks of ``[rows, n]`` sample weights and concatenate the ``[rows, *S]`` results.

        With groups (``unit[i]`` the group of sample i), the weights are drawn per group (G multinomial draws of
        a group, or one Poisson(1) / Exp(1) weight per group) and every sample takes its group's weight.
        """
        gen = self.generator(device)
        step = min(self.num_bootstraps, max(1, _CHUNK_ELEMENTS // max(1, n * self._num_classes)))
        reps = []
        if unit is None:
            work = _Workspace(step, n, device)
            for s in range(0, self.num_bootstraps, step):
                rows = min(step, self.num_bootstraps - s)
                reps.append(fn(work.draw(self.resampling, rows, gen)))
            return torch.cat(reps)
        num_groups = int(unit.max()) + 1
        work = _Workspace(step, num_groups, device)
        for s in range(0, self.num_bootstraps, step):
            rows = min(step, self.num_bootstraps - s)
            group_weights = work.draw(self.resampling, rows, gen).weights()  # [rows, G]
            reps.append(fn(_Draw(weights=group_weights.index_select(1, unit))))
        return torch.cat(reps)

    def _group_jackknife(self, n: int, unit: Tensor, fn: Callable[[_Draw], Tensor], device: torch.device) -> Tensor:
        """Leave-one-group-out values ``[G, *S]``: ``fn`` with the weights of one group set to 0, in chunks."""
        num_groups = int(unit.max()) + 1
        step = max(1, _CHUNK_ELEMENTS // max(1, n * self._num_classes))
        outs = []
        for s in range(0, num_groups, step):
            gs = torch.arange(s, min(num_groups, s + step), device=device)
            weights = (unit[None, :] != gs[:, None]).to(torch.float32)
            outs.append(fn(_Draw(weights=weights)))
        return torch.cat(outs)

    def _compute_samples_binned(
        self, scores: Tensor, target: Tensor, labels: Tensor, unit: Optional[Tensor] = None
    ) -> EngineOutput:
        """Multiclass binned, multinomial/bayesian (and poisson with jackknife): weights over samples."""
        n, c = labels.shape
        device = labels.device
        k = self._thresholds.numel() + 1
        cells = self._cells(scores, target)
        hist = self.hist.to(_KERNEL_DTYPE)
        fv, fu, fs = self._per_class_binned(hist[None])
        value = self._reduce(fv, fu, fs, None)[0]
        full = (fv[0], fu[0])

        def fn(draw: _Draw) -> Tensor:
            w = draw.weights()
            rows = w.shape[0]
            h = torch.zeros((rows, c * 2 * k), dtype=torch.float32, device=device)
            src = w[:, :, None].expand(rows, n, c).reshape(rows, -1)
            h.scatter_add_(1, cells.reshape(1, -1).expand(rows, -1), src)
            return self._reduce(*self._per_class_binned(h.view(rows, c, 2, k).to(_KERNEL_DTYPE)), full)

        reps = self._replicates(n, fn, device, unit)
        out = EngineOutput(value=value.float(), replicates=reps.float())
        if self.need_jackknife and unit is not None:
            out.jackknife = self._group_jackknife(n, unit, fn, device).float()
        elif self.need_jackknife:
            tab_v, tab_u = zip(*[self._binned_loo_table(hist[j]) for j in range(c)])
            local = cells - (torch.arange(c, device=device) * 2 * k)  # [n, C] index into the class's table
            loo_v = torch.stack([tab_v[j][local[:, j]] for j in range(c)], 1)
            loo_u = torch.stack([tab_u[j][local[:, j]] for j in range(c)], 1)
            sup = fs.expand(n, c) - labels.to(_KERNEL_DTYPE)
            out.jackknife = self._reduce(loo_v, loo_u, sup, full).float()
        return out

    def _exact_jackknife(
        self,
        perms: list[Optional[Tensor]],
        ends: list[Tensor],
        ys: list[Tensor],
        labels: Tensor,
        full: tuple[Tensor, Tensor],
        all_zero: bool,
        per_sample: bool = False,
    ) -> tuple[Tensor, Optional[Tensor]]:
        """Exact leave-one-out values from closed forms over tie groups, O(n) after the sort.

        Binary: one value per (tie group, label) with its multiplicity. Multiclass (and binary with
        ``per_sample``, as a paired comparison needs): one value per sample, in the canonical order.
        """
        n, c = labels.shape
        loo_v, loo_u = [], []
        for j in range(c):
            y = ys[j].to(_KERNEL_DTYPE)
            tp = torch.cumsum(y, 0)[ends[j]]
            tot = (ends[j] + 1).to(_KERNEL_DTYPE)
            fp = tot - tp
            pg = tp - F.pad(tp[:-1], (1, 0))
            ng = fp - F.pad(fp[:-1], (1, 0))
            pos, neg = tp[-1], fp[-1]
            if self._is_auroc:
                num = (ng * (tp - pg / 2)).sum()
                v_pos = (num - (neg - fp + ng / 2)) / ((pos - 1) * neg)
                u_pos = (pos - 1 <= 0) | (neg <= 0)
                v_neg = (num - (tp - pg / 2)) / (pos * (neg - 1))
                u_neg = (pos <= 0) | (neg - 1 <= 0)
            else:
                t = tp + fp
                a = torch.where(pg > 0, pg * tp / t, torch.zeros_like(tp))
                base = a.sum()
                d = torch.where((pg > 0) & (fp > 0), pg * tp * (1 / (t - 1).clamp_min(1) - 1 / t), torch.zeros_like(tp))
                suffix_d = d.flip(0).cumsum(0).flip(0)
                v_neg = (base + suffix_d) / pos
                u_neg = (pos <= 0).expand_as(v_neg)
                b = torch.where((pg > 0) & (t > 1), pg * (tp - 1) / (t - 1).clamp_min(1), torch.zeros_like(tp))
                own = torch.where(t > 1, (pg - 1) * (tp - 1) / (t - 1).clamp_min(1), torch.zeros_like(tp))
                prefix_a = a.cumsum(0) - a
                suffix_b = b.flip(0).cumsum(0).flip(0) - b
                v_pos = (prefix_a + own + suffix_b) / (pos - 1)
                u_pos = (pos - 1 <= 0).expand_as(v_pos)
            v_pos, v_neg = torch.nan_to_num(v_pos), torch.nan_to_num(v_neg)
            u_pos, u_neg = u_pos.expand_as(v_pos), u_neg.expand_as(v_neg)
            # table [G, 2]: column 0 removes a negative of the group, column 1 a positive
            tab_v = torch.stack([v_neg, v_pos], 1)
            tab_u = torch.stack([u_neg, u_pos], 1)
            if not self._is_auroc:
                tab_v = self._fill_exact_ap(tab_v, tab_u, all_zero)
            if not self._multiclass and not per_sample:
                mult = torch.stack([ng, pg], 1).reshape(-1)
                keep = mult > 0
                vals = tab_v.reshape(-1)[keep][:, None]
                und = tab_u.reshape(-1)[keep][:, None]
                jack = self._reduce(vals, und, None, full)
                return jack.float(), mult[keep].float()
            # multiclass: the group of every sample in class j's order, mapped back to canonical order
            group_sorted = _group_ids(ends[j], n)
            group = torch.empty_like(group_sorted)
            group[perms[j] if perms[j] is not None else slice(None)] = group_sorted
            lab = labels[:, j].long()
            loo_v.append(tab_v[group, lab])
            loo_u.append(tab_u[group, lab])
        vals, und = torch.stack(loo_v, 1), torch.stack(loo_u, 1)
        sup = labels.sum(0, keepdim=True).to(_KERNEL_DTYPE) - labels.to(_KERNEL_DTYPE)
        return self._reduce(vals, und, sup, full).float(), None
