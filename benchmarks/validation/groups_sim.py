"""Clustered simulated validation sets with an exactly known population metric (for ``groups.py``, issue 11).

A set has ``G`` groups (documents, patients, prompts). Group ``g`` has ``m_g`` samples and a random effect
``u_g ~ N(0, 1)`` shared by all its samples; ``sigma`` scales it (0 = independent samples, 1 = moderate,
2 = strong intra-cluster correlation). Group sizes are ``"1"``, ``"5"``, ``"20"`` (constant) or ``"1-20"``
(each group's size uniform on 1..20, drawn anew for every set, so n varies from set to set).

- ``accuracy``: target ~ Bernoulli(0.4); the prediction is right with probability
  ``expit(logit(0.85) + sigma * u_g)``. Population accuracy = E[expit(logit(0.85) + sigma U)], U ~ N(0, 1)
  (Gauss-Hermite quadrature, 200 nodes: exact to machine precision for this smooth integrand).
- ``macro_f1``: 3 classes, target ~ (0.5, 0.3, 0.2); the prediction is right with probability
  ``expit(logit(r_k) + sigma * u_g)`` for target k, recalls r = (0.8, 0.7, 0.6); a wrong prediction is one
  of the two other classes with probability 1/2 each. At sigma = 0 this is Part 1's macro-F1 table. The
  population joint table is P(k, k) = pi_k m_k, P(k, j) = pi_k (1 - m_k) / 2 with m_k = E[expit(logit(r_k) +
  sigma U)], and the population macro-F1 = mean_k 2 P_kk / (P_k. + P_.k) (macro-F1 of pooled counts
  converges to it because group sizes are independent of the random effects).
- ``auroc``: target ~ Bernoulli(0.3); score = delta * target + (sigma * u_g + e) / sqrt(1 + sigma^2) with
  e ~ N(0, 1) and delta = 1: the noise has unit variance and a within-group correlation
  rho = sigma^2 / (1 + sigma^2) (0, 0.5, 0.8), so the population AUC (a positive and a negative drawn
  independently, i.e. from different groups) is Phi(delta / sqrt(2)) = 0.760250 for every sigma. Within-group
  pairs are easier to rank (their shared effect cancels), and they are a fraction ~(m - 1)/(n - 1) ~ 1/G of
  all pairs, so the sample AUROC is biased up by O(1/G) (largest at G = 50 and sigma = 2; reported).
  Scores are passed as float32 probabilities ``sigmoid(score)`` as in Part 1.

Seeds: all the sets of cell (metric, G, sizes, sigma) come, in order, from one NumPy generator seeded with
``SeedSequence([11, metric_id, G, size_id, sigma_id])`` (11 = the issue number; fixed before the first run),
so the first S' sets of a cell do not depend on S.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

DATA_SEED = 11  # issue 11; fixed, not tuned
METRICS = ("accuracy", "macro_f1", "auroc")
METRIC_IDS = {"accuracy": 0, "macro_f1": 1, "auroc": 2}
SIZE_SPECS = ("1", "5", "20", "1-20")
SIZE_IDS = {"1": 0, "5": 1, "20": 2, "1-20": 3}
SIGMAS = (0.0, 1.0, 2.0)

ACC_P = 0.85
ACC_PREVALENCE = 0.4
F1_PRIORS = np.array([0.5, 0.3, 0.2])
F1_RECALLS = np.array([0.8, 0.7, 0.6])
AUC_DELTA = 1.0
AUC_PREVALENCE = 0.3


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _expit(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def mean_expit(p: float, sigma: float) -> float:
    """E[expit(logit(p) + sigma U)] for U ~ N(0, 1), by 200-node Gauss-Hermite quadrature."""
    if sigma == 0:
        return p
    x, w = np.polynomial.hermite_e.hermegauss(200)  # weight exp(-x^2 / 2)
    return float((w * _expit(_logit(p) + sigma * x)).sum() / math.sqrt(2 * math.pi))


def f1_joint(sigma: float) -> np.ndarray:
    """The population 3x3 joint table P(target, pred) of the macro-F1 design (rows = target)."""
    m = np.array([mean_expit(float(r), sigma) for r in F1_RECALLS])
    joint = F1_PRIORS[:, None] * ((1 - m) / 2)[:, None] * (1 - np.eye(3))
    joint[np.diag_indices(3)] = F1_PRIORS * m
    return joint


def true_value(metric: str, sigma: float) -> float:
    """The population value of ``metric`` under the clustered design with random-effect scale ``sigma``."""
    if metric == "accuracy":
        return mean_expit(ACC_P, sigma)
    if metric == "macro_f1":
        p = f1_joint(sigma)
        return float(np.mean(2 * np.diag(p) / (p.sum(1) + p.sum(0))))
    if metric == "auroc":
        return 0.5 * math.erfc(-(AUC_DELTA / math.sqrt(2)) / math.sqrt(2))  # Phi(delta / sqrt 2)
    raise ValueError(metric)


@dataclass
class GroupedSet:
    """One simulated validation set: ``preds`` (int64 classes or float32 probabilities), ``target``, ``groups``."""

    preds: np.ndarray
    target: np.ndarray
    groups: np.ndarray  # int64 id per sample, 0..G-1, contiguous blocks


def cell_rng(metric: str, num_groups: int, sizes: str, sigma: float) -> np.random.Generator:
    sigma_id = round(10 * sigma)
    return np.random.default_rng(
        np.random.SeedSequence([DATA_SEED, METRIC_IDS[metric], num_groups, SIZE_IDS[sizes], sigma_id])
    )


def group_sizes(rng: np.random.Generator, num_groups: int, sizes: str) -> np.ndarray:
    if sizes == "1-20":
        return rng.integers(1, 21, size=num_groups)
    return np.full(num_groups, int(sizes), dtype=np.int64)


def draw_set(rng: np.random.Generator, metric: str, num_groups: int, sizes: str, sigma: float) -> GroupedSet:
    """Draw one set (consumes ``rng`` in a fixed order: sizes, effects, then the samples)."""
    m = group_sizes(rng, num_groups, sizes)
    u = rng.standard_normal(num_groups)
    groups = np.repeat(np.arange(num_groups, dtype=np.int64), m)
    n = groups.size
    ug = u[groups]
    if metric == "accuracy":
        r = rng.random((2, n))
        target = (r[0] < ACC_PREVALENCE).astype(np.int64)
        correct = r[1] < _expit(_logit(ACC_P) + sigma * ug)
        preds = np.where(correct, target, 1 - target)
        return GroupedSet(preds, target, groups)
    if metric == "macro_f1":
        r = rng.random((3, n))
        target = np.searchsorted(np.cumsum(F1_PRIORS)[:-1], r[0], side="right").astype(np.int64)
        logits = np.log(F1_RECALLS / (1 - F1_RECALLS))[target]
        correct = r[1] < _expit(logits + sigma * ug)
        shift = 1 + (r[2] < 0.5)  # a wrong prediction: one of the two other classes, 1/2 each
        preds = np.where(correct, target, (target + shift) % 3)
        return GroupedSet(preds, target, groups)
    if metric == "auroc":
        target = (rng.random(n) < AUC_PREVALENCE).astype(np.int64)
        e = rng.standard_normal(n)
        score = AUC_DELTA * target + (sigma * ug + e) / math.sqrt(1 + sigma**2)
        probs = _expit(score).astype(np.float32)
        return GroupedSet(probs, target, groups)
    raise ValueError(metric)


def simulate(metric: str, num_groups: int, sizes: str, sigma: float, sims: int) -> Iterator[GroupedSet]:
    """The first ``sims`` sets of the cell, in order."""
    rng = cell_rng(metric, num_groups, sizes, sigma)
    for _ in range(sims):
        yield draw_set(rng, metric, num_groups, sizes, sigma)
