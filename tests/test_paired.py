"""PairedBootstrapMetric and paired_verdict (issue 10).

References: the unwrapped torchmetrics metric for the values, ``scipy.stats.bootstrap(paired=True)`` with a difference
statistic for the interval, a plain re-evaluation loop for the replicate distribution. Seeds were fixed before the
first run.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy import stats
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryAUROC,
    BinaryAveragePrecision,
    BinaryMatthewsCorrCoef,
    MulticlassAUROC,
    MulticlassF1Score,
    MultilabelF1Score,
)
from torchmetrics.regression import MeanSquaredError

import lightning_ci
from lightning_ci import PairedBootstrapMetric, paired_verdict
from lightning_ci.bootstrap.confusion import ConfusionEngine
from lightning_ci.bootstrap.generic import GenericEngine
from lightning_ci.bootstrap.paired import interval_p_value
from lightning_ci.bootstrap.ranking import RankingEngine
from lightning_ci.intervals import confidence_interval


def _binary(n: int, seed: int, acc_a: float = 0.88, disagree: float = 0.1):
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(2, (n,), generator=g)
    pred_a = torch.where(torch.rand(n, generator=g) < acc_a, target, 1 - target)
    pred_b = torch.where(torch.rand(n, generator=g) < disagree, 1 - pred_a, pred_a)
    return pred_a, pred_b, target


def _scores(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(2, (n,), generator=g)
    score_a = torch.rand(n, generator=g) + 0.6 * target
    score_b = score_a + 0.4 * torch.randn(n, generator=g)
    return (score_a / 2).clamp(0, 1), (score_b / 2).clamp(0, 1), target


def _multiclass(n: int, seed: int, c: int = 3):
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(c, (n,), generator=g)
    pa = (torch.randn(n, c, generator=g) + 1.5 * torch.nn.functional.one_hot(target, c)).softmax(-1)
    pb = (pa + 0.3 * torch.rand(n, c, generator=g)).softmax(-1)
    return pa, pb, target


def _multilabel(n: int, seed: int, labels: int = 3):
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(2, (n, labels), generator=g)
    pa = (0.4 * target + 0.6 * torch.rand(n, labels, generator=g)).clamp(0, 1)
    pb = torch.where(torch.rand(n, labels, generator=g) < 0.2, torch.rand(n, labels, generator=g), pa)
    return pa, pb, target


def _regression(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=g)
    return x + 0.5 * torch.randn(n, generator=g), x + 0.7 * torch.randn(n, generator=g), x


CASES = {
    "binary_acc": (BinaryAccuracy, _binary, ConfusionEngine),
    "binary_mcc": (BinaryMatthewsCorrCoef, _binary, ConfusionEngine),
    "mc_f1": (lambda: MulticlassF1Score(3), _multiclass, ConfusionEngine),
    "mc_f1_none": (lambda: MulticlassF1Score(3, average=None), _multiclass, ConfusionEngine),
    "ml_f1": (lambda: MultilabelF1Score(3), _multilabel, ConfusionEngine),
    "auroc": (BinaryAUROC, _scores, RankingEngine),
    "ap": (BinaryAveragePrecision, _scores, RankingEngine),
    "mc_auroc": (lambda: MulticlassAUROC(3), _multiclass, RankingEngine),
    "auroc_binned": (lambda: BinaryAUROC(thresholds=7), _scores, GenericEngine),
    "mse": (MeanSquaredError, _regression, GenericEngine),
}


def _compute(metric):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return metric.compute()


@pytest.mark.parametrize("name", list(CASES))
def test_values_equal_the_unwrapped_metric_and_engine_choice(name):
    factory, data, engine = CASES[name]
    pa, pb, t = data(120, seed=1)
    metric = PairedBootstrapMetric(factory(), num_bootstraps=30 if engine is GenericEngine else 200, seed=0)
    assert isinstance(metric.engine, engine)
    for i in range(0, 120, 50):
        metric.update(pa[i : i + 50], pb[i : i + 50], t[i : i + 50])
    res = _compute(metric)
    assert sorted(res) == ["difference", "lower", "p_value", "std", "upper", "value_a", "value_b"]
    want_a, want_b = factory()(pa, t), factory()(pb, t)
    torch.testing.assert_close(res["value_a"], want_a)
    torch.testing.assert_close(res["value_b"], want_b)
    torch.testing.assert_close(res["difference"], want_a - want_b)
    for key in ("lower", "upper", "std", "p_value"):
        assert res[key].shape == want_a.shape and bool(torch.isfinite(res[key]).all()), key
    assert bool((res["lower"] <= res["difference"]).all() and (res["difference"] <= res["upper"]).all())
    assert bool(((res["p_value"] >= 0) & (res["p_value"] <= 1)).all())


def _scipy_paired(statistic, arrays, b, seed):
    return stats.bootstrap(
        arrays, statistic, paired=True, vectorized=True, n_resamples=b, method="percentile",
        confidence_level=0.95, rng=np.random.default_rng(seed),
    )  # fmt: skip


def _rank_auroc(score, target, axis=-1):
    ranks = stats.rankdata(score, axis=axis)
    pos = target.sum(axis=axis)
    neg = target.shape[axis] - pos
    return ((ranks * target).sum(axis=axis) - pos * (pos + 1) / 2) / (pos * neg)


@pytest.mark.parametrize("kind", ["accuracy", "auroc"])
def test_interval_matches_scipy_paired_bootstrap(kind):
    b = 2000
    if kind == "accuracy":
        pa, pb, t = _binary(400, seed=3)
        metric = PairedBootstrapMetric(BinaryAccuracy(), num_bootstraps=b, method="percentile", seed=11)

        def statistic(a, bb, y, axis=-1):
            return (a == y).mean(axis=axis) - (bb == y).mean(axis=axis)

    else:
        pa, pb, t = _scores(400, seed=3)
        metric = PairedBootstrapMetric(BinaryAUROC(), num_bootstraps=b, method="percentile", seed=11)

        def statistic(a, bb, y, axis=-1):
            return _rank_auroc(a, y, axis) - _rank_auroc(bb, y, axis)

    metric.update(pa, pb, t)
    res = _compute(metric)
    ref = _scipy_paired(statistic, (pa.numpy(), pb.numpy(), t.numpy()), b, seed=12)
    sd = float(ref.standard_error)
    # MC error of a 2.5% quantile of B replicates: sqrt(q(1-q)/B) / phi(z) * sd, for each side (ours and scipy's);
    # 4 combined s.e., plus one lattice step of the difference of accuracies (1/n) for the discrete statistic
    q_se = math.sqrt(0.025 * 0.975 / b) / stats.norm.pdf(1.96) * sd
    tol = 4 * math.sqrt(2) * q_se + (1 / 400 if kind == "accuracy" else 0.0)
    assert abs(float(res["lower"]) - ref.confidence_interval.low) < tol
    assert abs(float(res["upper"]) - ref.confidence_interval.high) < tol
    # std: the s.e. of a standard deviation of B normal-ish replicates is sd / sqrt(2B); 4 combined s.e.
    assert abs(float(res["std"]) - sd) < 4 * math.sqrt(2) * sd / math.sqrt(2 * b)


@pytest.mark.parametrize("method", ["percentile", "basic", "normal", "bca"])
@pytest.mark.parametrize("name", ["binary_acc", "auroc"])
def test_p_value_is_the_inverted_interval(method, name):
    factory, data, _ = CASES[name]
    # a small difference on few examples: p lands in the middle of (0, 1)
    pa, pb, t = data(60, seed=5)
    results = {}
    for level in (0.5, 0.8, 0.9, 0.95, 0.99):
        metric = PairedBootstrapMetric(factory(), num_bootstraps=400, method=method, confidence_level=level, seed=3)
        metric.update(pa, pb, t)
        results[level] = _compute(metric)
    p = float(results[0.95]["p_value"])
    assert all(float(r["p_value"]) == p for r in results.values())  # the same replicates at every level
    assert 0.0 < p < 1.0
    for level, r in results.items():
        excludes = float(r["lower"]) > 0 or float(r["upper"]) < 0
        assert (p < 1 - level) == excludes, (level, p, float(r["lower"]), float(r["upper"]))


def test_p_value_inverts_every_level_on_synthetic_replicates():
    # many alphas against the interval code itself, for each method (replicates skewed, estimate off-centre)
    g = torch.Generator().manual_seed(8)
    reps = torch._standard_gamma(torch.full((500,), 3.0), generator=g) * 0.01 - 0.012
    est = torch.tensor(0.015)
    jack = 0.015 + 0.002 * torch.randn(80, generator=g)
    for method in ("percentile", "basic", "normal", "bca"):
        p = float(interval_p_value(reps, est, method=method, jackknife=jack))
        for alpha in np.linspace(0.005, 0.995, 199):
            lo, hi = confidence_interval(reps, est, confidence_level=1 - float(alpha), method=method, jackknife=jack)
            lo, hi = min(float(lo), float(est)), max(float(hi), float(est))  # widened to contain the estimate
            assert (p < alpha) == (lo > 0 or hi < 0), (method, alpha, p, lo, hi)


@pytest.mark.parametrize("name", ["binary_acc", "ml_f1", "auroc", "mc_auroc", "mse"])
def test_batch_and_order_invariance(name):
    factory, data, engine = CASES[name]
    pa, pb, t = data(90, seed=6)
    b = 20 if engine is GenericEngine else 100
    one = PairedBootstrapMetric(factory(), num_bootstraps=b, seed=4)
    one.update(pa, pb, t)
    perm = torch.randperm(90, generator=torch.Generator().manual_seed(1))
    other = PairedBootstrapMetric(factory(), num_bootstraps=b, seed=4)
    for chunk in perm.split(17):
        other.update(pa[chunk], pb[chunk], t[chunk])
    r1, r2 = _compute(one), _compute(other)
    for key in r1:
        torch.testing.assert_close(r1[key], r2[key], rtol=1e-6, atol=1e-6, msg=key)


def test_seeds_and_global_rng():
    pa, pb, t = _binary(200, seed=7)
    state = torch.get_rng_state()
    results = []
    for seed in (1, 1, 2):
        metric = PairedBootstrapMetric(BinaryAccuracy(), num_bootstraps=300, seed=seed)
        metric.update(pa, pb, t)
        results.append(_compute(metric))
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG was never used
    assert all(torch.equal(results[0][k], results[1][k]) for k in results[0])
    assert not torch.equal(results[0]["std"], results[2]["std"])


def test_errors():
    pa, pb, t = _binary(20, seed=0)
    metric = PairedBootstrapMetric(BinaryAccuracy(), num_bootstraps=10, seed=0)
    with pytest.raises(ValueError, match=r"preds_a.*preds_b"):
        metric.update(pa, pb[:10], t)
    with pytest.raises(ValueError, match="same number of examples"):
        metric.update(pa, pb, t[:10])
    with pytest.raises(TypeError, match="preds_b"):
        metric.update(pa, pb.tolist(), t)
    with pytest.raises(ValueError, match="num_bootstraps"):
        PairedBootstrapMetric(BinaryAccuracy(), num_bootstraps=1)
    with pytest.raises(TypeError, match="base_metric"):
        PairedBootstrapMetric("accuracy")
    with pytest.raises(ValueError, match="margin"):
        paired_verdict({"difference": 0.0, "lower": 0.0, "upper": 0.0, "p_value": 1.0}, margin=-0.1)
    with pytest.raises(ValueError, match="missing"):
        paired_verdict({"value": torch.tensor(0.5)})


def test_identical_models_are_degenerate_with_finite_bounds():
    pa, _, t = _binary(100, seed=2)
    metric = PairedBootstrapMetric(BinaryAccuracy(), num_bootstraps=100, seed=0)
    metric.update(pa, pa.clone(), t)
    with pytest.warns(UserWarning, match="degenerate"):
        res = metric.compute()
    assert float(res["difference"]) == float(res["lower"]) == float(res["upper"]) == 0.0
    assert float(res["p_value"]) == 1.0
    assert paired_verdict(res, margin=0.01).verdict == "equivalent within ±margin"


def test_compute_before_update_is_nan_with_a_warning():
    metric = PairedBootstrapMetric(BinaryAccuracy(), num_bootstraps=10, seed=0)
    with pytest.warns(UserWarning, match="no samples"):
        res = metric.compute()
    assert math.isnan(float(res["lower"])) and math.isnan(float(res["p_value"]))


def test_verdicts_and_sentence():
    def result(d, lo, hi, p):
        return {k: torch.tensor(v) for k, v in zip(("difference", "lower", "upper", "p_value"), (d, lo, hi, p))}

    v = paired_verdict(result(0.015, 0.004, 0.026, 0.008))
    assert (v.verdict, str(v)) == ("A better", "A − B = +1.5 pt [+0.4, +2.6], p = 0.008: A is better")
    v = paired_verdict(result(-0.02, -0.03, -0.01, 0.0002), names=("new", "old"))
    assert (v.verdict, v.sentence) == ("B better", "new − old = -2.0 pt [-3.0, -1.0], p < 0.001: old is better")
    v = paired_verdict(result(0.001, -0.004, 0.006, 0.7), margin=0.01)
    assert v.verdict == "equivalent within ±margin" and v.sentence.endswith("equivalent within ±1.0 pt")
    assert paired_verdict(result(0.001, -0.004, 0.006, 0.7)).verdict == "inconclusive"
    v = paired_verdict(result(0.12, 0.05, 0.2, 0.001), scale=1.0, unit="", digits=2)
    assert v.sentence == "A − B = +0.12 [+0.05, +0.20], p = 0.001: A is better"
    vector = {k: torch.tensor([0.1, -0.1]) for k in ("difference", "lower", "upper", "p_value")}
    with pytest.raises(ValueError, match="index"):
        paired_verdict(vector)
    assert paired_verdict(vector, index=1).difference == pytest.approx(-0.1)


def test_a_clear_difference_is_found_on_every_engine():
    pa, pb, t = _binary(600, seed=9, disagree=0.15)
    pb = torch.where(torch.rand(600, generator=torch.Generator().manual_seed(1)) < 0.1, 1 - t, pb)  # B worse
    metric = PairedBootstrapMetric(BinaryAccuracy(), num_bootstraps=500, seed=1)
    metric.update(pa, pb, t)
    res = _compute(metric)
    assert paired_verdict(res).verdict == "A better" and float(res["p_value"]) < 0.05


def test_reduced_type_one_error():
    # equal true accuracy 0.85, predictions agreeing on ~90% of examples; S sets, alpha = 0.05 (seeds fixed upfront)
    s, n, b = 200, 200, 200
    g = torch.Generator().manual_seed(2026)
    rejections = {"accuracy": 0, "auroc": 0}
    for _ in range(s):
        t = torch.randint(2, (n,), generator=g)
        correct_a = torch.rand(n, generator=g) < 0.85
        flip = torch.rand(n, generator=g) < 0.1
        correct_b = torch.where(flip, torch.rand(n, generator=g) < 0.85, correct_a)
        pa, pb = torch.where(correct_a, t, 1 - t), torch.where(correct_b, t, 1 - t)
        m = PairedBootstrapMetric(BinaryAccuracy(), num_bootstraps=b, seed=int(torch.randint(2**31, (1,), generator=g)))
        m.update(pa, pb, t)
        rejections["accuracy"] += float(_compute(m)["p_value"]) < 0.05
    for _ in range(s // 4):  # AUROC: equal score distributions, correlated noise
        t = torch.randint(2, (n,), generator=g)
        base = torch.randn(n, generator=g) + t
        sa = base + 0.5 * torch.randn(n, generator=g)
        sb = base + 0.5 * torch.randn(n, generator=g)
        m = PairedBootstrapMetric(BinaryAUROC(), num_bootstraps=b, seed=int(torch.randint(2**31, (1,), generator=g)))
        m.update(sa.sigmoid(), sb.sigmoid(), t)
        rejections["auroc"] += float(_compute(m)["p_value"]) < 0.05
    for kind, sets in (("accuracy", s), ("auroc", s // 4)):
        rate = rejections[kind] / sets
        band = 4 * math.sqrt(0.05 * 0.95 / sets)  # 4 MC s.e. of a rejection rate of 5%
        assert abs(rate - 0.05) < band, (kind, rate, band)


def test_forward_loggable_plot_and_exports():
    import matplotlib

    matplotlib.use("Agg")
    assert lightning_ci.PairedBootstrapMetric is PairedBootstrapMetric
    assert lightning_ci.bootstrap.PairedBootstrapMetric is PairedBootstrapMetric
    pa, pb, t = _binary(64, seed=4)
    metric = PairedBootstrapMetric(BinaryAccuracy(), num_bootstraps=50, seed=0)
    batch = metric(pa[:32], pb[:32], t[:32])
    torch.testing.assert_close(
        batch, torch.stack([BinaryAccuracy()(pa[:32], t[:32]), BinaryAccuracy()(pb[:32], t[:32])])
    )
    metric.update(pa[32:], pb[32:], t[32:])
    views = metric.loggable("acc_diff")
    assert list(views) == ["acc_diff", "acc_diff_lower", "acc_diff_upper", "acc_diff_p_value"]
    res = _compute(metric)
    assert float(views["acc_diff"].compute()) == float(res["difference"])
    assert float(views["acc_diff_p_value"].compute()) == float(res["p_value"])
    fig, _ = metric.plot(res)
    fig2, _ = metric.plot([res, res])
    assert fig is not None and fig2 is not None


@pytest.mark.parametrize("name", ["binary_acc", "auroc", "mse"])
def test_persistent_state_resumes_to_the_same_result(name):
    factory, data, engine = CASES[name]
    pa, pb, t = data(60, seed=10)
    b = 20 if engine is GenericEngine else 100
    full = PairedBootstrapMetric(factory(), num_bootstraps=b, seed=6)
    full.update(pa, pb, t)
    first = PairedBootstrapMetric(factory(), num_bootstraps=b, seed=6)
    first.persistent(True)
    first.update(pa[:30], pb[:30], t[:30])
    resumed = PairedBootstrapMetric(factory(), num_bootstraps=b)
    resumed.load_state_dict(first.state_dict())
    resumed.update(pa[30:], pb[30:], t[30:])
    r1, r2 = _compute(full), _compute(resumed)
    for key in r1:
        torch.testing.assert_close(r1[key], r2[key], rtol=1e-6, atol=1e-6, msg=key)
