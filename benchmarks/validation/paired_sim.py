"""Simulated pairs of models scored on the same validation sets, with an exactly known true difference.

Used by ``paired.py`` (issue 10, "Evidence"). A *cell* is (metric, agreement level, true difference, n). All
``S`` sets of a cell are drawn up front from one NumPy generator seeded with
``SeedSequence([DATA_SEED, metric_id, level_id, delta_id, n])``; rows are filled in order, so the first
``S'`` sets of a cell do not depend on ``S`` (a reduced run shares its sets with the full run).

The *true difference* of a cell is the difference of the two population metrics, ``M(P_A) - M(P_B)``, where
``M(P)`` is the limit of the plug-in metric on n i.i.d. examples as n grows, i.e. the metric of the joint
distribution of (target, prediction) (or the scores' distributions for AUROC). Each is computed analytically:

- ``accuracy``: target ~ Bernoulli(0.4). Whether A and B are right is a 2x2 joint draw with P(A right) = p_a,
  P(B right) = p_b = 0.85 and discordance d = P(exactly one is right) (the *agreement level*; the issue's
  example has d = 0.06). P(A right, B wrong) = (d + Δ)/2, P(A wrong, B right) = (d - Δ)/2 with Δ = p_a - p_b.
  A wrong prediction is 1 - target. True difference Δ.
- ``macro_f1``: 3 classes, target ~ (0.5, 0.3, 0.2). B predicts from ``COND`` (rows = target; per-class recall
  0.8/0.7/0.6). With probability ρ (the agreement level) A and B share one draw from ``COND[target]``;
  otherwise they draw independently. Then A is replaced by the target with probability η (A's improvement),
  so P(pred_A | target) = η I + (1 - η) COND. Population macro-F1 of a joint table P is
  mean_k 2 P_kk / (P_k. + P_.k); η is solved (bisection) for the requested true difference.
- ``auroc``: target ~ Bernoulli(0.3). Scores s_A = μ_A y + e_A, s_B = μ_B y + e_B with (e_A, e_B) standard
  bivariate normal of correlation r (the agreement level), μ_B = 1. Population AUC = Φ(μ/√2); μ_A solves
  Φ(μ_A/√2) = Φ(1/√2) + Δ. Scores are passed as float32 ``sigmoid(s)`` (computed in float64, then rounded).
"""

from __future__ import annotations

import math

import numpy as np
import torch

DATA_SEED = 10  # issue 10; fixed before the first run, not tuned
METRICS = ("accuracy", "macro_f1", "auroc")
METRIC_IDS = {"accuracy": 0, "macro_f1": 1, "auroc": 2}
NUM_CLASSES = {"accuracy": 2, "macro_f1": 3}

# agreement levels (level_id = index): accuracy discordance d, macro-F1 shared-draw probability ρ, AUROC
# score correlation r
LEVELS = {
    "accuracy": (0.05, 0.10, 0.20),
    "macro_f1": (0.50, 0.80, 0.95),
    "auroc": (0.50, 0.80, 0.95),
}
LEVEL_NAMES = {"accuracy": "discordance d", "macro_f1": "shared draw ρ", "auroc": "score correlation r"}
# true differences of the power curves (delta_id = index); delta_id 0 is the null
DELTAS = (0.0, 0.01, 0.02, 0.04)

ACC_PB = 0.85
ACC_PREVALENCE = 0.4
F1_PRIORS = np.array([0.5, 0.3, 0.2])
F1_COND = np.array(  # P(pred | target) of model B, rows = target
    [
        [0.80, 0.10, 0.10],
        [0.15, 0.70, 0.15],
        [0.20, 0.20, 0.60],
    ]
)
AUC_MU_B = 1.0
AUC_PREVALENCE = 0.3


def _phi(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2))


def _phi_inv(p: float) -> float:
    lo, hi = -10.0, 10.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _phi(mid) < p else (lo, mid)
    return 0.5 * (lo + hi)


def macro_f1_of_cond(cond: np.ndarray) -> float:
    """Population macro-F1 of P(pred | target) = ``cond`` under ``F1_PRIORS``."""
    p = F1_PRIORS[:, None] * cond
    return float(np.mean(2 * np.diag(p) / (p.sum(1) + p.sum(0))))


def f1_eta(delta: float) -> float:
    """η such that macro-F1(η I + (1 - η) COND) - macro-F1(COND) = ``delta`` (bisection; increasing in η)."""
    base = macro_f1_of_cond(F1_COND)
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        cond = mid * np.eye(3) + (1 - mid) * F1_COND
        lo, hi = (mid, hi) if macro_f1_of_cond(cond) - base < delta else (lo, mid)
    return 0.5 * (lo + hi)


def auc_mu_a(delta: float) -> float:
    return math.sqrt(2) * _phi_inv(_phi(AUC_MU_B / math.sqrt(2)) + delta)


def true_values(metric: str, delta: float) -> tuple[float, float]:
    """Population (metric of A, metric of B) of a cell with requested true difference ``delta``."""
    if metric == "accuracy":
        return ACC_PB + delta, ACC_PB
    if metric == "macro_f1":
        eta = f1_eta(delta)
        return macro_f1_of_cond(eta * np.eye(3) + (1 - eta) * F1_COND), macro_f1_of_cond(F1_COND)
    if metric == "auroc":
        return _phi(auc_mu_a(delta) / math.sqrt(2)), _phi(AUC_MU_B / math.sqrt(2))
    raise ValueError(metric)


def true_difference(metric: str, delta: float) -> float:
    a, b = true_values(metric, delta)
    return a - b


def agreement(metric: str, level: float, delta: float) -> float:
    """Population P(pred_A = pred_B) (accuracy, macro-F1) or corr(s_A, s_B) within a class (AUROC)."""
    if metric == "accuracy":
        return 1.0 - level
    if metric == "macro_f1":
        eta = f1_eta(delta)
        cond = F1_COND
        same = 0.0
        for t in range(3):
            # shared draw: agree unless A was replaced and the draw differs from t; independent: sum_k qA_k qB_k
            q_a = eta * np.eye(3)[t] + (1 - eta) * cond[t]
            shared = eta * cond[t, t] + (1 - eta)
            same += F1_PRIORS[t] * (level * shared + (1 - level) * float(q_a @ cond[t]))
        return float(same)
    return level


def cell_rng(metric: str, level_id: int, delta_id: int, n: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([DATA_SEED, METRIC_IDS[metric], level_id, delta_id, n]))


def simulate(
    metric: str, level_id: int, delta_id: int, n: int, sims: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All ``sims`` sets of one cell: ``(preds_a [sims, n], preds_b [sims, n], target [sims, n])``.

    Accuracy and macro-F1 give integer class predictions (long); AUROC gives float32 probabilities.
    """
    rng = cell_rng(metric, level_id, delta_id, n)
    level, delta = LEVELS[metric][level_id], DELTAS[delta_id]
    if metric == "accuracy":
        p10, p01 = (level + delta) / 2, (level - delta) / 2
        p11 = ACC_PB + delta - p10
        p00 = 1.0 - p11 - p10 - p01
        if min(p10, p01, p11, p00) < 0:
            raise ValueError(f"infeasible accuracy cell d={level}, delta={delta}")
        u = rng.random((sims, n, 2))
        target = (u[..., 0] < ACC_PREVALENCE).astype(np.int64)
        cdf = np.cumsum([p11, p10, p01, p00])
        cdf[-1] = 1.0
        cell = np.searchsorted(cdf, u[..., 1], side="right")  # 0: both right, 1: A only, 2: B only, 3: neither
        a_right = (cell == 0) | (cell == 1)
        b_right = (cell == 0) | (cell == 2)
        preds_a = np.where(a_right, target, 1 - target)
        preds_b = np.where(b_right, target, 1 - target)
        return torch.from_numpy(preds_a), torch.from_numpy(preds_b), torch.from_numpy(target)
    if metric == "macro_f1":
        eta = f1_eta(delta) if delta else 0.0
        u = rng.random((sims, n, 6))
        target = np.searchsorted(np.cumsum(F1_PRIORS)[:-1], u[..., 0], side="right")
        cdf = np.cumsum(F1_COND, axis=1)[target]  # [sims, n, 3]: per-example CDF of COND[target]
        cdf[..., -1] = 1.0

        def draw(v: np.ndarray) -> np.ndarray:
            return (v[..., None] >= cdf).sum(-1)

        shared, own_a, own_b = draw(u[..., 1]), draw(u[..., 2]), draw(u[..., 3])
        is_shared = u[..., 4] < level
        preds_b = np.where(is_shared, shared, own_b)
        preds_a = np.where(is_shared, shared, own_a)
        preds_a = np.where(u[..., 5] < eta, target, preds_a)
        return (
            torch.from_numpy(preds_a.astype(np.int64)),
            torch.from_numpy(preds_b.astype(np.int64)),
            torch.from_numpy(target.astype(np.int64)),
        )
    if metric == "auroc":
        mu_a = auc_mu_a(delta)
        u = rng.random((sims, n))
        z = rng.standard_normal((sims, n, 2))
        target = (u < AUC_PREVALENCE).astype(np.int64)
        e_a = z[..., 0]
        e_b = level * z[..., 0] + math.sqrt(1 - level**2) * z[..., 1]
        s_a, s_b = e_a + mu_a * target, e_b + AUC_MU_B * target
        pa = (1.0 / (1.0 + np.exp(-s_a))).astype(np.float32)
        pb = (1.0 / (1.0 + np.exp(-s_b))).astype(np.float32)
        return torch.from_numpy(pa), torch.from_numpy(pb), torch.from_numpy(target)
    raise ValueError(metric)
