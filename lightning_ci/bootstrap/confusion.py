"""Exact bootstrap replicates for the confusion-matrix family of torchmetrics classifiers.

Every metric of this family (accuracy, precision, recall, F-beta, specificity, Jaccard, Matthews
correlation, Cohen's kappa) is a function of the confusion counts only. A bootstrap replicate of the
whole evaluation set therefore only needs the counts, not the samples:

- ``"multinomial"``: a replicate of n samples drawn with replacement is exactly
  ``Multinomial(n, counts / n)`` over the cells. It is sampled as sequential conditional binomials
  over the non-empty cells, vectorised over the B replicates: O(B · cells), whatever n is. The result
  depends only on the synced counts and the seed, so it does not depend on batch size, batch order or
  the number of DDP ranks.
- ``"bayesian"``: Rubin's Bayesian bootstrap puts Dirichlet(1, ..., 1) weights on the samples; summed
  per cell they are ``Dirichlet(counts)``. Gamma variates per cell, normalised, times n give real
  valued replicate counts. With a prior (``engine.prior = a > 0`` pseudo-counts per cell) the draws are
  the exact posterior ``Dirichlet(counts + a)`` of the cell probabilities over *every* cell, seen or not
  (:meth:`ConfusionEngine.posterior_output`); multilabel adds the pseudo-counts per label (each label's
  four cells are exactly ``Dirichlet(counts_l + a)``, the rows keep their cross-label dependence).
- ``"poisson"``: each sample gets an independent Poisson(1) weight per replicate. The weights of the m
  samples of one cell sum to ``Poisson(m)``, and sums of independent Poisson variates are Poisson, so for
  binary and multiclass inputs a replicate is exactly ``Poisson(count)`` per cell: it is drawn at compute
  time from the synced counts (``[B, cells]``, whatever n is), which keeps ``update`` as cheap as the
  unwrapped metric and makes the result independent of batching and of the number of DDP ranks.
  Multilabel rows share one weight across their labels, so there the m identical rows of one distinct
  *pattern* get ``Poisson(m)``, drawn at compute time from the stored rows (as the multinomial mode
  stores them): the result depends only on the multiset of rows and the seed.

The *unit* that is resampled is one element of the flattened input, exactly as torchmetrics counts
them: one sample for ``(N,)`` inputs, one (sample, position) pair for inputs with extra dimensions
``(N, ...)``. Multilabel inputs resample rows of L labels together: a row's L per-label cells form one
*pattern*. Since 4^L joint cells cannot be tabulated, the multinomial and Bayesian modes keep one row of
cell codes per sample (a ``cat`` state) and group identical rows with ``torch.unique`` at compute time.

Elements whose target equals ``ignore_index`` are kept as units (an "ignored" cell) that contribute to
no metric count, so a replicate resamples the data exactly as a bootstrap of every element seen would.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from typing import Any, ClassVar, Optional

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryCohenKappa,
    BinaryF1Score,
    BinaryFBetaScore,
    BinaryJaccardIndex,
    BinaryMatthewsCorrCoef,
    BinaryPrecision,
    BinaryRecall,
    BinarySpecificity,
    MulticlassAccuracy,
    MulticlassCohenKappa,
    MulticlassF1Score,
    MulticlassFBetaScore,
    MulticlassJaccardIndex,
    MulticlassMatthewsCorrCoef,
    MulticlassPrecision,
    MulticlassRecall,
    MulticlassSpecificity,
    MultilabelAccuracy,
    MultilabelF1Score,
    MultilabelFBetaScore,
    MultilabelJaccardIndex,
    MultilabelMatthewsCorrCoef,
    MultilabelPrecision,
    MultilabelRecall,
    MultilabelSpecificity,
)
from torchmetrics.functional.classification.accuracy import _accuracy_reduce
from torchmetrics.functional.classification.confusion_matrix import (
    _binary_confusion_matrix_tensor_validation,
    _multiclass_confusion_matrix_tensor_validation,
    _multilabel_confusion_matrix_tensor_validation,
)
from torchmetrics.functional.classification.f_beta import _fbeta_reduce
from torchmetrics.functional.classification.precision_recall import _precision_recall_reduce
from torchmetrics.functional.classification.specificity import _specificity_reduce
from torchmetrics.functional.classification.stat_scores import (
    _binary_stat_scores_format,
    _binary_stat_scores_tensor_validation,
    _multiclass_stat_scores_format,
    _multiclass_stat_scores_tensor_validation,
    _multilabel_stat_scores_format,
    _multilabel_stat_scores_tensor_validation,
)
from torchmetrics.utilities.compute import _safe_divide
from torchmetrics.utilities.data import _squeeze_if_scalar, dim_zero_cat

from lightning_ci.bootstrap._engine import (
    RESAMPLING_MODES,
    BootstrapEngine,
    EngineOutput,
    count_pairs,
    expand_groups,
    group_index,
    unique_rows,
)

# exact class -> (task, kind). Exact types only: a user subclass may override ``compute``.
_SUPPORTED: dict[type, tuple[str, str]] = {
    BinaryAccuracy: ("binary", "accuracy"),
    MulticlassAccuracy: ("multiclass", "accuracy"),
    MultilabelAccuracy: ("multilabel", "accuracy"),
    BinaryPrecision: ("binary", "precision"),
    MulticlassPrecision: ("multiclass", "precision"),
    MultilabelPrecision: ("multilabel", "precision"),
    BinaryRecall: ("binary", "recall"),
    MulticlassRecall: ("multiclass", "recall"),
    MultilabelRecall: ("multilabel", "recall"),
    BinaryFBetaScore: ("binary", "fbeta"),
    MulticlassFBetaScore: ("multiclass", "fbeta"),
    MultilabelFBetaScore: ("multilabel", "fbeta"),
    BinaryF1Score: ("binary", "fbeta"),
    MulticlassF1Score: ("multiclass", "fbeta"),
    MultilabelF1Score: ("multilabel", "fbeta"),
    BinarySpecificity: ("binary", "specificity"),
    MulticlassSpecificity: ("multiclass", "specificity"),
    MultilabelSpecificity: ("multilabel", "specificity"),
    BinaryJaccardIndex: ("binary", "jaccard"),
    MulticlassJaccardIndex: ("multiclass", "jaccard"),
    MultilabelJaccardIndex: ("multilabel", "jaccard"),
    BinaryMatthewsCorrCoef: ("binary", "mcc"),
    MulticlassMatthewsCorrCoef: ("multiclass", "mcc"),
    MultilabelMatthewsCorrCoef: ("multilabel", "mcc"),
    BinaryCohenKappa: ("binary", "kappa"),
    MulticlassCohenKappa: ("multiclass", "kappa"),
}
_STAT_SCORE_KINDS = ("accuracy", "precision", "recall", "fbeta", "specificity")

# the metric of a chunk of replicates is computed on at most this many count entries at once
_CHUNK_ELEMENTS = 1 << 22
# per-atom replicate weights (float64) are drawn in chunks of at most this many entries (64 MiB)
_DRAW_ELEMENTS = 1 << 23


# --------------------------------------------------------------------------------------------------
# sampling
# --------------------------------------------------------------------------------------------------
def _multinomial_rows(counts: Tensor, num_rows: int, generator: torch.Generator) -> Tensor:
    """Draw ``num_rows`` independent ``Multinomial(n, counts / n)`` vectors, ``n = counts.sum()``.

    Sequential conditional binomials ``x_k ~ Binomial(n - x_<k, c_k / (n - c_<k))``, vectorised over the
    rows with a Python loop over the atoms only. When there are many atoms for few units (say distinct
    multilabel rows), drawing the n units of each row one by one is cheaper, O(rows · n), and is used
    instead. Either way the result is a function of ``counts``, ``num_rows`` and the generator state.

    Args:
        counts: non-negative integer counts, shape ``[M]``.
        num_rows: number of replicates B.
        generator: the only source of randomness.

    Returns:
        float64 tensor ``[B, M]`` of integer-valued counts, each row summing to n.
    """
    device = counts.device
    counts = counts.long()
    num_atoms = counts.numel()
    out = torch.zeros(num_rows, num_atoms, dtype=torch.float64, device=device)
    n = int(counts.sum()) if num_atoms else 0
    if n == 0:
        return out
    # measured on CPU: a binomial call costs ~10 µs + 0.1 µs per row, a drawn unit ~0.04 µs
    if num_rows * n * 4 < num_atoms * (num_rows * 10 + 1000):
        unit_atom = torch.repeat_interleave(torch.arange(num_atoms, device=device), counts)
        ones = torch.ones((), dtype=torch.float64, device=device)
        chunk = max(1, _CHUNK_ELEMENTS // n)
        for start in range(0, num_rows, chunk):
            rows = min(chunk, num_rows - start)
            atom = unit_atom[torch.randint(n, (rows, n), generator=generator, device=device)]
            out[start : start + rows].scatter_add_(1, atom, ones.expand(rows, n))
        return out
    # exact conditional probabilities from integer suffix sums
    suffix = counts.flip(0).cumsum(0).flip(0)
    cond = (counts.double() / suffix.clamp(min=1).double()).clamp_(0.0, 1.0)
    remaining = torch.full((num_rows,), float(n), dtype=torch.float64, device=device)
    for k in range(num_atoms - 1):
        x = torch.binomial(remaining, cond[k].expand(num_rows).contiguous(), generator=generator)
        out[:, k] = x
        remaining = remaining - x
    out[:, num_atoms - 1] = remaining
    return out


def _group_multinomial_rows(counts: Tensor, num_rows: int, generator: torch.Generator) -> Tensor:
    """``num_rows`` draws of ``Multinomial(G, counts / G)`` over the per-group count patterns (the cluster bootstrap).

    ``counts[p]`` is the number of groups sharing pattern p (G in all): a row is exactly the cluster bootstrap's
    draw of G groups with replacement, counted per pattern. It is drawn by NumPy's ``Generator.multinomial``, a C
    loop over the patterns of conditional binomials ``Binomial(G - x_<p, p_p / (1 - p_<p))`` per row (inversion
    when the expected count is small, BTPE otherwise; the remaining mass is kept in double precision by
    subtraction, an error of order P · 1e-16 in a probability). That is about 0.1 µs a draw, O(B · P), with no
    per-pattern call from Python: a third faster than torch's per-pattern ``binomial`` (plus a uniform index route
    for rare patterns) on 200 patterns, and twice as fast on a few.

    The NumPy generator is seeded with one int64 drawn from ``generator``, never from a global RNG state, so the
    result is a function of ``counts``, ``num_rows`` and the generator state (the same on every DDP rank after the
    sync). The draw runs on the host: ``counts`` go to the CPU and the draws come back to their device (O(B · P),
    small next to the metric).

    Args:
        counts: groups per pattern, non-negative integers ``[P]``.
        num_rows: number of replicates B.
        generator: the only source of randomness.

    Returns:
        float64 ``[B, P]`` of integer-valued counts, each row summing to G.
    """
    host = counts.detach().long().cpu().numpy()
    num_groups = int(host.sum())
    if num_groups == 0 or host.size == 0:
        return torch.zeros(num_rows, host.size, dtype=torch.float64, device=counts.device)
    seed = int(torch.randint(0, 2**63 - 1, (1,), generator=generator, device=generator.device))
    draws = np.random.default_rng(seed).multinomial(num_groups, host / num_groups, size=num_rows)
    return torch.from_numpy(draws).to(device=counts.device, dtype=torch.float64)


def _dirichlet_rows(counts: Tensor, num_rows: int, generator: torch.Generator) -> Tensor:
    """Bayesian-bootstrap replicate counts: ``n · Dirichlet(counts)`` per row; empty atoms stay 0.

    Args:
        counts: non-negative counts, shape ``[M]``.
        num_rows: number of replicates B.
        generator: the only source of randomness.

    Returns:
        float64 tensor ``[B, M]``, each row summing to n (up to rounding).
    """
    alpha = counts.double()
    n = alpha.sum()
    if counts.numel() == 0 or float(n) == 0.0:
        return torch.zeros(num_rows, counts.numel(), dtype=torch.float64, device=counts.device)
    gamma = torch._standard_gamma(alpha.expand(num_rows, -1).contiguous(), generator=generator)
    gamma = torch.where(alpha > 0, gamma, 0.0)  # Gamma(0) comes back as a denormal, not 0
    return gamma / gamma.sum(-1, keepdim=True) * n


def _posterior_rows(counts: Tensor, prior: float, num_rows: int, generator: torch.Generator) -> Tensor:
    """Posterior draws of the cell probabilities, ``Dirichlet(counts + prior)``, scaled to ``n = counts.sum()``.

    Unlike :func:`_dirichlet_rows` every cell gets the pseudo-count ``prior``, empty cells included, so a
    cell never seen can still carry posterior mass (30 of 30 correct is not a point).

    Args:
        counts: non-negative counts of the K cells, shape ``[K]``.
        prior: pseudo-count per cell, ``> 0``.
        num_rows: number of draws B.
        generator: the only source of randomness.

    Returns:
        float64 tensor ``[B, K]``, each row summing to n (up to rounding).
    """
    alpha = counts.double() + float(prior)
    n = counts.double().sum()
    gamma = torch._standard_gamma(alpha.expand(num_rows, -1).contiguous(), generator=generator)
    total = gamma.sum(-1, keepdim=True).clamp(min=torch.finfo(torch.float64).tiny)
    return gamma / total * n


def _poisson_rows(counts: Tensor, num_rows: int, generator: torch.Generator) -> Tensor:
    """Poisson-bootstrap replicate counts: ``Poisson(count)`` per atom and row (the sum of its units'
    independent Poisson(1) weights).

    Args:
        counts: non-negative counts, shape ``[M]``.
        num_rows: number of replicates B.
        generator: the only source of randomness.

    Returns:
        float64 tensor ``[B, M]`` of integer-valued counts.
    """
    rates = counts.double().expand(num_rows, -1).contiguous()
    return torch.poisson(rates, generator=generator)


# --------------------------------------------------------------------------------------------------
# batched metric formulas (leading replicate dimension)
# --------------------------------------------------------------------------------------------------
def _sequential_sum(x: Tensor) -> Tensor:
    """Sum over the last dimension left to right, as Python's ``sum`` over a 1-d tensor does."""
    acc = x[..., 0]
    for i in range(1, x.shape[-1]):
        acc = acc + x[..., i]
    return acc


def _marginals(confmat: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(diag, rows, cols)`` of ``[b, C, C]`` confusion matrices (rows = target), each ``[b, C]``."""
    return confmat.diagonal(dim1=-2, dim2=-1), confmat.sum(-1), confmat.sum(-2)


def _matthews_from_marginals(diag: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """``_matthews_corrcoef_reduce`` from the marginals of ``[b, C, C]`` matrices; returns ``[b]``.

    For C = 2 this includes torchmetrics' special cases (perfect, all wrong, and the ``eps`` formulas
    when a marginal is empty).
    """
    eps = torch.finfo(torch.float32).eps
    c = diag.sum(-1)
    s = rows.sum(-1)
    cov_ytyp = c * s - _sequential_sum(rows * cols)
    cov_ypyp = s**2 - _sequential_sum(cols * cols)
    cov_ytyt = s**2 - _sequential_sum(rows * rows)
    denom = cov_ypyp * cov_ytyt
    zero = torch.zeros_like(s)
    regular = cov_ytyp / torch.sqrt(torch.where(denom == 0, 1.0, denom))
    if diag.shape[-1] != 2:
        return torch.where(denom == 0, zero, regular)

    tn, tp = diag[:, 0], diag[:, 1]
    fp, fn = cols[:, 1] - tp, rows[:, 1] - tp
    sq = math.sqrt(eps)
    # torchmetrics' ``denom == 0`` branch, evaluated for every row and selected
    deg_num = torch.where(
        (fn == 0) & (tn == 0),
        sq * (tp - fp),
        torch.where(
            (fp == 0) & (tn == 0),
            sq * (tp - fn),
            torch.where(
                (tp == 0) & (fn == 0),
                sq * (tn - fp),
                torch.where(
                    (tp == 0) & (fp == 0),
                    sq * (tn - fn),
                    torch.where(tp == 0, tn - fp * fn, torch.where(tn == 0, tp - fp * fn, tp * tn)),
                ),
            ),
        ),
    )
    deg_zero = (tp != 0) & (tn != 0) & (fp != 0) & (fn != 0)
    deg_den = (tp + fp + eps) * (tp + fn + eps) * (tn + fp + eps) * (tn + fn + eps)
    res = torch.where(denom == 0, torch.where(deg_zero, zero, deg_num / torch.sqrt(deg_den)), regular)
    res = torch.where((tp + tn == 0) & (fp + fn != 0), -torch.ones_like(res), res)
    return torch.where((tp + tn != 0) & (fp + fn == 0), torch.ones_like(res), res)


def _kappa_weights(num_classes: int, weights: Optional[str], dtype: torch.dtype, device: torch.device) -> Tensor:
    """The disagreement weight matrix of ``_cohen_kappa_reduce``."""
    if weights is None or weights == "none":
        return 1.0 - torch.eye(num_classes, dtype=dtype, device=device)
    idx = torch.arange(num_classes, dtype=dtype, device=device)
    diff = idx[None, :] - idx[:, None]
    return diff.abs() if weights == "linear" else diff.pow(2.0)


def _kappa_from_marginals(rows: Tensor, cols: Tensor, weighted_disagreement: Tensor, w_mat: Tensor) -> Tensor:
    """``_cohen_kappa_reduce``: ``1 - Σ w·confmat / Σ w·expected``, expected = outer(rows, cols) / n."""
    expected = ((rows @ w_mat) * cols).sum(-1) / rows.sum(-1)
    return 1 - weighted_disagreement / expected


def _jaccard_reduce(
    num: Tensor,
    denom: Tensor,
    support: Tensor,
    present: Optional[Tensor],
    average: Optional[str],
    ignore_index: Optional[int],
    zero_division: float,
) -> Tensor:
    """The averaging of ``_jaccard_index_reduce`` over ``[b, C]`` per-class numerators/denominators.

    Args:
        num: intersections ``[b, C]``.
        denom: unions ``[b, C]``.
        support: weights of ``average="weighted"`` ``[b, C]``.
        present: multiclass only: which classes appear as target or prediction (macro weights).
        average: ``"micro"``, ``"macro"``, ``"weighted"``, ``"none"`` or ``None``.
        ignore_index: a class index in range is left out of micro and macro (multiclass).
        zero_division: value of 0/0.
    """
    ignore_cond = ignore_index is not None and 0 <= ignore_index < num.shape[-1]
    if average == "micro":
        num = num.sum(-1)
        denom = denom.sum(-1) - (denom[:, ignore_index] if ignore_cond else 0.0)
    jaccard = _safe_divide(num, denom, zero_division=zero_division)
    if average is None or average in ("none", "micro"):
        return jaccard
    if average == "weighted":
        weights = support
    else:
        weights = torch.ones_like(jaccard)
        if ignore_cond:
            weights[:, ignore_index] = 0.0
        if present is not None:
            weights[~present] = 0.0
    return (weights * jaccard / weights.sum(-1, keepdim=True)).sum(-1)


def _stat_scores_reduce(
    base_metric: Metric, kind: str, task: str, tp: Tensor, fp: Tensor, tn: Tensor, fn: Tensor
) -> Tensor:
    """torchmetrics' own reduce function, with ``multidim_average="samplewise"`` (dim 0 = replicate)."""
    m = base_metric
    average = "binary" if task == "binary" else m.average
    multilabel = task == "multilabel"
    sw = "samplewise"
    if kind == "accuracy":
        return _accuracy_reduce(tp, fp, tn, fn, average=average, multidim_average=sw, multilabel=multilabel)
    if kind in ("precision", "recall"):
        return _precision_recall_reduce(
            kind, tp, fp, tn, fn, average=average, multidim_average=sw, multilabel=multilabel,
            zero_division=m.zero_division,
        )  # fmt: skip
    if kind == "fbeta":
        return _fbeta_reduce(
            tp, fp, tn, fn, m.beta, average=average, multidim_average=sw, multilabel=multilabel,
            zero_division=m.zero_division,
        )  # fmt: skip
    return _specificity_reduce(tp, fp, tn, fn, average=average, multidim_average=sw, multilabel=multilabel)


def _multiclass_metric(
    base_metric: Metric, diag: Tensor, rows: Tensor, cols: Tensor, disagreement: Optional[Tensor]
) -> Tensor:
    """A multiclass metric from the marginals of its confusion matrices.

    Args:
        base_metric: the multiclass metric.
        diag: ``[b, C]`` correct counts per class.
        rows: ``[b, C]`` target counts per class.
        cols: ``[b, C]`` predicted counts per class.
        disagreement: ``[b]`` Σ w·confmat, Cohen's kappa only.
    """
    kind = _SUPPORTED[type(base_metric)][1]
    if kind in _STAT_SCORE_KINDS:
        tp = diag
        fp = cols - diag
        fn = rows - diag
        tn = rows.sum(-1, keepdim=True) - (fp + fn + tp)
        return _stat_scores_reduce(base_metric, kind, "multiclass", tp, fp, tn, fn)
    if kind == "jaccard":
        return _jaccard_reduce(
            diag, rows + cols - diag, rows, rows + cols != 0, base_metric.average, base_metric.ignore_index,
            base_metric.zero_division,
        )  # fmt: skip
    if kind == "mcc":
        return _matthews_from_marginals(diag, rows, cols)
    w_mat = _kappa_weights(diag.shape[-1], base_metric.weights, diag.dtype, diag.device)
    return _kappa_from_marginals(rows, cols, disagreement, w_mat)


def confusion_metric_from_counts(base_metric: Metric, confmat: Tensor) -> Tensor:
    """The metric of ``base_metric``'s kind and options on a batch of confusion matrices.

    Uses torchmetrics' own reduce functions (with ``multidim_average="samplewise"``, where dim 0 plays
    the role of the samples) or batched copies of its formulas, so that each row equals what
    ``base_metric`` computes from that confusion matrix (to float32 rounding).

    Args:
        base_metric: a metric for which :meth:`ConfusionEngine.supports` is true.
        confmat: floating counts ``[b, 2, 2]`` (binary), ``[b, C, C]`` (multiclass, rows = target,
            columns = prediction) or ``[b, L, 2, 2]`` (multilabel, ``[[tn, fp], [fn, tp]]`` per label).

    Returns:
        ``[b, *S]`` where ``S`` is the shape of ``base_metric.compute()``.

    Example:
        >>> import torch
        >>> from torchmetrics.classification import MulticlassF1Score
        >>> confmat = torch.tensor([[[3.0, 1, 0], [0, 2, 0], [1, 0, 0]], [[5.0, 0, 0], [0, 0, 0], [0, 0, 0]]])
        >>> confusion_metric_from_counts(MulticlassF1Score(num_classes=3, average=None), confmat)
        tensor([[0.7500, 0.8000, 0.0000],
                [1.0000, 0.0000, 0.0000]])
    """
    task, kind = _SUPPORTED[type(base_metric)]
    if task == "multiclass" or kind in ("mcc", "kappa"):
        square = confmat.sum(1) if confmat.ndim == 4 else confmat  # multilabel MCC pools the labels
        disagreement = None
        if kind == "kappa":
            w_mat = _kappa_weights(square.shape[-1], base_metric.weights, square.dtype, square.device)
            disagreement = (w_mat * square).sum(dim=(-2, -1))
        diag, rows, cols = _marginals(square)
        if task == "multiclass":
            return _multiclass_metric(base_metric, diag, rows, cols, disagreement)
        if kind == "mcc":
            return _matthews_from_marginals(diag, rows, cols)
        w_mat = _kappa_weights(2, base_metric.weights, square.dtype, square.device)
        return _kappa_from_marginals(rows, cols, disagreement, w_mat)
    tn, fp, fn, tp = confmat[..., 0, 0], confmat[..., 0, 1], confmat[..., 1, 0], confmat[..., 1, 1]
    if kind in _STAT_SCORE_KINDS:
        return _stat_scores_reduce(base_metric, kind, task, tp, fp, tn, fn)
    # Jaccard, binary or multilabel
    if task == "binary":
        return _safe_divide(tp, fp + fn + tp, zero_division=base_metric.zero_division)
    return _jaccard_reduce(tp, tp + fp + fn, tp + fn, None, base_metric.average, None, base_metric.zero_division)


def _binary_inputs_pass(preds: Tensor, target: Tensor, ignore_index: Optional[int]) -> bool:
    """Whether torchmetrics' binary input validation (``_binary_stat_scores_tensor_validation`` with
    ``multidim_average="global"``, ``_binary_confusion_matrix_tensor_validation``) passes: the same shape, every
    target in {0, 1} or ``ignore_index``, integer preds in {0, 1}. One elementwise pass and one host sync, where
    torchmetrics sorts (``torch.unique``) the target and integer preds; on False the caller runs torchmetrics' own
    validation, which raises its own error.
    """
    if preds.shape != target.shape:
        return False
    if target.numel() == 0:
        return True
    if ignore_index is None and not target.is_floating_point() and not target.is_complex():
        low, high = torch.aminmax(target.reshape(-1))  # integers in [0, 1]: one pass
        bad = (low < 0) | (high > 1)
    else:
        bad = (target != 0) & (target != 1)
        if ignore_index is not None:
            bad = bad & (target != ignore_index)
        bad = bad.any()
    if not preds.is_floating_point():
        if preds.is_complex():
            return False
        low, high = torch.aminmax(preds.reshape(-1))
        bad = bad | (low < 0) | (high > 1)
    return not bool(bad)


# --------------------------------------------------------------------------------------------------
# the engine
# --------------------------------------------------------------------------------------------------
class ConfusionEngine(BootstrapEngine):
    """Bootstrap replicates for the confusion-matrix family, from counts.

    States (all synced by one collective each under DDP):

    - binary and multiclass: ``counts`` ``[K + 1]`` (long, sum): the K = 4 or C² cells
      ``target * C + pred`` plus one last cell for ignored elements.
    - multilabel: ``cells`` (uint8, cat): one row ``[L]`` per sample with the per-label cell
      ``2 * target + pred`` (0 = tn, 1 = fp, 2 = fn, 3 = tp, 4 = ignored).

    Every resampling mode draws its replicates at compute time from the synced state and the seed, so the
    result does not depend on batch sizes, the order of the samples or the number of DDP ranks. States are
    only ever replaced (``self.counts = self.counts + batch``), never written in place: under ``ddp_spawn``
    the pickled states live in shared memory, and an in-place update there would add every rank's counts
    into one storage.

    ``compute()`` returns an :class:`EngineOutput` whose ``value`` is ``base_metric``'s own ``compute``
    on the full counts (so it is identical to the unwrapped metric, dtype included) and whose
    ``replicates`` (float32) have shape ``[B, *value.shape]``. The jackknife holds one leave-one-out value
    per non-empty cell (binary, multiclass) or per distinct row pattern (multilabel), weighted by its
    count.

    Args:
        base_metric: a task-specific torchmetrics classification metric (see :meth:`supports`).
        num_bootstraps: number of replicates B.
        resampling: ``"multinomial"``, ``"poisson"`` or ``"bayesian"``.
        seed: base seed of every generator.
        need_jackknife: compute the leave-one-out values for BCa.
        kwargs: passed to ``torchmetrics.Metric``.

    Raises:
        ValueError: if ``base_metric`` or ``resampling`` is not supported.

    Example:
        >>> import torch
        >>> from torchmetrics.classification import BinaryAccuracy
        >>> engine = ConfusionEngine(BinaryAccuracy(), 1000, "multinomial", seed=0, need_jackknife=True)
        >>> engine.update(torch.tensor([1, 0, 1, 1, 0, 1]), torch.tensor([1, 0, 0, 1, 0, 1]))
        >>> out = engine.compute()
        >>> out.value, out.replicates.shape, out.jackknife, out.jackknife_weights
        (tensor(0.8333), torch.Size([1000]), tensor([0.8000, 1.0000, 0.8000]), tensor([2, 1, 3]))
    """

    counts: Tensor
    cells: list

    higher_is_better: ClassVar[Optional[bool]] = None
    #: pseudo-count added to every cell by ``resampling="bayesian"`` (0: Rubin's Bayesian bootstrap, no prior).
    #: Set by ``BootstrapMetric(prior=...)``; a plain attribute, not a state (it is configuration).
    prior: float = 0.0
    #: ``BootstrapMetric(method="auto")``: when :meth:`smallest_count` is below ``auto_threshold``, ``compute``
    #: returns the posterior with pseudo-count ``auto_prior`` instead of the bootstrap (0: never).
    auto_prior: float = 0.0
    auto_threshold: int = 0
    #: whether the last ``compute`` returned posterior draws (credible interval, read off percentiles)
    posterior_used: bool = False

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
        if not self.supports(base_metric, resampling):
            raise ValueError(
                "Expected argument ``base_metric`` to be a torchmetrics confusion-family metric with"
                f" global averaging and top_k=1, and ``resampling`` one of {RESAMPLING_MODES},"
                f" but received {type(base_metric).__name__} and {resampling!r}"
            )
        super().__init__(base_metric, num_bootstraps, resampling, seed, need_jackknife, paired, **kwargs)
        self.task, self.kind = _SUPPORTED[type(base_metric)]
        # the side of the (joint) confusion table: 2 (binary and multilabel, per label) or C
        self._side = base_metric.num_classes if self.task == "multiclass" else 2
        # model_cells: one model's cells (4, C² or 4L); num_cells: the cells that are resampled, the joint
        # (target, pred_a, pred_b) cells when paired (8, C³ or 8L)
        per_label = self._side ** (3 if self.paired else 2)
        self.model_cells = self._side**2 * (base_metric.num_labels if self.task == "multilabel" else 1)
        self.num_cells = per_label * (base_metric.num_labels if self.task == "multilabel" else 1)
        self._cells_per_label = per_label
        if self.task == "multilabel":
            self.add_state("cells", [], dist_reduce_fx="cat")
        else:
            self.add_state("counts", torch.zeros(self.num_cells + 1, dtype=torch.long), dist_reduce_fx="sum")
        # groups (cluster bootstrap): one id per multilabel row in ``group_ids`` (aligned with ``cells``); for
        # binary/multiclass the per-batch (group, cell, count) triples, so memory grows with groups x cells
        self.add_state("group_ids", [], dist_reduce_fx="cat")
        if self.task != "multilabel":
            self.add_state("group_cells", [], dist_reduce_fx="cat")
            self.add_state("group_counts", [], dist_reduce_fx="cat")

    @classmethod
    def supports(cls, base_metric: Metric, resampling: str) -> bool:
        """Whether this engine computes ``base_metric`` exactly.

        True for the exact torchmetrics classes ``{Binary,Multiclass,Multilabel}{Accuracy, Precision,
        Recall, FBetaScore, F1Score, Specificity, JaccardIndex, MatthewsCorrCoef}`` and
        ``{Binary,Multiclass}CohenKappa`` (what the task wrappers such as ``Accuracy(task=...)``
        return), with ``multidim_average="global"`` and ``top_k=1``. False for subclasses, other
        metrics and unknown resampling modes, so that the caller falls back to the generic path.

        Args:
            base_metric: the metric to wrap.
            resampling: one of ``RESAMPLING_MODES``.

        Returns:
            Whether the confusion engine can be used.
        """
        entry = _SUPPORTED.get(type(base_metric))
        if entry is None or resampling not in RESAMPLING_MODES:
            return False
        task, kind = entry
        if getattr(base_metric, "multidim_average", "global") != "global":
            return False
        if getattr(base_metric, "top_k", 1) != 1:
            return False
        if task == "multiclass" and not isinstance(getattr(base_metric, "num_classes", None), int):
            return False
        if task == "multilabel" and not isinstance(getattr(base_metric, "num_labels", None), int):
            return False
        if kind in ("jaccard", "mcc", "kappa") and getattr(base_metric, "normalize", None) not in (None, "none"):
            return False
        zero_division = getattr(base_metric, "zero_division", 0)
        return isinstance(zero_division, (int, float)) and not isinstance(zero_division, bool)

    @classmethod
    def supports_paired(cls, base_metric: Metric, resampling: str) -> bool:
        """Whether the paired comparison of ``base_metric`` runs here (joint cells): as :meth:`supports`."""
        return cls.supports(base_metric, resampling)

    # ---------------------------------------------------------------------------------------- update
    def _validate(self, preds: Tensor, target: Tensor) -> None:
        """Run the wrapped metric's own input validation (it may sync with the host)."""
        m = self.base_metric
        if self.task == "binary" and _binary_inputs_pass(preds, target, m.ignore_index):
            return  # what torchmetrics' binary validation would find, without its sorts
        if self.kind in _STAT_SCORE_KINDS:
            if self.task == "binary":
                _binary_stat_scores_tensor_validation(preds, target, "global", m.ignore_index)
            elif self.task == "multiclass":
                _multiclass_stat_scores_tensor_validation(preds, target, m.num_classes, "global", m.ignore_index)
            else:
                _multilabel_stat_scores_tensor_validation(preds, target, m.num_labels, "global", m.ignore_index)
        elif self.task == "binary":
            _binary_confusion_matrix_tensor_validation(preds, target, m.ignore_index)
        elif self.task == "multiclass":
            _multiclass_confusion_matrix_tensor_validation(preds, target, m.num_classes, m.ignore_index)
        else:
            _multilabel_confusion_matrix_tensor_validation(preds, target, m.num_labels, m.ignore_index)

    def _cell_codes(self, preds: Tensor, target: Tensor) -> Tensor:
        """Cell code per unit, formatted exactly as the wrapped metric formats its inputs.

        Returns:
            binary/multiclass: long ``[N']`` in ``[0, K]`` (K = ignored); multilabel: uint8 ``[N', L]``
            in ``[0, 4]`` (4 = ignored).
        """
        m = self.base_metric
        ignore_index = m.ignore_index
        if target.numel() == 0:  # an empty batch (torchmetrics' formatting cannot reshape it): no units
            if self.task == "multilabel":
                return torch.zeros(0, m.num_labels, dtype=torch.uint8, device=target.device)
            return torch.zeros(0, dtype=torch.long, device=target.device)
        if self.task == "binary":
            if ignore_index is not None and self.kind not in _STAT_SCORE_KINDS and preds.is_floating_point():
                # torchmetrics' confusion-matrix format drops ignored elements *before* deciding whether
                # preds are logits; decide on the kept elements only, without a host sync
                preds, target = preds.reshape(-1), target.reshape(-1)
                kept = target != ignore_index
                logits = (((preds < 0) | (preds > 1)) & kept).any()
                preds = torch.where(logits, preds.sigmoid(), preds) > m.threshold
            else:
                preds, target = _binary_stat_scores_format(preds, target, m.threshold, None)
            preds, target = preds.reshape(-1).long(), target.reshape(-1).long()
            code = 2 * target + preds
            return code if ignore_index is None else torch.where(target == ignore_index, 4, code)
        if self.task == "multiclass":
            preds, target = _multiclass_stat_scores_format(preds, target, top_k=1)
            preds, target = preds.reshape(-1).long(), target.reshape(-1).long()
            c = m.num_classes
            code = target * c + preds
            return code if ignore_index is None else torch.where(target == ignore_index, c * c, code)
        # ignore_index is applied here with ``where`` (torchmetrics' masked assignment would sync on GPU)
        preds, target = _multilabel_stat_scores_format(preds, target, m.num_labels, m.threshold, None)
        # [N, L, X] -> [N * X, L]: one unit per (sample, position), as torchmetrics' confusion matrix
        preds = preds.movedim(-1, 1).reshape(-1, m.num_labels).long()
        target = target.movedim(-1, 1).reshape(-1, m.num_labels).long()
        code = 2 * target + preds
        if ignore_index is not None:
            code = torch.where(target == ignore_index, 4, code)
        return code.to(torch.uint8)

    def _joint_codes(self, preds_a: Tensor, preds_b: Tensor, target: Tensor) -> Tensor:
        """Joint (target, pred_a, pred_b) cell code per unit, the ignored cell last.

        Binary/multiclass: ``(target * C + pred_a) * C + pred_b`` in ``[0, C³]`` (C³ = ignored); multilabel:
        ``4 * target + 2 * pred_a + pred_b`` per label in ``[0, 8]`` (8 = ignored).
        """
        code_a = self._cell_codes(preds_a, target)
        code_b = self._cell_codes(preds_b, target)
        if code_a.shape != code_b.shape:
            raise ValueError(
                "Expected `preds_a` and `preds_b` to give the same units, but received shapes "
                f"{tuple(preds_a.shape)} and {tuple(preds_b.shape)}"
            )
        c = self._side
        if self.task == "multilabel":
            a, b = code_a.long(), code_b.long()
            return torch.where(a == 4, 8, 2 * a + b % 2).to(torch.uint8)
        return torch.where(code_a == c * c, c**3, code_a * c + code_b % c)

    def update(self, *args: Tensor, groups: Optional[Tensor] = None, **kwargs: Tensor) -> None:
        """Add a batch, with exactly the arguments the wrapped metric takes (``preds_a, preds_b, target`` when
        paired), and optionally one group id per sample.

        Runs the wrapped metric's input validation when its ``validate_args`` is true (as the metric
        itself would; that validation syncs with the host). Otherwise binary and multiclass updates do
        not sync with the host (grouped updates do: they tabulate the batch per group).
        """
        bound = self._bind_inputs(args, kwargs)
        if self.paired:
            preds_a, preds_b, target = bound["preds_a"], bound["preds_b"], bound["target"]
            if getattr(self.base_metric, "validate_args", False):
                self._validate(preds_a, target)
                self._validate(preds_b, target)
            codes = self._joint_codes(preds_a, preds_b, target)
        else:
            preds, target = bound["preds"], bound["target"]
            if getattr(self.base_metric, "validate_args", False):
                self._validate(preds, target)
            codes = self._cell_codes(preds, target)
        ids = None if groups is None else expand_groups(groups, target.shape[0] if target.ndim else 1, codes.shape[0])
        if self.task == "multilabel":
            self.cells.append(codes)
            if ids is not None:
                self.group_ids.append(ids.to(codes.device))
            return
        # out of place: under ddp_spawn the state tensor is in shared memory (see the class docstring)
        batch = torch.zeros(self.num_cells + 1, dtype=torch.long, device=codes.device)
        self.counts = self.counts + batch.scatter_add_(0, codes, torch.ones_like(codes))
        # every mode draws at compute; Poisson: the weights of a cell's m elements sum to Poisson(m)
        if ids is not None and codes.numel() > 0:
            group_ids, cells, counts = count_pairs(ids.to(codes.device), codes, self.num_cells + 1)
            self.group_ids.append(group_ids)
            self.group_cells.append(cells)
            self.group_counts.append(counts)

    # --------------------------------------------------------------------------------------- compute
    def _confmat_view(self, flat: Tensor) -> Tensor:
        """``[b, K]`` cells -> ``[b, 2, 2]``, ``[b, C, C]`` or ``[b, L, 2, 2]``."""
        b = flat.shape[0]
        if self.task == "binary":
            return flat.reshape(b, 2, 2)
        if self.task == "multiclass":
            c = self.base_metric.num_classes
            return flat.reshape(b, c, c)
        return flat.reshape(b, self.base_metric.num_labels, 2, 2)

    def _split_models(self, joint: Tensor) -> tuple[Tensor, Tensor]:
        """Joint (target, pred_a, pred_b) cells ``[b, K']`` -> model A's and model B's cells ``[b, K]`` each."""
        b, c = joint.shape[0], self._side
        labels = self.base_metric.num_labels if self.task == "multilabel" else 1
        cube = joint.reshape(b, labels, c, c, c)
        return cube.sum(-1).reshape(b, -1), cube.sum(-2).reshape(b, -1)

    def metric_from_cells(self, cells: Tensor) -> Tensor:
        """The statistic on each row of ``cells``: the wrapped metric (computed in float32, as torchmetrics
        does), or, when paired, both models' metric stacked on dim 1.

        Args:
            cells: counts per (joint) cell, integer- or real-valued, shape ``[b, K]``.

        Returns:
            ``[b, *S]``, or ``[b, 2, *S]`` when paired.
        """
        if self.paired:
            cells_a, cells_b = self._split_models(cells)
            return torch.stack([self._model_metric(cells_a), self._model_metric(cells_b)], 1)
        return self._model_metric(cells)

    def _model_metric(self, cells: Tensor) -> Tensor:
        """The wrapped metric on each row of one model's cells ``[b, K]``."""
        return confusion_metric_from_counts(self.base_metric, self._confmat_view(cells.float()))

    def _value(self, full: Tensor) -> Tensor:
        """The wrapped metric's own value on the full counts (both models stacked when paired)."""
        if not self.paired:
            return self._model_value(full)
        full_a, full_b = self._split_models(full.unsqueeze(0))
        return torch.stack([self._model_value(full_a[0]), self._model_value(full_b[0])])

    def _model_value(self, full: Tensor) -> Tensor:
        """``base_metric``'s own ``compute`` on the full counts ``[K]`` (long), loaded into a copy."""
        ref = copy.copy(self.base_metric)
        cm = self._confmat_view(full.unsqueeze(0))[0]
        if self.kind not in _STAT_SCORE_KINDS:
            ref.confmat = cm
        elif self.task == "multiclass":
            tp, rows, cols = _marginals(cm)
            fp, fn = cols - tp, rows - tp
            tn = cm.sum() - (fp + fn + tp)
            if ref.average == "micro":
                tp, fp, tn, fn = (x.sum().reshape(1) for x in (tp, fp, tn, fn))
            ref.tp, ref.fp, ref.tn, ref.fn = tp, fp, tn, fn
        else:
            ref.tn, ref.fp, ref.fn, ref.tp = cm[..., 0, 0], cm[..., 0, 1], cm[..., 1, 0], cm[..., 1, 1]
            if self.task == "binary":
                ref.tn, ref.fp, ref.fn, ref.tp = (x.reshape(1) for x in (ref.tn, ref.fp, ref.fn, ref.tp))
        # the raw ``compute``, squeezed as torchmetrics' compute wrapper squeezes one-element results
        return _squeeze_if_scalar(type(ref).compute(ref))

    def grouped(self) -> bool:
        """Whether the data came with group ids (then a unit is a group: the cluster bootstrap)."""
        ids = self.group_ids
        return ids.numel() > 0 if isinstance(ids, Tensor) else any(t.numel() > 0 for t in ids)

    def _onehot_rows(self, rows: Tensor) -> Tensor:
        """Multilabel rows of per-label cell codes ``[m, L]`` -> per-cell counts ``[m, K]`` (ignored dropped)."""
        cpl = self._cells_per_label
        return torch.nn.functional.one_hot(rows.long(), cpl + 1)[..., :cpl].reshape(rows.shape[0], self.num_cells)

    def _sufficient_fold(self) -> Optional[Tensor]:
        """For a grouped, unpaired binary metric that reads only some sums of the four cells: where each cell's count
        goes in the group patterns that :meth:`compute` resamples (4 = dropped); None for every other metric.

        Accuracy reads ``tp + tn`` and ``fp + fn`` only, precision ``tp, fp``, recall ``tp, fn``, specificity
        ``tn, fp``, F-beta ``tp, fp, fn`` and Jaccard ``tp`` and ``fp + fn`` (their binary reduce functions), so two
        groups whose folded counts agree add the same to every replicate's metric: merging them into one pattern
        leaves the replicate distribution of the metric exactly as it was (a pattern is drawn as often as all its
        groups together), while far fewer patterns are drawn (accuracy, groups of exactly n samples, none ignored:
        at most n + 1 patterns instead of (n + 1)(n + 2)(n + 3) / 6). The folded cells are integers added in another
        order, so the float32 metric of a replicate is the same below 2^24 units.
        """
        if self.paired or self.task != "binary" or not self.grouped():
            return None
        # cells: 0 = tn, 1 = fp, 2 = fn, 3 = tp
        fold = {
            "accuracy": (3, 2, 2, 3),
            "precision": (4, 1, 4, 3),
            "recall": (4, 4, 2, 3),
            "fbeta": (4, 1, 2, 3),
            "specificity": (0, 1, 4, 4),
            "jaccard": (4, 2, 2, 3),
        }.get(self.kind)
        return None if fold is None else torch.tensor(fold)

    def _group_patterns(self, sufficient: bool = False) -> tuple[Tensor, Tensor]:
        """Per-group cell counts, with the groups that share a count vector merged.

        Args:
            sufficient: fold the cells first as :meth:`_sufficient_fold` says (where it applies): groups that add
                the same to the metric of every replicate share a pattern.

        Returns:
            ``(patterns [P, K] float64, multiplicity [P] long)``: the distinct per-group count vectors and how
            many groups have each. Groups are keyed by their id, so a group may span batches and DDP ranks.
        """
        ids = dim_zero_cat(self.group_ids)
        g, inverse = group_index(ids)
        k = self.num_cells
        if self.task == "multilabel":
            onehot = self._onehot_rows(dim_zero_cat(self.cells))
            per_group = torch.zeros(g, k, dtype=torch.long, device=ids.device)
            per_group = per_group.index_add(0, inverse, onehot)
        else:
            cells, counts = dim_zero_cat(self.group_cells), dim_zero_cat(self.group_counts)
            fold = self._sufficient_fold() if sufficient else None
            if fold is not None:  # the ignored cell (k) stays where it is
                cells = torch.cat([fold, fold.new_full((1,), k)]).to(cells.device).index_select(0, cells)
            # the last column counts ignored units: they enter no metric, so it is left out of the patterns (a
            # group of ignored units only is a pattern of zeros, still drawn as a unit)
            per_group = torch.zeros(g, k + 1, dtype=torch.long, device=ids.device)
            per_group = per_group.index_put((inverse, cells), counts, accumulate=True)[:, :k]
        patterns, multiplicity = unique_rows(per_group)
        return patterns.double(), multiplicity

    def _atoms(self, sufficient: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """What is resampled (the units): the distinct units, their counts, and the cells they fall in.

        A unit is a sample (one element of the flattened input; a row for multilabel) or, with groups, a group.
        Units with the same cell counts are interchangeable, so they are merged into one *atom* with a count.
        With ``sufficient`` (what :meth:`compute` resamples), grouped binary metrics that read only sums of cells
        merge the groups whose sums agree (:meth:`_sufficient_fold`); their atoms' cells are the folded ones.

        Returns:
            ``(full, atom_counts, atom_cells)``: the full counts ``[K]`` (long); the count of each atom
            ``[M]`` (the non-empty cells, ignored cell included, the distinct multilabel rows, or the distinct
            per-group count vectors); and for ungrouped binary/multiclass the cell index of each atom ``[M]``
            (K for the ignored cell), otherwise the cell counts of each atom as a float64 ``[M, K]``.
        """
        k = self.num_cells
        if self.task == "multilabel":
            full, atom_counts, onehot = self._multilabel_atoms()
            if self.grouped():
                patterns, multiplicity = self._group_patterns(sufficient)
                return full, multiplicity, patterns
            return full, atom_counts, onehot.double()
        if self.grouped():
            patterns, multiplicity = self._group_patterns(sufficient)
            return self.counts[:k], multiplicity, patterns
        nz = torch.nonzero(self.counts).flatten()
        return self.counts[:k], self.counts[nz], nz

    def _multilabel_atoms(self) -> tuple[Tensor, Tensor, Tensor]:
        """Multilabel: the full counts ``[K]``, and the distinct rows' counts ``[M]`` and cells ``[M, K]`` (long)."""
        rows = dim_zero_cat(self.cells) if len(self.cells) else None
        if rows is None or rows.numel() == 0:
            device = self.device if rows is None else rows.device
            patterns = torch.zeros(0, self.base_metric.num_labels, dtype=torch.long, device=device)
            atom_counts = torch.zeros(0, dtype=torch.long, device=device)
        else:
            patterns, atom_counts = torch.unique(rows, dim=0, return_counts=True)
        onehot = self._onehot_rows(patterns)
        return (onehot * atom_counts.unsqueeze(1)).sum(0), atom_counts, onehot

    def _full_counts(self) -> Tensor:
        """The counts of all units per cell ``[K]`` (long): ``_atoms()[0]`` without the atoms (no group patterns)."""
        return self._multilabel_atoms()[0] if self.task == "multilabel" else self.counts[: self.num_cells]

    def _to_cells(self, weights: Tensor, atom_cells: Tensor) -> Tensor:
        """Per-atom weights ``[b, M]`` -> per-cell counts ``[b, K]`` (the ignored cell dropped)."""
        if atom_cells.ndim == 2:  # dense cell counts per atom (multilabel rows, groups)
            return weights @ atom_cells
        out = torch.zeros(weights.shape[0], self.num_cells + 1, dtype=weights.dtype, device=weights.device)
        out[:, atom_cells] = weights
        return out[:, : self.num_cells]

    def _chunked_metric(self, weights: Tensor, atom_cells: Optional[Tensor]) -> Tensor:
        """The metric of the replicates ``weights`` ``[B, M]`` (per atom, or per cell when ``atom_cells``
        is None), in chunks of rows to bound memory."""
        rows = max(1, _CHUNK_ELEMENTS // max(1, self.num_cells))
        outs = []
        for chunk in weights.split(rows):
            cells = chunk if atom_cells is None else self._to_cells(chunk, atom_cells)
            outs.append(self.metric_from_cells(cells))
        return torch.cat(outs)

    def _jackknife(self, full: Tensor, atom_cells: Tensor) -> Tensor:
        """Leave-one-out values, one per atom: the metric of ``full`` less one unit of that atom.

        Multiclass works on the marginals (removing a unit of cell (t, p) lowers ``rows[t]``,
        ``cols[p]`` and, if t = p, ``diag[t]`` by one): O(M · C) rather than O(M · C²).
        """
        num_atoms = atom_cells.shape[0]
        device = full.device
        if self.task == "multiclass" and atom_cells.ndim == 1 and not self.paired:
            c = self.base_metric.num_classes
            cm = full.float().reshape(1, c, c)
            diag, rows, cols = _marginals(cm)
            valid = atom_cells < c * c
            t = torch.where(valid, atom_cells // c, 0)
            p = torch.where(valid, atom_cells % c, 0)
            one = valid.float().unsqueeze(1)
            rows = rows.repeat(num_atoms, 1).scatter_add_(1, t.unsqueeze(1), -one)
            cols = cols.repeat(num_atoms, 1).scatter_add_(1, p.unsqueeze(1), -one)
            diag = diag.repeat(num_atoms, 1).scatter_add_(1, t.unsqueeze(1), -one * (t == p).unsqueeze(1))
            disagreement = None
            if self.kind == "kappa":
                w_mat = _kappa_weights(c, self.base_metric.weights, cm.dtype, device)
                disagreement = (w_mat * cm).sum() - w_mat[t, p] * valid
            return _multiclass_metric(self.base_metric, diag, rows, cols, disagreement)
        base = full.double().unsqueeze(0)
        rows_per_chunk = max(1, _CHUNK_ELEMENTS // max(1, self.num_cells))
        outs = [torch.zeros((0,), device=device)]
        for start in range(0, num_atoms, rows_per_chunk):
            stop = min(num_atoms, start + rows_per_chunk)
            if atom_cells.ndim == 2:
                removed = atom_cells[start:stop]
            else:
                eye = torch.eye(stop - start, dtype=torch.float64, device=device)
                removed = self._to_cells(eye, atom_cells[start:stop])
            outs.append(self.metric_from_cells(base - removed).reshape(stop - start, -1))
        return torch.cat(outs) if num_atoms else outs[0]

    def _posterior_prior(self) -> float:
        """The pseudo-count of the posterior this compute uses, or 0 for the bootstrap.

        ``resampling="bayesian"`` with a prior, or ``method="auto"`` when the metric rests on few events
        (:meth:`smallest_count` below ``auto_threshold``). Never for a paired comparison (joint cells: it keeps
        the bootstrap). With groups, ``resampling="bayesian"`` stays Rubin's Dirichlet(1, ..., 1) over the
        groups, and ``method="auto"`` in the few-event regime takes the posterior of the pooled table scaled to
        G effective observations (:meth:`_posterior_chunks`; binary and multiclass only).
        """
        if self.paired:
            return 0.0
        grouped = self.grouped()
        if self.resampling == "bayesian" and self.prior > 0 and not grouped:
            return float(self.prior)
        few_events = self.auto_prior > 0 and self.smallest_count() < self.auto_threshold
        if few_events and not (grouped and self.task == "multilabel"):
            return float(self.auto_prior)
        return 0.0

    def _cell_poisson(self) -> bool:
        """Whether a Poisson replicate is drawn per cell (``Poisson(count)``): ungrouped binary/multiclass."""
        return self.resampling == "poisson" and self.task != "multilabel" and not self.grouped()

    def _draw_chunks(self, atom_counts: Tensor) -> Iterator[Tensor]:
        """Per-atom replicate weights, ``[rows, M]`` chunks of the B replicates.

        Multinomial, Bayesian (Dirichlet) or Poisson (``Poisson(count)`` per atom: the summed Poisson(1)
        weights of its units). All chunks come from one generator on stream 0 of the seed, and the chunk
        size depends only on B and M, so the replicates are a function of the counts and the seed alone.
        """
        gen = self.generator(atom_counts.device, stream=0)
        multinomial = _group_multinomial_rows if self.grouped() else _multinomial_rows
        sampler = {"multinomial": multinomial, "bayesian": _dirichlet_rows, "poisson": _poisson_rows}[self.resampling]
        b = self.num_bootstraps
        rows = b if b * atom_counts.numel() <= _DRAW_ELEMENTS else max(1, _DRAW_ELEMENTS // atom_counts.numel())
        for start in range(0, b, rows):
            yield sampler(atom_counts, min(rows, b - start), gen)

    def _poisson_chunks(self) -> Iterator[Tensor]:
        """``[rows, K]`` Poisson(count) cell replicates from the synced counts (binary and multiclass)."""
        k = self.num_cells
        rates = self.counts[:k].double()
        gen = self.generator(rates.device, stream=0)
        b = self.num_bootstraps
        rows = max(1, min(b, _DRAW_ELEMENTS // k))
        for start in range(0, b, rows):
            yield torch.poisson(rates.expand(min(rows, b - start), k).contiguous(), generator=gen)

    def _posterior_chunks(self, prior: float) -> Iterator[Tensor]:
        """``[rows, K]`` draws of the posterior ``Dirichlet(counts + prior)`` of the cell probabilities (times n).

        Binary/multiclass: one Dirichlet over the K cells (ignored elements are left out: they enter no
        metric). With groups (``method="auto"`` with few events only) the counts are scaled to G effective
        observations, ``counts * G / n``: a group then weighs as one observation, the conservative end of the
        design effect (exact when the samples of a group always agree, and equal to the ungrouped posterior
        for groups of one). Multilabel: the rows keep Rubin's ``Dirichlet(pattern counts)`` weights, and one prior
        pseudo-row of mass ``T ~ Gamma(4·prior)`` is split per label by ``Dirichlet(prior, prior, prior,
        prior)``; so each label's four cells are exactly ``Dirichlet(counts_l + prior)`` (against the rows
        not ignored for that label) while the labels stay dependent as in the data.
        """
        b = self.num_bootstraps
        if self.task != "multilabel":
            counts = self.counts[: self.num_cells]
            if self.grouped():
                num_groups = group_index(dim_zero_cat(self.group_ids))[0]
                counts = counts.double() * (num_groups / counts.sum().clamp(min=1).double())
            gen = self.generator(counts.device, stream=0)
            rows = max(1, min(b, _DRAW_ELEMENTS // self.num_cells))
            for start in range(0, b, rows):
                yield _posterior_rows(counts, prior, min(rows, b - start), gen)
            return
        _, atom_counts, atom_cells = self._atoms()
        gen = self.generator(atom_counts.device, stream=0)
        num_labels = self.base_metric.num_labels
        n = atom_counts.double().sum()
        width = atom_counts.numel() + self.num_cells + 1
        rows = max(1, min(b, _DRAW_ELEMENTS // width))
        alpha = torch.full((num_labels, 4), float(prior), dtype=torch.float64, device=atom_counts.device)
        tiny = torch.finfo(torch.float64).tiny
        for start in range(0, b, rows):
            r = min(rows, b - start)
            observed = torch._standard_gamma(atom_counts.double().expand(r, -1).contiguous(), generator=gen)
            total = torch._standard_gamma(
                torch.full((r, 1), 4.0 * prior, dtype=torch.float64, device=atom_counts.device), generator=gen
            )
            split = torch._standard_gamma(alpha.expand(r, -1, -1).contiguous(), generator=gen)
            split = split / split.sum(-1, keepdim=True).clamp(min=tiny)
            cells = observed @ atom_cells + total * split.reshape(r, self.num_cells)
            yield cells / (observed.sum(-1, keepdim=True) + total).clamp(min=tiny) * n

    def posterior_output(self, prior: float) -> EngineOutput:
        """The value and ``B`` draws of the metric under the posterior ``Dirichlet(counts + prior)``.

        Used by ``resampling="bayesian"`` with a prior, and by ``BootstrapMetric(method="auto")`` in the
        small-count regime (:meth:`smallest_count`). Draws come from stream 0 of the seed, so the result is a
        function of the synced counts, the prior and the seed alone.

        Args:
            prior: pseudo-count per cell, ``> 0``.

        Returns:
            :class:`EngineOutput` without a jackknife (a credible interval is read off the quantiles).
        """
        full = self._full_counts()
        value = self._value(full)
        if int(full.sum()) == 0:
            return EngineOutput(value=value, replicates=torch.zeros((0, *value.shape), device=full.device))
        replicates = torch.cat([self._chunked_metric(w, None) for w in self._posterior_chunks(prior)])
        return EngineOutput(value=value, replicates=replicates.reshape(self.num_bootstraps, *value.shape))

    @property
    def cells_per_table(self) -> int:
        """Cells of one confusion table: 4 (binary; multilabel, per label) or C² (multiclass)."""
        return self.base_metric.num_classes**2 if self.task == "multiclass" else 4

    def smallest_count(self) -> int:
        """The regime statistic of ``method="auto"``: the smallest per-class count the metric rests on.

        For each class that occurs (as target or prediction) of the C x C table (binary: C = 2; multilabel:
        each label's 2 x 2 table), its true positives, false negatives and false positives; the minimum
        over them. For a binary table with both classes present this is the smallest of the four cells.
        A small value means a metric that rests on a handful of events, where the multinomial bootstrap
        cannot see errors the data do not contain (30 of 30 correct gives every replicate 30 of 30).

        Returns:
            The smallest such count (0 when nothing was counted).
        """
        full = self._full_counts()
        if int(full.sum()) == 0:
            return 0
        if self.task == "multilabel":
            cm = full.reshape(self.base_metric.num_labels, 2, 2)
        else:
            c = 2 if self.task == "binary" else self.base_metric.num_classes
            cm = full.reshape(1, c, c)
        diag, rows, cols = _marginals(cm)
        per_class = torch.stack([diag, rows - diag, cols - diag], -1)  # tp, fn, fp: [tables, C, 3]
        present = (rows + cols) > 0
        return int(per_class[present].min()) if bool(present.any()) else 0

    def replicate_cells(self) -> Tensor:
        """The per-cell counts of all replicates, ``[B, K]`` float64 (dense; meant for inspection).

        With groups, every cell is drawn here; :meth:`compute` draws the folded patterns of the binary metrics that
        read only sums of cells (:meth:`_sufficient_fold`), so there the two are draws of the same metric
        distribution, not the same draws.
        """
        prior = self._posterior_prior()
        if prior > 0:
            return torch.cat(list(self._posterior_chunks(prior)))
        if self._cell_poisson():
            return torch.cat(list(self._poisson_chunks()))
        _, atom_counts, atom_cells = self._atoms()
        return torch.cat([self._to_cells(w, atom_cells) for w in self._draw_chunks(atom_counts)])

    def compute(self) -> EngineOutput:
        """Value on all data, B replicates and (when asked) the weighted distinct jackknife values."""
        self.posterior_used = False
        atoms = self._atoms(sufficient=True)
        full = atoms[0]
        value = self._value(full)
        if int(full.sum()) == 0:  # nothing counted (no update, empty batches, all ignored): no replicates
            return EngineOutput(value=value, replicates=torch.zeros((0, *value.shape), device=full.device))
        prior = self._posterior_prior()  # smallest_count() reads the synced state: once per compute
        if prior > 0:  # the posterior: percentile only, no jackknife
            self.posterior_used = True
            return self.posterior_output(prior)
        if self._cell_poisson():
            replicates = torch.cat([self._chunked_metric(w, None) for w in self._poisson_chunks()])
        else:
            replicates = torch.cat([self._chunked_metric(w, atoms[2]) for w in self._draw_chunks(atoms[1])])
        replicates = replicates.reshape(self.num_bootstraps, *value.shape)
        jackknife = weights = None
        if self.need_jackknife:
            _, weights, atom_cells = atoms
            jackknife = self._jackknife(full, atom_cells).reshape(weights.numel(), *value.shape)
        return EngineOutput(value=value, replicates=replicates, jackknife=jackknife, jackknife_weights=weights)
