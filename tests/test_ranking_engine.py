"""Tests of the ranking-family engine (AUROC, average precision) against torchmetrics and scipy."""

from __future__ import annotations

import math
import pickle
import warnings
from typing import Callable

import numpy as np
import pytest
import torch
from scipy import stats
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.classification import (
    BinaryAUROC,
    BinaryAveragePrecision,
    MulticlassAUROC,
    MulticlassAveragePrecision,
    MultilabelAUROC,
)

import lightning_ci.bootstrap.ranking as ranking
from lightning_ci.bootstrap._engine import GROUP_STATES
from lightning_ci.bootstrap.ranking import RankingEngine

MODES = ("multinomial", "bayesian", "poisson")


@pytest.fixture(autouse=True)
def _one_thread():
    """These tensors are tiny: one intra-op thread avoids OpenMP spin-waits on a shared 2-core CI box."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _binary_data(n: int, seed: int, ties=True, logits: bool = False) -> tuple[Tensor, Tensor]:
    """Scores with heavy ties (``ties=True``: 1 decimal), some ties (``ties=2``: 2 decimals) or none."""
    g = torch.Generator().manual_seed(seed)
    target = (torch.rand(n, generator=g) < 0.4).long()
    preds = (0.35 * target + 0.65 * torch.rand(n, generator=g)).clamp(0, 1)
    if ties:
        preds = preds.round(decimals=1 if ties is True else ties)
    if logits:
        preds = torch.logit(preds.clamp(0.01, 0.99)) * 1.7
    return preds, target


def _multiclass_data(n: int, c: int, seed: int, ties=True, logits: bool = True) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(c, (n,), generator=g)
    preds = torch.randn(n, c, generator=g) + 1.2 * torch.nn.functional.one_hot(target, c)
    if ties:
        preds = preds.round(decimals=0 if ties is True else ties - 1)
    if not logits:
        preds = preds.softmax(1)
    return preds, target


def _feed(metrics: list[Metric], preds: Tensor, target: Tensor, sizes: tuple[int, ...] = (7, 1, 13)) -> None:
    """Update every metric with the same uneven batches."""
    start, i = 0, 0
    while start < target.shape[0]:
        stop = start + sizes[i % len(sizes)]
        for m in metrics:
            m.update(preds[start:stop], target[start:stop])
        start, i = stop, i + 1


def _quiet(fn: Callable[[], object]) -> object:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn()


def _metric(name: str, thresholds, ignore_index=None, average="macro", c: int = 3) -> Metric:
    if name == "bin_auroc":
        return BinaryAUROC(thresholds=thresholds, ignore_index=ignore_index)
    if name == "bin_ap":
        return BinaryAveragePrecision(thresholds=thresholds, ignore_index=ignore_index)
    if name == "mc_auroc":
        return MulticlassAUROC(c, average=average, thresholds=thresholds, ignore_index=ignore_index)
    return MulticlassAveragePrecision(c, average=average, thresholds=thresholds, ignore_index=ignore_index)


def _data(name: str, n: int, seed: int, ignore_index=None, **kw) -> tuple[Tensor, Tensor]:
    preds, target = _binary_data(n, seed, **kw) if name.startswith("bin") else _multiclass_data(n, 3, seed, **kw)
    if ignore_index is not None:
        g = torch.Generator().manual_seed(seed + 100)
        target = torch.where(torch.rand(n, generator=g) < 0.15, torch.full_like(target, ignore_index), target)
    return preds, target


def _same(a: Tensor, b: Tensor, atol: float = 1e-6) -> bool:
    return torch.allclose(a.double(), b.double(), atol=atol, rtol=0, equal_nan=True)


THRESHOLDS = [None, 11, [0.05, 0.5, 0.3, 0.9, 0.5], torch.tensor([0.0, 0.2, 0.45, 0.7, 1.0])]
CASES = [("bin_auroc", None), ("bin_ap", None)] + [
    (name, avg) for name in ("mc_auroc", "mc_ap") for avg in ("macro", "weighted", "none", None)
]


# ------------------------------------------------------------------------------------------------------------
# value == torchmetrics
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("thresholds", THRESHOLDS, ids=["exact", "int", "list", "tensor"])
@pytest.mark.parametrize(("name", "average"), CASES)
def test_value_matches_torchmetrics(name, average, thresholds):
    # heavy ties take the per-(tie group, label) cell path, few or no ties the per-sample path
    for mode, ignore_index, logits, ties in (
        ("multinomial", None, False, False),
        ("poisson", -1, True, True),
        ("bayesian", 2, False, 2),
    ):
        if name.startswith("mc") and ignore_index == 2:
            ignore_index = 5
        preds, target = _data(name, 90, seed=3, ignore_index=ignore_index, logits=logits, ties=ties)
        ref = _metric(name, thresholds, ignore_index, average)
        jack = mode != "poisson"  # binned Poisson without jackknife keeps histograms only: test that path too
        eng = RankingEngine(_metric(name, thresholds, ignore_index, average), 20, mode, 0, need_jackknife=jack)
        _feed([ref, eng], preds, target)
        out = _quiet(eng.compute)
        expected = _quiet(ref.compute)
        assert out.value.shape == expected.shape
        # float32 rounding in torchmetrics' own curve arithmetic is ~1e-7
        assert _same(out.value, expected), (mode, out.value, expected)
        assert out.replicates.shape == (20, *expected.shape)


@pytest.mark.parametrize("thresholds", [None, 5])
@pytest.mark.parametrize(
    ("name", "average"), [*CASES[:2], ("mc_auroc", "macro"), ("mc_ap", "macro"), ("mc_ap", "none")]
)
def test_value_degenerate_matches_torchmetrics(name, average, thresholds):
    """No positives / no negatives (binary) and an absent class (multiclass): torchmetrics' fill-ins."""
    datasets = []
    if name.startswith("bin"):
        p = torch.tensor([0.1, 0.4, 0.4, 0.8])
        datasets = [(p, torch.zeros(4, dtype=torch.long)), (p, torch.ones(4, dtype=torch.long))]
    else:
        p = torch.tensor([[0.7, 0.2, 0.1], [0.3, 0.3, 0.4], [0.5, 0.1, 0.4], [0.2, 0.2, 0.6]])
        datasets = [(p, torch.tensor([0, 2, 0, 2])), (p, torch.tensor([0, 0, 0, 0])), (p, torch.tensor([1, 1, 1, 1]))]
    for preds, target in datasets:
        ref = _metric(name, thresholds, None, average)
        eng = RankingEngine(_metric(name, thresholds, None, average), 30, "multinomial", 1, need_jackknife=True)
        _feed([ref, eng], preds, target, sizes=(3,))
        out, expected = _quiet(eng.compute), _quiet(ref.compute)
        assert _same(out.value, expected), (target, out.value, expected)
        # undefined on the full data => the replicates keep torchmetrics' fill-in (a point distribution)
        assert _same(out.replicates, expected.expand_as(out.replicates)) or not torch.isnan(out.replicates).all()


# ------------------------------------------------------------------------------------------------------------
# weighted kernels == torchmetrics on the data repeated by the weights
# ------------------------------------------------------------------------------------------------------------


def _patched_weights(monkeypatch, weights: Tensor) -> None:
    """Make every chunk of replicate weights come from ``weights`` (rows in order)."""
    state = {"row": 0}

    def draw(self, mode, rows, gen):
        out = weights[state["row"] : state["row"] + rows].to(torch.float32)
        state["row"] += rows
        return ranking._Draw(weights=out)

    monkeypatch.setattr(ranking._Workspace, "draw", draw)


@pytest.mark.parametrize(
    ("name", "average", "thresholds"),
    [
        ("bin_auroc", None, None),
        ("bin_ap", None, None),
        ("mc_auroc", "macro", None),
        ("mc_auroc", "weighted", None),
        ("mc_ap", "none", None),
        ("mc_ap", "weighted", None),
        ("mc_auroc", "none", 9),
        ("mc_ap", "macro", [0.1, 0.3, 0.5, 0.2]),
    ],
)
@pytest.mark.parametrize("ties", [True, 2, False], ids=["heavy-ties", "some-ties", "no-ties"])
def test_integer_weights_equal_repeated_data(monkeypatch, name, average, thresholds, ties):
    n, b = 40, 6
    preds, target = _data(name, n, seed=5, logits=False, ties=ties)
    eng = RankingEngine(_metric(name, thresholds, None, average), b, "multinomial", 0, need_jackknife=False)
    eng.update(preds, target)
    cp, ct = eng._samples()  # the canonical order the weights refer to
    weights = torch.randint(0, 4, (b, n), generator=torch.Generator().manual_seed(9))
    _patched_weights(monkeypatch, weights)
    reps = _quiet(eng.compute).replicates
    for r in range(b):
        rep = torch.repeat_interleave(torch.arange(n), weights[r])
        ref = _metric(name, thresholds, None, average)
        ref.update(cp[rep], ct[rep])
        expected = _quiet(ref.compute)
        ok = ~torch.isnan(reps[r])  # NaN only where a class present in the data vanished from the replicate
        assert _same(reps[r][ok], expected[ok] if expected.ndim else expected), (r, reps[r], expected)


def test_binned_binary_cell_weights_equal_repeated_data(monkeypatch):
    """Binary binned multinomial draws over histogram cells: each replicate is a dataset of cell members."""
    preds, target = _binary_data(60, seed=2, ties=False)
    for name in ("bin_auroc", "bin_ap"):
        eng = RankingEngine(_metric(name, 7), 5, "multinomial", 4, need_jackknife=False)
        eng.update(preds, target)
        seen = {}
        original = ranking._cell_weights

        def spy(*args, _orig=original, _seen=seen, **kw):
            _seen["w"] = _orig(*args, **kw)
            return _seen["w"]

        monkeypatch.setattr(ranking, "_cell_weights", spy)
        reps = eng.compute().replicates
        cells = eng._cells(preds, target)[:, 0]
        member = {int(c): i for i, c in enumerate(cells.tolist())}  # one sample standing for each cell
        for r in range(5):
            counts = seen["w"][r].long()
            assert int(counts.sum()) == 60  # a multinomial draw of n
            idx = torch.cat([torch.full((int(k),), member[c]) for c, k in enumerate(counts.tolist()) if k > 0])
            ref = _metric(name, 7)
            ref.update(preds[idx], target[idx])
            assert _same(reps[r], _quiet(ref.compute))


# ------------------------------------------------------------------------------------------------------------
# jackknife == brute-force leave-one-out
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "average", "thresholds"),
    [
        ("bin_auroc", None, None),
        ("bin_ap", None, None),
        ("bin_auroc", None, 6),
        ("bin_ap", None, [0.2, 0.5, 0.35]),
        ("mc_auroc", "macro", None),
        ("mc_auroc", "weighted", None),
        ("mc_ap", "none", None),
        ("mc_ap", "weighted", None),
        ("mc_auroc", "none", 5),
        ("mc_ap", "macro", 5),
    ],
)
def test_jackknife_equals_brute_force(name, average, thresholds):
    n = 30
    preds, target = _data(name, n, seed=11, logits=False)
    eng = RankingEngine(_metric(name, thresholds, None, average), 4, "multinomial", 0, need_jackknife=True)
    eng.update(preds, target)
    out = _quiet(eng.compute)
    cp, ct = eng._samples() if eng._keep_samples else (preds, target)
    brute = []
    for i in range(n):
        keep = torch.arange(n) != i
        ref = _metric(name, thresholds, None, average)
        ref.update(cp[keep], ct[keep])
        brute.append(_quiet(ref.compute))
    brute = torch.stack(brute)
    if out.jackknife_weights is None:  # one value per sample, in canonical order
        assert out.jackknife.shape == brute.shape
        assert _same(out.jackknife, brute)
    else:  # distinct values with multiplicities: compare as multisets
        w = out.jackknife_weights
        assert float(w.sum()) == n and torch.equal(w, w.round())
        expanded = torch.repeat_interleave(out.jackknife, w.long(), dim=0)
        assert _same(expanded.sort().values, brute.sort().values)


def test_jackknife_undefined_leave_one_out_is_nan():
    """Removing the only positive leaves AUROC undefined: NaN (torchmetrics would silently say 0)."""
    eng = RankingEngine(BinaryAUROC(), 10, "multinomial", 0, need_jackknife=True)
    eng.update(torch.tensor([0.9, 0.2, 0.4, 0.4]), torch.tensor([1, 0, 0, 1]))
    eng2 = RankingEngine(BinaryAUROC(), 10, "multinomial", 0, need_jackknife=True)
    eng2.update(torch.tensor([0.9, 0.2, 0.4]), torch.tensor([1, 0, 0]))
    out = eng2.compute()
    pos_value = out.jackknife[torch.isnan(out.jackknife)]
    assert pos_value.numel() == 1 and float(out.jackknife_weights[torch.isnan(out.jackknife)]) == 1
    assert torch.isfinite(eng.compute().jackknife).all()


def test_jackknife_is_fast_for_n_5000():
    import time

    preds, target = _binary_data(5000, seed=1, ties=True)
    for metric in (BinaryAUROC(), BinaryAveragePrecision(), MulticlassAveragePrecision(3, average="weighted")):
        p, t = (preds, target) if metric.__class__.__name__.startswith("Binary") else _multiclass_data(5000, 3, 1)
        eng = RankingEngine(metric, 2, "multinomial", 0, need_jackknife=True)
        eng.update(p, t)
        start = time.perf_counter()
        out = eng.compute()
        assert time.perf_counter() - start < 5.0  # ~0.05 s here; generous for a loaded CI machine
        assert torch.isfinite(out.jackknife).all()


# ------------------------------------------------------------------------------------------------------------
# resampling: determinism, invariance, agreement with scipy
# ------------------------------------------------------------------------------------------------------------


_INVARIANCE_CASES = [
    (mode, name, thresholds)
    for mode in MODES
    # every mode draws at compute, binned Poisson included (it drew at update time up to 0.1.0)
    for name, thresholds in [("bin_auroc", None), ("bin_ap", 9), ("mc_ap", None), ("mc_auroc", 6), ("bin_auroc", 7)]
]


@pytest.mark.parametrize(("mode", "name", "thresholds"), _INVARIANCE_CASES)
def test_seed_and_batch_order_invariance(mode, name, thresholds):
    # probabilities: with logits, torchmetrics decides per batch whether to apply sigmoid/softmax
    preds, target = _data(name, 50, seed=4, logits=False)

    def run(seed: int, order: Tensor, one_by_one: bool) -> Tensor:
        eng = RankingEngine(_metric(name, thresholds), 64, mode, seed, need_jackknife=False)
        if one_by_one:
            for i in order.tolist():
                eng.update(preds[i : i + 1], target[i : i + 1])
        else:
            eng.update(preds[order], target[order])
        return _quiet(eng.compute).replicates

    ident = torch.arange(50)
    shuffled = torch.randperm(50, generator=torch.Generator().manual_seed(1))
    a = run(7, ident, False)
    assert torch.equal(a, run(7, ident, False))
    assert torch.equal(a, run(7, shuffled, True))  # one batch vs shuffled single-sample updates
    assert not torch.equal(a, run(8, ident, False))


def test_binary_binned_constant_memory_in_every_mode():
    preds, target = _binary_data(300, seed=1)
    for mode in MODES:
        eng = RankingEngine(BinaryAUROC(thresholds=5), 50, mode, 3, False)
        _feed([eng], preds, target, sizes=(32,))
        # the group states (cluster bootstrap, issue 11) stay empty lists without ``groups=``
        assert all(getattr(eng, name) == [] for name in eng._defaults if name in GROUP_STATES), mode
        shapes = {name: tuple(getattr(eng, name).shape) for name in eng._defaults if name not in GROUP_STATES}
        assert shapes == {"hist": (1, 2, 6)}, mode  # nothing grows with n: replicates drawn per histogram cell


def _rank_auroc(preds: np.ndarray, target: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mann-Whitney AUROC with average ranks for ties, vectorized over leading axes (scipy's statistic)."""
    ranks = stats.rankdata(preds, axis=axis)
    pos = target.sum(axis=axis)
    neg = target.shape[axis] - pos
    return ((ranks * target).sum(axis=axis) - pos * (pos + 1) / 2) / (pos * neg)


def test_percentile_bounds_agree_with_scipy():
    n, b = 300, 4000
    preds, target = _binary_data(n, seed=21, ties=True)
    eng = RankingEngine(BinaryAUROC(), b, "multinomial", 5, need_jackknife=False)
    eng.update(preds, target)
    out = eng.compute()
    ours = torch.quantile(out.replicates.double(), torch.tensor([0.025, 0.975], dtype=torch.float64))
    assert math.isclose(float(out.value), float(_rank_auroc(preds.numpy(), target.numpy())), abs_tol=1e-6)
    res = stats.bootstrap(
        (preds.numpy(), target.numpy()),
        _rank_auroc,
        paired=True,
        vectorized=True,
        n_resamples=b,
        method="percentile",
        rng=np.random.default_rng(0),
    )
    ref = np.array([res.confidence_interval.low, res.confidence_interval.high])
    # Monte Carlo error of a 2.5% quantile from B draws: sqrt(p(1-p)/B) / f(q), and for a near-normal bootstrap
    # distribution f(q_0.025) = phi(1.96) / sd, so se = sqrt(.025 * .975 / 4000) / .0584 * sd = 0.042 sd.
    # Two independent estimates differ by sqrt(2) * 0.042 sd = 0.060 sd; allow 4 of those (0.24 sd).
    sd = float(out.replicates.double().std())
    tol = 4 * math.sqrt(2) * math.sqrt(0.025 * 0.975 / b) / 0.0584 * sd
    assert np.all(np.abs(ours.numpy() - ref) < tol), (ours, ref, tol)
    # and the two bootstrap standard errors agree: relative se of an sd from B draws is 1/sqrt(2B) = 1.1%
    assert abs(sd / float(res.standard_error) - 1) < 4 * math.sqrt(2) / math.sqrt(2 * b)


def test_modes_agree_on_spread():
    """Multinomial, Poisson and Bayesian replicates estimate the same sampling spread (to O(1/n))."""
    n, b = 400, 2000
    preds, target = _binary_data(n, seed=8, ties=False)
    sds = []
    for mode in MODES:
        eng = RankingEngine(BinaryAveragePrecision(), b, mode, 2, need_jackknife=False)
        eng.update(preds, target)
        reps = eng.compute().replicates.double()
        assert torch.isfinite(reps).all()
        sds.append(float(reps.std()))
    # relative MC se of an sd from B draws is 1/sqrt(2B) = 1.6%; two estimates differ by 2.2% sd; allow 4 sd
    # plus ~2% for the O(1/n) differences between the bootstrap flavours (Bayesian variance is n/(n+1) of it)
    tol = 4 * math.sqrt(2) / math.sqrt(2 * b) + 0.02
    for sd in sds[1:]:
        assert abs(sd / sds[0] - 1) < tol, sds


def test_replicate_nan_where_newly_undefined():
    """A replicate without positives is NaN (dropped by the interval code), not torchmetrics' silent 0."""
    preds = torch.tensor([0.9, 0.1, 0.2, 0.3, 0.4, 0.5])
    target = torch.tensor([1, 0, 0, 0, 0, 0])
    eng = RankingEngine(BinaryAUROC(), 500, "multinomial", 0, need_jackknife=False)
    eng.update(preds, target)
    reps = eng.compute().replicates
    frac_nan = float(torch.isnan(reps).double().mean())
    # P(no positive in 6 draws) = (5/6)^6 = 0.335; binomial se with B=500 is 0.021; allow 4 se
    assert abs(frac_nan - (5 / 6) ** 6) < 4 * 0.021
    assert torch.all(reps[~torch.isnan(reps)] == 1.0)


# ------------------------------------------------------------------------------------------------------------
# RNG hygiene, supports, pickling
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("thresholds", [None, 5])
def test_global_rng_untouched(mode, thresholds):
    preds, target = _multiclass_data(40, 3, seed=1)
    bp, bt = _binary_data(40, seed=1)
    before = torch.get_rng_state()
    for metric, p, t in (
        (MulticlassAveragePrecision(3, thresholds=thresholds), preds, target),
        (BinaryAUROC(thresholds=thresholds), bp, bt),
    ):
        eng = RankingEngine(metric, 30, mode, 1, need_jackknife=True)
        _feed([eng], p, t)
        eng.compute()
    assert torch.equal(before, torch.get_rng_state())


def test_supports():
    assert RankingEngine.supports(BinaryAUROC(), "multinomial")
    assert RankingEngine.supports(BinaryAUROC(max_fpr=1.0), "poisson")
    assert RankingEngine.supports(MulticlassAveragePrecision(4, average=None, thresholds=10), "bayesian")
    assert not RankingEngine.supports(BinaryAUROC(max_fpr=0.5), "multinomial")
    assert not RankingEngine.supports(MultilabelAUROC(3), "multinomial")
    assert not RankingEngine.supports(BinaryAUROC(), "jackknife")

    class Custom(BinaryAUROC):
        pass

    assert not RankingEngine.supports(Custom(), "multinomial")
    with pytest.raises(ValueError, match="base_metric"):
        RankingEngine(BinaryAUROC(max_fpr=0.3), 10, "multinomial", 0, False)


def test_pickle_and_reset():
    preds, target = _binary_data(50, seed=3)
    eng = RankingEngine(BinaryAUROC(), 40, "multinomial", 2, need_jackknife=True)
    eng.update(preds, target)
    clone = pickle.loads(pickle.dumps(eng))
    assert torch.equal(eng.compute().replicates, clone.compute().replicates)
    eng.reset()
    eng.update(preds[:20], target[:20])
    ref = BinaryAUROC()
    ref.update(preds[:20], target[:20])
    assert _same(eng.compute().value, ref.compute())
