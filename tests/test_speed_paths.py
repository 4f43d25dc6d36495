"""The fast paths of the grouped confusion engine and the paired AUROC kernel agree with the plain ones."""

from __future__ import annotations

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
