"""The fast anchor code of the coverage study equals the plain computation it stands in for."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "validation"))

import coverage_anchors as anchors
from coverage_sim import simulate


def _with_ties(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    preds, target = simulate("auroc", n, 1)
    scores, y = preds[0].numpy().copy(), target[0].numpy()
    rng = np.random.default_rng(seed)
    scores[rng.integers(0, n, n // 4)] = scores[rng.integers(0, n, n // 4)]  # ties, some across classes
    return scores, y


@pytest.mark.parametrize("n", [7, 60, 400])
def test_sorted_auroc_is_bit_identical_to_the_rank_formula(n):
    scores, y = _with_ties(n, n)
    sa = anchors.SortedAUROC(scores, y)
    w = np.random.default_rng(0).poisson(1.0, (30, n))
    w[0] = 0
    w[1] = np.where(y[np.argsort(sa.pos_of)] == 1, w[1], 0)  # a row with no negatives: torchmetrics' fill 0
    got = sa(w)
    # weight of sample i is the weight at its sorted position
    ref = np.array(
        [
            anchors._stat_auroc(np.repeat(scores, row[sa.pos_of]), np.repeat(y, row[sa.pos_of])) if row.sum() else 0.0
            for row in w
        ]
    )
    np.testing.assert_array_equal(got, ref)
    assert got[0] == 0.0 and got[1] == 0.0


@pytest.mark.parametrize("metric", ["accuracy", "macro_f1", "auroc"])
def test_index_statistic_equals_the_gather_statistic(metric):
    preds, target = (x[0].numpy() for x in simulate(metric, 80, 1))
    if metric == "auroc":
        preds, target = _with_ties(80, 1)
    stat = anchors.index_statistic(metric, preds, target)
    idx = np.random.default_rng(3).integers(0, 80, (5, 4, 80))  # leading dims as scipy passes them
    plain = anchors.SCIPY_STATISTICS[metric](preds[idx], target[idx], axis=-1)
    np.testing.assert_array_equal(stat(idx), plain)
    assert stat(np.arange(80)).shape == ()


@pytest.mark.parametrize("metric", ["accuracy", "macro_f1", "auroc"])
def test_scipy_bca_fast_path_equals_the_paired_call(metric):
    preds, target = (x[0].numpy() for x in simulate(metric, 60, 1))
    fast = anchors.scipy_bca(metric, preds, target, 200, seed=4, fast=True)
    plain = anchors.scipy_bca(metric, preds, target, 200, seed=4, fast=False)
    assert fast == plain
    assert fast[0] < fast[1]
