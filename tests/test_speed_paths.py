"""The fast paths of the grouped confusion engine and the paired AUROC kernel agree with the plain ones."""

from __future__ import annotations

import pytest
import torch

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


def test_index_route_matches_binomial_route_in_distribution() -> None:
    from lightning_ci.bootstrap.confusion import _BINOMIAL_PER_INDEX, _group_multinomial_rows, _multinomial_rows

    # 3 patterns shared by many groups (binomials) and 37 rare ones (the index route)
    counts = torch.tensor([60, 30, 20] + [1] * 30 + [2] * 5 + [_BINOMIAL_PER_INDEX - 1] * 2)
    g = int(counts.sum())
    s = 4000
    mixed = _group_multinomial_rows(counts, s, torch.Generator().manual_seed(11))
    plain = _multinomial_rows(counts, s, torch.Generator().manual_seed(12))
    assert torch.equal(mixed.sum(1), torch.full((s,), float(g), dtype=torch.float64))
    p = counts.double() / g
    mean, var = g * p, g * p * (1 - p)
    for draws in (mixed, plain):
        # each column's sample mean within 4.5 standard errors sqrt(var / S) of G p (40 columns: family-wise
        # false-alarm rate below 3e-4)
        assert bool(((draws.mean(0) - mean).abs() <= 4.5 * (var / s).sqrt()).all())
        # sample variance: s.e. about var * sqrt(2 / (S - 1)) plus the excess-kurtosis term (below sqrt(var / S)
        # for a binomial count); 5 s.e. for the same family of columns
        se_var = var * (2 / (s - 1)) ** 0.5 + (var / s).sqrt()
        assert bool(((draws.var(0) - var).abs() <= 5 * se_var).all())
    # the two routes against each other: the difference of the means within 4.5 s.e. of a difference
    assert bool(((mixed.mean(0) - plain.mean(0)).abs() <= 4.5 * (2 * var / s).sqrt()).all())


def test_many_patterns_use_the_index_route(monkeypatch: pytest.MonkeyPatch) -> None:
    from lightning_ci.bootstrap import confusion

    calls: list[int] = []
    real = confusion._multinomial_rows

    def spy(counts: torch.Tensor, num_rows: int, generator: torch.Generator) -> torch.Tensor:
        calls.append(counts.numel())
        return real(counts, num_rows, generator)

    monkeypatch.setattr(confusion, "_multinomial_rows", spy)
    counts = torch.ones(500, dtype=torch.long)  # 500 patterns of one group each: no binomial at all
    out = confusion._group_multinomial_rows(counts, 50, torch.Generator().manual_seed(3))
    assert calls == []
    assert torch.equal(out.sum(1), torch.full((50,), 500.0, dtype=torch.float64))
    counts = torch.full((30,), 100, dtype=torch.long)  # few well-shared patterns: the binomial route only
    confusion._group_multinomial_rows(counts, 50, torch.Generator().manual_seed(3))
    assert calls == [30]


def test_grouped_engine_draws_through_the_mixed_route(monkeypatch: pytest.MonkeyPatch) -> None:
    from torchmetrics.classification import BinaryAccuracy

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
    assert len(used) == 1 and used[0] > 50  # many distinct per-group patterns
    assert float(out["lower"]) <= float(out["value"]) <= float(out["upper"])
