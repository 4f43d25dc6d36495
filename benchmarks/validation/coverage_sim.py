"""Simulated validation sets with an exactly known population metric (for ``coverage.py``).

Every cell (metric, n) draws all its ``S`` validation sets up front from one NumPy generator seeded with
``SeedSequence([DATA_SEED, metric_id, n])``. Rows are filled in order, so the first ``S'`` sets of a cell do
not depend on ``S`` (a reduced run and a full run share their first sets, and an anchor run on fewer sets
uses the first ones).

- ``accuracy``: target ~ Bernoulli(0.4); the prediction is right with probability ``ACC_P`` = 0.85,
  independently of the target. The population accuracy is 0.85.
- ``macro_f1``: (target, pred) ~ the 3x3 joint table ``F1_JOINT`` (class priors 0.5/0.3/0.2, per-class
  recall 0.8/0.7/0.6). Population macro-F1 = mean_k 2 P_kk / (P_k. + P_.k).
- ``auroc``: target ~ Bernoulli(0.3); scores ~ N(δ, 1) for positives and N(0, 1) for negatives with
  δ = 1. The population AUC is Φ(δ/√2). Scores are passed as float32 probabilities ``sigmoid(score)``
  (computed in float64, then rounded), identical for every method.
"""

from __future__ import annotations

import math

import numpy as np
import torch

DATA_SEED = 5  # issue 5; fixed, not tuned
METRICS = ("accuracy", "macro_f1", "auroc")
METRIC_IDS = {"accuracy": 0, "macro_f1": 1, "auroc": 2}

ACC_P = 0.85
ACC_PREVALENCE = 0.4

F1_PRIORS = np.array([0.5, 0.3, 0.2])
F1_COND = np.array(  # P(pred | target), rows = target
    [
        [0.80, 0.10, 0.10],
        [0.15, 0.70, 0.15],
        [0.20, 0.20, 0.60],
    ]
)
F1_JOINT = F1_PRIORS[:, None] * F1_COND

AUC_DELTA = 1.0
AUC_PREVALENCE = 0.3


def true_value(metric: str) -> float:
    """The population value of ``metric`` under its data-generating distribution."""
    if metric == "accuracy":
        return ACC_P
    if metric == "macro_f1":
        p = F1_JOINT
        diag = np.diag(p)
        return float(np.mean(2 * diag / (p.sum(1) + p.sum(0))))
    if metric == "auroc":
        return 0.5 * math.erfc(-(AUC_DELTA / math.sqrt(2)) / math.sqrt(2))  # Φ(δ/√2)
    raise ValueError(metric)


def cell_rng(metric: str, n: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([DATA_SEED, METRIC_IDS[metric], n]))


def simulate(metric: str, n: int, sims: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All ``sims`` validation sets of one cell: ``(preds [sims, n], target [sims, n])``.

    Accuracy and macro-F1 give integer class predictions (long); AUROC gives float32 probabilities.
    """
    rng = cell_rng(metric, n)
    if metric == "accuracy":
        u = rng.random((sims, n, 2))
        target = (u[..., 0] < ACC_PREVALENCE).astype(np.int64)
        correct = u[..., 1] < ACC_P
        preds = np.where(correct, target, 1 - target)
        return torch.from_numpy(preds), torch.from_numpy(target)
    if metric == "macro_f1":
        u = rng.random((sims, n))
        cdf = np.cumsum(F1_JOINT.reshape(-1))
        cdf[-1] = 1.0
        cell = np.searchsorted(cdf, u, side="right")
        return torch.from_numpy(cell % 3), torch.from_numpy(cell // 3)
    if metric == "auroc":
        u = rng.random((sims, n))
        z = rng.standard_normal((sims, n))
        target = (u < AUC_PREVALENCE).astype(np.int64)
        score = z + AUC_DELTA * target
        probs = (1.0 / (1.0 + np.exp(-score))).astype(np.float32)
        return torch.from_numpy(probs), torch.from_numpy(target)
    raise ValueError(metric)
