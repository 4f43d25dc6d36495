"""The fast paths of the grouped confusion engine and the paired AUROC kernel agree with the plain ones."""

from __future__ import annotations

import pytest
import torch
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryCohenKappa,
    BinaryFBetaScore,
    BinaryJaccardIndex,
    BinaryMatthewsCorrCoef,
    BinaryPrecision,
    BinaryRecall,
    BinarySpecificity,
    MulticlassAccuracy,
)

from lightning_ci.bootstrap.ranking import _group_ends, _group_ids, _sample_auroc, _sample_auroc_sparse_ties


def _tie_inputs(n: int, levels: int, rows: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randint(levels, (n,), generator=gen).float()
    y = (torch.rand(n, generator=gen) < 0.4).float()
    order = torch.sort(y, stable=True).indices  # negatives first within a tie, then score descending
    order = order[torch.sort(scores[order], descending=True, stable=True).indices]
    scores, y = scores[order], y[order]
    w = torch.randint(4, (rows, n), generator=gen).float()
    return scores, y, w


def test_sparse_tie_auroc_kernel_matches_dense_kernel() -> None:
    for levels in (3, 50, 10_000):  # heavy ties, some ties, (almost) none
        scores, y, w = _tie_inputs(400, levels, 7, seed=levels)
        ends = _group_ends(scores)
        end_idx = ends[_group_ids(ends, scores.numel())]
        n = scores.numel()
        cols = torch.nonzero((end_idx != torch.arange(n)) & (y == 0)).flatten()
        ties = (cols, end_idx[cols]) if cols.numel() else None
        dense, u_dense = _sample_auroc(w, y, end_idx)
        sparse, u_sparse = _sample_auroc_sparse_ties(w, y, ties)
        assert torch.equal(u_dense, u_sparse)
        # float32 sums of integer products below 2^24 are exact in both kernels
        torch.testing.assert_close(sparse, dense, rtol=1e-6, atol=1e-7)


def test_group_multinomial_rows_is_the_multinomial_over_patterns() -> None:
    from lightning_ci.bootstrap.confusion import _group_multinomial_rows, _multinomial_rows

    # 3 patterns shared by many groups and 37 rare ones; NumPy's multinomial draws them all, torch's sequential
    # binomials (the ungrouped sampler) are the reference in distribution
    counts = torch.tensor([60, 30, 20] + [1] * 30 + [2] * 5 + [15] * 2)
    g = int(counts.sum())
    s = 4000
    grouped = _group_multinomial_rows(counts, s, torch.Generator().manual_seed(11))
    plain = _multinomial_rows(counts, s, torch.Generator().manual_seed(12))
    assert grouped.dtype == torch.float64 and grouped.shape == (s, counts.numel())
    assert torch.equal(grouped.sum(1), torch.full((s,), float(g), dtype=torch.float64))
    assert torch.equal(grouped, grouped.round()) and bool((grouped >= 0).all())
    p = counts.double() / g
    mean, var = g * p, g * p * (1 - p)
    for draws in (grouped, plain):
        # each column's sample mean within 4.5 standard errors sqrt(var / S) of G p (40 columns: family-wise
        # false-alarm rate below 3e-4)
        assert bool(((draws.mean(0) - mean).abs() <= 4.5 * (var / s).sqrt()).all())
        # sample variance: s.e. about var * sqrt(2 / (S - 1)) plus the excess-kurtosis term (below sqrt(var / S)
        # for a binomial count); 5 s.e. for the same family of columns
        se_var = var * (2 / (s - 1)) ** 0.5 + (var / s).sqrt()
        assert bool(((draws.var(0) - var).abs() <= 5 * se_var).all())
    # the two samplers against each other: the difference of the means within 4.5 s.e. of a difference
    assert bool(((grouped.mean(0) - plain.mean(0)).abs() <= 4.5 * (2 * var / s).sqrt()).all())
    # the covariance of the two largest patterns is -G p_0 p_1; its sample estimate has s.e. about
    # sqrt(var_0 var_1 / S) (the cov^2 / S term is smaller); 5 s.e.
    cov = float(((grouped[:, 0] - grouped[:, 0].mean()) * (grouped[:, 1] - grouped[:, 1].mean())).mean())
    assert abs(cov + g * float(p[0] * p[1])) <= 5 * float((var[0] * var[1] / s).sqrt())


def test_group_multinomial_rows_depends_on_the_generator_only() -> None:
    from lightning_ci.bootstrap.confusion import _group_multinomial_rows

    counts = torch.tensor([7, 0, 3, 1, 1, 40])
    state = torch.random.get_rng_state()
    a = _group_multinomial_rows(counts, 50, torch.Generator().manual_seed(3))
    b = _group_multinomial_rows(counts, 50, torch.Generator().manual_seed(3))
    c = _group_multinomial_rows(counts, 50, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert bool((a[:, 1] == 0).all())  # a pattern of no group is never drawn
    assert torch.equal(torch.random.get_rng_state(), state)  # no global RNG state touched
    gen = torch.Generator().manual_seed(3)
    first, second = _group_multinomial_rows(counts, 50, gen), _group_multinomial_rows(counts, 50, gen)
    assert torch.equal(first, a) and not torch.equal(first, second)  # the generator advances
    assert torch.equal(_group_multinomial_rows(torch.zeros(3, dtype=torch.long), 4, gen), torch.zeros(4, 3).double())


def test_grouped_engine_draws_through_the_group_sampler(monkeypatch: pytest.MonkeyPatch) -> None:
    from lightning_ci import BootstrapMetric
    from lightning_ci.bootstrap import confusion

    used: list[int] = []
    real = confusion._group_multinomial_rows

    def spy(counts: torch.Tensor, num_rows: int, generator: torch.Generator) -> torch.Tensor:
        used.append(counts.numel())
        return real(counts, num_rows, generator)

    monkeypatch.setattr(confusion, "_group_multinomial_rows", spy)
    gen = torch.Generator().manual_seed(5)
    sizes = torch.randint(1, 21, (300,), generator=gen)
    groups = torch.repeat_interleave(torch.arange(300), sizes)
    preds = torch.rand(groups.numel(), generator=gen)
    target = (torch.rand(groups.numel(), generator=gen) < 0.5).long()
    metric = BootstrapMetric(BinaryAccuracy(), 200, method="percentile", seed=0)
    metric.update(preds, target, groups=groups)
    out = metric.compute()
    assert len(used) == 1 and used[0] > 20  # many distinct per-group patterns (folded to the sums accuracy reads)
    assert float(out["lower"]) <= float(out["value"]) <= float(out["upper"])


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (BinaryAccuracy, {}),
        (BinaryPrecision, {}),
        (BinaryRecall, {"zero_division": 1}),
        (BinaryFBetaScore, {"beta": 2.0}),
        (BinarySpecificity, {}),
        (BinaryJaccardIndex, {"ignore_index": -1}),
    ],
    ids=["accuracy", "precision", "recall", "fbeta", "specificity", "jaccard"],
)
def test_folded_group_patterns_give_the_same_metric_for_any_weights(cls, kwargs) -> None:
    from lightning_ci.bootstrap.confusion import ConfusionEngine

    gen = torch.Generator().manual_seed(21)
    sizes = torch.randint(1, 7, (400,), generator=gen)
    groups = torch.repeat_interleave(torch.arange(400) * 3 - 50, sizes)
    n = groups.numel()
    target = (torch.rand(n, generator=gen) < 0.3).long()
    if "ignore_index" in kwargs:  # ignored units: a group may hold nothing else
        target = torch.where(torch.rand(n, generator=gen) < 0.05, -1, target)
    preds = torch.rand(n, generator=gen)
    engine = ConfusionEngine(cls(**kwargs), 10, "multinomial", 0, need_jackknife=False)
    engine.update(preds, target, groups=groups)
    assert engine._sufficient_fold() is not None
    full, full_m = engine._group_patterns()
    folded, folded_m = engine._group_patterns(sufficient=True)
    assert folded.shape[0] < full.shape[0]
    assert int(folded_m.sum()) == int(full_m.sum()) == 400
    # each full pattern's folded pattern: the folded patterns are its distinct images
    fold = engine._sufficient_fold()
    image = torch.zeros(full.shape[0], 5, dtype=torch.float64).index_add_(1, fold, full)[:, :4]
    match = (image.unsqueeze(1) == folded.unsqueeze(0)).all(-1)  # [P_full, P_folded]
    assert torch.equal(match.sum(1), torch.ones(full.shape[0], dtype=torch.long))
    onto = match.double()
    assert torch.equal(full_m.double() @ onto, folded_m.double())
    # any integer weights of the full patterns (many zeros: empty replicates, zero denominators) give the same
    # metric as their sums per folded pattern, bit for bit (integer cell counts below 2^24)
    w = torch.randint(0, 3, (300, full.shape[0]), generator=gen).double() * (torch.rand(300, 1, generator=gen) < 0.9)
    w[:5] = 0.0
    w[5:10, : full.shape[0] // 2] = 0.0
    a = engine.metric_from_cells(w @ full)
    b = engine.metric_from_cells((w @ onto) @ folded)
    assert torch.equal(torch.isnan(a), torch.isnan(b))
    assert torch.equal(a.nan_to_num(-7.0), b.nan_to_num(-7.0))


def test_unfolded_kinds_and_paired_keep_the_full_patterns() -> None:
    from lightning_ci.bootstrap.confusion import ConfusionEngine

    ids = torch.arange(10)
    cases = [(BinaryMatthewsCorrCoef(), False), (BinaryCohenKappa(), False), (MulticlassAccuracy(3), False)]
    for metric, paired in [*cases, (BinaryAccuracy(), True)]:
        engine = ConfusionEngine(metric, 10, "multinomial", 0, need_jackknife=False, paired=paired)
        args = (torch.zeros(10, dtype=torch.long),) * (3 if paired else 2)
        engine.update(*args, groups=ids)
        assert engine._sufficient_fold() is None
    engine = ConfusionEngine(BinaryAccuracy(), 10, "multinomial", 0, False)
    engine.update(torch.zeros(10, dtype=torch.long), torch.zeros(10, dtype=torch.long))
    assert engine._sufficient_fold() is None  # no groups: the cells themselves are drawn


@pytest.mark.parametrize("spread", [1, 1000, 10**12], ids=["compact", "gapped", "sparse"])
def test_dense_tabulation_matches_the_sorts(spread: int) -> None:
    from lightning_ci.bootstrap._engine import count_pairs, group_index, unique_rows

    gen = torch.Generator().manual_seed(spread % 1000 + 1)
    ids = torch.randint(0, 300, (2000,), generator=gen) * spread - 17
    cells = torch.randint(0, 5, (2000,), generator=gen)
    got = count_pairs(ids, cells, 5)
    pairs, counts = torch.unique(torch.stack([ids, cells], 1), dim=0, return_counts=True)
    assert torch.equal(got[0], pairs[:, 0]) and torch.equal(got[1], pairs[:, 1]) and torch.equal(got[2], counts)
    num, inverse = group_index(ids)
    uniq, ref_inverse = torch.unique(ids, return_inverse=True)
    assert num == uniq.numel() and torch.equal(inverse, ref_inverse)
    rows = torch.randint(0, 4 if spread == 1 else 200, (500, 3), generator=gen)
    got_rows, got_counts = unique_rows(rows)
    ref_rows, ref_counts = torch.unique(rows, dim=0, return_counts=True)
    order = torch.argsort(got_rows[:, 2] * 10**6 + got_rows[:, 1] * 10**3 + got_rows[:, 0])
    ref_order = torch.argsort(ref_rows[:, 2] * 10**6 + ref_rows[:, 1] * 10**3 + ref_rows[:, 0])
    assert torch.equal(got_rows[order], ref_rows[ref_order]) and torch.equal(got_counts[order], ref_counts[ref_order])
    assert got_rows.dtype == rows.dtype


@pytest.mark.parametrize("kind", ["accuracy", "jaccard"])
def test_binary_validation_fast_path_raises_what_torchmetrics_raises(kind: str) -> None:
    from lightning_ci import BootstrapMetric

    cls = BinaryAccuracy if kind == "accuracy" else BinaryJaccardIndex
    good_t = torch.tensor([0, 1, 1, 0])
    cases = [
        (torch.tensor([0.2, 0.9, 0.4, 0.7]), torch.tensor([0, 1, 2, 0]), {}),  # a target out of {0, 1}
        (torch.tensor([0, 1, 2, 0]), good_t, {}),  # integer preds out of {0, 1}
        (torch.tensor([0.2, 0.9, 0.4]), good_t, {}),  # shapes differ
        (torch.tensor([0.2, 0.9, 0.4, 0.7]), torch.tensor([0, 1, -2, 0]), {"ignore_index": -1}),
    ]
    for preds, target, kw in cases:
        with pytest.raises(RuntimeError) as expected:
            cls(**kw)(preds, target)
        with pytest.raises(RuntimeError) as got:
            BootstrapMetric(cls(**kw), num_bootstraps=10, seed=0).update(preds, target)
        assert str(got.value) == str(expected.value)
    ok = [
        (torch.tensor([0.2, 0.9, 0.4, 0.7]), torch.tensor([0, 1, -1, 0]), {"ignore_index": -1}),
        (torch.tensor([True, False, True, True]), torch.tensor([True, True, False, False]), {}),
        (torch.tensor([1, 0, 1, 1]), good_t, {}),
        (torch.zeros(0), torch.zeros(0, dtype=torch.long), {}),
    ]
    for preds, target, kw in ok:
        metric = BootstrapMetric(cls(**kw), num_bootstraps=10, seed=0)
        metric.update(preds, target)
