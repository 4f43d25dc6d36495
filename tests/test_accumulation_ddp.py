"""2-process DDP (gloo, CPU) against one process stepping on the same global windows, in float64."""

from __future__ import annotations

import copy

import pytest
import torch
from lightning.pytorch.strategies import DDPStrategy
from torch.utils.data import DataLoader, Sampler, TensorDataset

from lightning_ci import AccumulationScheduler
from lightning_ci.schedule import EpochSchedule
from tests.helpers import (
    Regressor,
    Tagger,
    loader,
    make_regression,
    make_tokens,
    max_param_diff,
    mse,
    reference_fit,
    token_ce,
    tokens_of,
    trainer,
)

WORLD = 2
EXACT = 1e-10  # float64; a missing cross-rank item sum is off by >1e-3 (tokens differ per rank)


def _global_batches(x, y, batch_size):
    """The micro-batch i of the global step is the union of every rank's micro-batch i.

    ``_RankShard`` gives rank r the samples r, r + W, r + 2W, ... in order.
    """
    per_rank = [list(loader(x[r::WORLD], y[r::WORLD], batch_size)) for r in range(WORLD)]
    return [
        (torch.cat([per_rank[r][i][0] for r in range(WORLD)]), torch.cat([per_rank[r][i][1] for r in range(WORLD)]))
        for i in range(len(per_rank[0]))
    ]


class _RankShard(Sampler):
    """Rank r reads samples r, r + W, ... in order (Lightning's own DistributedSampler shuffles the train set)."""

    def __init__(self, n: int):
        self.n = n

    def __iter__(self):
        return iter(range(torch.distributed.get_rank(), self.n, WORLD))

    def __len__(self):
        return self.n // WORLD


def _sharded(x, y, batch_size=4):
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, sampler=_RankShard(len(x)))


def _ddp_trainer(callbacks, max_epochs):
    strategy = DDPStrategy(process_group_backend="gloo", start_method="fork")
    return trainer(callbacks, max_epochs=max_epochs, devices=WORLD, strategy=strategy, use_distributed_sampler=False)


@pytest.mark.ddp
def test_ddp_token_level_equals_single_process_on_global_windows():
    # 46 sequences -> 23 per rank -> micro-batches of 4,4,4,4,4,3 on each rank; token counts differ by rank.
    x, labels = make_tokens(46)
    sched = {0: 5, 1: 3}
    model = Tagger()
    ref = reference_fit(copy.deepcopy(model), _global_batches(x, labels, 4), EpochSchedule(sched), 2, token_ce)
    _ddp_trainer([AccumulationScheduler(sched, num_items=tokens_of)], 2).fit(model, _sharded(x, labels))
    assert max_param_diff(model, ref) < EXACT


@pytest.mark.ddp
def test_ddp_samples_equals_single_process_on_global_windows():
    x, y = make_regression(46)
    sched = {0: 4, 1: 2}
    model = Regressor("adamw")
    ref = reference_fit(copy.deepcopy(model), _global_batches(x, y, 4), EpochSchedule(sched), 2, mse)
    _ddp_trainer([AccumulationScheduler(sched)], 2).fit(model, _sharded(x, y))
    assert max_param_diff(model, ref) < EXACT
