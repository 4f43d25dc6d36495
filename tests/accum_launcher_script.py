"""AccumulationScheduler under a real DDP launcher: 2 CPU gloo processes against one process, in float64.

Usage: ``python tests/accum_launcher_script.py {ddp,ddp_spawn,ddp_fork} OUT_DIR``. Run by
``tests/test_accumulation_ddp.py``: in a subprocess for ``ddp`` (Lightning's ``strategy="ddp"`` relaunches ``sys.argv``,
which must be this script rather than pytest), through ``run()`` for the others. One launch runs several
configurations (each one ``Trainer.fit``; under ``ddp`` the relaunched process runs them all, under ``ddp_spawn``
every fit spawns two interpreters, so it runs the richest one).

The data go through Lightning's own ``DistributedSampler``; Lightning shuffles training data under DDP whatever the
loader's ``shuffle`` (seed 0, ``set_epoch`` every epoch), and the reference deals the samples out the same way.
The reference is one process stepping, in a plain PyTorch loop, on the global windows: global micro-batch ``i``
is the union of both ranks' micro-batch ``i``, and a window's loss is the mean over all its items. Rank 0 writes
``OUT_DIR/<launcher>.json``: per configuration the max |Δw| against the reference, the optimizer steps (real,
``total_optimizer_steps`` from ``configure_optimizers`` and at the end, and the reference plan's), and the logged
``effective_batch_size`` against the reference's last epoch.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from lightning.pytorch import Callback, Trainer
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from lightning_ci import AccumulationScheduler, total_optimizer_steps
from tests.helpers import (
    Regressor,
    Tagger,
    make_regression,
    make_tokens,
    max_param_diff,
    mse,
    plan_windows,
    reference_windows,
    token_ce,
    tokens_of,
)

WORLD = 2
MICRO = 4
EPOCHS = 2


class SizedRegressor(Regressor):
    def configure_optimizers(self):
        self.total = total_optimizer_steps(self.trainer)
        return super().configure_optimizers()


class SizedTagger(Tagger):
    def configure_optimizers(self):
        self.total = total_optimizer_steps(self.trainer)
        return super().configure_optimizers()


@dataclass
class Config:
    task: str  # "tokens" (Tagger, token-mean CE, num_items=tokens) or "samples" (Regressor, batch-mean MSE)
    kwargs: dict  # AccumulationScheduler arguments
    factor_of: Callable[[int], int]  # the reference's factor per epoch (or per optimizer step)
    interval: str = "epoch"
    shuffle: bool = True  # the user's loader flag; Lightning's DistributedSampler shuffles training data anyway
    clip: Optional[float] = None
    optimizer: str = "sgd"
    extra: dict = field(default_factory=dict)


CONFIGS = {
    # partial windows in both epochs (6 batches per rank: 4 + 2, then 5 + 1), token counts differ per rank, clipping
    "epoch_tokens_clip": Config("tokens", {"scheduling": {0: 4, 1: 5}}, lambda e: [4, 5][e], clip=0.5),
    # global target 8 = 4 x 1 x 2, then 24 = 4 x 3 x 2 from step 1: windows [0], [1, 2, 3] (a window starting at
    # batch 1, which the scheduler zeroes itself), [4, 5], then [0, 1, 2], [3, 4, 5]
    "step_effective_tokens": Config(
        "tokens",
        {"effective_batch_size": {0: 8, 1: 24}, "interval": "step"},
        lambda s: 1 if s < 1 else 3,
        interval="step",
        clip=0.5,
    ),
    # global targets 16 then 8: factors 2 then 1, samples counted by default, AdamW, a loader without shuffle
    "epoch_effective_samples": Config(
        "samples", {"effective_batch_size": {0: 16, 1: 8}}, lambda e: [2, 1][e], shuffle=False, optimizer="adamw"
    ),
    # step keys: factor 2, then 3 from step 2: windows [0, 1], [2, 3], [4, 5] (k=3 at batch 4, cut by the epoch
    # end), then [0, 1, 2], [3, 4, 5]
    "step_factors_samples": Config(
        "samples", {"scheduling": {0: 2, 2: 3}, "interval": "step"}, lambda s: 2 if s < 2 else 3, interval="step"
    ),
}
SPAWN_CONFIGS = ["step_effective_tokens"]  # every ddp_spawn fit spawns two fresh interpreters


class Probe(Callback):
    """Rank 0 records what only the workers know (their global_step and counts) into a JSON file."""

    def __init__(self, path: str):
        self.path = path

    def on_train_end(self, trainer, pl_module):
        if trainer.global_rank != 0:
            return
        acc = next(cb for cb in trainer.callbacks if isinstance(cb, AccumulationScheduler))
        info = {
            "global_step": trainer.global_step,
            "total_at_configure": pl_module.total,
            "total_at_end": acc.total_optimizer_steps(trainer),
            "effective_batch_size": float(trainer.callback_metrics["effective_batch_size"]),
            "accumulation_factor": float(trainer.callback_metrics["accumulation_factor"]),
            "micro_batch_size": acc.micro_batch_size,
            "world_size": trainer.world_size,
        }
        Path(self.path).write_text(json.dumps(info))


def data(task: str):
    return make_tokens(46) if task == "tokens" else make_regression(46)


def global_batches(x: torch.Tensor, y: torch.Tensor, epoch: int) -> list[tuple[Any, Any]]:
    """Global micro-batch i = both ranks' micro-batch i, as Lightning's DistributedSampler deals them out."""
    ds = TensorDataset(x, y)
    per_rank = []
    for rank in range(WORLD):
        sampler = DistributedSampler(ds, num_replicas=WORLD, rank=rank, shuffle=True, seed=0)
        sampler.set_epoch(epoch)
        idx = list(sampler)
        per_rank.append([idx[s : s + MICRO] for s in range(0, len(idx), MICRO)])
    out = []
    for i in range(len(per_rank[0])):
        ids = torch.tensor([j for rank in range(WORLD) for j in per_rank[rank][i]])
        out.append((x[ids], y[ids]))
    return out


def reference(cfg: Config, model, x, y):
    batches = [global_batches(x, y, e) for e in range(EPOCHS)]
    plan = plan_windows(len(batches[0]), cfg.factor_of, EPOCHS, cfg.interval)
    windows = [[batches[e][i] for e, i in w] for w in plan]
    loss = token_ce if cfg.task == "tokens" else mse
    ref = reference_windows(model, windows, loss, clip_norm=cfg.clip)
    last = [w for w, p in zip(windows, plan) if p[0][0] == EPOCHS - 1]
    count = (lambda b: float(tokens_of(b))) if cfg.task == "tokens" else (lambda b: float(len(b[0])))
    eff_last = sum(count(b) for w in last for b in w) / len(last)
    return ref, len(plan), eff_last


def run(launcher: str, out_dir: Path) -> None:
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    names = SPAWN_CONFIGS if launcher == "ddp_spawn" else list(CONFIGS)
    results: dict[str, dict] = {}
    for name in names:
        cfg = CONFIGS[name]
        x, y = data(cfg.task)
        model = SizedTagger() if cfg.task == "tokens" else SizedRegressor(cfg.optimizer)
        plain = Tagger() if cfg.task == "tokens" else Regressor(cfg.optimizer)  # same seed, same weights
        plain.load_state_dict(model.state_dict())
        ref, steps, eff_last = reference(cfg, plain, x, y)
        kwargs = dict(cfg.kwargs)
        if cfg.task == "tokens":
            kwargs["num_items"] = tokens_of
        probe_path = out_dir / f"{launcher}-{name}-probe.json"
        trainer = Trainer(
            strategy=launcher,
            devices=WORLD,
            accelerator="cpu",
            precision="64-true",
            max_epochs=EPOCHS,
            callbacks=[AccumulationScheduler(**kwargs), Probe(str(probe_path))],
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            gradient_clip_val=cfg.clip,
            **cfg.extra,
        )
        trainer.fit(model, DataLoader(TensorDataset(x, y), batch_size=MICRO, shuffle=cfg.shuffle))
        if trainer.global_rank != 0:
            continue
        probe = json.loads(probe_path.read_text())
        results[name] = {**probe, "max_diff": max_param_diff(model, ref), "steps": steps, "eff_expected": eff_last}
    if int(os.environ.get("LOCAL_RANK", "0")) == 0:
        (out_dir / f"{launcher}.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    run(sys.argv[1], Path(sys.argv[2]))
