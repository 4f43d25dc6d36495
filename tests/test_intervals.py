"""The interval math of ``lightning_ci.intervals`` against scipy.stats.bootstrap's own formulas."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.stats as st
import torch
from scipy.stats._resampling import _bca_interval

from lightning_ci.intervals import _bca_levels, _sorted_valid, bootstrap_std, confidence_interval


def _scipy(x: np.ndarray, method: str, n_resamples: int = 999, level: float = 0.95):
    return st.bootstrap((x,), np.mean, n_resamples=n_resamples, method=method, confidence_level=level, rng=1)


@pytest.mark.parametrize("method", ["percentile", "basic", "BCa"])
@pytest.mark.parametrize("level", [0.9, 0.95])
def test_matches_scipy_on_the_same_replicates(method, level):
    """Same replicates (scipy's bootstrap distribution) and same jackknife: identical interval."""
    x = np.random.default_rng(0).exponential(size=50)
    res = _scipy(x, method, level=level)
    reps = torch.tensor(res.bootstrap_distribution)
    jk = torch.tensor([np.delete(x, i).mean() for i in range(len(x))])
    lower, upper = confidence_interval(
        reps, torch.tensor(x.mean()), confidence_level=level, method=method.lower(), jackknife=jk
    )
    np.testing.assert_allclose([lower.item(), upper.item()], res.confidence_interval, rtol=1e-12)
    np.testing.assert_allclose(bootstrap_std(reps).item(), res.standard_error, rtol=1e-12)


def test_bca_levels_match_scipy_with_ties_and_weighted_jackknife():
    """Binary data: many replicates tie with the estimate, and the jackknife has 2 distinct values.

    z0 must split ties like scipy (``(#< + #<=) / 2B``), and the weighted jackknife (distinct values with
    multiplicities) must give scipy's full delete-one acceleration.
    """
    rng = np.random.default_rng(3)
    x = (rng.random(40) < 0.3).astype(float)
    theta_b = rng.choice(x, size=(1, 2000, x.size)).mean(-1)  # replicates with exact ties at k/40
    alpha = 0.025
    from scipy._lib._array_api import array_namespace

    a1_ref, a2_ref, _ = _bca_interval(
        (x[None, :],), np.mean, axis=-1, alpha=alpha, theta_hat_b=theta_b, batch=None, xp=array_namespace(x)
    )
    assert (theta_b == x.mean()).sum() > 50  # ties are really exercised
    n1 = int(x.sum())
    jk = torch.tensor([(n1 - 1) / (x.size - 1), n1 / (x.size - 1)], dtype=torch.float64)  # drop a 1, drop a 0
    weights = torch.tensor([n1, x.size - n1], dtype=torch.float64)
    sorted_reps, counts = _sorted_valid(torch.tensor(theta_b[0]))
    a1, a2, usable = _bca_levels(sorted_reps, counts, torch.tensor(x.mean()), alpha, jk, weights)
    assert bool(usable)
    np.testing.assert_allclose([a1.item(), a2.item()], [a1_ref.item(), a2_ref.item()], rtol=1e-10)


def test_normal_interval():
    reps = torch.randn(5000, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.1
    est = torch.tensor(0.3, dtype=torch.float64)
    lower, upper = confidence_interval(reps, est, confidence_level=0.95, method="normal")
    se = reps.numpy().std(ddof=1)
    z = st.norm.ppf(0.975)
    np.testing.assert_allclose([lower.item(), upper.item()], [0.3 - z * se, 0.3 + z * se], rtol=1e-12)


@pytest.mark.parametrize("method", ["percentile", "basic", "normal", "bca"])
def test_per_element_quantiles_are_not_pooled(method):
    """A [B, 3] metric gives each element its own interval, as if computed alone."""
    gen = torch.Generator().manual_seed(1)
    scales = torch.tensor([0.01, 1.0, 100.0], dtype=torch.float64)
    reps = torch.randn(999, 3, generator=gen, dtype=torch.float64) * scales + torch.tensor([0.0, 5.0, -3.0])
    est = torch.tensor([0.001, 5.1, -2.0], dtype=torch.float64)
    jk = torch.randn(30, 3, generator=gen, dtype=torch.float64).pow(3) * scales
    lower, upper = confidence_interval(reps, est, confidence_level=0.9, method=method, jackknife=jk)
    for j in range(3):
        lo, hi = confidence_interval(reps[:, j], est[j], confidence_level=0.9, method=method, jackknife=jk[:, j])
        assert lower[j].item() == pytest.approx(lo.item(), rel=1e-12)
        assert upper[j].item() == pytest.approx(hi.item(), rel=1e-12)
    # and each is on its own scale: pooling would mix them
    width = upper - lower
    assert width[0] < 0.1 < width[1] < 10 < width[2]


def test_vector_matches_scipy_column_by_column():
    x = np.random.default_rng(5).gamma(2.0, size=(80, 2)) * np.array([1.0, 10.0])
    reps, ref = [], []
    for j in range(2):
        res = _scipy(x[:, j], "percentile")
        reps.append(res.bootstrap_distribution)
        ref.append(res.confidence_interval)
    lower, upper = confidence_interval(
        torch.tensor(np.stack(reps, 1)), torch.tensor(x.mean(0)), confidence_level=0.95, method="percentile"
    )
    np.testing.assert_allclose(lower.numpy(), [r.low for r in ref], rtol=1e-12)
    np.testing.assert_allclose(upper.numpy(), [r.high for r in ref], rtol=1e-12)


@pytest.mark.parametrize("method", ["percentile", "basic", "normal", "bca"])
def test_all_replicates_equal_gives_point_interval(method):
    reps = torch.full((200,), 0.75)
    with pytest.warns(UserWarning, match="degenerate"):
        lower, upper = confidence_interval(
            reps, torch.tensor(0.75), confidence_level=0.95, method=method, jackknife=torch.full((10,), 0.75)
        )
    assert lower.item() == upper.item() == 0.75


def test_nan_replicates_are_dropped_per_element_with_warning():
    gen = torch.Generator().manual_seed(0)
    reps = torch.rand(1000, 2, generator=gen)
    clean = reps[:, 0].clone()
    reps[:100, 0] = float("nan")  # 10% undefined for element 0, none for element 1
    with pytest.warns(UserWarning, match=r"10\.0%"):
        lower, upper = confidence_interval(reps, torch.tensor([0.5, 0.5]), confidence_level=0.9, method="percentile")
    ref = np.quantile(clean[100:].numpy(), [0.05, 0.95])
    np.testing.assert_allclose([lower[0].item(), upper[0].item()], ref, rtol=1e-6)
    ref1 = np.quantile(reps[:, 1].numpy(), [0.05, 0.95])
    np.testing.assert_allclose([lower[1].item(), upper[1].item()], ref1, rtol=1e-6)
    assert torch.isfinite(bootstrap_std(reps)).all()


def test_all_nan_replicates():
    reps = torch.full((100, 2), float("nan"))
    with pytest.warns(UserWarning, match="every bootstrap replicate"):
        lower, upper = confidence_interval(
            reps, torch.tensor([0.4, float("nan")]), confidence_level=0.95, method="percentile"
        )
    assert lower[0].item() == upper[0].item() == pytest.approx(0.4)
    assert torch.isnan(lower[1]) and torch.isnan(upper[1])  # undefined everywhere: NaN, with the warning above


def test_bca_falls_back_to_percentile_when_undefined():
    reps = torch.linspace(0.0, 1.0, 101, dtype=torch.float64)
    pct = confidence_interval(reps, torch.tensor(0.5, dtype=torch.float64), confidence_level=0.9, method="percentile")
    # zero jackknife variance
    with pytest.warns(UserWarning, match="percentile"):
        bca = confidence_interval(
            reps,
            torch.tensor(0.5, dtype=torch.float64),
            confidence_level=0.9,
            method="bca",
            jackknife=torch.full((20,), 0.5, dtype=torch.float64),
        )
    assert torch.equal(bca[0], pct[0]) and torch.equal(bca[1], pct[1])
    # estimate below every replicate: z0 = -inf
    jk = torch.linspace(0.4, 0.6, 20, dtype=torch.float64)
    with pytest.warns(UserWarning, match="percentile"):
        lower, upper = confidence_interval(
            reps, torch.tensor(-1.0, dtype=torch.float64), confidence_level=0.9, method="bca", jackknife=jk
        )
    assert torch.isfinite(lower) and torch.isfinite(upper)


@pytest.mark.parametrize("method", ["percentile", "basic", "normal"])
def test_clipped_to_metric_range(method):
    reps = 0.97 + 0.05 * torch.randn(2000, generator=torch.Generator().manual_seed(0))
    lower, upper = confidence_interval(
        reps, torch.tensor(0.99), confidence_level=0.95, method=method, bounds=(0.0, 1.0)
    )
    assert 0.0 <= lower.item() <= upper.item() <= 1.0
    unclipped = confidence_interval(reps, torch.tensor(0.99), confidence_level=0.95, method=method)
    assert unclipped[1].item() > 1.0  # the clip really did something


def test_no_warning_on_regular_input():
    reps = torch.randn(500, 3, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        confidence_interval(
            reps, torch.zeros(3), confidence_level=0.95, method="bca", jackknife=torch.randn(40, 3).pow(3)
        )


def test_errors():
    reps, est = torch.rand(10), torch.tensor(0.5)
    with pytest.raises(ValueError, match="method"):
        confidence_interval(reps, est, confidence_level=0.95, method="studentized")
    for level in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="confidence_level"):
            confidence_interval(reps, est, confidence_level=level, method="percentile")
    with pytest.raises(ValueError, match="jackknife"):
        confidence_interval(reps, est, confidence_level=0.95, method="bca")
    with pytest.raises(ValueError, match="shape"):
        confidence_interval(torch.rand(10, 2), est, confidence_level=0.95, method="percentile")


def test_std_matches_numpy_and_ignores_nan():
    reps = torch.randn(300, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    np.testing.assert_allclose(bootstrap_std(reps).numpy(), reps.numpy().std(axis=0, ddof=1), rtol=1e-12)
    reps[:7, 1] = float("nan")
    np.testing.assert_allclose(bootstrap_std(reps)[1].item(), reps[7:, 1].numpy().std(ddof=1), rtol=1e-12)
