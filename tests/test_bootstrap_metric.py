"""``BootstrapMetric``: errors, exact values, seeds, RNG hygiene, reset, pickling, logging, scipy agreement."""

from __future__ import annotations

import contextlib
import csv
import math
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.stats as st
import torch
from torchmetrics import Metric
from torchmetrics.aggregation import MeanMetric
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryAUROC,
    BinaryMatthewsCorrCoef,
    MulticlassAccuracy,
    MulticlassAveragePrecision,
    MulticlassF1Score,
    MulticlassPrecision,
    MultilabelF1Score,
)
from torchmetrics.regression import MeanSquaredError, PearsonCorrCoef

from lightning_ci.bootstrap import BootstrapMetric, GenericEngine, to_log_dict

N = 120


def _binary(n=N, seed=0):
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(2, (n,), generator=g)
    preds = (0.35 * target + 0.65 * torch.rand(n, generator=g)).clamp(0, 1)
    return preds, target


def _multiclass(n=N, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(c, (n,), generator=g)
    logits = torch.randn(n, c, generator=g) + 1.5 * torch.nn.functional.one_hot(target, c)
    return logits.softmax(-1), target


def _multilabel(n=N, labels=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(2, (n, labels), generator=g)
    preds = (0.4 * target + 0.6 * torch.rand(n, labels, generator=g)).clamp(0, 1)
    return preds, target


def _regression(n=N, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=g)
    return x + 0.5 * torch.randn(n, generator=g), x


# (factory of a fresh base metric, data factory): confusion family, ranking family, generic path
CASES = {
    "binary_accuracy": (BinaryAccuracy, _binary),
    "binary_mcc": (BinaryMatthewsCorrCoef, _binary),
    "multiclass_f1_macro": (lambda: MulticlassF1Score(num_classes=3, average="macro"), _multiclass),
    "multiclass_precision_none": (lambda: MulticlassPrecision(num_classes=3, average=None), _multiclass),
    "multilabel_f1": (lambda: MultilabelF1Score(num_labels=3), _multilabel),
    "binary_auroc": (BinaryAUROC, _binary),
    "multiclass_ap": (lambda: MulticlassAveragePrecision(num_classes=3), _multiclass),
    "mse_generic": (MeanSquaredError, _regression),
    "pearson_generic": (PearsonCorrCoef, _regression),
}
GENERIC_CASES = {"mse_generic", "pearson_generic"}


def _run(metric: Metric, data, batch: int = 32):
    n = data[0].shape[0]
    for i in range(0, n, batch):
        metric.update(*(d[i : i + batch] for d in data))
    return metric.compute()


@contextlib.contextmanager
def _quiet():
    """Silence the expected slow-path / degenerate warnings inside a test body."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# ------------------------------------------------------------------------------------------------ errors
def test_base_metric_must_be_a_metric():
    with pytest.raises(TypeError, match="Expected argument `base_metric`"):
        BootstrapMetric(lambda p, t: (p == t).float().mean())


@pytest.mark.parametrize("num_bootstraps", [1, 0, -5, 2.5, "100", True])
def test_num_bootstraps_validation(num_bootstraps):
    with pytest.raises(ValueError, match="Expected argument `num_bootstraps` to be an integer larger than 1"):
        BootstrapMetric(BinaryAccuracy(), num_bootstraps=num_bootstraps)


@pytest.mark.parametrize("level", [0, 1, 1.5, -0.2, True, "0.95"])
def test_confidence_level_validation(level):
    with pytest.raises(ValueError, match="Expected argument `confidence_level`"):
        BootstrapMetric(BinaryAccuracy(), confidence_level=level)


def test_unknown_method_and_resampling():
    with pytest.raises(ValueError, match="Expected argument `method`"):
        BootstrapMetric(BinaryAccuracy(), method="studentized")
    with pytest.raises(ValueError, match="Expected argument `resampling`"):
        BootstrapMetric(BinaryAccuracy(), resampling="jackknife")


@pytest.mark.parametrize("method", ["basic", "normal", "bca"])
def test_bayesian_only_with_percentile(method):
    with pytest.raises(ValueError, match="credible interval"):
        BootstrapMetric(BinaryAccuracy(), resampling="bayesian", method=method)


def test_bayesian_generic_needs_sample_weights():
    with pytest.raises(ValueError, match="Bayesian bootstrap is not available for MeanSquaredError"):
        BootstrapMetric(MeanSquaredError(), resampling="bayesian")
    BootstrapMetric(MeanMetric(), resampling="bayesian")  # takes `weight`: fine


def test_seed_type():
    with pytest.raises(TypeError, match="seed"):
        BootstrapMetric(BinaryAccuracy(), seed=1.5)


def test_metric_kwargs_are_validated_and_passed_on():
    with pytest.raises(ValueError):
        BootstrapMetric(BinaryAccuracy(), not_a_metric_kwarg=1)
    m = BootstrapMetric(BinaryAccuracy(), sync_on_compute=False)
    assert m.engine.sync_on_compute is False


def test_class_attributes_follow_the_base_metric():
    m = BootstrapMetric(MulticlassAccuracy(num_classes=3))
    assert m.higher_is_better is True and m.is_differentiable is False and m.full_state_update is False
    assert (m.plot_lower_bound, m.plot_upper_bound) == (0.0, 1.0)
    assert BootstrapMetric(MeanSquaredError()).higher_is_better is False


# ------------------------------------------------------------------------------------------------ values
@pytest.mark.parametrize("case", list(CASES))
def test_value_equals_unwrapped_metric(case):
    factory, data_fn = CASES[case]
    data = data_fn()
    ref = _run(factory(), data)
    with _quiet():
        res = _run(BootstrapMetric(factory(), num_bootstraps=40, seed=0), data)
    assert set(res) == {"value", "lower", "upper", "std"}
    if case in GENERIC_CASES:
        assert torch.equal(res["value"], ref)
    else:
        torch.testing.assert_close(res["value"], ref, rtol=1e-6, atol=1e-7)
    for key in ("lower", "upper", "std"):
        assert res[key].shape == ref.shape, key
        assert torch.isfinite(res[key]).all(), key
    assert (res["lower"] <= res["upper"]).all()
    m = factory()
    if m.plot_lower_bound is not None:
        assert (res["lower"] >= m.plot_lower_bound).all()
    if m.plot_upper_bound is not None:
        assert (res["upper"] <= m.plot_upper_bound).all()


def test_vector_metric_gets_per_class_bounds():
    data = _multiclass(n=300)
    res = _run(BootstrapMetric(MulticlassPrecision(num_classes=3, average=None), num_bootstraps=300, seed=1), data)
    assert res["value"].shape == res["lower"].shape == res["upper"].shape == (3,)
    assert (res["lower"] < res["value"]).all() and (res["value"] < res["upper"]).all()
    assert len(set(res["upper"].tolist())) == 3  # not pooled across classes


def test_engine_choice():
    from lightning_ci.bootstrap import select_engine

    assert select_engine(MeanSquaredError(), "multinomial") is GenericEngine
    assert isinstance(BootstrapMetric(MeanSquaredError()).engine, GenericEngine)
    fast = select_engine(BinaryAccuracy(), "multinomial")
    assert fast.__name__ in ("ConfusionEngine", "GenericEngine")


def test_generic_path_warns_once_per_instance():
    data = _regression()
    m = BootstrapMetric(MeanSquaredError(), num_bootstraps=10, seed=0)
    with pytest.warns(UserWarning, match="slow"):
        _run(m, data)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        m.update(*data)
        m.compute()
    assert not [w for w in rec if "slow" in str(w.message)]


@pytest.mark.parametrize("resampling", ["multinomial", "poisson", "bayesian"])
def test_generic_resampling_modes(resampling):
    """MeanMetric through the generic path: every mode gives a sensible interval around the mean."""
    x = torch.randn(300, generator=torch.Generator().manual_seed(0)) + 3.0
    with _quiet():
        res = _run(BootstrapMetric(MeanMetric(), num_bootstraps=200, resampling=resampling, seed=0), (x,))
    se = x.std() / math.sqrt(300)
    assert res["value"].item() == pytest.approx(x.mean().item(), rel=1e-6)
    # bootstrap s.e. of a mean: within 20% of s/sqrt(n) (MC s.e. of a s.d. from B=200 is 1/sqrt(400) = 5%)
    assert res["std"].item() == pytest.approx(se.item(), rel=0.2)
    assert res["lower"] < res["value"] < res["upper"]


def test_generic_bca_runs_with_jackknife_warning():
    data = _regression(n=60)
    with pytest.warns(UserWarning, match="O\\(n\\)"):
        res = _run(BootstrapMetric(PearsonCorrCoef(), num_bootstraps=100, method="bca", seed=0), data)
    assert res["lower"] < res["value"] < res["upper"]


@pytest.mark.parametrize("method", ["percentile", "basic", "normal", "bca"])
@pytest.mark.parametrize("resampling", ["multinomial", "poisson", "bayesian"])
def test_all_methods_and_modes_fast_path(method, resampling):
    if resampling == "bayesian" and method != "percentile":  # refused by design: a credible interval
        with pytest.raises(ValueError, match="percentile"):
            BootstrapMetric(MulticlassF1Score(num_classes=3), method=method, resampling=resampling)
        return
    data = _multiclass(n=200)
    res = _run(
        BootstrapMetric(
            MulticlassF1Score(num_classes=3, average=None),
            num_bootstraps=200,
            method=method,
            resampling=resampling,
            seed=3,
        ),
        data,
    )
    assert torch.isfinite(torch.stack([res["lower"], res["upper"]])).all()
    assert ((res["lower"] <= res["value"]) & (res["value"] <= res["upper"])).all()


# ------------------------------------------------------------------------------------ seeds and RNG
@pytest.mark.parametrize("case", ["binary_accuracy", "binary_auroc", "mse_generic"])
def test_seed_fixes_result_and_different_seeds_differ(case):
    factory = CASES[case][0]
    data = _binary(300) if case != "mse_generic" else _regression(300)
    with _quiet():
        a = _run(BootstrapMetric(factory(), num_bootstraps=50, seed=11), data)
        b = _run(BootstrapMetric(factory(), num_bootstraps=50, seed=11), data)
        c = _run(BootstrapMetric(factory(), num_bootstraps=50, seed=12), data)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert not torch.equal(torch.stack([a["lower"], a["upper"]]), torch.stack([c["lower"], c["upper"]]))


def test_seed_setter_reseeds_like_a_fresh_instance():
    data = _binary(200)
    m = BootstrapMetric(BinaryAccuracy(), num_bootstraps=50, resampling="poisson", seed=1)
    _run(m, data)
    m.reset()
    m.seed = 2
    res = _run(m, data)
    ref = _run(BootstrapMetric(BinaryAccuracy(), num_bootstraps=50, resampling="poisson", seed=2), data)
    for key in ref:
        assert torch.equal(res[key], ref[key]), key
    with pytest.raises(TypeError, match="seed"):
        m.seed = "2"


def test_seed_none_draws_distinct_seeds():
    assert BootstrapMetric(BinaryAccuracy()).seed != BootstrapMetric(BinaryAccuracy()).seed


@pytest.mark.parametrize("resampling", ["multinomial", "poisson", "bayesian"])
@pytest.mark.parametrize("case", ["binary_accuracy", "binary_auroc", "mean_generic"])
def test_global_rng_untouched(case, resampling):
    factory, data = (MeanMetric, (torch.rand(64),)) if case == "mean_generic" else (CASES[case][0], _binary(64))
    state = torch.get_rng_state()
    with _quiet():
        m = BootstrapMetric(factory(), num_bootstraps=20, resampling=resampling, method="percentile")
        _run(m, data, batch=16)
        m.reset()
        _run(m, data, batch=16)
    assert torch.equal(torch.get_rng_state(), state)


# ---------------------------------------------------------------------------------- state handling
@pytest.mark.parametrize("case", ["binary_accuracy", "binary_auroc", "mse_generic"])
@pytest.mark.parametrize("resampling", ["multinomial", "poisson"])
def test_reset_gives_fresh_state(case, resampling):
    factory, data_fn = CASES[case]
    other, data = data_fn(seed=5), data_fn(seed=6)
    with _quiet():
        m = BootstrapMetric(factory(), num_bootstraps=30, resampling=resampling, seed=4)
        _run(m, other)
        m.reset()
        res = _run(m, data)
        ref = _run(BootstrapMetric(factory(), num_bootstraps=30, resampling=resampling, seed=4), data)
    for key in ref:
        assert torch.equal(res[key], ref[key]), key


@pytest.mark.parametrize("case", ["binary_accuracy", "binary_auroc", "mse_generic", "multiclass_f1_macro"])
def test_pickle_roundtrip_then_continue(case):
    factory, data_fn = CASES[case]
    data = data_fn()
    half = N // 2
    with _quiet():
        ref = _run(BootstrapMetric(factory(), num_bootstraps=30, seed=2), data)
        m = BootstrapMetric(factory(), num_bootstraps=30, seed=2)
        m.update(*(d[:half] for d in data))
        m = pickle.loads(pickle.dumps(m))
        m.update(*(d[half:] for d in data))
        res = m.compute()
    for key in ref:
        torch.testing.assert_close(res[key], ref[key], rtol=0, atol=0)


def test_pickle_poisson_mode_continues():
    data = _binary()
    m = BootstrapMetric(BinaryAccuracy(), num_bootstraps=30, resampling="poisson", seed=2)
    m.update(*(d[:60] for d in data))
    m = pickle.loads(pickle.dumps(m))
    m.update(*(d[60:] for d in data))
    res = m.compute()
    assert res["lower"] <= res["value"] <= res["upper"]


@pytest.mark.parametrize("case", ["binary_accuracy", "binary_auroc", "multiclass_precision_none", "pearson_generic"])
def test_batch_size_invariance(case):
    """Multinomial: one batch of n, batches of 1 and batches of 7 give identical bounds."""
    factory, data_fn = CASES[case]
    data = data_fn(n=70)
    with _quiet():
        results = [_run(BootstrapMetric(factory(), num_bootstraps=60, seed=9), data, batch=b) for b in (70, 1, 7)]
    for res in results[1:]:
        for key in ("lower", "upper", "std"):
            torch.testing.assert_close(res[key], results[0][key], rtol=1e-6, atol=1e-7)


def test_forward_returns_batch_value_and_accumulates():
    data = _binary()
    m = BootstrapMetric(BinaryAccuracy(), num_bootstraps=30, seed=0)
    batch_vals = [m(data[0][i : i + 40], data[1][i : i + 40]) for i in range(0, N, 40)]
    for i, v in enumerate(batch_vals):
        ref = BinaryAccuracy()(data[0][40 * i : 40 * i + 40], data[1][40 * i : 40 * i + 40])
        assert torch.equal(v, ref)
    torch.testing.assert_close(m.compute()["value"], _run(BinaryAccuracy(), data))


# ---------------------------------------------------------------------------------------- logging
def test_to_log_dict_scalar_and_vector():
    res = {
        "value": torch.tensor(0.8),
        "lower": torch.tensor(0.7),
        "upper": torch.tensor(0.9),
        "std": torch.tensor(0.05),
    }
    out = to_log_dict(res, "val_acc")
    assert list(out) == ["val_acc", "val_acc_lower", "val_acc_upper"]
    assert all(v.ndim == 0 for v in out.values())
    assert list(to_log_dict(res, "a", include_std=True)) == ["a", "a_lower", "a_upper", "a_std"]
    vec = {k: torch.tensor([0.1, 0.2]) + i for i, k in enumerate(("value", "lower", "upper", "std"))}
    out = to_log_dict(vec, "f1")
    assert list(out) == ["f1_0", "f1_0_lower", "f1_0_upper", "f1_1", "f1_1_lower", "f1_1_upper"]
    assert out["f1_1_upper"].item() == pytest.approx(2.2) and all(v.ndim == 0 for v in out.values())
    with pytest.raises(ValueError, match="missing"):
        to_log_dict({"value": torch.tensor(1.0)}, "x")


def test_log_dict_in_a_lightning_fit(tmp_path: Path):
    from lightning.pytorch import LightningModule, Trainer
    from lightning.pytorch.loggers import CSVLogger
    from torch.utils.data import DataLoader, TensorDataset

    class Tiny(LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)
            self.val_acc = BootstrapMetric(BinaryAccuracy(), num_bootstraps=200, seed=0)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return torch.nn.functional.binary_cross_entropy_with_logits(self.layer(x).squeeze(-1), y.float())

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.val_acc.update(self.layer(x).squeeze(-1).sigmoid(), y)

        def on_validation_epoch_end(self):
            self.log_dict(to_log_dict(self.val_acc.compute(), "val_acc"))
            self.val_acc.reset()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    y = (x[:, 0] > 0).long()
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=CSVLogger(tmp_path),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(Tiny(), loader, loader)
    with open(next(tmp_path.rglob("metrics.csv"))) as f:
        rows = list(csv.DictReader(f))
    row = next(r for r in rows if r.get("val_acc"))
    lo, val, hi = float(row["val_acc_lower"]), float(row["val_acc"]), float(row["val_acc_upper"])
    assert 0.0 <= lo <= val <= hi <= 1.0 and hi > lo


# ------------------------------------------------------------------------------------------- scipy
def _accuracy_stat(p, t, axis=-1):
    return ((p >= 0.5) == t).mean(axis=axis)


def _auroc_stat(p, t, axis=-1):
    """Rank (Mann-Whitney) AUROC along ``axis``; ties count 1/2 like the trapezoid AUROC."""
    ranks = st.rankdata(p, axis=axis)
    n_pos = t.sum(axis=axis)
    n_neg = t.shape[axis] - n_pos
    return ((ranks * t).sum(axis=axis) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


@pytest.mark.parametrize("method", ["percentile", "bca"])
@pytest.mark.parametrize("metric", ["accuracy", "auroc"])
def test_bounds_agree_with_scipy_paired_bootstrap(method, metric):
    """Ours and scipy's bootstrap, each with B=5000 independent resamples, on the same n=300 data."""
    n, num_boot = 300, 5000
    g = torch.Generator().manual_seed(42)
    target = torch.randint(2, (n,), generator=g)
    preds = (0.3 * target + 0.7 * torch.rand(n, generator=g)).clamp(0, 1)
    if metric == "auroc":
        preds = (preds * 50).round() / 50  # ties, to exercise the tie handling as well
    base = BinaryAccuracy() if metric == "accuracy" else BinaryAUROC()
    stat = _accuracy_stat if metric == "accuracy" else _auroc_stat
    with _quiet():  # a missing fast engine would only make this slower, not different
        ours = _run(BootstrapMetric(base, num_bootstraps=num_boot, method=method, seed=0), (preds, target), batch=64)
    ref = st.bootstrap(
        (preds.double().numpy(), target.double().numpy()),
        stat,
        paired=True,
        vectorized=True,
        n_resamples=num_boot,
        method="BCa" if method == "bca" else "percentile",
        rng=0,
    )
    theta = ours["value"].item()
    assert theta == pytest.approx(stat(preds.double().numpy(), target.double().numpy()), abs=1e-6)
    # Monte-Carlo tolerance. Each bound is an estimated quantile q in {0.025, 0.975} of the bootstrap
    # distribution (≈ normal with sd = se); its MC s.e. is sqrt(q(1-q)/B) / f(x_q) with
    # f(x_q) = φ(z_q)/se, i.e. se · sqrt(0.025·0.975/5000)/φ(1.96) ≈ 0.038·se. The two estimates are
    # independent: difference s.e. ≈ 0.054·se. BCa adds the MC error of z0 (≈ +20%). Allow 5 of those, plus
    # one lattice step 1/n for accuracy (its replicates live on k/n, so linear interpolation can move a
    # quantile by up to one step between two samples).
    se = ref.standard_error
    mc_se = (
        math.sqrt(2) * se * math.sqrt(0.025 * 0.975 / num_boot) / st.norm.pdf(1.96) * (1.2 if method == "bca" else 1)
    )
    tol = 5 * mc_se + (1 / n if metric == "accuracy" else 0.0)
    assert ours["lower"].item() == pytest.approx(ref.confidence_interval.low, abs=tol)
    assert ours["upper"].item() == pytest.approx(ref.confidence_interval.high, abs=tol)
    # the standard error: relative MC s.e. of a s.d. from B draws is 1/sqrt(2B) = 1%; both estimated → 1.4%
    assert ours["std"].item() == pytest.approx(se, rel=5 * 0.014)


# ------------------------------------------------------------------------------------------- plots
def test_plot_single_vector_and_sequence():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = _multiclass()
    m = BootstrapMetric(MulticlassF1Score(num_classes=3, average=None), num_bootstraps=50, seed=0)
    _run(m, data)
    fig, ax = m.plot()
    assert fig is not None and ax is not None
    results = []
    scalar = BootstrapMetric(BinaryAccuracy(), num_bootstraps=50, seed=0)
    for epoch in range(3):
        scalar.reset()
        results.append(_run(scalar, _binary(seed=epoch)))
    fig, ax = scalar.plot(results)
    assert len(ax.collections) >= 1  # the shaded band
    _, ax2 = plt.subplots()
    _, ax2b = scalar.plot(results[0], ax=ax2)
    assert ax2b is ax2
    m.plot([m.compute(), m.compute()])  # a sequence of vector results: one band per class
    with pytest.raises(ValueError, match="val"):
        scalar.plot([])
    plt.close("all")


def test_reference_auroc_statistic():
    """Sanity check of the helper statistic used above (so a scipy mismatch is not a helper bug)."""
    p = np.array([0.1, 0.4, 0.35, 0.8])
    t = np.array([0, 0, 1, 1])
    assert _auroc_stat(p, t) == pytest.approx(0.75)


def test_auto_method_is_bca_on_fast_paths_percentile_elsewhere():
    """The default follows the coverage study (docs/validation.md): BCa where its jackknife is exact and cheap."""
    assert BootstrapMetric(BinaryAccuracy()).method == "bca"
    assert BootstrapMetric(BinaryAUROC(), resampling="poisson").method == "bca"
    assert BootstrapMetric(BinaryAccuracy(), resampling="bayesian").method == "percentile"
    assert BootstrapMetric(MeanSquaredError()).method == "percentile"  # generic: a jackknife is O(n)
    assert BootstrapMetric(BinaryAccuracy(), method="normal").method == "normal"
