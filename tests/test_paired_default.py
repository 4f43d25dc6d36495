"""The paired default interval (issue 10): ``method="auto"`` is the percentile interval, because BCa's test was
too liberal where few examples are classified differently (docs/validation.md, Parts 4 and 4b)."""

from __future__ import annotations

import math
import warnings

import torch
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC

from lightning_ci import BootstrapMetric, PairedBootstrapMetric


def test_auto_is_percentile_for_paired_and_bca_for_single_metrics():
    t = torch.tensor([0, 1] * 20)
    paired = PairedBootstrapMetric(BinaryAccuracy(), seed=0)
    single = BootstrapMetric(BinaryAccuracy(), seed=0)
    assert paired.method == "percentile"
    assert single.method == "bca"
    assert PairedBootstrapMetric(BinaryAUROC(), seed=0).method == "percentile"
    assert PairedBootstrapMetric(BinaryAccuracy(), method="bca", seed=0).method == "bca"
    paired.update(t, 1 - t, t)
    assert paired.compute()["p_value"] < 0.05


def test_reduced_type_one_error_with_five_discordant_pairs():
    """Accuracy 0.85 for both models, n = 100, 5% of the examples discordant (the cell where BCa rejected 9.2%
    of 2,000 sets). S = 400 sets (seed fixed in advance): under a correct 5% test the rejection count has
    s.e. sqrt(0.05 * 0.95 / 400) = 1.09 pt, so the rate must stay below 5% + 4 s.e. = 9.4%."""
    gen = torch.Generator().manual_seed(2026)
    sims, n, d = 400, 100, 0.05
    rejections = 0
    for i in range(sims):
        target = (torch.rand(n, generator=gen) < 0.4).long()
        u = torch.rand(n, generator=gen)
        a_right = (u < 0.85 - d / 2) | ((u >= 0.85 - d / 2) & (u < 0.85))
        b_right = (u < 0.85 - d / 2) | ((u >= 0.85) & (u < 0.85 + d / 2))
        preds_a = torch.where(a_right, target, 1 - target)
        preds_b = torch.where(b_right, target, 1 - target)
        m = PairedBootstrapMetric(BinaryAccuracy(), num_bootstraps=1000, seed=i)
        m.update(preds_a, preds_b, target)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # identical predictions on a set: a point interval, warned
            rejections += float(m.compute()["p_value"]) < 0.05
    rate = rejections / sims
    assert rate < 0.05 + 4 * math.sqrt(0.05 * 0.95 / sims), rate
