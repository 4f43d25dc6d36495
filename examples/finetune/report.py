"""The report: :class:`lightning_ci.IntervalReport`'s table, sentence and band plot, plus what only the example
knows: the number of validation texts, why a metric is n/a, and where the outputs are."""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_ci import IntervalReport
from lightning_ci.integration.report import format_level


def na_notes(undefined: dict[str, str]) -> list[str]:
    """One line per metric shown as n/a, with the reason."""
    return [f"n/a: {name} is undefined on this validation set: {reason}." for name, reason in undefined.items()]


def figure(interval_report: IntervalReport, title: str, undefined: dict[str, str]) -> Any:
    """The report's band plot with the example's title; an undefined metric's panel says n/a and why.

    Raises:
        ImportError: without matplotlib.
    """
    fig = interval_report.figure()
    for ax in fig.axes:
        name = ax.get_title()
        if name in undefined:
            ax.text(0.5, 0.5, "n/a\n" + textwrap.fill(undefined[name], 34), transform=ax.transAxes, ha="center",
                    va="center", fontsize=8, color="0.3")  # fmt: skip
    fig.suptitle(title)
    return fig


def plot(interval_report: IntervalReport, path: Path, title: str, undefined: dict[str, str]) -> bool:
    """Write :func:`figure` to ``path``; ``False`` (and nothing written) without matplotlib."""
    try:
        fig = figure(interval_report, title, undefined)
    except ImportError:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return True


def report(
    interval_report: IntervalReport,
    checkpoint: ModelCheckpoint,
    args: argparse.Namespace,
    out: Path,
    n_val: int,
    undefined: dict[str, str],
) -> None:
    """Print the table and the sentence, and write the PNG and ``summary.txt`` (rank 0 only)."""
    if not interval_report.rows:
        print("No validation epoch completed: nothing to report.", file=sys.stderr)
        return
    metrics_csv = out / "csv" / "metrics.csv"
    png = out / "validation_metrics.png"
    level = format_level(args.confidence_level)
    title = f"Validation metrics with {level} bootstrap intervals ({n_val} texts)"
    lines = [interval_report.format_table(), *na_notes(undefined), ""]
    lines.append(textwrap.fill(interval_report.best_epoch_sentence(), width=110))
    lines += ["", f"best checkpoint: {checkpoint.best_model_path or '(none)'}"]
    lines.append(f"plot: {png}" if plot(interval_report, png, title, undefined) else "plot: none (no matplotlib)")
    lines.append(f"logs: {metrics_csv}")
    text = "\n".join(lines)
    (out / "summary.txt").write_text(text + "\n", encoding="utf-8")
    print("\n" + text)
