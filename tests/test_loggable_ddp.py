"""``loggable`` views and ``IntervalReport`` under 2-process ``ddp_spawn`` (gloo, CPU), against one process.

One ``Trainer(strategy="ddp_spawn", devices=2).fit`` runs every check (spawning costs more than the checks):
Lightning's ``DistributedSampler`` interleaves the validation samples over the ranks, Lightning computes, syncs
and resets the views, and each rank writes what it saw. The reference is ``to_log_dict(metric.compute())`` of
one process on all the data with the same seed (``tests/test_loggable.py::reference_logs``).
"""

from __future__ import annotations

import functools
import json
import os
import warnings
from pathlib import Path
from typing import Any

import pytest
from lightning.pytorch import Trainer

from lightning_ci import AccumulationScheduler, IntervalReport
from tests.test_loggable import COLLECTION, METRICS, Recorder, ViewsModule, loaders, make_data, reference_logs

EPOCHS = 2
RANKING = ["val_auroc", "coll_auc"]  # the ranking engine: its state is never updated in place
CONFUSION = ["val_acc", *(f"val_f1_{i}" for i in range(3))]
GENERIC = ["coll_mse"]


class SpawnModule(ViewsModule):
    """Writes, per rank, the bootstrap/reset counts of every BootstrapMetric at the end of fit."""

    def __init__(self, out_dir: str) -> None:
        super().__init__()
        self.out_dir = out_dir

    def on_fit_end(self) -> None:
        counts = {n: [m.computes, m.resets] for n, m in self.bootstrap_metrics().items()}
        with open(os.path.join(self.out_dir, f"counts{self.global_rank}.json"), "w") as fh:
            json.dump(counts, fh)


class SpawnRecorder(Recorder):
    def __init__(self, out_dir: str) -> None:
        super().__init__()
        self.out_dir = out_dir

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        with open(os.path.join(self.out_dir, f"logged{trainer.global_rank}.json"), "w") as fh:
            json.dump(self.runs, fh)


class SpawnReport(IntervalReport):
    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        super().on_fit_end(trainer, pl_module)
        with open(os.path.join(pl_module.out_dir, f"rows{trainer.global_rank}.json"), "w") as fh:
            json.dump({"rows": self.rows, "plot": None if self.plot_path is None else str(self.plot_path)}, fh)


@pytest.fixture(scope="module")
def spawned(tmp_path_factory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("ddp_spawn")
    trainer = Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        max_epochs=EPOCHS,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=out,
        callbacks=[SpawnRecorder(str(out)), SpawnReport(monitor="val_auroc"), AccumulationScheduler({0: 1, 1: 2})],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(SpawnModule(str(out)), *loaders())
    ranks = range(2)
    return {
        "main": {k: float(v) for k, v in trainer.callback_metrics.items()},
        "logged": [json.loads((out / f"logged{r}.json").read_text()) for r in ranks],
        "counts": [json.loads((out / f"counts{r}.json").read_text()) for r in ranks],
        "report": [json.loads((out / f"rows{r}.json").read_text()) for r in ranks],
        "dir": out,
    }


@functools.cache
def _reference(epoch: int) -> dict[str, float]:
    return reference_logs(epoch, *make_data())


def _epochs(spawned: dict[str, Any], rank: int) -> list[tuple[int, dict[str, float]]]:
    return [(epoch, logged) for epoch, sanity, logged in spawned["logged"][rank] if not sanity]


def _names(prefixes: list[str]) -> list[str]:
    return [f"{p}{s}" for p in prefixes for s in ("", "_lower", "_upper")]


@pytest.mark.ddp
def test_spawn_ranks_agree_and_run_one_bootstrap_per_validation(spawned):
    assert [e for e, _ in _epochs(spawned, 0)] == list(range(EPOCHS))
    for (e0, rank0), (e1, rank1) in zip(_epochs(spawned, 0), _epochs(spawned, 1)):
        assert e0 == e1 and rank0 == rank1  # one synced state and one seed: the same numbers on both ranks
    runs = EPOCHS  # no sanity check: the first epoch sees the states as pickled into the workers
    for counts in spawned["counts"]:
        assert set(counts) == {*METRICS, *(f"coll_{k}" for k in COLLECTION)}
        assert all(c == [runs, runs] for c in counts.values()), counts
    # the values (point estimates) of every metric equal one process on all the data
    for epoch, logged in _epochs(spawned, 0):
        ref = _reference(epoch)
        for name in [*RANKING, *CONFUSION, *GENERIC, "plain_acc"]:
            assert logged[name] == pytest.approx(ref[name], rel=0, abs=1e-6), (epoch, name)


@pytest.mark.ddp
def test_spawn_ranking_views_and_report_equal_one_process(spawned):
    for epoch, logged in _epochs(spawned, 0):
        ref = _reference(epoch)
        for name in _names(RANKING):
            assert logged[name] == pytest.approx(ref[name], rel=0, abs=1e-6), (epoch, name)
    last = _reference(EPOCHS - 1)
    for name in _names(RANKING):  # what the spawn launcher hands back to the main process
        assert spawned["main"][name] == pytest.approx(last[name], rel=0, abs=1e-6), name

    rank0, rank1 = spawned["report"]
    assert rank0["rows"] == rank1["rows"]
    assert [r["epoch"] for r in rank0["rows"]] == list(range(EPOCHS))
    for row in rank0["rows"]:
        ref = _reference(row["epoch"])
        for name in _names(RANKING):
            assert row[name] == pytest.approx(ref[name], rel=0, abs=1e-6), (row["epoch"], name)
        assert row["accumulation_factor"] == row["epoch"] + 1
    # only rank 0 plots, under the default root dir (no logger)
    assert rank0["plot"] == str(spawned["dir"] / "interval_report.png") and rank1["plot"] is None
    assert Path(rank0["plot"]).is_file()


@pytest.mark.ddp
def test_spawn_confusion_bounds_equal_one_process(spawned):
    for epoch, logged in _epochs(spawned, 0):
        ref = _reference(epoch)
        for name in _names(CONFUSION):
            assert logged[name] == pytest.approx(ref[name], rel=0, abs=1e-6), (epoch, name)


@pytest.mark.ddp
def test_spawn_generic_bounds_equal_one_process(spawned):
    for epoch, logged in _epochs(spawned, 0):
        ref = _reference(epoch)
        for name in _names(GENERIC):
            assert logged[name] == pytest.approx(ref[name], rel=0, abs=1e-6), (epoch, name)
