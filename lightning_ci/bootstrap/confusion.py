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
  valued replicate counts.
- ``"poisson"``: each sample gets an independent Poisson(1) weight per replicate at ``update`` time.
  The weights of the m samples of one cell sum to ``Poisson(m)``, so the state is a ``[B, cells]`` sum.

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
from typing import Any, Callable, ClassVar, Optional

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

from lightning_ci.bootstrap._engine import RESAMPLING_MODES, BootstrapEngine, EngineOutput

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
# above this many non-empty cells the multinomial is drawn sample by sample when that is cheaper
_BINOMIAL_MAX_ATOMS = 512


# --------------------------------------------------------------------------------------------------
# sampling
# --------------------------------------------------------------------------------------------------
def _multinomial_rows(counts: Tensor, num_rows: int, generator: torch.Generator) -> Tensor:
    """Draw ``num_rows`` independent ``Multinomial(n, counts / n)`` vectors, ``n = counts.sum()``.

    Sequential conditional binomials: ``x_k ~ Binomial(n - x_<k, c_k / (n - c_<k))``, vectorised over the
    rows, with a Python loop over the atoms only. When there are many atoms and few samples, the samples
    are drawn one by one (``randint`` into the cumulative counts) instead, which is O(rows · n).

    Args:
        counts: non-negative integer counts, shape ``[M]`` (every entry should be positive).
        num_rows: number of replicates B.
        generator: the only source of randomness.

    Returns:
        float64 tensor ``[B, M]`` of integer-valued counts, each row summing to n.
    """
    device = counts.device
    counts = counts.long()
    num_atoms = counts.numel()
    out = torch.zeros(num_rows, num_atoms, dtype=torch.float64, device=device)
    if num_atoms == 0:
        return out
    n = int(counts.sum())
    if n == 0:
        return out
    if num_atoms > _BINOMIAL_MAX_ATOMS and n * 4 < num_atoms * 64:
        cum = counts.cumsum(0)
        chunk = max(1, _CHUNK_ELEMENTS // n)
        for start in range(0, num_rows, chunk):
            rows = min(chunk, num_rows - start)
            draw = torch.randint(n, (rows, n), generator=generator, device=device)
            atom = torch.searchsorted(cum, draw, right=True)
            out[start : start + rows].scatter_add_(1, atom, torch.ones_like(atom, dtype=torch.float64))
        return out
    # exact conditional probabilities from integer suffix sums
    suffix = counts.flip(0).cumsum(0).flip(0)
    cond = (counts.double() / suffix.double()).clamp_(0.0, 1.0)
    remaining = torch.full((num_rows,), float(n), dtype=torch.float64, device=device)
    for k in range(num_atoms - 1):
        x = torch.binomial(remaining, cond[k].expand(num_rows).contiguous(), generator=generator)
        out[:, k] = x
        remaining = remaining - x
    out[:, num_atoms - 1] = remaining
    return out


def _dirichlet_rows(counts: Tensor, num_rows: int, generator: torch.Generator) -> Tensor:
    """Bayesian-bootstrap replicate counts: ``n · Dirichlet(counts)`` per row.

    Args:
        counts: positive counts, shape ``[M]``.
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


# --------------------------------------------------------------------------------------------------
# batched metric formulas (leading replicate dimension)
# --------------------------------------------------------------------------------------------------
def _sequential_sum(x: Tensor) -> Tensor:
    """Sum over the last dimension left to right, as Python's ``sum`` over a 1-d tensor does."""
    acc = x[..., 0]
    for i in range(1, x.shape[-1]):
        acc = acc + x[..., i]
    return acc


def _batched_matthews_corrcoef(confmat: Tensor) -> Tensor:
    """``_matthews_corrcoef_reduce`` for a batch of confusion matrices.

    Args:
        confmat: ``[b, C, C]`` or ``[b, L, 2, 2]`` (multilabel, summed over labels first), floating.

    Returns:
        ``[b]``, with torchmetrics' conventions for the degenerate binary cases.
    """
    if confmat.ndim == 4:
        confmat = confmat.sum(1)
    eps = torch.finfo(torch.float32).eps
    tk = confmat.sum(dim=-1)
    pk = confmat.sum(dim=-2)
    c = confmat.diagonal(dim1=-2, dim2=-1).sum(-1)
    s = confmat.sum(dim=(-2, -1))
    cov_ytyp = c * s - _sequential_sum(tk * pk)
    cov_ypyp = s**2 - _sequential_sum(pk * pk)
    cov_ytyt = s**2 - _sequential_sum(tk * tk)
    numerator = cov_ytyp
    denom = cov_ypyp * cov_ytyt
    zero = torch.zeros_like(s)
    if confmat.shape[-1] != 2:
        return torch.where(denom == 0, zero, numerator / torch.sqrt(torch.where(denom == 0, 1.0, denom)))

    tn, fp, fn, tp = confmat[:, 0, 0], confmat[:, 0, 1], confmat[:, 1, 0], confmat[:, 1, 1]
    # the ``denom == 0`` branch of torchmetrics, evaluated for every row then selected
    sq = math.sqrt(eps)
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
                    torch.where(
                        tp == 0,
                        tn - fp * fn,
                        torch.where(tn == 0, tp - fp * fn, tp * tn),
                    ),
                ),
            ),
        ),
    )
    deg_zero = (tp != 0) & (tn != 0) & (fp != 0) & (fn != 0)
    deg_den = (tp + fp + eps) * (tp + fn + eps) * (tn + fp + eps) * (tn + fn + eps)
    degenerate = torch.where(deg_zero, zero, deg_num / torch.sqrt(deg_den))
    regular = numerator / torch.sqrt(torch.where(denom == 0, 1.0, denom))
    res = torch.where(denom == 0, degenerate, regular)
    res = torch.where((tp + tn == 0) & (fp + fn != 0), -torch.ones_like(res), res)
    return torch.where((tp + tn != 0) & (fp + fn == 0), torch.ones_like(res), res)


def _batched_cohen_kappa(confmat: Tensor, weights: Optional[str]) -> Tensor:
    """``_cohen_kappa_reduce`` for a batch ``[b, C, C]`` of confusion matrices; returns ``[b]``."""
    num_classes = confmat.shape[-1]
    sum0 = confmat.sum(dim=-2, keepdim=True)
    sum1 = confmat.sum(dim=-1, keepdim=True)
    expected = sum1 @ sum0 / sum0.sum(dim=(-2, -1), keepdim=True)
    if weights is None or weights == "none":
        w_mat = 1.0 - torch.eye(num_classes, dtype=confmat.dtype, device=confmat.device)
    else:
        idx = torch.arange(num_classes, dtype=confmat.dtype, device=confmat.device)
        diff = idx[None, :] - idx[:, None]
        w_mat = diff.abs() if weights == "linear" else diff.pow(2.0)
    k = (w_mat * confmat).sum(dim=(-2, -1)) / (w_mat * expected).sum(dim=(-2, -1))
    return 1 - k


def _batched_jaccard(
    confmat: Tensor, average: Optional[str], ignore_index: Optional[int], zero_division: float
) -> Tensor:
    """``_jaccard_index_reduce`` for a batch of confusion matrices.

    Args:
        confmat: ``[b, 2, 2]`` (``average="binary"``), ``[b, C, C]`` or ``[b, L, 2, 2]``, floating.
        average: as torchmetrics.
        ignore_index: as torchmetrics (matters for multiclass micro and macro).
        zero_division: as torchmetrics.

    Returns:
        ``[b]``, or ``[b, C]`` for ``average=None``/``"none"``.
    """
    if average == "binary":
        return _safe_divide(
            confmat[:, 1, 1], confmat[:, 0, 1] + confmat[:, 1, 0] + confmat[:, 1, 1], zero_division
        )
    multilabel = confmat.ndim == 4
    ignore_cond = ignore_index is not None and 0 <= ignore_index < confmat.shape[1]
    if multilabel:
        num = confmat[..., 1, 1]
        denom = confmat[..., 1, 1] + confmat[..., 0, 1] + confmat[..., 1, 0]
    else:
        num = confmat.diagonal(dim1=-2, dim2=-1)
        denom = confmat.sum(-2) + confmat.sum(-1) - num
    if average == "micro":
        num = num.sum(-1)
        denom = denom.sum(-1) - (denom[:, ignore_index] if ignore_cond else 0.0)
    jaccard = _safe_divide(num, denom, zero_division=zero_division)
    if average is None or average in ("none", "micro"):
        return jaccard
    if average == "weighted":
        weights = confmat[..., 1, 1] + confmat[..., 1, 0] if multilabel else confmat.sum(-1)
    else:
        weights = torch.ones_like(jaccard)
        if ignore_cond:
            weights[:, ignore_index] = 0.0
        if not multilabel:
            weights[confmat.sum(-1) + confmat.sum(-2) == 0] = 0.0
    return (weights * jaccard / weights.sum(-1, keepdim=True)).sum(-1)


def _stat_scores_from_confmat(confmat: Tensor, task: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """tp, fp, tn, fn from a batch of confusion matrices, as torchmetrics derives them.

    Args:
        confmat: ``[b, 2, 2]`` (binary), ``[b, C, C]`` (multiclass, rows = target) or ``[b, L, 2, 2]``.
        task: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.

    Returns:
        four tensors of shape ``[b]`` (binary) or ``[b, C]``/``[b, L]``.
    """
    if task == "multiclass":
        tp = confmat.diagonal(dim1=-2, dim2=-1)
        fp = confmat.sum(-2) - tp
        fn = confmat.sum(-1) - tp
        tn = confmat.sum(dim=(-2, -1)).unsqueeze(-1) - (fp + fn + tp)
        return tp, fp, tn, fn
    return confmat[..., 1, 1], confmat[..., 0, 1], confmat[..., 0, 0], confmat[..., 1, 0]


def confusion_metric_from_counts(base_metric: Metric, confmat: Tensor) -> Tensor:
    """The metric of ``base_metric``'s kind and options on a batch of confusion matrices.

    Uses torchmetrics' own reduce functions (with ``multidim_average="samplewise"``, where dim 0 plays
    the role of the samples) or batched copies of its formulas, so that each row equals what
    ``base_metric`` would compute from that confusion matrix.

    Args:
        base_metric: a metric for which :meth:`ConfusionEngine.supports` is true.
        confmat: floating counts ``[b, 2, 2]`` (binary), ``[b, C, C]`` (multiclass, rows = target,
            columns = prediction) or ``[b, L, 2, 2]`` (multilabel, ``[[tn, fp], [fn, tp]]`` per label).

    Returns:
        ``[b, *S]`` where ``S`` is the shape of ``base_metric.compute()``.
    """
    task, kind = _SUPPORTED[type(base_metric)]
    m = base_metric
    average = "binary" if task == "binary" else getattr(m, "average", None)
    if kind in _STAT_SCORE_KINDS:
        tp, fp, tn, fn = _stat_scores_from_confmat(confmat, task)
        multilabel = task == "multilabel"
        sw = "samplewise"
        if kind == "accuracy":
            return _accuracy_reduce(tp, fp, tn, fn, average=average, multidim_average=sw, multilabel=multilabel)
        if kind in ("precision", "recall"):
            return _precision_recall_reduce(
                kind, tp, fp, tn, fn, average=average, multidim_average=sw, multilabel=multilabel,
                zero_division=m.zero_division,
            )
        if kind == "fbeta":
            return _fbeta_reduce(
                tp, fp, tn, fn, m.beta, average=average, multidim_average=sw, multilabel=multilabel,
                zero_division=m.zero_division,
            )
        return _specificity_reduce(tp, fp, tn, fn, average=average, multidim_average=sw, multilabel=multilabel)
    if kind == "jaccard":
        ignore_index = m.ignore_index if task == "multiclass" else None
        return _batched_jaccard(confmat, average, ignore_index, m.zero_division)
    if kind == "mcc":
        return _batched_matthews_corrcoef(confmat)
    return _batched_cohen_kappa(confmat, m.weights)


# --------------------------------------------------------------------------------------------------
# the engine
# --------------------------------------------------------------------------------------------------
class ConfusionEngine(BootstrapEngine):
    """Bootstrap replicates for the confusion-matrix family, from counts.

    States (all synced by one collective each under DDP):

    - binary and multiclass: ``counts`` ``[K + 1]`` (long, sum): the K = 4 or C² cells
      ``target * C + pred`` plus one last cell for ignored elements.
    - multilabel, multinomial and Bayesian modes: ``cells`` (uint8, cat): one row ``[L]`` per sample
      with the per-label cell ``2 * target + pred`` (0 = tn, 1 = fp, 2 = fn, 3 = tp, 4 = ignored).
    - multilabel, Poisson mode: ``counts`` ``[4L]`` (long, sum) and, only when the jackknife is
      needed, ``cells`` as above.
    - Poisson mode: ``poisson_counts`` ``[B, K]`` (float64, sum), the Poisson(1)-weighted counts.

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
    poisson_counts: Tensor
    cells: list

    higher_is_better: ClassVar[Optional[bool]] = None

    def __init__(
        self,
        base_metric: Metric,
        num_bootstraps: int,
        resampling: str,
        seed: int,
        need_jackknife: bool,
        **kwargs: Any,
    ) -> None:
        if not self.supports(base_metric, resampling):
            raise ValueError(
                "Expected argument ``base_metric`` to be a torchmetrics confusion-family metric with"
                f" global averaging and top_k=1, and ``resampling`` one of {RESAMPLING_MODES},"
                f" but received {type(base_metric).__name__} and {resampling!r}"
            )
        super().__init__(base_metric, num_bootstraps, resampling, seed, need_jackknife, **kwargs)
        self.task, self.kind = _SUPPORTED[type(base_metric)]
        if self.task == "binary":
            self.num_cells = 4
        elif self.task == "multiclass":
            self.num_cells = base_metric.num_classes**2
        else:
            self.num_cells = 4 * base_metric.num_labels
        b = self.num_bootstraps
        if self.task == "multilabel":
            if resampling == "poisson":
                self.add_state("counts", torch.zeros(self.num_cells, dtype=torch.long), dist_reduce_fx="sum")
            if resampling != "poisson" or self.need_jackknife:
                self.add_state("cells", [], dist_reduce_fx="cat")
        else:
            self.add_state("counts", torch.zeros(self.num_cells + 1, dtype=torch.long), dist_reduce_fx="sum")
        if resampling == "poisson":
            self.add_state(
                "poisson_counts", torch.zeros(b, self.num_cells, dtype=torch.float64), dist_reduce_fx="sum"
            )

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

    # ---------------------------------------------------------------------------------------- update
    def _validate(self, preds: Tensor, target: Tensor) -> None:
        """Run the wrapped metric's own input validation (it may sync with the host)."""
        m = self.base_metric
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
        if self.task == "binary":
            preds, target = _binary_stat_scores_format(preds, target, m.threshold, m.ignore_index)
            preds, target = preds.reshape(-1).long(), target.reshape(-1).long()
            return torch.where(target < 0, 4, 2 * target + preds)
        if self.task == "multiclass":
            preds, target = _multiclass_stat_scores_format(preds, target, top_k=1)
            preds, target = preds.reshape(-1).long(), target.reshape(-1).long()
            c = m.num_classes
            code = target * c + preds
            if m.ignore_index is not None:
                code = torch.where(target == m.ignore_index, c * c, code)
            return code
        preds, target = _multilabel_stat_scores_format(preds, target, m.num_labels, m.threshold, m.ignore_index)
        # [N, L, X] -> [N * X, L]: one unit per (sample, position), as torchmetrics' confusion matrix
        preds = preds.movedim(-1, 1).reshape(-1, m.num_labels).long()
        target = target.movedim(-1, 1).reshape(-1, m.num_labels).long()
        return torch.where(target < 0, 4, 2 * target + preds).to(torch.uint8)

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Add a batch, with exactly the arguments the wrapped metric takes.

        Runs the wrapped metric's input validation when its ``validate_args`` is true (as the metric
        itself would; that validation syncs with the host). Otherwise binary and multiclass updates do
        not sync with the host.
        """
        if getattr(self.base_metric, "validate_args", False):
            self._validate(preds, target)
        codes = self._cell_codes(preds, target)
        if self.task == "multilabel":
            if hasattr(self, "cells") and isinstance(self.cells, list):
                self.cells.append(codes)
            if self.resampling == "poisson":
                onehot = torch.nn.functional.one_hot(codes.long(), 5)[..., :4].reshape(codes.shape[0], -1)
                self.counts += onehot.sum(0)
                gen = self._update_generator(codes.device)
                weights = torch.poisson(
                    torch.ones(self.num_bootstraps, codes.shape[0], dtype=torch.float64, device=codes.device),
                    generator=gen,
                )
                self.poisson_counts += weights @ onehot.double()
            return
        k = self.num_cells
        batch = torch.zeros(k + 1, dtype=torch.long, device=codes.device)
        batch.scatter_add_(0, codes, torch.ones_like(codes))
        self.counts += batch
        if self.resampling == "poisson":
            gen = self._update_generator(codes.device)
            b = self.num_bootstraps
            if codes.numel() < k:
                # one Poisson(1) weight per element and replicate, summed per cell
                weights = torch.poisson(
                    torch.ones(b, codes.numel(), dtype=torch.float64, device=codes.device), generator=gen
                )
                acc = torch.zeros(b, k + 1, dtype=torch.float64, device=codes.device)
                acc.scatter_add_(1, codes.expand(b, -1), weights)
                self.poisson_counts += acc[:, :k]
            else:
                # the weights of the m elements of a cell sum to Poisson(m)
                rates = batch[:k].double().expand(b, k).contiguous()
                self.poisson_counts += torch.poisson(rates, generator=gen)

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

    def metric_from_cells(self, cells: Tensor) -> Tensor:
        """The wrapped metric on each row of ``cells`` ``[b, K]`` (computed in float32, as torchmetrics does).

        Args:
            cells: counts per cell, integer- or real-valued, shape ``[b, K]``.

        Returns:
            ``[b, *S]``.
        """
        return confusion_metric_from_counts(self.base_metric, self._confmat_view(cells.float()))

    def _value(self, full: Tensor) -> Tensor:
        """``base_metric``'s own ``compute`` on the full counts ``[K]`` (long), loaded into a copy."""
        ref = copy.copy(self.base_metric)
        cm = self._confmat_view(full.unsqueeze(0))[0]
        if self.kind in _STAT_SCORE_KINDS:
            tp, fp, tn, fn = _stat_scores_from_confmat(cm.unsqueeze(0), self.task)
            tp, fp, tn, fn = tp[0], fp[0], tn[0], fn[0]
            if self.task == "binary" or (self.task == "multiclass" and ref.average == "micro"):
                tp, fp, tn, fn = (x.sum().reshape(1) for x in (tp, fp, tn, fn))
            ref.tp, ref.fp, ref.tn, ref.fn = tp, fp, tn, fn
        else:
            ref.confmat = cm
        # the raw ``compute``, squeezed as torchmetrics' compute wrapper squeezes one-element results
        return _squeeze_if_scalar(type(ref).compute(ref))

    def _atoms(self) -> tuple[Tensor, Tensor, Callable[[Tensor], Tensor]]:
        """What is resampled: the distinct units and how they map to cells.

        Returns:
            ``(full, atom_counts, to_cells)``: the full counts ``[K]`` (long), the count of each atom
            ``[M]`` (non-empty cells, the ignored cell included, or distinct multilabel rows), and a map
            from per-atom weights ``[b, M]`` (float64) to per-cell counts ``[b, K]``.
        """
        k = self.num_cells
        if self.task == "multilabel":
            rows = dim_zero_cat(self.cells) if len(self.cells) else None
            device = self.device if rows is None else rows.device
            if rows is None or rows.numel() == 0:
                patterns = torch.zeros(0, self.base_metric.num_labels, dtype=torch.long, device=device)
                atom_counts = torch.zeros(0, dtype=torch.long, device=device)
            else:
                patterns, atom_counts = torch.unique(rows.reshape(-1, rows.shape[-1]), dim=0, return_counts=True)
            onehot = torch.nn.functional.one_hot(patterns.long(), 5)[..., :4].reshape(patterns.shape[0], k)
            full = (onehot * atom_counts.unsqueeze(1)).sum(0)
            onehot_f = onehot.double()
            return full, atom_counts, lambda w: w @ onehot_f
        counts = self.counts
        nz = torch.nonzero(counts).flatten()
        idx = nz.clamp(max=k)  # the ignored cell maps to a dropped extra column

        def to_cells(w: Tensor) -> Tensor:
            out = torch.zeros(w.shape[0], k + 1, dtype=w.dtype, device=w.device)
            out[:, idx] = w
            return out[:, :k]

        return counts[:k], counts[nz], to_cells

    def _chunked_metric(self, weights: Tensor, to_cells: Callable[[Tensor], Tensor]) -> Tensor:
        """Metric of ``to_cells(weights)`` for weights ``[b, M]``, in chunks of rows to bound memory."""
        rows = max(1, _CHUNK_ELEMENTS // max(1, self.num_cells))
        return torch.cat([self.metric_from_cells(to_cells(chunk)) for chunk in weights.split(rows)])

    def _jackknife(self, full: Tensor, atom_counts: Tensor, to_cells: Callable[[Tensor], Tensor]) -> Tensor:
        """Leave-one-out values, one per atom: the metric of ``full`` minus one unit of that atom."""
        num_atoms = atom_counts.numel()
        rows = max(1, _CHUNK_ELEMENTS // max(1, self.num_cells, num_atoms))
        base = full.double().unsqueeze(0)
        outs = []
        for start in range(0, num_atoms, rows):
            stop = min(num_atoms, start + rows)
            removed = torch.zeros(stop - start, num_atoms, dtype=torch.float64, device=full.device)
            removed[torch.arange(stop - start, device=full.device), torch.arange(start, stop, device=full.device)] = 1.0
            outs.append(self.metric_from_cells(base - to_cells(removed)))
        if not outs:
            return torch.zeros(0, dtype=torch.float32, device=full.device)
        return torch.cat(outs)

    def replicate_cells(self) -> Tensor:
        """The per-cell counts of all replicates, ``[B, K]`` float64 (dense; meant for inspection)."""
        if self.resampling == "poisson":
            return self.poisson_counts
        _, atom_counts, to_cells = self._atoms()
        return to_cells(self._draw(atom_counts))

    def _draw(self, atom_counts: Tensor) -> Tensor:
        gen = self.generator(atom_counts.device, stream=0)
        if self.resampling == "multinomial":
            return _multinomial_rows(atom_counts, self.num_bootstraps, gen)
        if self.resampling == "bayesian":
            return _dirichlet_rows(atom_counts, self.num_bootstraps, gen)
        return self.poisson_counts

    def compute(self) -> EngineOutput:
        """Value on all data, B replicates and (when asked) the weighted distinct jackknife values."""
        if self.resampling == "poisson" and self.task == "multilabel":
            full = self.counts
            value = self._value(full)
            replicates = self._chunked_metric(self.poisson_counts, lambda w: w)
            atoms = self._atoms() if self.need_jackknife else None
        else:
            atoms = self._atoms()
            full, atom_counts, to_cells = atoms
            value = self._value(full)
            if self.resampling == "poisson":
                replicates = self._chunked_metric(self.poisson_counts, lambda w: w)
            else:
                replicates = self._chunked_metric(self._draw(atom_counts), to_cells)
        replicates = replicates.reshape(self.num_bootstraps, *value.shape)
        jackknife = weights = None
        if self.need_jackknife and atoms is not None:
            full, atom_counts, to_cells = atoms
            jackknife = self._jackknife(full, atom_counts, to_cells).reshape(atom_counts.numel(), *value.shape)
            weights = atom_counts
        return EngineOutput(value=value, replicates=replicates, jackknife=jackknife, jackknife_weights=weights)
