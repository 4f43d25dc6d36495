"""Fixes from the differential audit (issue 13 items 1, 2, 3, 5) and the wrapper's state (issue 9 items 3, 4).

Each test failed on 0.1.0: bounds clipped to torchmetrics' plotting hints, empty batches, skipped input
validation, small-n crashes, NaN placement, lost checkpoint state and a leaky empty ``compute``.
"""

from __future__ import annotations

import copy
import io
import warnings

import pytest
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.aggregation import MeanMetric
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryAUROC,
    BinaryAveragePrecision,
    BinaryCohenKappa,
    BinaryJaccardIndex,
    BinaryMatthewsCorrCoef,
    MulticlassAccuracy,
    MulticlassAUROC,
    MulticlassAveragePrecision,
    MulticlassCohenKappa,
    MulticlassF1Score,
    MulticlassJaccardIndex,
    MulticlassMatthewsCorrCoef,
    MultilabelF1Score,
    MultilabelJaccardIndex,
    MultilabelMatthewsCorrCoef,
)
from torchmetrics.regression import CosineSimilarity, ExplainedVariance, KendallRankCorrCoef, MeanSquaredError, R2Score

from lightning_ci.bootstrap import BootstrapMetric
from lightning_ci.bootstrap._ranges import metric_range


def _compute(metric: BootstrapMetric) -> dict[str, Tensor]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return metric.compute()


def _fit(metric: Metric, *data: Tensor, batch: int = 32) -> Metric:
    for i in range(0, data[0].shape[0], batch):
        metric.update(*(d[i : i + batch] for d in data))
    return metric


def _contains(res: dict[str, Tensor]) -> bool:
    return bool(((res["lower"] <= res["value"]) & (res["value"] <= res["upper"])).all())


# ----------------------------------------------------------------------- issue 13 item 1: the metric's own range
def test_issue_13_mcc_repro_not_clipped_at_zero():
    t = torch.tensor([0, 1] * 50)
    p = 1 - t
    p[:30] = t[:30]
    m = BootstrapMetric(BinaryMatthewsCorrCoef(), seed=0)
    m.update(p, t)
    res = _compute(m)
    assert round(float(res["value"]), 2) == -0.40
    # 0.1.0 returned [0.0, 0.0]; the bootstrap sd of an MCC of -0.4 at n = 100 is about 0.09
    assert -1.0 <= float(res["lower"]) < -0.5 and -0.4 < float(res["upper"]) < -0.2
    assert _contains(res)


def _disagreeing(task: str, n: int, agree: float, seed: int) -> tuple[Tensor, Tensor]:
    """Predictions that agree with the target only a fraction ``agree`` of the time (below chance for < 1/C)."""
    g = torch.Generator().manual_seed(seed)
    if task == "multilabel":
        target = torch.randint(2, (n, 3), generator=g)
        keep = torch.rand(n, 3, generator=g) < agree
        return torch.where(keep, target, 1 - target), target
    c = 2 if task == "binary" else 3
    target = torch.randint(c, (n,), generator=g)
    keep = torch.rand(n, generator=g) < agree
    return torch.where(keep, target, (target + 1) % c), target


@pytest.mark.parametrize(
    ("task", "factory"),
    [
        ("binary", BinaryMatthewsCorrCoef),
        ("multiclass", lambda: MulticlassMatthewsCorrCoef(3)),
        ("multilabel", lambda: MultilabelMatthewsCorrCoef(3)),
        ("binary", BinaryCohenKappa),
        ("multiclass", lambda: MulticlassCohenKappa(3)),
        ("multiclass", lambda: MulticlassCohenKappa(3, weights="quadratic")),
    ],
)
@pytest.mark.parametrize("method", ["percentile", "bca", "basic", "normal"])
def test_mcc_and_kappa_bounds_can_be_negative(task, factory, method):
    # binary: 35% agreement; 3 classes: 10% (chance is 1/3), wrong predictions shifted by one class
    preds, target = _disagreeing(task, 200, agree=0.1 if task == "multiclass" else 0.35, seed=1)
    ref = factory()
    ref.update(preds, target)
    m = _fit(BootstrapMetric(factory(), num_bootstraps=500, method=method, seed=2), preds, target)
    res = _compute(m)
    torch.testing.assert_close(res["value"], ref.compute(), rtol=0, atol=0)
    assert float(res["value"]) < -0.1  # the data agree less than chance
    assert float(res["upper"]) < 0.0 and float(res["lower"]) >= -1.0  # 0.1.0 clipped both bounds to 0
    assert _contains(res)


def test_kappa_near_zero_lower_bound_not_pinned():
    # kappa = 0.1 exactly (balanced marginals, 55% agreement, n = 200): 0.1.0 pinned the lower bound at 0; the
    # bootstrap sd is about 0.07, so a 95% lower bound lies near 0.1 - 1.96 * 0.07 = -0.04
    target = torch.tensor([0, 1] * 100)
    preds = torch.cat([target[:110], 1 - target[110:]])
    res = _compute(_fit(BootstrapMetric(BinaryCohenKappa(), seed=4), preds, target))
    assert round(float(res["value"]), 4) == 0.1
    assert float(res["lower"]) < 0.0 < float(res["upper"])


@pytest.mark.parametrize(
    ("factory", "sign"),
    [
        (ExplainedVariance, -1.0),
        (KendallRankCorrCoef, -1.0),
        (lambda: CosineSimilarity(reduction="mean"), -1.0),
    ],
)
def test_generic_metrics_not_clipped_at_zero(factory, sign):
    g = torch.Generator().manual_seed(5)
    x = torch.randn(60, 2, generator=g) if factory().__class__ is CosineSimilarity else torch.randn(60, generator=g)
    preds = sign * x + 0.8 * torch.randn(x.shape, generator=g)  # anti-correlated: the metric is below 0
    res = _compute(_fit(BootstrapMetric(factory(), num_bootstraps=100, seed=6), preds, x))
    assert float(res["value"]) < 0.0 and float(res["lower"]) < 0.0 and float(res["upper"]) < 0.0
    assert _contains(res)


def test_metric_range_table():
    assert metric_range(BinaryMatthewsCorrCoef()) == (-1.0, 1.0)
    assert metric_range(MulticlassCohenKappa(3, weights="linear")) == (-1.0, 1.0)
    assert metric_range(BinaryAccuracy()) == (0.0, 1.0)
    assert metric_range(MeanSquaredError()) == (0.0, None)
    assert metric_range(ExplainedVariance()) == (None, 1.0)
    assert metric_range(CosineSimilarity()) == (None, None)  # reduction="sum": unbounded
    assert metric_range(MulticlassF1Score(3, zero_division=1.0)) == (0.0, 1.0)

    class MyAccuracy(BinaryAccuracy):  # a subclass may compute anything: not clipped
        pass

    assert metric_range(MyAccuracy()) == (None, None)


class _DistinctFraction(Metric):
    """The fraction of distinct values: every resample repeats values, so every replicate is below the estimate."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("x", default=[], dist_reduce_fx="cat")

    def update(self, x: Tensor) -> None:
        self.x.append(x)

    def compute(self) -> Tensor:
        x = torch.cat(self.x) if isinstance(self.x, list) else self.x
        return torch.unique(x).numel() / torch.tensor(float(x.numel()))


@pytest.mark.parametrize("method", ["percentile", "basic"])
def test_bounds_contain_a_finite_estimate_even_when_the_interval_misses_it(method):
    # replicates hold about 63% distinct values: the percentile interval lies below the estimate (1.0) and the
    # basic one above it; the returned bounds are widened to contain it
    m = BootstrapMetric(_DistinctFraction(), num_bootstraps=100, method=method, seed=0)
    m.update(torch.arange(40.0))
    res = _compute(m)
    assert float(res["value"]) == 1.0 and _contains(res)
    assert float(res["upper"] - res["lower"]) > 0.05  # a real interval, not collapsed to the point


# --------------------------------------------------------------------------------- issue 13 item 2: empty batches
@pytest.mark.parametrize(
    ("task", "factory"),
    [
        ("binary", BinaryMatthewsCorrCoef),
        ("binary", BinaryJaccardIndex),
        ("binary", BinaryCohenKappa),
        ("binary", BinaryAccuracy),
        ("multiclass", lambda: MulticlassMatthewsCorrCoef(3)),
        ("multiclass", lambda: MulticlassJaccardIndex(3)),
        ("multiclass", lambda: MulticlassCohenKappa(3)),
        ("multilabel", lambda: MultilabelMatthewsCorrCoef(3)),
        ("multilabel", lambda: MultilabelJaccardIndex(3)),
    ],
)
@pytest.mark.parametrize("resampling", ["multinomial", "poisson"])
def test_empty_batch_mid_epoch(task, factory, resampling):
    preds, target = _disagreeing(task, 80, agree=0.7, seed=7)
    if task == "multiclass":
        preds = torch.nn.functional.one_hot(preds, 3).float()  # probabilities, (N, C)
    empty = (preds[:0], target[:0])
    with_empty = BootstrapMetric(factory(), num_bootstraps=100, resampling=resampling, seed=8)
    without = BootstrapMetric(factory(), num_bootstraps=100, resampling=resampling, seed=8)
    with_empty.update(preds[:40], target[:40])
    with_empty.update(*empty)  # 0.1.0: RuntimeError "cannot reshape tensor of 0 elements"
    with_empty.update(preds[40:], target[40:])
    without.update(preds, target)
    a, b = _compute(with_empty), _compute(without)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


# -------------------------------------------------------------------- issue 13 item 3: torchmetrics' validation
def test_ranking_out_of_range_targets_raise_as_torchmetrics():
    probs = torch.softmax(torch.randn(8, 3, generator=torch.Generator().manual_seed(9)), 1)
    target = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])  # 1-based labels leak a class 3
    for metric in (MulticlassAUROC(3), MulticlassAUROC(3, thresholds=5), MulticlassAveragePrecision(3)):
        with pytest.raises(RuntimeError) as tm_err:
            copy.deepcopy(metric).update(probs, target)
        with pytest.raises(RuntimeError, match=str(tm_err.value)[:40]):
            BootstrapMetric(metric, num_bootstraps=10, seed=0).update(probs, target)
    scores = torch.rand(6, generator=torch.Generator().manual_seed(10))
    bad = torch.tensor([0, 1, 2, 0, 1, 1])
    with pytest.raises(RuntimeError, match="Detected the following values in `target`"):
        BinaryAveragePrecision().update(scores, bad)
    with pytest.raises(RuntimeError, match="Detected the following values in `target`"):
        BootstrapMetric(BinaryAveragePrecision(), num_bootstraps=10, seed=0).update(scores, bad)


def test_ranking_validate_args_false_is_respected():
    # torchmetrics skips the check without validate_args (exact thresholds then return a value): so do we
    probs = torch.softmax(torch.randn(8, 3, generator=torch.Generator().manual_seed(11)), 1)
    target = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    ref = MulticlassAUROC(3, validate_args=False)
    ref.update(probs, target)
    res = _compute(_fit(BootstrapMetric(MulticlassAUROC(3, validate_args=False), num_bootstraps=20, seed=0),
                        probs, target))  # fmt: skip
    torch.testing.assert_close(res["value"], ref.compute(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("thresholds", [None, 9])
def test_ranking_accepts_float_targets_and_integer_preds_like_torchmetrics(thresholds):
    g = torch.Generator().manual_seed(12)
    target = torch.randint(2, (50,), generator=g)
    scores = torch.rand(50, generator=g)
    for preds, tgt in [(scores, target.float()), (target ^ (torch.rand(50, generator=g) < 0.3).long(), target)]:
        ref = BinaryAUROC(thresholds=thresholds)  # BinaryAUROC never validates its tensors (torchmetrics 1.9)
        ref.update(preds, tgt)
        res = _compute(_fit(BootstrapMetric(BinaryAUROC(thresholds=thresholds), num_bootstraps=50, seed=1), preds, tgt))
        torch.testing.assert_close(res["value"], ref.compute(), rtol=0, atol=1e-6)
        assert _contains(res)


# ------------------------------------------------------------------- issue 13 item 5: small n, ignored, NaN scores
def test_generic_poisson_non_scalar_metric_with_empty_replicates():
    g = torch.Generator().manual_seed(13)
    x = torch.randn(5, 2, generator=g)
    m = BootstrapMetric(MeanSquaredError(num_outputs=2), num_bootstraps=1000, resampling="poisson", seed=0)
    m.update(x + torch.randn(5, 2, generator=g), x)  # P(empty replicate) = e^-5: about 7 of 1000
    res = _compute(m)
    assert res["lower"].shape == (2,) and torch.isfinite(res["lower"]).all() and _contains(res)


def test_generic_top_k_average_none_small_n():
    g = torch.Generator().manual_seed(14)
    target = torch.randint(3, (4,), generator=g)
    probs = torch.softmax(torch.randn(4, 3, generator=g), 1)
    metric = MulticlassAccuracy(3, top_k=2, average=None)
    m = BootstrapMetric(metric, num_bootstraps=200, resampling="poisson", seed=0)
    m.update(probs, target)
    res = _compute(m)
    ref = MulticlassAccuracy(3, top_k=2, average=None)
    ref.update(probs, target)
    torch.testing.assert_close(res["value"], ref.compute())
    assert res["upper"].shape == (3,)


@pytest.mark.parametrize("resampling", ["multinomial", "bayesian", "poisson"])
def test_multiclass_binned_every_sample_ignored(resampling):
    probs = torch.softmax(torch.randn(5, 3, generator=torch.Generator().manual_seed(15)), 1)
    target = torch.full((5,), -1)
    ref = MulticlassAUROC(3, thresholds=5, ignore_index=-1)
    ref.update(probs, target)
    metric = MulticlassAUROC(3, thresholds=5, ignore_index=-1)
    m = BootstrapMetric(metric, num_bootstraps=20, resampling=resampling, seed=0)
    m.update(probs, target)  # 0.1.0, multinomial: "random_ expects 'from' < 'to'"
    with pytest.warns(UserWarning, match="BootstrapMetric.compute"):
        res = m.compute()
    torch.testing.assert_close(res["value"], ref.compute())  # torchmetrics returns 0
    assert torch.isnan(res["lower"]) and torch.isnan(res["upper"]) and torch.isnan(res["std"])


def _nan_scores(multiclass: bool, n: int = 200, seed: int = 16) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    if multiclass:
        target = torch.randint(3, (n,), generator=g)
        preds = torch.softmax(torch.randn(n, 3, generator=g) + torch.nn.functional.one_hot(target, 3), 1)
        preds[(target == 0).nonzero().flatten()[:6], 1] = float("nan")  # NaN rows all of class 0
        return preds, target
    target = torch.randint(2, (n,), generator=g)
    preds = (0.3 * target + 0.7 * torch.rand(n, generator=g)).clamp(0, 1)
    preds[(target == 1).nonzero().flatten()[:7]] = float("nan")  # NaN scores all positive
    return preds, target


@pytest.mark.parametrize(
    ("multiclass", "factory"),
    [
        (False, lambda: BinaryAUROC(thresholds=11)),
        (False, lambda: BinaryAveragePrecision(thresholds=11)),
        (True, lambda: MulticlassAUROC(3, thresholds=11)),
        (True, lambda: MulticlassAveragePrecision(3, thresholds=11)),
        (True, lambda: MulticlassAUROC(3)),
        (True, lambda: MulticlassAveragePrecision(3, average=None)),
        (False, BinaryAUROC),
    ],
)
def test_nan_scores_placed_as_torchmetrics_places_them(multiclass, factory):
    # binned: below every threshold; exact: above every score, and on CPU a NaN makes torchmetrics normalise the
    # batch (sigmoid / softmax). The NaN samples share one label here, so torchmetrics' value does not depend on
    # their order (with mixed labels it does, and BootstrapMetric ties them: see the warning test below)
    preds, target = _nan_scores(multiclass)
    ref = _fit(factory(), preds, target)
    res = _compute(_fit(BootstrapMetric(factory(), num_bootstraps=50, seed=0), preds, target))
    torch.testing.assert_close(res["value"], ref.compute(), rtol=0, atol=1e-6)


def test_nan_scores_in_exact_curves_warn():
    preds, target = _nan_scores(False)
    m = _fit(BootstrapMetric(BinaryAUROC(), num_bootstraps=20, seed=0), preds, target)
    with pytest.warns(UserWarning, match="NaN"):
        m.compute()


# ------------------------------------------------------------------ issue 9 item 3: checkpoints (state_dict)
def _resume_cases():
    g = torch.Generator().manual_seed(17)
    y = torch.randint(2, (120,), generator=g)
    p = (0.3 * y + 0.7 * torch.rand(120, generator=g)).clamp(0, 1)
    y3 = torch.randint(3, (120,), generator=g)
    p3 = torch.softmax(torch.randn(120, 3, generator=g) + torch.nn.functional.one_hot(y3, 3), 1)
    yl = torch.randint(2, (120, 3), generator=g)
    x = torch.randn(120, generator=g)
    return {
        "confusion": (BinaryAccuracy, {}, (p, y)),
        "confusion_poisson": (lambda: MulticlassF1Score(3), {"resampling": "poisson"}, (p3, y3)),
        "multilabel_poisson": (lambda: MultilabelF1Score(3), {"resampling": "poisson"}, (yl.float(), yl)),
        "ranking_exact": (BinaryAUROC, {}, (p, y)),
        "ranking_binned_poisson": (lambda: MulticlassAUROC(3, thresholds=7), {"resampling": "poisson"}, (p3, y3)),
        "generic": (MeanSquaredError, {"num_bootstraps": 30}, (x + torch.randn(120, generator=g), x)),
    }


@pytest.mark.parametrize("case", list(_resume_cases()))
def test_persistent_state_dict_resumes_to_the_identical_result(case):
    factory, kwargs, data = _resume_cases()[case]
    uninterrupted = _fit(BootstrapMetric(factory(), seed=None, **{"num_bootstraps": 200, **kwargs}), *data)

    first = BootstrapMetric(factory(), seed=None, **{"num_bootstraps": 200, **kwargs})
    assert first.state_dict() == {}  # not persistent by default, as torchmetrics' states
    first.persistent(True)
    _fit(first, *(d[:64] for d in data))
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)
    assert len(first.state_dict()) > 0
    buf.seek(0)
    state = torch.load(buf, weights_only=True)  # what Lightning's checkpoint loading accepts

    resumed = BootstrapMetric(factory(), seed=None, **{"num_bootstraps": 200, **kwargs})  # another random seed
    resumed.load_state_dict(state)
    assert resumed.seed == first.seed
    _fit(resumed, *(d[64:] for d in data))
    uninterrupted.seed = first.seed
    a, b = _compute(resumed), _compute(uninterrupted)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-6, msg=f"{case}/{key}")


def test_persistent_in_a_module_state_dict():
    module = torch.nn.Module()
    module.acc = BootstrapMetric(BinaryAccuracy(), num_bootstraps=50, seed=3)
    module.acc.persistent(True)
    module.acc.update(torch.tensor([0.9, 0.2, 0.7]), torch.tensor([1, 0, 0]))
    keys = set(module.state_dict())
    assert keys == {"acc.engine.counts", "acc.engine._bootstrap_seed"}
    other = torch.nn.Module()
    other.acc = BootstrapMetric(BinaryAccuracy(), num_bootstraps=50, seed=3)
    other.load_state_dict(module.state_dict())  # strict
    torch.testing.assert_close(_compute(other.acc)["lower"], _compute(module.acc)["lower"])


# ------------------------------------------------------------------ issue 9 item 4: compute before update
@pytest.mark.parametrize(
    ("factory", "expected"),
    [
        (BinaryAccuracy, lambda: torch.tensor(0.0)),  # torchmetrics' accuracy on no data
        (lambda: MultilabelF1Score(3), lambda: torch.tensor(0.0)),
        (lambda: BinaryAUROC(thresholds=5), lambda: torch.tensor(0.0)),
        (BinaryAUROC, lambda: torch.tensor(float("nan"))),  # torchmetrics raises on no data: NaN
        (lambda: MulticlassAUROC(3, average=None), lambda: torch.full((3,), float("nan"))),
        (MeanSquaredError, lambda: torch.tensor(float("nan"))),  # generic: torchmetrics' 0/0
    ],
)
def test_compute_before_update(factory, expected):
    m = BootstrapMetric(factory(), num_bootstraps=20, seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = m.compute()
    messages = [str(w.message) for w in caught]
    assert any("BootstrapMetric.compute()" in msg for msg in messages), messages
    assert not any("Engine" in msg for msg in messages), messages  # no internal class names
    torch.testing.assert_close(res["value"], expected(), equal_nan=True)
    for key in ("lower", "upper", "std"):
        assert res[key].shape == res["value"].shape and torch.isnan(res[key]).all(), key


def test_generic_bayesian_weight_passed_positionally():
    # MeanMetric.update(value, weight): 0.1.0 passed the Dirichlet weights as a keyword too ("multiple values")
    g = torch.Generator().manual_seed(18)
    x, w = torch.randn(40, generator=g), torch.rand(40, generator=g) + 0.5
    positional = BootstrapMetric(MeanMetric(), num_bootstraps=30, resampling="bayesian", seed=0)
    keyword = BootstrapMetric(MeanMetric(), num_bootstraps=30, resampling="bayesian", seed=0)
    positional.update(x, w)
    keyword.update(x, weight=w)
    a, b = _compute(positional), _compute(keyword)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-7)
    assert float(a["lower"]) < float(a["value"]) < float(a["upper"])


def test_generic_replicate_the_metric_rejects_is_undefined():
    # R2Score raises on a single sample: a Poisson replicate of 5 samples has one with probability 5/e^5 (3%)
    g = torch.Generator().manual_seed(19)
    x = torch.randn(5, generator=g)
    m = BootstrapMetric(R2Score(), num_bootstraps=200, resampling="poisson", seed=0)
    m.update(x + 0.3 * torch.randn(5, generator=g), x)
    with pytest.warns(UserWarning, match="undefined"):  # the dropped replicates are reported
        res = m.compute()
    assert torch.isfinite(res["lower"]) and _contains(res)


@pytest.mark.parametrize("seed", range(6))
def test_ranking_logits_with_ignored_samples_match_torchmetrics(seed):
    # logits on a coarse grid (ties) with ignored samples interleaved: the sigmoid must see the kept samples only,
    # as torchmetrics' does, or a 1-ulp rounding difference splits a tie (0.1.0 was off by up to 0.005)
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(2, (150,), generator=g)
    logits = ((torch.randn(150, generator=g) + target) * 2).round() / 2 * 1.6219
    target = torch.where(torch.rand(150, generator=g) < 0.15, -1, target)
    for metric in (BinaryAUROC(ignore_index=-1), BinaryAveragePrecision(ignore_index=-1)):
        ref = _fit(copy.deepcopy(metric), logits, target, batch=37)
        res = _compute(_fit(BootstrapMetric(copy.deepcopy(metric), num_bootstraps=20, seed=0), logits, target,
                            batch=37))  # fmt: skip
        # the kernels differ (float64 here, float32 there): equal to 1e-6; a split tie moves the value by > 1e-3
        torch.testing.assert_close(res["value"], ref.compute(), rtol=0, atol=1e-6, msg=f"{seed} {metric}")


@pytest.mark.parametrize("factory", [lambda: MulticlassAccuracy(3, top_k=2), MeanSquaredError])
def test_generic_path_skips_an_empty_batch(factory):
    # MulticlassAccuracy(top_k=2) cannot format an empty batch in torchmetrics 1.9; the generic path skips it,
    # as the fast engines do, and an epoch of empty batches only gives NaN bounds
    g = torch.Generator().manual_seed(20)
    if factory().__class__ is MulticlassAccuracy:
        data = (torch.softmax(torch.randn(30, 3, generator=g), 1), torch.randint(3, (30,), generator=g))
    else:
        x = torch.randn(30, generator=g)
        data = (x + torch.randn(30, generator=g), x)
    with_empty = BootstrapMetric(factory(), num_bootstraps=30, seed=0)
    with_empty.update(*(d[:10] for d in data))
    with_empty.update(*(d[:0] for d in data))
    with_empty.update(*(d[10:] for d in data))
    without = _fit(BootstrapMetric(factory(), num_bootstraps=30, seed=0), *data, batch=30)
    a, b = _compute(with_empty), _compute(without)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-7)
    only_empty = BootstrapMetric(factory(), num_bootstraps=30, seed=0)
    only_empty.update(*(d[:0] for d in data))
    assert torch.isnan(_compute(only_empty)["lower"]).all()
