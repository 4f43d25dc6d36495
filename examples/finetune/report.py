"""The report: table, sentence and plot of the validation intervals."""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path
from typing import Optional

from lightning.pytorch.callbacks import ModelCheckpoint

from finetune import METRICS


def read_epoch_metrics(metrics_csv: Path) -> list[dict[str, float]]:
    """One dict per epoch from the CSVLogger file (values logged in several rows of an epoch are merged)."""
    epochs: dict[int, dict[str, float]] = {}
    with metrics_csv.open(newline="") as fh:
        for row in csv.DictReader(fh):
            if not row.get("epoch"):
                continue
            merged = epochs.setdefault(int(float(row["epoch"])), {})
            merged.update({k: float(v) for k, v in row.items() if v not in ("", None)})
    return [epochs[e] | {"epoch": e} for e in sorted(epochs)]


def fmt_interval(row: dict[str, float], name: str) -> str:
    if name not in row:
        return "-"
    return f"{row[name]:.3f} [{row.get(name + '_lower', math.nan):.3f}, {row.get(name + '_upper', math.nan):.3f}]"


def format_table(rows: list[dict[str, float]], best_epoch: Optional[int], confidence_level: float) -> str:
    """A plain-text table: one row per epoch, each metric as ``value [lower, upper]``."""
    header = ["epoch", *METRICS, "accum", "eff. batch", "train_loss"]
    body = []
    for r in rows:
        mark = "*" if r["epoch"] == best_epoch else " "
        body.append(
            [
                f"{r['epoch']}{mark}",
                *(fmt_interval(r, m) for m in METRICS),
                f"{r['accumulation_factor']:.0f}" if "accumulation_factor" in r else "-",
                f"{r['effective_batch_size']:.1f}" if "effective_batch_size" in r else "-",
                f"{r['train_loss_epoch']:.4f}" if "train_loss_epoch" in r else "-",
            ]
        )
    widths = [max(len(x) for x in col) for col in zip(header, *body)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in body]
    lines.append(
        f"value [lower, upper] = metric [{confidence_level:.0%} bootstrap interval]; * = best checkpoint;"
        " eff. batch = samples per optimizer step"
    )
    return "\n".join(lines)


def overlap_sentence(rows: list[dict[str, float]], monitor: str, best_epoch: int, confidence_level: float) -> str:
    """Say whether the best epoch's interval overlaps those of the other epochs."""
    best = next(r for r in rows if r["epoch"] == best_epoch)
    lo, hi = best[f"{monitor}_lower"], best[f"{monitor}_upper"]
    others = [r for r in rows if r["epoch"] != best_epoch and monitor in r]
    head = f"The best epoch by {monitor} is epoch {best_epoch}, {fmt_interval(best, monitor)}."
    if not others:
        return f"{head} It is the only epoch, so there is nothing to compare it with."
    overlapping = [r["epoch"] for r in others if r[f"{monitor}_lower"] <= hi and lo <= r[f"{monitor}_upper"]]
    separate = [r["epoch"] for r in others if r["epoch"] not in overlapping]
    level = f"{confidence_level:.0%}"
    if not overlapping:
        return (
            f"{head} Its {level} interval overlaps no other epoch's, so it is distinguishable from all of"
            " them on this validation set."
        )
    listed = ", ".join(map(str, overlapping))
    if not separate:
        return (
            f"{head} Its {level} interval overlaps those of every other epoch ({listed}), so this validation"
            " set cannot tell it apart from them: treat 'best' as a tie."
        )
    return (
        f"{head} Its {level} interval overlaps those of epoch(s) {listed}, so it is not distinguishable from"
        f" them, but not those of epoch(s) {', '.join(map(str, separate))}, which it beats clearly."
    )


def plot_metrics(
    rows: list[dict[str, float]], best_epoch: Optional[int], path: Path, title: str, confidence_level: float
) -> None:
    """Each validation metric with its confidence band over epochs, and the accumulation factor as steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, len(METRICS), figsize=(12, 3.8), sharex=True)
    for ax, (name, color) in zip(axes, zip(METRICS, ("tab:blue", "tab:green", "tab:purple"))):
        pts = [r for r in rows if name in r]
        x = [r["epoch"] for r in pts]
        ax.fill_between(
            x,
            [r[f"{name}_lower"] for r in pts],
            [r[f"{name}_upper"] for r in pts],
            color=color,
            alpha=0.2,
            label=f"{confidence_level:.0%} interval",
        )
        ax.plot(x, [r[name] for r in pts], "o-", color=color, label=name)
        if best_epoch is not None and any(r["epoch"] == best_epoch for r in pts):
            best = next(r for r in pts if r["epoch"] == best_epoch)
            ax.plot(
                [best_epoch],
                [best[name]],
                marker="*",
                markersize=14,
                color="gold",
                markeredgecolor="k",
                linestyle="none",
                label="best checkpoint",
            )
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.set_xticks(epochs)
        ax.grid(alpha=0.3)
        twin = ax.twinx()  # accumulation factor: a step line on the right axis
        factors = [r.get("accumulation_factor", math.nan) for r in rows]
        twin.step(epochs, factors, where="mid", color="0.4", linestyle="--", label="accumulation factor")
        twin.set_ylim(0, max([f for f in factors if f == f] + [1]) * 1.25)
        twin.set_ylabel("accumulation factor", color="0.4")
        if ax is axes[0]:
            handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    # One legend below the panels (the first panel's colours), where it hides no data.
    labels = ["value" if h.get_label() in METRICS else h.get_label() for h in handles]
    fig.legend(handles, labels, loc="lower center", ncol=len(handles), fontsize=9, frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def report(checkpoint: ModelCheckpoint, args: argparse.Namespace, out: Path, n_val: int) -> None:
    """Print the table and the sentence, and write the PNG and ``summary.txt`` (rank 0 only)."""
    metrics_csv = out / "csv" / "metrics.csv"
    rows = [r for r in read_epoch_metrics(metrics_csv) if args.monitor in r]
    if not rows:
        print("No validation epoch completed: nothing to report.", file=sys.stderr)
        return
    best = max(rows, key=lambda r: r[args.monitor])  # the first maximum, as ModelCheckpoint keeps it
    best_epoch = int(best["epoch"])
    table = format_table(rows, best_epoch, args.confidence_level)
    sentence = overlap_sentence(rows, args.monitor, best_epoch, args.confidence_level)
    png = out / "validation_metrics.png"
    title = f"Validation metrics with {args.confidence_level:.0%} bootstrap intervals ({n_val} texts)"
    plot_metrics(rows, best_epoch, png, title, args.confidence_level)
    text = "\n".join(
        [
            table,
            "",
            sentence,
            "",
            f"best checkpoint: {checkpoint.best_model_path}",
            f"plot: {png}",
            f"logs: {metrics_csv}",
        ]
    )
    (out / "summary.txt").write_text(text + "\n", encoding="utf-8")
    print("\n" + text)
