"""Training curves: MiniLM finetuned with micro-batch b and factor k, against batch b·k and factor 1.

It reuses the example (``examples/finetune_text_classifier.py``): its data loading, ``Collate``,
``TextDataset`` and ``TextClassifier`` (AdamW, linear warmup-then-decay sized by ``total_optimizer_steps``,
``BootstrapMetric`` accuracy, macro-F1 and AUROC with intervals at every validation).

Pairing: both runs of a pair start from the same weights (the packaged all-MiniLM-L6-v2 encoder and a
classification head drawn from ``seed``), see the training samples in the same order (one
``torch.Generator`` seeded with ``seed`` drives the shuffling, and a shuffled order does not depend on the
batch size), make the same number of optimizer steps under the same LR schedule, and are validated at the
same optimizer steps on the same validation set with the same bootstrap seed. The only differences are

- float32 rounding: other batch shapes (a micro-batch is padded to its own longest text, a large batch to
  the longest of 32), another summation order of the gradient;
- dropout: the masks are drawn from the global RNG per forward pass, so 4 passes over 8 texts draw other
  masks than 1 pass over 32 texts.

A second pair with every dropout probability set to 0 isolates the rounding; a control run (batch b·k, the
same head and sample order, but the global RNG that draws the dropout masks seeded with ``seed + 1``) shows
how far two large-batch runs drift apart on other dropout masks alone.
"""

from __future__ import annotations

import copy
import importlib.util
import math
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import lightning.pytorch as pl
import torch
from lightning.pytorch import Callback
from torch.utils.data import DataLoader

from lightning_ci import AccumulationScheduler

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "finetune_text_classifier.py"


def load_example() -> Any:
    """Import the example script as a module (it is not a package)."""
    name = "finetune_text_classifier"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, EXAMPLE)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[name] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@dataclass
class CurveConfig:
    n_train: int = 384  # a seeded subset of the 2,000 training texts; a multiple of b·k·checks_per_epoch
    n_val: int = 300  # a seeded subset of the 600 validation texts
    max_length: int = 48
    epochs: int = 3
    micro_batch: int = 8
    factor: int = 4
    checks_per_epoch: int = 2  # validations per epoch, at the same optimizer steps in both runs
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    num_bootstraps: int = 1000
    confidence_level: float = 0.95
    seed: int = 42
    val_batch: int = 64
    dropout_off_pair: bool = True
    seed_control: bool = True  # the dropout-seed control run

    @property
    def steps_per_epoch(self) -> int:
        return self.n_train // (self.micro_batch * self.factor)

    def check(self) -> None:
        big = self.micro_batch * self.factor * self.checks_per_epoch
        if self.n_train % big:
            raise ValueError(f"n_train={self.n_train} must be a multiple of b*k*checks_per_epoch={big}")


class Recorder(Callback):
    """Validation metrics at each validation (keyed by optimizer step) and the LR of every optimizer step."""

    def __init__(self) -> None:
        self.points: list[dict[str, float]] = []
        self.lrs: list[float] = []

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: Any, optimizer: Any) -> None:
        self.lrs.append(optimizer.param_groups[0]["lr"])

    def on_validation_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if trainer.sanity_checking:
            return
        point = {"step": trainer.global_step, "epoch": trainer.current_epoch}
        point.update({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val_")})
        self.points.append(point)


def _no_dropout(model: torch.nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0


def _flat(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def run_curves(cfg: CurveConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    cfg.check()
    ex = load_example()
    data = ex.load_text_splits(str(ex.DATA_DIR), "text", "label", cfg.seed)
    train_texts, train_labels = ex.subsample(data.train_texts, data.train_labels, cfg.n_train, cfg.seed)
    val_texts, val_labels = ex.subsample(data.val_texts, data.val_labels, cfg.n_val, cfg.seed + 1)
    template, tokenizer = ex.load_model(ex.default_model_path(), data.num_labels)
    init_range = template.config.initializer_range
    collate = ex.Collate(tokenizer, cfg.max_length)
    val_loader = DataLoader(ex.TextDataset(val_texts, val_labels), batch_size=cfg.val_batch, collate_fn=collate)

    def one_run(batch: int, factor: int, seed: int, dropout: bool, dropout_seed: int) -> dict[str, Any]:
        pl.seed_everything(dropout_seed, workers=True, verbose=False)  # the global RNG: dropout masks
        model = copy.deepcopy(template)
        with torch.no_grad():  # the head, drawn from `seed` as transformers initialises it
            g = torch.Generator().manual_seed(seed)
            model.classifier.weight.copy_(torch.randn(model.classifier.weight.shape, generator=g) * init_range)
            model.classifier.bias.zero_()
        if not dropout:
            _no_dropout(model)
        w0 = _flat(model)
        module = ex.TextClassifier(
            model,
            data.num_labels,
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            warmup_ratio=cfg.warmup_ratio,
            num_bootstraps=cfg.num_bootstraps,
            confidence_level=cfg.confidence_level,
            seed=cfg.seed,
        )
        loader = DataLoader(
            ex.TextDataset(train_texts, train_labels),
            batch_size=batch,
            shuffle=True,
            collate_fn=collate,
            generator=torch.Generator().manual_seed(seed),
        )
        recorder = Recorder()
        callbacks: list[Any] = [recorder]
        if factor > 1:
            callbacks.append(AccumulationScheduler({0: factor}))
        batches_per_epoch = cfg.n_train // batch
        trainer = pl.Trainer(
            accelerator="cpu",
            devices=1,
            precision="32-true",
            max_epochs=cfg.epochs,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            callbacks=callbacks,
            val_check_interval=batches_per_epoch // cfg.checks_per_epoch,
        )
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.fit(module, loader, val_loader)
        seconds = time.perf_counter() - t0
        label = f"b={batch}, k={factor}, seed {seed}, dropout {'on' if dropout else 'off'}"
        if dropout_seed != seed:
            label += f", dropout RNG seed {dropout_seed}"
        log(
            f"    {label}: {trainer.global_step} steps, {seconds:.0f} s, final val_acc"
            f" {recorder.points[-1].get('val_acc', math.nan):.4f}"
        )
        return {
            "label": label,
            "micro_batch": batch,
            "factor": factor,
            "seed": seed,
            "dropout": dropout,
            "dropout_seed": dropout_seed,
            "global_step": trainer.global_step,
            "seconds": seconds,
            "points": recorder.points,
            "lrs": recorder.lrs,
            "weights": _flat(module.model),
            "w0": w0,
        }

    b, k = cfg.micro_batch, cfg.factor
    s = cfg.seed
    plan: list[tuple[str, int, int, int, bool, int]] = [
        ("accumulated", b, k, s, True, s),
        ("large batch", b * k, 1, s, True, s),
    ]
    if cfg.dropout_off_pair:
        plan += [("accumulated, no dropout", b, k, s, False, s), ("large batch, no dropout", b * k, 1, s, False, s)]
    if cfg.seed_control:
        plan.append(("large batch, other dropout seed", b * k, 1, s, True, s + 1))
    runs = {}
    for name, batch, factor, seed, dropout, dropout_seed in plan:
        runs[name] = one_run(batch, factor, seed, dropout, dropout_seed)

    def pair(a: str, c: str) -> dict[str, Any]:
        ra, rc = runs[a], runs[c]
        dw = (ra["weights"] - rc["weights"]).abs().max().item()
        moved = (rc["weights"] - rc["w0"]).norm().item()
        rel = (ra["weights"] - rc["weights"]).norm().item() / moved if moved else math.nan
        metric_diffs = {
            m: max(abs(p[m] - q[m]) for p, q in zip(ra["points"], rc["points"]))
            for m in ("val_acc", "val_f1", "val_auroc", "val_loss")
            if m in ra["points"][0]
        }
        lr_diff = max((abs(x - y) for x, y in zip(ra["lrs"], rc["lrs"])), default=math.nan)
        return {
            "runs": [a, c],
            "max_abs_dw": dw,
            "rel_l2_dw": rel,
            "max_metric_diff": metric_diffs,
            "same_lr_schedule": len(ra["lrs"]) == len(rc["lrs"]) and lr_diff < 1e-12,
            "same_steps": ra["global_step"] == rc["global_step"],
        }

    pairs = {"dropout on": pair("accumulated", "large batch")}
    if cfg.dropout_off_pair:
        pairs["dropout off"] = pair("accumulated, no dropout", "large batch, no dropout")
    if cfg.seed_control:
        pairs["dropout-seed control"] = pair("large batch", "large batch, other dropout seed")
    for name, p in pairs.items():
        log(f"    {name}: max|dw|={p['max_abs_dw']:.2e} rel={p['rel_l2_dw']:.2e} {p['max_metric_diff']}")
    for r in runs.values():
        r.pop("weights")
        r.pop("w0")
    return {
        "config": asdict(cfg),
        "interval_method": default_method(),
        "steps_per_epoch": cfg.steps_per_epoch,
        "runs": runs,
        "pairs": pairs,
        "n_train": len(train_texts),
        "n_val": len(val_texts),
    }


def plot_curves(result: dict[str, Any], path: Path) -> None:
    """Validation accuracy and macro-F1 against optimizer step, with the bootstrap bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = result["config"]
    runs = result["runs"]
    rows = [("dropout on", "accumulated", "large batch")]
    if "accumulated, no dropout" in runs:
        rows.append(("dropout off", "accumulated, no dropout", "large batch, no dropout"))
    metrics = [("val_acc", "accuracy"), ("val_f1", "macro-F1")]
    fig, axes = plt.subplots(len(rows), len(metrics), figsize=(11, 3.6 * len(rows)), squeeze=False)
    b, k = cfg["micro_batch"], cfg["factor"]
    styles = {
        0: dict(color="tab:blue", marker="o", linestyle="-"),
        1: dict(color="tab:orange", marker="s", linestyle="--"),
    }
    for i, (title, a, c) in enumerate(rows):
        for j, (m, mname) in enumerate(metrics):
            ax = axes[i][j]
            for s, (name, lab) in enumerate(((a, f"micro-batch {b}, factor {k}"), (c, f"batch {b * k}, factor 1"))):
                pts = runs[name]["points"]
                x = [p["step"] for p in pts]
                ax.fill_between(
                    x,
                    [p[f"{m}_lower"] for p in pts],
                    [p[f"{m}_upper"] for p in pts],
                    color=styles[s]["color"],
                    alpha=0.15,
                )
                ax.plot(x, [p[m] for p in pts], label=lab, **styles[s])
            if i == 0 and "large batch, other dropout seed" in runs:
                pts = runs["large batch, other dropout seed"]["points"]
                ax.plot(
                    [p["step"] for p in pts],
                    [p[m] for p in pts],
                    color="0.5",
                    linestyle=":",
                    marker=".",
                    label=f"batch {b * k}, dropout RNG seed {cfg['seed'] + 1} (no band)",
                )
            ax.set_title(f"validation {mname}, {title}")
            ax.set_xlabel("optimizer step")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(
        f"MiniLM, {result['n_train']} train / {result['n_val']} validation texts, seed {cfg['seed']},"
        " one run per curve;"
        f" bands: {cfg['confidence_level']:.0%} bootstrap intervals (B={cfg['num_bootstraps']},"
        f" {result['interval_method']})",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def quick_config() -> CurveConfig:
    """A tiny slice for --quick: 64 texts, 1 epoch, 2 validations, one pair, 200 replicates."""
    return CurveConfig(
        n_train=64,
        n_val=64,
        epochs=1,
        checks_per_epoch=2,
        num_bootstraps=200,
        dropout_off_pair=False,
        seed_control=False,
    )


def default_method() -> Optional[str]:
    """The interval method the example's BootstrapMetric uses (its default), for the report."""
    import inspect

    from lightning_ci import BootstrapMetric

    return inspect.signature(BootstrapMetric.__init__).parameters["method"].default
