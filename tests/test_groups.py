"""``update(..., groups=ids)``: the cluster bootstrap on every engine (issue 11).

References: the unwrapped metric for the value; a cluster bootstrap written plainly in numpy (G groups drawn with
replacement, every drawn group bringing all its samples) for the replicate distribution, within Monte Carlo
tolerances written beside the assertions; a brute-force leave-one-group-out loop for the jackknife. Seeds were fixed
before the first run.
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
    MulticlassAUROC,
    MulticlassF1Score,
    MultilabelF1Score,
)
from torchmetrics.regression import MeanSquaredError

from lightning_ci import BootstrapMetric, PairedBootstrapMetric
from lightning_ci.bootstrap.confusion import ConfusionEngine
from lightning_ci.bootstrap.generic import GenericEngine
from lightning_ci.bootstrap.ranking import RankingEngine


def _clustered(num_groups: int, size: int, sigma: float, seed: int, acc: float = 0.85):
    """Binary data where the chance of being right has a per-group random effect ``sigma`` on the logit."""
    g = torch.Generator().manual_seed(seed)
    n = num_groups * size
    ids = torch.arange(num_groups).repeat_interleave(size)
    effect = sigma * torch.randn(num_groups, generator=g)[ids]
    right = torch.rand(n, generator=g) < torch.sigmoid(math.log(acc / (1 - acc)) + effect)
    target = torch.randint(2, (n,), generator=g)
    pred = torch.where(right, target, 1 - target)
    # scores for ranking metrics: a shared per-group shift makes the ranking quality clustered too
    score = torch.sigmoid(
        1.5 * (2 * target - 1) * right.float() + effect * (2 * target - 1) + torch.randn(n, generator=g)
    )
    return pred, score, target, ids * 7 - 3  # arbitrary (negative, gapped) integer ids


def _compute(metric):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return metric.compute()


def _cases():
    pred, score, target, ids = _clustered(30, 4, 1.0, seed=1)
    g = torch.Generator().manual_seed(3)
    y3 = torch.randint(3, (120,), generator=g)
    p3 = (torch.randn(120, 3, generator=g) + torch.nn.functional.one_hot(y3, 3)).softmax(-1)
    yml = torch.randint(2, (120, 3), generator=g)
    pml = (0.4 * yml + 0.6 * torch.rand(120, 3, generator=g)).clamp(0, 1)
    x = torch.randn(120, generator=g)
    return {
        "binary_acc": (BinaryAccuracy, (pred, target), ConfusionEngine),
        "mc_f1": (lambda: MulticlassF1Score(3), (p3, y3), ConfusionEngine),
        "ml_f1": (lambda: MultilabelF1Score(3), (pml, yml), ConfusionEngine),
        "auroc": (BinaryAUROC, (score, target), RankingEngine),
        "auroc_binned": (lambda: BinaryAUROC(thresholds=9), (score, target), RankingEngine),
        "mc_auroc": (lambda: MulticlassAUROC(3), (p3, y3), RankingEngine),
        "mse": (MeanSquaredError, (x + torch.randn(120, generator=g), x), GenericEngine),
    }, ids


CASES, IDS = _cases()


@pytest.mark.parametrize(
    ("name", "resampling"),
    # MeanSquaredError takes no sample weights, so it has no (generic) Bayesian bootstrap
    [(n, r) for n in CASES for r in ("multinomial", "poisson", "bayesian") if (n, r) != ("mse", "bayesian")],
)
def test_value_unchanged_and_batch_order_invariance(name, resampling):
    factory, data, engine = CASES[name]
    b = 20 if engine is GenericEngine else 100
    one = BootstrapMetric(factory(), num_bootstraps=b, resampling=resampling, seed=5)
    assert isinstance(one.engine, engine)
    one.update(*data, groups=IDS)
    # groups split across batches, in another order
    perm = torch.randperm(120, generator=torch.Generator().manual_seed(2))
    other = BootstrapMetric(factory(), num_bootstraps=b, resampling=resampling, seed=5)
    for chunk in perm.split(25):
        other.update(*(t[chunk] for t in data), groups=IDS[chunk])
    r1, r2 = _compute(one), _compute(other)
    torch.testing.assert_close(r1["value"], factory()(*data))
    for key in r1:
        torch.testing.assert_close(r1[key], r2[key], rtol=1e-6, atol=1e-6, msg=key)
    ungrouped = BootstrapMetric(factory(), num_bootstraps=b, resampling=resampling, seed=5)
    ungrouped.update(*data)
    assert not torch.equal(r1["std"], _compute(ungrouped)["std"])  # the groups changed the replicates


def _plain_cluster_bootstrap(stat, groups: np.ndarray, b: int, seed: int, mode: str) -> np.ndarray:
    """The cluster bootstrap, plainly: per replicate, a weight per group (G draws with replacement, or Poisson(1)),
    every sample taking its group's weight; ``stat(sample_weights)`` is the metric on the reweighted data."""
    rng = np.random.default_rng(seed)
    uniq, unit = np.unique(groups, return_inverse=True)
    out = np.empty(b)
    for r in range(b):
        if mode == "multinomial":
            w = np.bincount(rng.integers(len(uniq), size=len(uniq)), minlength=len(uniq))
        else:
            w = rng.poisson(1.0, size=len(uniq))
        out[r] = stat(w[unit].astype(float))
    return out


def _weighted_auroc(score: np.ndarray, target: np.ndarray, w: np.ndarray) -> float:
    """Weighted Mann-Whitney AUROC (ties 1/2), O(n^2): the plain definition."""
    pos, neg = target == 1, target == 0
    diff = score[pos][:, None] - score[neg][None, :]
    pair = (diff > 0) + 0.5 * (diff == 0)
    wp, wn = w[pos], w[neg]
    return float((wp[:, None] * wn[None, :] * pair).sum() / (wp.sum() * wn.sum()))


@pytest.mark.parametrize("resampling", ["multinomial", "poisson"])
@pytest.mark.parametrize("kind", ["accuracy", "auroc"])
def test_matches_a_plain_cluster_bootstrap(kind, resampling):
    pred, score, target, ids = _clustered(150, 4, 2.0, seed=7)
    b = 2000
    if kind == "accuracy":
        metric = BootstrapMetric(BinaryAccuracy(), num_bootstraps=b, method="percentile", resampling=resampling, seed=9)
        metric.update(pred, target, groups=ids)
        right = (pred == target).numpy().astype(float)

        def stat(w):
            return (w * right).sum() / w.sum()

    else:
        metric = BootstrapMetric(BinaryAUROC(), num_bootstraps=b, method="percentile", resampling=resampling, seed=9)
        metric.update(score, target, groups=ids)
        s_np, t_np = score.numpy().astype(float), target.numpy()

        def stat(w):
            return _weighted_auroc(s_np, t_np, w)

    res = _compute(metric)
    ref = _plain_cluster_bootstrap(stat, ids.numpy(), 500 if kind == "auroc" else b, seed=10, mode=resampling)
    sd = ref.std(ddof=1)
    b_ref = ref.shape[0]
    # MC s.e. of a 2.5% quantile: sqrt(q(1-q)/B)/phi(z)*sd per side; 4 combined s.e., plus one 1/n lattice step
    q_se = math.sqrt(0.025 * 0.975) / stats.norm.pdf(1.96) * sd * math.sqrt(1 / b + 1 / b_ref)
    tol = 4 * q_se + (1 / 600 if kind == "accuracy" else 0.0)
    assert abs(float(res["lower"]) - np.quantile(ref, 0.025)) < tol
    assert abs(float(res["upper"]) - np.quantile(ref, 0.975)) < tol
    # std: s.e. of a standard deviation ~ sd / sqrt(2B) for each; 4 combined s.e.
    std_tol = 4 * sd * math.sqrt(1 / (2 * b) + 1 / (2 * b_ref))
    assert abs(float(res["std"]) - sd) < std_tol
    # and the i.i.d. bootstrap is clearly narrower on these clustered data (so the check above has teeth)
    iid = BootstrapMetric(type(metric._template)(), num_bootstraps=b, method="percentile", seed=9)
    iid.update(pred if kind == "accuracy" else score, target)
    assert float(_compute(iid)["std"]) < sd - 2 * std_tol


def test_bayesian_groups_draw_one_dirichlet_weight_per_group():
    # with groups of identical samples, a group is one weighted atom: Dirichlet weights over G groups give the same
    # law as the Bayesian bootstrap of G samples. Accuracy ~ posterior of a proportion: compare mean and std.
    pred, _, target, _ = _clustered(200, 1, 0.0, seed=4)
    ids = torch.arange(200).repeat_interleave(3)
    metric = BootstrapMetric(BinaryAccuracy(), num_bootstraps=4000, resampling="bayesian", seed=2)
    metric.update(pred.repeat_interleave(3), target.repeat_interleave(3), groups=ids)
    res = _compute(metric)
    k = int((pred == target).sum())
    # Dirichlet(1,...,1) over 200 units: the accuracy is Beta(k, 200 - k); its sd, with 4 MC s.e. of an sd
    sd = math.sqrt(k * (200 - k) / (200**2 * 201))
    assert abs(float(res["std"]) - sd) < 4 * sd / math.sqrt(2 * 4000)


@pytest.mark.parametrize("name", ["binary_acc", "mc_f1", "ml_f1", "auroc", "auroc_binned", "mc_auroc"])
def test_leave_one_group_out_jackknife(name):
    factory, data, engine_cls = CASES[name]
    engine = engine_cls(factory(), 10, "multinomial", 0, need_jackknife=True)
    engine.update(*data, groups=IDS)
    out = engine.compute()
    weights = torch.ones(out.jackknife.shape[0]) if out.jackknife_weights is None else out.jackknife_weights
    got = torch.repeat_interleave(out.jackknife.reshape(out.jackknife.shape[0], -1), weights.long(), dim=0)
    brute = []
    for gid in torch.unique(IDS):
        keep = gid != IDS
        brute.append(factory()(*(t[keep] for t in data)).reshape(-1))
    brute = torch.stack(brute)
    assert got.shape == brute.shape  # one value per group
    # the confusion engine merges groups with equal counts (distinct values only): compare as sorted multisets
    torch.testing.assert_close(got.sort(0).values, brute.float().sort(0).values, rtol=1e-5, atol=1e-5)


def test_paired_and_grouped():
    pred, _, target, ids = _clustered(60, 5, 1.5, seed=12)
    pred_b = torch.where(torch.rand(300, generator=torch.Generator().manual_seed(1)) < 0.1, 1 - pred, pred)
    m = PairedBootstrapMetric(BinaryAccuracy(), num_bootstraps=300, seed=3)
    m.update(pred, pred_b, target, groups=ids)
    res = _compute(m)
    torch.testing.assert_close(res["value_a"], BinaryAccuracy()(pred, target))
    assert float(res["lower"]) <= float(res["difference"]) <= float(res["upper"])


def test_errors():
    pred, _, target, ids = _clustered(10, 3, 0.0, seed=0)
    m = BootstrapMetric(BinaryAccuracy(), num_bootstraps=10, seed=0)
    m.update(pred, target, groups=ids)
    with pytest.raises(ValueError, match="groups"):
        m.update(pred, target)  # given before, missing now
    m.reset()
    m.update(pred, target)
    with pytest.raises(ValueError, match="groups"):
        m.update(pred, target, groups=ids)  # missing before, given now
    m.reset()
    with pytest.raises(ValueError, match=r"shape \(30,\)"):
        m.update(pred, target, groups=ids[:5])
    with pytest.raises(TypeError, match="integer"):
        m.update(pred, target, groups=ids.float())
    with pytest.raises(ValueError, match="integer"):  # the same exception is a ValueError too
        m.update(pred, target, groups=ids.float())
    with pytest.raises(ValueError, match="groups"):
        PairedBootstrapMetric(BinaryAccuracy(), num_bootstraps=10).update(pred, pred, target, groups=ids[:3])


def test_reduced_coverage_on_clustered_data():
    # G = 100 documents of 10 sentences, strong per-document effect (sigma = 2): the cluster bootstrap covers the
    # population accuracy, the i.i.d. bootstrap does not. S sets; seeds fixed before the first run.
    s, num_groups, size, sigma = 150, 100, 10, 2.0
    # the population accuracy: E[sigmoid(logit(0.85) + sigma Z)] by Gauss-Hermite quadrature
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    truth = float((weights * (1 / (1 + np.exp(-(math.log(0.85 / 0.15) + sigma * nodes))))).sum() / weights.sum())
    covered = {"cluster": 0, "iid": 0}
    for i in range(s):
        pred, _, target, ids = _clustered(num_groups, size, sigma, seed=1000 + i)
        for kind in covered:
            m = BootstrapMetric(BinaryAccuracy(), num_bootstraps=300, seed=i)
            m.update(pred, target, **({"groups": ids} if kind == "cluster" else {}))
            r = _compute(m)
            covered[kind] += float(r["lower"]) <= truth <= float(r["upper"])
    band = 4 * math.sqrt(0.95 * 0.05 / s)  # 4 MC s.e. of a 95% coverage over S sets
    assert abs(covered["cluster"] / s - 0.95) < band, covered
    assert covered["iid"] / s < 0.95 - band, covered  # design effect ~ 1 + 9 * ICC: far too narrow
