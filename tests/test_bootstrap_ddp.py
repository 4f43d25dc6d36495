"""DDP: 2 gloo processes, each updating on its share of the data, agree with one process on all of it.

One spawn pool runs every check (spawning costs more than the checks themselves).
"""

from __future__ import annotations

import os
import socket
import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torchmetrics.classification import BinaryAUROC, MulticlassF1Score
from torchmetrics.regression import MeanSquaredError

from lightning_ci.bootstrap import BootstrapMetric

N, SPLIT = 150, 90  # rank 0 gets the first 90 samples, rank 1 the last 60 (uneven on purpose)


def _data():
    g = torch.Generator().manual_seed(0)
    target = torch.randint(3, (N,), generator=g)
    probs = (torch.randn(N, 3, generator=g) + 1.2 * torch.nn.functional.one_hot(target, 3)).softmax(-1)
    binary_target = (target == 0).long()
    x = torch.randn(N, generator=g)
    return {
        "f1": ((probs, target), lambda: MulticlassF1Score(num_classes=3, average="macro")),
        "auroc": ((probs[:, 0], binary_target), BinaryAUROC),
        "mse": ((x + 0.3 * torch.randn(N, generator=g), x), MeanSquaredError),
    }


CHECKS = {  # name -> (data key, BootstrapMetric kwargs)
    "f1_multinomial": ("f1", {"seed": 3}),
    "f1_bca": ("f1", {"seed": 3, "method": "bca"}),
    "auroc_multinomial": ("auroc", {"seed": 4}),
    "mse_generic": ("mse", {"seed": 5, "num_bootstraps": 40}),
    "f1_poisson": ("f1", {"seed": 6, "resampling": "poisson"}),
    "f1_seed_none": ("f1", {"seed": None}),
}
SAME_AS_SINGLE_PROCESS = ("f1_multinomial", "f1_bca", "auroc_multinomial", "mse_generic", "f1_poisson")


def _worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        data = _data()
        results = {}
        for name, (key, kwargs) in CHECKS.items():
            tensors, factory = data[key]
            part = slice(0, SPLIT) if rank == 0 else slice(SPLIT, N)
            metric = BootstrapMetric(factory(), **{"num_bootstraps": 200, **kwargs})
            shard = [t[part] for t in tensors]
            for i in range(0, shard[0].shape[0], 16):
                metric.update(*(t[i : i + 16] for t in shard))
            results[name] = metric.compute()
            # the local state is restored after the synced compute: more updates keep accumulating locally
            assert metric.engine._update_count > 0
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.ddp
def test_ddp_two_gloo_ranks_equal_single_process(tmp_path: Path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]

    # every check: both ranks return the same result (one seed, one synced state)
    for name in CHECKS:
        for key in ("value", "lower", "upper", "std"):
            torch.testing.assert_close(ranks[0][name][key], ranks[1][name][key], rtol=0, atol=0, msg=name)

    # multinomial (percentile and BCa): identical to a single process on all the data, same seed
    data = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in SAME_AS_SINGLE_PROCESS:
            key, kwargs = CHECKS[name]
            tensors, factory = data[key]
            single = BootstrapMetric(factory(), **{"num_bootstraps": 200, **kwargs})
            single.update(*tensors)
            ref = single.compute()
            for k in ("value", "lower", "upper", "std"):
                # float sums over ranks vs one batch can differ in the last bit (the generic MSE value)
                torch.testing.assert_close(ranks[0][name][k], ref[k], rtol=1e-6, atol=1e-7, msg=f"{name}/{k}")
