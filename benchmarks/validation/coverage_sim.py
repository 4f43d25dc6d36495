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

Metrics whose range crosses 0 (``SIGNED_METRICS``, studied by ``coverage_signed.py``), both with a negative
population value (predictions that agree with the target less often than chance):

- ``mcc``: binary, (target, pred) ~ the 2x2 joint table ``MCC_JOINT`` (prevalence 0.4, P(pred = 1 | target = 1)
  = 0.30, P(pred = 1 | target = 0) = 0.42). Population MCC = (p11 p00 - p10 p01) / sqrt(p1. p0. p.1 p.0).
- ``kappa``: 3 classes, (target, pred) ~ the 3x3 joint table ``KAPPA_JOINT`` (priors 0.5/0.3/0.2, rows of
  ``KAPPA_COND``). Population Cohen's kappa = (p_o - p_e) / (1 - p_e) with p_o = trace, p_e = sum_k P_k. P_.k.
"""

from __future__ import annotations

import math

import numpy as np
import torch

DATA_SEED = 5  # issue 5; fixed, not tuned
METRICS = ("accuracy", "macro_f1", "auroc")
SIGNED_METRICS = ("mcc", "kappa")
METRIC_IDS = {"accuracy": 0, "macro_f1": 1, "auroc": 2, "mcc": 3, "kappa": 4}

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

MCC_PREVALENCE = 0.4
MCC_PRED_GIVEN_POS, MCC_PRED_GIVEN_NEG = 0.30, 0.42
MCC_JOINT = np.array(  # rows = target (0, 1), columns = pred (0, 1)
    [
        [(1 - MCC_PREVALENCE) * (1 - MCC_PRED_GIVEN_NEG), (1 - MCC_PREVALENCE) * MCC_PRED_GIVEN_NEG],
        [MCC_PREVALENCE * (1 - MCC_PRED_GIVEN_POS), MCC_PREVALENCE * MCC_PRED_GIVEN_POS],
    ]
)
KAPPA_PRIORS = np.array([0.5, 0.3, 0.2])
KAPPA_COND = np.array(  # P(pred | target), rows = target: the diagonal is below chance
    [
        [0.30, 0.40, 0.30],
        [0.40, 0.25, 0.35],
        [0.45, 0.35, 0.20],
    ]
)
KAPPA_JOINT = KAPPA_PRIORS[:, None] * KAPPA_COND


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
    if metric == "mcc":
        p = MCC_JOINT
        num = p[1, 1] * p[0, 0] - p[1, 0] * p[0, 1]
        return float(num / math.sqrt(p[1].sum() * p[0].sum() * p[:, 1].sum() * p[:, 0].sum()))
    if metric == "kappa":
        p = KAPPA_JOINT
        p_o, p_e = np.trace(p), float(p.sum(1) @ p.sum(0))
        return float((p_o - p_e) / (1 - p_e))
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
    if metric in ("macro_f1", "mcc", "kappa"):
        joint = {"macro_f1": F1_JOINT, "mcc": MCC_JOINT, "kappa": KAPPA_JOINT}[metric]
        c = joint.shape[0]
        u = rng.random((sims, n))
        cdf = np.cumsum(joint.reshape(-1))
        cdf[-1] = 1.0
        cell = np.searchsorted(cdf, u, side="right")
        return torch.from_numpy(cell % c), torch.from_numpy(cell // c)
    if metric == "auroc":
        u = rng.random((sims, n))
        z = rng.standard_normal((sims, n))
        target = (u < AUC_PREVALENCE).astype(np.int64)
        score = z + AUC_DELTA * target
        probs = (1.0 / (1.0 + np.exp(-score))).astype(np.float32)
        return torch.from_numpy(probs), torch.from_numpy(target)
    raise ValueError(metric)
