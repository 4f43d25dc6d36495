"""The paired default interval (issue 10): ``method="auto"`` is the normal interval, because BCa's test and the
percentile interval's were too liberal where few examples are classified differently (docs/validation.md,
Parts 4, 4b and 4d)."""

from __future__ import annotations

import math
import warnings

import torch
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC, MulticlassF1Score

from lightning_ci import BootstrapMetric, PairedBootstrapMetric


def test_auto_is_normal_for_paired_and_bca_for_single_metrics():
    t = torch.tensor([0, 1] * 20)
    paired = PairedBootstrapMetric(BinaryAccuracy(), seed=0)
    single = BootstrapMetric(BinaryAccuracy(), seed=0)
    assert paired.method == "normal"
    assert paired.method_requested == "auto"
    assert single.method == "bca"
    assert PairedBootstrapMetric(BinaryAUROC(), seed=0).method == "normal"
    assert PairedBootstrapMetric(BinaryAccuracy(), resampling="poisson", seed=0).method == "normal"
    # a Bayesian bootstrap gives a credible interval: quantiles of the posterior draws, as for one metric
    assert PairedBootstrapMetric(BinaryAccuracy(), resampling="bayesian", seed=0).method == "percentile"
    assert PairedBootstrapMetric(BinaryAccuracy(), method="bca", seed=0).method == "bca"
    assert PairedBootstrapMetric(BinaryAccuracy(), method="percentile", seed=0).method == "percentile"
    paired.update(t, 1 - t, t)
    assert paired.compute()["p_value"] < 0.05


def test_default_is_difference_plus_minus_z_std_and_its_p_value():
    """The default interval is ``difference ± z_{0.975}·std`` and ``p = 2·Φ(-|difference| / std)``, the same
    replicates as ``method="normal"`` with the same seed."""
    gen = torch.Generator().manual_seed(7)
    target = torch.randint(0, 3, (300,), generator=gen)
    flip_a = torch.rand(300, generator=gen) < 0.25
    flip_b = torch.rand(300, generator=gen) < 0.3
    preds_a = torch.where(flip_a, torch.randint(0, 3, (300,), generator=gen), target)
    preds_b = torch.where(flip_b, torch.randint(0, 3, (300,), generator=gen), target)
    base = MulticlassF1Score(num_classes=3, average="macro")
    out = {}
    for method in ("auto", "normal"):
        m = PairedBootstrapMetric(base, num_bootstraps=400, method=method, seed=3)
        m.update(preds_a, preds_b, target)
        out[method] = m.compute()
    for key in out["auto"]:
        torch.testing.assert_close(out["auto"][key], out["normal"][key], rtol=0, atol=0)
    r = out["auto"]
    z = float(torch.special.ndtri(torch.tensor(0.975, dtype=torch.float64)))
    d, s = float(r["difference"]), float(r["std"])
    assert s > 0
    assert abs(float(r["lower"]) - (d - z * s)) < 1e-6
    assert abs(float(r["upper"]) - (d + z * s)) < 1e-6
    p = 2 * 0.5 * math.erfc(abs(d) / s / math.sqrt(2))
    assert abs(float(r["p_value"]) - p) < 1e-6


def test_reduced_type_one_error_macro_f1_small_n():
    """Macro-F1 (3 classes, priors 0.5/0.3/0.2), n = 100, two exchangeable models sharing 80% of their draws:
    the cell where the percentile interval rejected 7.1% and BCa 10.4% of 2,000 sets (Part 4). S = 600 sets
    (seed fixed in advance): under a correct 5% test the rejection rate has s.e. sqrt(0.05 * 0.95 / 600) =
    0.89 pt, so it must lie in 5% ± 3.5 s.e. = [1.9%, 8.1%]; BCa's 10.4% would fail this."""
    gen = torch.Generator().manual_seed(2027)
    cond = torch.tensor([[0.80, 0.10, 0.10], [0.15, 0.70, 0.15], [0.20, 0.20, 0.60]])
    priors = torch.tensor([0.5, 0.3, 0.2])
    sims, n = 600, 100
    metric = PairedBootstrapMetric(MulticlassF1Score(num_classes=3, average="macro"), num_bootstraps=1000, seed=0)
    rejections = 0
    for i in range(sims):
        target = torch.multinomial(priors, n, replacement=True, generator=gen)
        shared = torch.rand(n, generator=gen) < 0.8
        draw_a = torch.multinomial(cond[target], 1, generator=gen).squeeze(1)
        draw_b = torch.multinomial(cond[target], 1, generator=gen).squeeze(1)
        preds_b = torch.where(shared, draw_a, draw_b)
        metric.reset()
        metric.seed = i
        metric.update(draw_a, preds_b, target)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # identical predictions on a set: a point interval, warned
            rejections += float(metric.compute()["p_value"]) < 0.05
    rate = rejections / sims
    se = math.sqrt(0.05 * 0.95 / sims)
    assert 0.05 - 3.5 * se <= rate <= 0.05 + 3.5 * se, rate


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
