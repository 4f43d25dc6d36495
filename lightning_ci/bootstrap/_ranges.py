"""The mathematical range of a metric, for clipping bootstrap bounds: our own table, not torchmetrics' plot hints.

torchmetrics' ``plot_lower_bound``/``plot_upper_bound`` are plotting hints: 1.9 sets them to 0/1 for Matthews'
correlation and Cohen's kappa, whose range is [-1, 1]. Clipping bounds to them cut real intervals off at 0
(every release up to 0.1.0). Here a range is given only where it is a mathematical fact for the exact class
and options; every other metric is not clipped.

- [0, 1]: accuracy, precision, recall, F-beta, specificity, Jaccard (with a ``zero_division`` in [0, 1]),
  AUROC (any task; ``max_fpr``'s McClish correction stays in [0, 1]) and average precision.
- [-1, 1]: Matthews' correlation (a correlation coefficient), Cohen's kappa (``1 - D_o / D_e`` with
  ``D_o <= 2 D_e`` for the 0/1, linear (a metric of negative type) and quadratic (through the covariance)
  disagreement weights), and Pearson, Spearman, Kendall and concordance correlation coefficients; cosine
  similarity with ``reduction="mean"`` or ``"none"`` (``"sum"`` is unbounded).
- [0, inf): mean squared and mean absolute error.
- (-inf, 1]: explained variance, R² without adjustment.
"""

from __future__ import annotations

import math
from typing import Optional

from torchmetrics import Metric
from torchmetrics import classification as cls
from torchmetrics import regression as reg

_UNIT = (0.0, 1.0)
_CORR = (-1.0, 1.0)

_RANGES: dict[type, tuple[Optional[float], Optional[float]]] = {}
for _task in ("Binary", "Multiclass", "Multilabel"):
    for _name in ("Accuracy", "Precision", "Recall", "FBetaScore", "F1Score", "Specificity", "JaccardIndex", "AUROC",
                  "AveragePrecision"):  # fmt: skip
        _RANGES[getattr(cls, f"{_task}{_name}")] = _UNIT
    _RANGES[getattr(cls, f"{_task}MatthewsCorrCoef")] = _CORR
_RANGES[cls.BinaryCohenKappa] = _CORR
_RANGES[cls.MulticlassCohenKappa] = _CORR
for _name in ("PearsonCorrCoef", "SpearmanCorrCoef", "KendallRankCorrCoef", "ConcordanceCorrCoef"):
    _RANGES[getattr(reg, _name)] = _CORR
_RANGES[reg.MeanSquaredError] = (0.0, None)
_RANGES[reg.MeanAbsoluteError] = (0.0, None)
_RANGES[reg.ExplainedVariance] = (None, 1.0)


def metric_range(metric: Metric) -> tuple[Optional[float], Optional[float]]:
    """``(low, high)`` that every value of ``metric`` lies in, ``None`` for an unknown side.

    Only the exact classes of the table count (a subclass may compute something else).

    Example:
        >>> from torchmetrics.classification import BinaryMatthewsCorrCoef
        >>> from torchmetrics.regression import ExplainedVariance
        >>> metric_range(BinaryMatthewsCorrCoef()), metric_range(ExplainedVariance())
        ((-1.0, 1.0), (None, 1.0))
    """
    kind = type(metric)
    if kind is reg.CosineSimilarity:
        return _CORR if getattr(metric, "reduction", None) in ("mean", "none", None) else (None, None)
    if kind is reg.R2Score:
        return (None, 1.0) if getattr(metric, "adjusted", 0) == 0 else (None, None)
    rng = _RANGES.get(kind, (None, None))
    if rng is _UNIT:
        zero_division = getattr(metric, "zero_division", 0.0)
        if isinstance(zero_division, (int, float)) and not math.isnan(zero_division) and not 0 <= zero_division <= 1:
            return (None, None)
    return rng
