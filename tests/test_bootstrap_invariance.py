"""The result depends only on the multiset of samples and the seed (issue 9 item 1, issue 13 item 4).

- States are never written in place, and an unpickled metric never shares a storage with another process: the
  ``ddp_spawn`` failure, reproduced in one process with ``torch.multiprocessing``'s own pickler.
- Every engine and resampling mode gives identical results under other batch splits, permutations of the samples,
  and the order two interleaved DDP shards produce (even indices, then odd ones).

Scores are probabilities: torchmetrics decides per batch whether scores are logits, so with logits its own value
(and ours, which equals it) can depend on the batching.
"""

from __future__ import annotations

import io
import pickle
import warnings
from multiprocessing.reduction import ForkingPickler

import pytest
import torch
import torch.multiprocessing  # registers the shared-memory tensor reducers of ForkingPickler
from torchmetrics import Metric
from torchmetrics.aggregation import MeanMetric
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryAUROC,
    BinaryAveragePrecision,
    BinaryCohenKappa,
    MulticlassAUROC,
    MulticlassAveragePrecision,
    MulticlassF1Score,
    MulticlassMatthewsCorrCoef,
    MultilabelF1Score,
    MultilabelJaccardIndex,
)
from torchmetrics.regression import MeanSquaredError, PearsonCorrCoef

from lightning_ci.bootstrap import BootstrapMetric

N = 90


def _data(kind: str, n: int = N, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    if kind == "binary":
        target = torch.randint(2, (n,), generator=g)
        return ((0.3 * target + 0.7 * torch.rand(n, generator=g)).clamp(0, 1), target)
    if kind == "tied":  # a few distinct scores: the heavy-tie path of the ranking engine
        target = torch.randint(2, (n,), generator=g)
        return (((0.3 * target + 0.7 * torch.rand(n, generator=g)) * 4).floor() / 4, target)
    if kind == "multiclass":
        target = torch.randint(3, (n,), generator=g)
        return ((torch.randn(n, 3, generator=g) + 1.2 * torch.nn.functional.one_hot(target, 3)).softmax(-1), target)
    if kind == "multilabel":
        target = torch.randint(2, (n, 3), generator=g)
        return ((0.35 * target + 0.65 * torch.rand(n, 3, generator=g)).clamp(0, 1), target)
    if kind == "mean":
        return (torch.randn(n, generator=g).abs(), torch.rand(n, generator=g) + 0.5)
    x = torch.randn(n, generator=g)
    return (x + 0.5 * torch.randn(n, generator=g), x)


# name -> (data kind, base metric factory, BootstrapMetric kwargs): every engine and every resampling mode
CONFIGS: dict[str, tuple[str, type | object, dict]] = {
    "acc_multinomial": ("binary", BinaryAccuracy, {}),
    "kappa_poisson": ("binary", BinaryCohenKappa, {"resampling": "poisson"}),
    "mc_f1_bayesian": ("multiclass", lambda: MulticlassF1Score(3), {"resampling": "bayesian"}),
    "mc_mcc_poisson_bca": ("multiclass", lambda: MulticlassMatthewsCorrCoef(3), {"resampling": "poisson"}),
    "ml_f1_multinomial": ("multilabel", lambda: MultilabelF1Score(3), {}),
    "ml_f1_poisson": ("multilabel", lambda: MultilabelF1Score(3), {"resampling": "poisson"}),
    "ml_f1_poisson_bca": ("multilabel", lambda: MultilabelF1Score(3), {"resampling": "poisson", "method": "bca"}),
    "ml_jaccard_bayesian": ("multilabel", lambda: MultilabelJaccardIndex(3), {"resampling": "bayesian"}),
    "auroc_exact": ("binary", BinaryAUROC, {}),
    "auroc_exact_poisson": ("tied", BinaryAUROC, {"resampling": "poisson"}),
    "ap_binned_multinomial": ("binary", lambda: BinaryAveragePrecision(thresholds=7), {}),
    "auroc_binned_poisson": ("binary", lambda: BinaryAUROC(thresholds=7), {"resampling": "poisson"}),
    "auroc_binned_poisson_bca": ("binary", lambda: BinaryAUROC(thresholds=7), {"resampling": "poisson",
                                                                                 "method": "bca"}),
    "mc_auroc_exact_bayesian": ("multiclass", lambda: MulticlassAUROC(3), {"resampling": "bayesian"}),
    "mc_ap_binned_poisson": ("multiclass", lambda: MulticlassAveragePrecision(3, thresholds=5),
                             {"resampling": "poisson"}),
    "mc_auroc_binned_poisson_bca": ("multiclass", lambda: MulticlassAUROC(3, thresholds=5),
                                    {"resampling": "poisson", "method": "bca"}),
    "mse_generic": ("regression", MeanSquaredError, {"num_bootstraps": 20}),
    "pearson_generic_poisson": ("regression", PearsonCorrCoef, {"num_bootstraps": 20, "resampling": "poisson"}),
    "mean_generic_bayesian": ("mean", MeanMetric, {"num_bootstraps": 20, "resampling": "bayesian"}),
}  # fmt: skip


def _metric(name: str, seed: int = 3) -> BootstrapMetric:
    _, factory, kwargs = CONFIGS[name]
    return BootstrapMetric(factory(), **{"num_bootstraps": 100, "seed": seed, **kwargs})


def _run(metric: BootstrapMetric, data: tuple[torch.Tensor, ...], order: torch.Tensor, sizes: list[int]) -> dict:
    start = 0
    for size in sizes:
        idx = order[start : start + size]
        metric.update(*(d[idx] for d in data))
        start += size
    assert start == len(order)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return metric.compute()


def _assert_same(a: dict, b: dict, msg: str) -> None:
    for key in ("value", "lower", "upper", "std"):
        # equal up to float summation order (the generic path's point estimate sums batch by batch)
        torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-6, equal_nan=True, msg=f"{msg}/{key}")


@pytest.mark.parametrize("name", list(CONFIGS))
def test_same_result_under_batching_permutation_and_interleaved_shards(name):
    data = _data(CONFIGS[name][0])
    ref = _run(_metric(name), data, torch.arange(N), [N])
    g = torch.Generator().manual_seed(11)
    perm = torch.randperm(N, generator=g)
    interleaved = torch.cat([torch.arange(0, N, 2), torch.arange(1, N, 2)])  # what 2 DDP ranks concatenate
    for label, order, sizes in [
        ("batches of 7", torch.arange(N), [7] * 12 + [N - 84]),
        ("single samples, permuted", perm, [1] * N),
        ("uneven batches, permuted", perm, [40, 0, 13, 37]),  # an empty batch too (Pearson itself rejects one)
        ("interleaved shards", interleaved, [16, 16, 13, 16, 16, 13]),
    ]:
        _assert_same(_run(_metric(name), data, order, sizes), ref, f"{name}: {label}")


def test_issue_9_generic_example_is_order_free():
    # issue 9: MSE, B=40, seed 7 on 480 pairs: [0.2199, 0.2886] in natural order vs [0.2202, 0.2980] with even
    # indices first (the order two DDP ranks produce); now the same
    g = torch.Generator().manual_seed(0)
    x = torch.randn(480, generator=g)
    data = (x + 0.5 * torch.randn(480, generator=g), x)
    interleaved = torch.cat([torch.arange(0, 480, 2), torch.arange(1, 480, 2)])
    results = [
        _run(BootstrapMetric(MeanSquaredError(), num_bootstraps=40, seed=7), data, order, [32] * 15)
        for order in (torch.arange(480), interleaved)
    ]
    _assert_same(results[0], results[1], "mse")


def test_issue_13_multilabel_poisson_example_is_batch_free():
    # issue 13: MultilabelF1Score(3), Poisson, seed 0 gave [0.4615, 0.5885] at batch 100, [0.4635, 0.5858] at 10
    preds, target = _data("multilabel", 300, seed=5)
    results = [
        _run(BootstrapMetric(MultilabelF1Score(3), resampling="poisson", seed=0), (preds, target),
             torch.arange(300), [batch] * (300 // batch))
        for batch in (100, 10)
    ]  # fmt: skip
    _assert_same(results[0], results[1], "multilabel poisson")


# ------------------------------------------------------------------------------------ shared memory (ddp_spawn)
def _tensor_states(metric: Metric) -> list[torch.Tensor]:
    out = []
    for m in metric.modules():
        if isinstance(m, Metric):
            for name in m._defaults:
                value = getattr(m, name)
                out.extend(v for v in (value if isinstance(value, list) else [value]) if isinstance(v, torch.Tensor))
    return out


@pytest.mark.parametrize("name", list(CONFIGS))
def test_update_never_writes_into_a_state_tensor(name):
    """Under ``ddp_spawn`` the states are in shared memory: any in-place update writes into every rank's state."""
    data = _data(CONFIGS[name][0])
    metric = _metric(name)
    metric.update(*(d[:30] for d in data))
    # the engine's own states (the generic path's copy of the wrapped metric adds in place, as torchmetrics'
    # metrics do: unpickling gives it private states instead, tested below)
    values = [getattr(metric.engine, n) for n in metric.engine._defaults]
    engine_states = [t for v in values for t in (v if isinstance(v, list) else [v])]
    assert engine_states
    snapshots = [t.clone() for t in engine_states]
    metric.update(*(d[30:] for d in data))
    for before, tensor in zip(snapshots, engine_states):
        assert torch.equal(before, tensor), f"{name}: a state tensor was updated in place"


def _spawn_pickle(obj):
    """What ``ddp_spawn`` does: ``torch.multiprocessing``'s pickler moves tensors into shared memory."""
    buf = io.BytesIO()
    ForkingPickler(buf, pickle.HIGHEST_PROTOCOL).dump(obj)
    return buf.getvalue()


@pytest.mark.parametrize("name", ["acc_multinomial", "ml_f1_poisson", "ap_binned_multinomial", "mc_ap_binned_poisson",
                                  "auroc_exact", "mse_generic", "mean_generic_bayesian"])  # fmt: skip
def test_two_unpickled_ranks_do_not_share_state(name):
    """Two "ranks" unpickled from one ``ddp_spawn`` payload, each updated with its own shard, compute their own
    shard's result (no process group: each computes locally), as a fresh metric on that shard does."""
    data = _data(CONFIGS[name][0])
    metric = _metric(name)
    metric.update(*(d[:10] for d in data))  # states exist (and are non-empty) before the spawn
    # one payload per worker, as the launcher sends them: both workers map the same shared storages
    ranks = [pickle.loads(_spawn_pickle(metric)), pickle.loads(_spawn_pickle(metric))]
    assert all(not t.is_shared() for r in ranks for t in _tensor_states(r))
    shards = [slice(10, 50), slice(50, N)]
    for rank, shard in zip(ranks, shards):
        rank.update(*(d[shard] for d in data))
    for rank, shard in zip(ranks, shards):
        ref = _metric(name)
        ref.update(*(d[:10] for d in data))
        ref.update(*(d[shard] for d in data))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _assert_same(rank.compute(), ref.compute(), name)
