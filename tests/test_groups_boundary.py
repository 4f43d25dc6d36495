"""Grouped data near 0 and 1 (issues 11 and 15): the default never gives a point interval at 30 of 30, and
the prior is refused where it has no meaning (with groups under Bayesian resampling; paired comparisons)."""

from __future__ import annotations

import pytest
import torch
from scipy import stats
from torchmetrics.classification import BinaryAccuracy

from lightning_ci import BootstrapMetric, PairedBootstrapMetric


def _all_correct(n: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    t = torch.ones(n, dtype=torch.long)
    return t.clone(), t


def test_groups_of_one_give_the_ungrouped_posterior_exactly():
    p, t = _all_correct()
    plain = BootstrapMetric(BinaryAccuracy(), seed=3)
    plain.update(p, t)
    grouped = BootstrapMetric(BinaryAccuracy(), seed=3)
    grouped.update(p, t, groups=torch.arange(30))
    a, b = plain.compute(), grouped.compute()
    assert grouped.method == "posterior"
    for key in ("value", "lower", "upper", "std"):
        torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-6)


def test_default_with_groups_at_30_of_30_is_the_posterior_of_g_effective_observations():
    """10 groups of 3, all correct: accuracy ~ Beta(10 + 1/2, 1/2) (1/4 per cell, G = 10 observations).

    KS test of the B = 20,000 posterior draws against that Beta: at the 1e-3 level a correct sampler fails
    1 time in 1000 (seed fixed in advance).
    """
    p, t = _all_correct()
    m = BootstrapMetric(BinaryAccuracy(), num_bootstraps=20_000, seed=11)
    m.update(p, t, groups=torch.arange(30) // 3)
    out = m.compute()
    assert m.method == "posterior"
    assert float(out["upper"] - out["lower"]) > 0.1  # a real interval, far from a point
    draws = m.engine.posterior_output(m.prior).replicates.double().numpy()
    assert stats.kstest(draws, stats.beta(10.5, 0.5).cdf).pvalue > 1e-3
    # and the interval is wider than the ungrouped one, which treats the 30 answers as independent
    plain = BootstrapMetric(BinaryAccuracy(), seed=11)
    plain.update(p, t)
    assert float(out["lower"]) < float(plain.compute()["lower"])


def test_bayesian_resampling_with_groups_refuses_an_explicit_prior():
    p, t = _all_correct()
    m = BootstrapMetric(BinaryAccuracy(), resampling="bayesian", prior=0.5, seed=0)
    with pytest.raises(ValueError, match="prior=None` with `groups"):
        m.update(p, t, groups=torch.arange(30))


def test_bayesian_resampling_with_groups_is_rubins_over_groups():
    """Without an explicit prior, Bayesian resampling over groups is Dirichlet(1, ..., 1) per group: at 30 of
    30 every replicate is 1, so a point interval with a warning (the user chose the mode)."""
    p, t = _all_correct()
    m = BootstrapMetric(BinaryAccuracy(), resampling="bayesian", seed=0)
    m.update(p, t, groups=torch.arange(30) // 3)
    with pytest.warns(UserWarning):
        out = m.compute()
    assert float(out["lower"]) == float(out["upper"]) == 1.0


def test_paired_comparison_refuses_a_prior():
    with pytest.raises(ValueError, match="paired comparison"):
        PairedBootstrapMetric(BinaryAccuracy(), prior=0.5)
