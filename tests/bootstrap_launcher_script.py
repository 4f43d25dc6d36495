"""BootstrapMetric under a real Lightning launcher: ``python tests/bootstrap_launcher_script.py LAUNCHER OUT_DIR``.

LAUNCHER is ``ddp``, ``ddp_spawn`` or ``ddp_fork`` (2 CPU processes, gloo) or ``single`` (1 process). The script
runs ``Trainer.validate`` and then a 2-epoch ``Trainer.fit`` on one LightningModule that holds one
``BootstrapMetric`` (or ``PairedBootstrapMetric``, and grouped ones: ``update(..., groups=index // 3)``, so that
groups span the ranks) per check of ``CHECKS`` (every engine and resampling mode), updated in ``validation_step`` and
computed and reset in ``on_validation_epoch_end``. The validation loader is a plain ``DataLoader``: Lightning
wraps it in its own ``DistributedSampler``, which interleaves the samples across ranks (rank r reads r, r + 2, ...).
Every rank writes ``{stage}_epoch{e}_rank{r}.pt`` (check name -> result dict) into OUT_DIR.

``strategy="ddp"`` relaunches ``sys.argv``, so this must run as a script, never inside pytest's process;
``tests/test_bootstrap_launchers.py`` runs it in a subprocess per launcher and compares every result with
:func:`reference_results`, one process updated with all the data in natural order.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.strategies import DDPStrategy
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics import Metric
from torchmetrics.aggregation import MeanMetric
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryAUROC,
    BinaryAveragePrecision,
    BinaryCohenKappa,
    BinaryMatthewsCorrCoef,
    MulticlassAccuracy,
    MulticlassAUROC,
    MulticlassAveragePrecision,
    MulticlassF1Score,
    MulticlassJaccardIndex,
    MultilabelF1Score,
    MultilabelMatthewsCorrCoef,
)
from torchmetrics.regression import MeanSquaredError, SpearmanCorrCoef

from lightning_ci import BootstrapMetric, PairedBootstrapMetric

N = 640  # 320 samples per rank, 10 batches of 32
BATCH = 32
# issue 9's data: a binary confusion table (tn, fp, fn, tp) whose 2-process ddp_spawn bounds were wrong
ISSUE_TABLE = (226, 137, 169, 108)


def _data() -> dict[str, tuple[torch.Tensor, ...]]:
    """Inputs of every family, one row per sample of the shared index."""
    g = torch.Generator().manual_seed(2024)
    tn, fp, fn, tp = ISSUE_TABLE
    target = torch.cat([torch.zeros(tn + fp), torch.ones(fn + tp)]).long()
    pred = torch.cat([torch.zeros(tn), torch.ones(fp), torch.zeros(fn), torch.ones(tp)])
    perm = torch.randperm(N, generator=g)
    scores = 0.05 + 0.45 * pred + 0.45 * torch.rand(N, generator=g)  # above 0.5 exactly where pred is 1
    issue = (scores[perm], target[perm])

    y3 = torch.randint(3, (N,), generator=g)
    probs3 = (torch.randn(N, 3, generator=g) + 1.1 * torch.nn.functional.one_hot(y3, 3)).softmax(-1)
    # ties: scores on a grid of 8 values, the heavy-tie path of the ranking engine
    tied = (probs3[:, 0] * 8).floor() / 8
    y_ml = torch.randint(2, (N, 3), generator=g)
    p_ml = (0.35 * y_ml + 0.65 * torch.rand(N, 3, generator=g)).clamp(0, 1)
    x = torch.randn(N, generator=g)
    # model B for the paired checks: model A's predictions, with a tenth of them replaced by noise
    swap = torch.rand(N, generator=g) < 0.1
    scores_b = torch.where(swap, torch.rand(N, generator=g), probs3[:, 0])
    probs3_b = torch.where(swap[:, None], torch.rand(N, 3, generator=g).softmax(-1), probs3)
    p_ml_b = torch.where(swap[:, None], torch.rand(N, 3, generator=g), p_ml)
    return {
        "paired_binary": (probs3[:, 0], scores_b, (y3 == 0).long()),
        "paired_multiclass": (probs3, probs3_b, y3),
        "paired_multilabel": (p_ml, p_ml_b, y_ml),
        "paired_regression": (x + 0.6 * torch.randn(N, generator=g), x + 0.7 * torch.randn(N, generator=g), x),
        "issue": issue,
        "multiclass": (probs3, y3),
        "binary": (probs3[:, 0], (y3 == 0).long()),
        "tied": (tied, (y3 == 0).long()),
        "multilabel": (p_ml, y_ml),
        "regression": (x + 0.6 * torch.randn(N, generator=g), x),
        "mean": (x.abs(), torch.rand(N, generator=g) + 0.5),
    }


# name -> (data key, base metric factory, BootstrapMetric kwargs; B = 200 unless given); each must equal one process
CHECKS: dict[str, tuple[str, Callable[[], Metric], dict[str, Any]]] = {
    # confusion family
    "issue9_accuracy": ("issue", BinaryAccuracy, {"num_bootstraps": 500, "seed": 0}),
    "issue9_accuracy_percentile": ("issue", BinaryAccuracy, {"num_bootstraps": 500, "seed": 0, "method": "percentile"}),
    "binary_mcc_poisson": ("issue", BinaryMatthewsCorrCoef, {"seed": 1, "resampling": "poisson"}),
    "binary_kappa_bayesian": ("issue", BinaryCohenKappa, {"seed": 2, "resampling": "bayesian"}),
    "mc_f1_bca": ("multiclass", lambda: MulticlassF1Score(3), {"seed": 3}),
    "mc_f1_none_basic": ("multiclass", lambda: MulticlassF1Score(3, average=None), {"seed": 3, "method": "basic"}),
    "mc_acc_poisson": ("multiclass", lambda: MulticlassAccuracy(3), {"seed": 4, "resampling": "poisson"}),
    "mc_jaccard_bayesian": ("multiclass", lambda: MulticlassJaccardIndex(3), {"seed": 5, "resampling": "bayesian"}),
    "ml_f1_multinomial": ("multilabel", lambda: MultilabelF1Score(3), {"seed": 6}),
    "ml_f1_poisson": ("multilabel", lambda: MultilabelF1Score(3), {"seed": 6, "resampling": "poisson"}),
    "ml_f1_poisson_bca": (
        "multilabel",
        lambda: MultilabelF1Score(3),
        {"seed": 6, "resampling": "poisson", "method": "bca"},
    ),
    "ml_mcc_bayesian": ("multilabel", lambda: MultilabelMatthewsCorrCoef(3), {"seed": 7, "resampling": "bayesian"}),
    # ranking family: exact and binned thresholds
    "auroc_exact": ("binary", BinaryAUROC, {"seed": 8}),
    "auroc_exact_poisson": ("binary", BinaryAUROC, {"seed": 8, "resampling": "poisson"}),
    "auroc_tied_bayesian": ("tied", BinaryAUROC, {"seed": 9, "resampling": "bayesian"}),
    "ap_binned": ("binary", lambda: BinaryAveragePrecision(thresholds=11), {"seed": 10}),
    "auroc_binned_poisson": ("binary", lambda: BinaryAUROC(thresholds=11), {"seed": 11, "resampling": "poisson"}),
    "mc_auroc_exact": ("multiclass", lambda: MulticlassAUROC(3), {"seed": 12}),
    "mc_ap_binned": ("multiclass", lambda: MulticlassAveragePrecision(3, thresholds=9), {"seed": 13}),
    "mc_auroc_binned_poisson": (
        "multiclass",
        lambda: MulticlassAUROC(3, thresholds=9),
        {"seed": 14, "resampling": "poisson"},
    ),
    # generic path (slow: few replicates)
    "mse_generic": ("regression", MeanSquaredError, {"seed": 15, "num_bootstraps": 30}),
    "mse_generic_poisson": (
        "regression",
        MeanSquaredError,
        {"seed": 16, "num_bootstraps": 30, "resampling": "poisson"},
    ),
    "spearman_generic": ("regression", SpearmanCorrCoef, {"seed": 17, "num_bootstraps": 30}),
    "mean_generic_bayesian": ("mean", MeanMetric, {"seed": 18, "num_bootstraps": 30, "resampling": "bayesian"}),
    # issue 10: paired comparisons ("paired": True) on every engine; issue 11: groups spanning ranks ("grouped")
    "paired_acc": ("paired_binary", BinaryAccuracy, {"seed": 19, "paired": True}),
    "paired_mc_f1_poisson": (
        "paired_multiclass",
        lambda: MulticlassF1Score(3),
        {"seed": 20, "paired": True, "resampling": "poisson"},
    ),
    "paired_ml_f1_grouped": (
        "paired_multilabel",
        lambda: MultilabelF1Score(3),
        {"seed": 21, "paired": True, "grouped": True},
    ),
    "paired_auroc": ("paired_binary", BinaryAUROC, {"seed": 22, "paired": True}),
    "paired_mc_auroc_grouped_bayesian": (
        "paired_multiclass",
        lambda: MulticlassAUROC(3),
        {"seed": 23, "paired": True, "grouped": True, "resampling": "bayesian"},
    ),
    "paired_mse_generic": ("paired_regression", MeanSquaredError, {"seed": 24, "paired": True, "num_bootstraps": 30}),
    "grouped_acc": ("issue", BinaryAccuracy, {"seed": 25, "grouped": True}),
    "grouped_mc_f1_poisson": (
        "multiclass",
        lambda: MulticlassF1Score(3),
        {"seed": 26, "grouped": True, "resampling": "poisson"},
    ),
    "grouped_auroc_exact": ("binary", BinaryAUROC, {"seed": 27, "grouped": True}),
    "grouped_auroc_binned_bayesian": (
        "binary",
        lambda: BinaryAUROC(thresholds=11),
        {"seed": 28, "grouped": True, "resampling": "bayesian"},
    ),
    "grouped_mse_generic": ("regression", MeanSquaredError, {"seed": 29, "grouped": True, "num_bootstraps": 30}),
}
# the keys each kind of result has
PLAIN_KEYS = ("value", "lower", "upper", "std")
PAIRED_KEYS = ("value_a", "value_b", "difference", "lower", "upper", "std", "p_value")


def result_keys(name: str) -> tuple[str, ...]:
    return PAIRED_KEYS if CHECKS[name][2].get("paired") else PLAIN_KEYS


def make_metrics() -> dict[str, Any]:
    metrics = {}
    for name, (_, factory, kwargs) in CHECKS.items():
        cls = PairedBootstrapMetric if kwargs.get("paired") else BootstrapMetric
        options = {k: v for k, v in kwargs.items() if k not in ("paired", "grouped")}
        metrics[name] = cls(factory(), **{"num_bootstraps": 200, **options})
    return metrics


def update_all(metrics: dict[str, Any], data: dict[str, tuple[torch.Tensor, ...]], index: torch.Tensor) -> None:
    for name, (key, _, kwargs) in CHECKS.items():
        groups = {"groups": index // 3} if kwargs.get("grouped") else {}  # groups of 3 consecutive samples
        metrics[name].update(*(t[index] for t in data[key]), **groups)


def compute_all(metrics: dict[str, Any]) -> dict[str, dict[str, torch.Tensor]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the generic path's slowness warning, degenerate-replicate notes
        return {name: {k: v.detach().clone() for k, v in m.compute().items()} for name, m in metrics.items()}


def reference_results() -> dict[str, dict[str, torch.Tensor]]:
    """One process, all the data in natural order, batches of ``BATCH``."""
    data = _data()
    metrics = make_metrics()
    for start in range(0, N, BATCH):
        update_all(metrics, data, torch.arange(start, min(N, start + BATCH)))
    return compute_all(metrics)


class Module(LightningModule):
    """Updates every check's metric in ``validation_step``; computes, saves and resets them at epoch end."""

    def __init__(self, out_dir: str, stage: str) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.metrics = torch.nn.ModuleDict(make_metrics())
        self.data = _data()
        self.out_dir = out_dir
        self.stage = stage

    def training_step(self, batch, batch_idx):
        return (self.weight - 1.0).pow(2).sum()

    def validation_step(self, batch, batch_idx):
        (index,) = batch
        update_all(self.metrics, self.data, index)

    def on_validation_epoch_end(self):
        results = compute_all(self.metrics)
        for m in self.metrics.values():
            m.reset()
        path = Path(self.out_dir) / f"{self.stage}_epoch{self.current_epoch}_rank{self.global_rank}.pt"
        torch.save(results, path)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def main(launcher: str, out_dir: str) -> None:
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    loader = DataLoader(TensorDataset(torch.arange(N)), batch_size=BATCH, shuffle=False)

    def trainer(**kwargs: Any) -> Trainer:
        if launcher == "single":
            devices, strategy = 1, "auto"
        else:  # a fresh strategy per Trainer: a strategy instance keeps the accelerator it was set up with
            start_method = {"ddp": "popen", "ddp_spawn": "spawn", "ddp_fork": "fork"}[launcher]
            devices, strategy = 2, DDPStrategy(process_group_backend="gloo", start_method=start_method)
        return Trainer(
            accelerator="cpu",
            devices=devices,
            strategy=strategy,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            **kwargs,
        )

    trainer().validate(Module(out_dir, "validate"), loader, verbose=False)
    fit = trainer(max_epochs=2, limit_train_batches=2, num_sanity_val_steps=0)
    fit.fit(Module(out_dir, "fit"), train_dataloaders=loader, val_dataloaders=loader)
    if int(os.environ.get("LOCAL_RANK", "0")) == 0:
        (Path(out_dir) / f"done_{launcher}").write_text("ok")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
