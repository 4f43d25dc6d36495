"""``IntervalReport``: the per-epoch table, best-epoch sentence and band plot of logged confidence intervals.

It works with any ``LightningModule`` that logs triples ``X``, ``X_lower``, ``X_upper`` (for example through
:meth:`BootstrapMetric.loggable`, :func:`lightning_ci.loggable` or :func:`to_log_dict`): it reads them from
``trainer.callback_metrics`` after every validation epoch and reports at the end of ``fit``.
"""

from __future__ import annotations

import math
import os
import re
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Callable, Optional, Union

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor

__all__ = ["IntervalReport"]

TRAIN_EPOCH_KEYS = ("accumulation_factor", "effective_batch_size")
PLOT_FILENAME = "interval_report.png"
_DATALOADER_SUFFIX = re.compile(r"(.+)(/dataloader_idx_\d+)")
_COLORS = ("tab:blue", "tab:green", "tab:purple", "tab:orange", "tab:red", "tab:brown", "tab:pink", "tab:olive")

Row = dict[str, float]


def _scalar(value: Any) -> Optional[float]:
    """A logged value as a float (``None`` for anything that is not one number)."""
    if isinstance(value, Tensor):
        return float(value.detach().cpu().reshape(-1)[0]) if value.numel() == 1 else None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _is_nan(value: Optional[float]) -> bool:
    return value is None or math.isnan(value)


def _with_dataloader_names(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """With several validation dataloaders Lightning logs ``X/dataloader_idx_0`` and ``X_lower/dataloader_idx_0``:
    add them as ``X/dataloader_idx_0`` and ``X/dataloader_idx_0_lower``, so that they form a triple."""
    out = dict(metrics)
    for key, value in metrics.items():
        match = _DATALOADER_SUFFIX.fullmatch(key)
        if match:
            base, suffix = match.groups()
            for tail in ("_lower", "_upper", "_std"):
                if base.endswith(tail):
                    out.setdefault(f"{base[: -len(tail)]}{suffix}{tail}", value)
    return out


def format_level(confidence_level: Optional[float]) -> str:
    """``0.95`` -> ``"95%"``, ``0.975`` -> ``"97.5%"``; ``None`` -> ``""``."""
    if confidence_level is None:
        return ""
    return f"{round(100 * confidence_level, 6):g}%"


class IntervalReport(Callback):
    r"""Report the logged confidence intervals of every validation epoch: a table, a sentence and a plot.

    After each validation epoch (not the sanity check) it records every logged triple ``X``, ``X_lower``,
    ``X_upper`` of ``trainer.callback_metrics`` (and ``X_std`` when logged), plus ``accumulation_factor`` and
    ``effective_batch_size`` of that epoch when they are logged (``AccumulationScheduler`` logs them at the end
    of each training epoch), as one dict per epoch in :attr:`rows`. At the end of ``fit``, on global rank 0, it
    prints the table and the best-epoch sentence for ``monitor`` and writes the band plot as a PNG
    (:attr:`plot_path`). matplotlib is optional: without it, one line says so and no plot is written.

    The best-epoch sentence applies the overlap rule: it says whether the best epoch's interval overlaps those
    of the other epochs. Overlap is a conservative test; to put a sharper verdict in its place (for example a
    paired comparison on the same examples), pass ``comparison`` or override :meth:`comparison_sentence`.

    Under ``ddp_spawn`` / ``ddp_notebook`` the callback runs in the worker processes: rank 0 prints and plots
    there, and the main process's copy keeps no rows.

    Args:
        monitor: the metric whose best epoch is named and starred; ``None`` takes the first triple recorded.
        mode: ``"max"`` or ``"min"``: whether higher or lower values of ``monitor`` are better. Ties go to the
            first epoch, as ``ModelCheckpoint`` keeps it.
        plot: write the band plot at the end of ``fit``.
        path: the PNG file, or a directory (existing, or a path without a suffix) to put ``interval_report.png``
            in. Default: ``interval_report.png`` in ``trainer.log_dir`` (``default_root_dir`` without a logger).
        metrics: the triples to report, in this order (a name ``X`` also selects ``X_0``, ``X_1``, ... of a
            vector metric); ``None`` reports every triple logged, in logging order.
        confidence_level: the level printed in the labels, e.g. ``0.975`` gives "97.5%". ``None`` takes the
            level of the module's :class:`~lightning_ci.BootstrapMetric`\ s when they share one (else no level
            is printed).
        extra_metrics: other logged scalars to record and show as columns (e.g. ``"train_loss_epoch"``); a
            value counts for an epoch when it was logged during that epoch's training or validation.
        comparison: ``comparison(best_row, other_rows) -> str`` replaces the overlap rule in the sentence
            (``best_row`` and ``other_rows`` are rows of :attr:`rows`, each with its ``"epoch"``).
        verbose: print the report at the end of ``fit``.
        digits: decimals in the table and the sentence.

    Raises:
        ValueError: for an unknown ``mode``, a ``confidence_level`` outside ``(0, 1)`` or negative ``digits``.
        TypeError: for arguments of the wrong type.

    Example:
        In a fit: ``Trainer(callbacks=[IntervalReport(monitor="val_acc")]).fit(model)``. The pieces it prints:

        >>> report = IntervalReport(monitor="val_acc", plot=False, confidence_level=0.95)
        >>> report.rows = [
        ...     {"epoch": 0, "val_acc": 0.80, "val_acc_lower": 0.75, "val_acc_upper": 0.85},
        ...     {"epoch": 1, "val_acc": 0.90, "val_acc_lower": 0.86, "val_acc_upper": 0.94},
        ... ]
        >>> print(report.format_table())
        epoch               val_acc
        -----  --------------------
           0   0.800 [0.750, 0.850]
           1*  0.900 [0.860, 0.940]
        value [lower, upper] = metric [95% bootstrap interval]; * = best epoch by val_acc
        >>> print(report.best_epoch_sentence())  # doctest: +NORMALIZE_WHITESPACE
        The best epoch by val_acc is epoch 1, 0.900 [0.860, 0.940]. Its 95% interval overlaps no other epoch's,
        so it is distinguishable from all of them on this validation set.
    """

    def __init__(
        self,
        monitor: Optional[str] = None,
        mode: str = "max",
        plot: bool = True,
        path: Optional[Union[str, os.PathLike]] = None,
        *,
        metrics: Optional[Sequence[str]] = None,
        confidence_level: Optional[float] = None,
        extra_metrics: Sequence[str] = (),
        comparison: Optional[Callable[[Row, list[Row]], str]] = None,
        verbose: bool = True,
        digits: int = 3,
    ) -> None:
        if monitor is not None and not isinstance(monitor, str):
            raise TypeError(f"Expected argument `monitor` to be a string or None but received {monitor!r}")
        if mode not in ("max", "min"):
            raise ValueError(f"Expected argument `mode` to be 'max' or 'min' but received {mode!r}")
        if not isinstance(plot, bool):
            raise TypeError(f"Expected argument `plot` to be a bool but received {plot!r}")
        if path is not None and not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"Expected argument `path` to be a path or None but received {path!r}")
        if metrics is not None and (isinstance(metrics, str) or not all(isinstance(m, str) for m in metrics)):
            raise TypeError(f"Expected argument `metrics` to be a sequence of strings or None but received {metrics!r}")
        if isinstance(extra_metrics, str) or not all(isinstance(m, str) for m in extra_metrics):
            raise TypeError(
                f"Expected argument `extra_metrics` to be a sequence of strings but received {extra_metrics!r}"
            )
        if confidence_level is not None and (
            isinstance(confidence_level, bool)
            or not isinstance(confidence_level, (int, float))
            or not 0 < confidence_level < 1
        ):
            raise ValueError(
                f"Expected argument `confidence_level` to be a float in (0, 1) or None but received {confidence_level}"
            )
        if comparison is not None and not callable(comparison):
            raise TypeError(f"Expected argument `comparison` to be callable or None but received {comparison!r}")
        if not isinstance(verbose, bool):
            raise TypeError(f"Expected argument `verbose` to be a bool but received {verbose!r}")
        if isinstance(digits, bool) or not isinstance(digits, int) or digits < 0:
            raise ValueError(f"Expected argument `digits` to be a non-negative integer but received {digits!r}")
        self.monitor = monitor
        self.mode = mode
        self.plot = plot
        self.path = None if path is None else Path(path)
        self.metrics = None if metrics is None else list(metrics)
        self.confidence_level = None if confidence_level is None else float(confidence_level)
        self.extra_metrics = list(extra_metrics)
        self.comparison = comparison
        self.verbose = verbose
        self.digits = digits
        self.rows: list[Row] = []
        self.plot_path: Optional[Path] = None
        self.text: Optional[str] = None
        self._level_given = confidence_level is not None
        self._interval_word = "bootstrap interval"  # "interval" when the module has no BootstrapMetric
        self._default_dir: Optional[Path] = None
        self._pending: Optional[int] = None  # the epoch whose training-epoch values are still to come
        self._snapshot: dict[str, Any] = {}  # callback_metrics at the start of the training epoch

    @property
    def state_key(self) -> str:
        return self._generate_state_key(monitor=self.monitor, mode=self.mode)

    # ------------------------------------------------------------------------------------------ Lightning hooks
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        from lightning_ci.bootstrap import BootstrapMetric

        bootstraps = [m for m in pl_module.modules() if isinstance(m, BootstrapMetric)]
        self._interval_word = "bootstrap interval" if bootstraps else "interval"
        if not self._level_given:
            levels = {m.confidence_level for m in bootstraps}
            self.confidence_level = levels.pop() if len(levels) == 1 else None
        if stage == "fit" and self.plot and self.path is None:
            log_dir = trainer.log_dir  # a collective under DDP: resolve it here, where every rank runs
            self._default_dir = Path(log_dir if log_dir else trainer.default_root_dir)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._finalize(trainer)
        self._snapshot = _with_dataloader_names(trainer.callback_metrics)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        fitting = trainer.state.fn == TrainerFn.FITTING
        metrics = _with_dataloader_names(trainer.callback_metrics)
        fresh = {k: v for k, v in metrics.items() if not (fitting and self._snapshot.get(k) is v)}
        row: Row = {"epoch": trainer.current_epoch}
        for name in self._triples(fresh):
            for key in (name, f"{name}_lower", f"{name}_upper", f"{name}_std"):
                value = _scalar(metrics.get(key))
                if value is not None:
                    row[key] = value
        if fitting:
            self._pending = trainer.current_epoch
        else:
            for key in (*TRAIN_EPOCH_KEYS, *self.extra_metrics):
                value = _scalar(fresh.get(key))
                if value is not None:
                    row[key] = value
        self.rows = [r for r in self.rows if r["epoch"] != row["epoch"]] + [row]  # one row per epoch: the last
        self.rows.sort(key=lambda r: r["epoch"])

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._finalize(trainer)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._finalize(trainer)
        if not trainer.is_global_zero:
            return
        lines = [self.summary()]
        if self.plot:
            path = self._plot_file()
            if path is None:
                lines.append("IntervalReport: no directory for the plot (pass `path=`); no plot written.")
            else:
                written = self.save_plot(path)
                lines.append(
                    f"plot: {written}"
                    if written
                    else "IntervalReport: matplotlib is not installed, so no plot was written (pip install matplotlib)."
                )
        self.text = "\n".join(lines)
        if self.verbose:
            print("\n" + self.text, flush=True)

    def state_dict(self) -> dict[str, Any]:
        return {"rows": [dict(r) for r in self.rows]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = [dict(r) for r in state_dict.get("rows", [])]
        self._pending = None  # the training-epoch values of a restored epoch are not in the new run's metrics

    # ------------------------------------------------------------------------------------------------ records
    def _select(self, available: list[str]) -> list[str]:
        """``available`` triples restricted to and ordered by ``metrics`` (``X`` also selects ``X_0``, ...)."""
        if self.metrics is None:
            return available
        chosen: list[str] = []
        for name in self.metrics:
            pattern = re.compile(rf"{re.escape(name)}_\d+")
            chosen += [name] if name in available else [k for k in available if pattern.fullmatch(k)]
        return chosen

    def _triples(self, metrics: Mapping[str, Any]) -> list[str]:
        return self._select([k for k in metrics if f"{k}_lower" in metrics and f"{k}_upper" in metrics])

    def _finalize(self, trainer: Trainer) -> None:
        """Add the training-epoch values (logged after validation, at the end of the epoch) to the pending row."""
        if self._pending is None:
            return
        row = next((r for r in self.rows if r["epoch"] == self._pending), None)
        self._pending = None
        if row is None:
            return
        for key, value in trainer.callback_metrics.items():
            if key in (*TRAIN_EPOCH_KEYS, *self.extra_metrics) and self._snapshot.get(key) is not value:
                number = _scalar(value)
                if number is not None:
                    row[key] = number

    def names(self) -> list[str]:
        """The triples recorded, in the order they were first logged (or the order of ``metrics``)."""
        seen: dict[str, None] = {}
        for r in self.rows:
            for k in r:
                if f"{k}_lower" in r and f"{k}_upper" in r:
                    seen.setdefault(k, None)
        return self._select(list(seen))

    def monitored(self) -> Optional[str]:
        """``monitor``, or the first triple recorded when ``monitor`` is None."""
        if self.monitor is not None:
            return self.monitor
        names = self.names()
        return names[0] if names else None

    def best_epoch(self) -> Optional[int]:
        """The epoch with the best ``monitor`` value (the first on ties; NaN values never win), or ``None``."""
        monitor = self.monitored()
        candidates = [r for r in self.rows if monitor is not None and not _is_nan(r.get(monitor))]
        if not candidates:
            return None
        pick = max if self.mode == "max" else min
        return int(pick(candidates, key=lambda r: r[monitor])["epoch"])

    # ------------------------------------------------------------------------------------------------- text
    def _num(self, value: Optional[float]) -> str:
        if value is None:
            return "-"
        if math.isnan(value):
            return "n/a"
        small = 10.0**-self.digits
        if value == 0 or small <= abs(value) < 1e6:
            return f"{value:.{self.digits}f}"
        return f"{value:.{max(self.digits, 1)}g}"

    def format_interval(self, row: Row, name: str) -> str:
        """``"value [lower, upper]"`` of ``name`` in ``row``; NaN shows as ``n/a``, a missing metric as ``-``."""
        if name not in row:
            return "-"
        return f"{self._num(row[name])} [{self._num(row.get(name + '_lower'))}, {self._num(row.get(name + '_upper'))}]"

    def format_table(self) -> str:
        """The plain-text table: one row per epoch, each triple as ``value [lower, upper]``; ``*`` = best."""
        names = self.names()
        best = self.best_epoch()
        has_accum = any("accumulation_factor" in r for r in self.rows)
        has_eff = any("effective_batch_size" in r for r in self.rows)
        extras = [k for k in self.extra_metrics if any(k in r for r in self.rows)]
        header = ["epoch", *names, *(["accum"] if has_accum else []), *(["eff. batch"] if has_eff else []), *extras]
        body = []
        for r in self.rows:
            cells = [f"{r['epoch']}{'*' if r['epoch'] == best else ' '}", *(self.format_interval(r, n) for n in names)]
            if has_accum:
                factor = r.get("accumulation_factor")
                cells.append("-" if factor is None else ("n/a" if math.isnan(factor) else f"{factor:.0f}"))
            if has_eff:
                eff = r.get("effective_batch_size")
                cells.append("-" if eff is None else ("n/a" if math.isnan(eff) else f"{eff:.1f}"))
            cells += [self._num(r.get(k)) for k in extras]
            body.append(cells)
        widths = [max(len(x) for x in col) for col in zip(header, *body)]
        lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
        lines.append("  ".join("-" * w for w in widths))
        lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in body]
        level = format_level(self.confidence_level)
        legend = f"value [lower, upper] = metric [{level + ' ' if level else ''}{self._interval_word}]"
        monitor = self.monitored()
        if best is not None:
            legend += f"; * = best epoch by {monitor}" + (" (lowest)" if self.mode == "min" else "")
        if has_eff:
            legend += "; eff. batch = samples per optimizer step"
        lines.append(legend)
        return "\n".join(lines)

    def best_epoch_sentence(self) -> str:
        """Name the best epoch by ``monitor`` and compare it with the others (:meth:`comparison_sentence`)."""
        monitor = self.monitored()
        best_epoch = self.best_epoch()
        if monitor is None or best_epoch is None:
            what = "no interval was logged" if monitor is None else f"no epoch has a value for {monitor}"
            return f"No best epoch: {what}."
        best = next(r for r in self.rows if r["epoch"] == best_epoch)
        others = [r for r in self.rows if r["epoch"] != best_epoch and monitor in r]
        order = " (lowest)" if self.mode == "min" else ""
        head = f"The best epoch by {monitor}{order} is epoch {best_epoch}, {self.format_interval(best, monitor)}."
        if not others:
            return f"{head} It is the only epoch, so there is nothing to compare it with."
        return f"{head} {self.comparison_sentence(best, others)}"

    def comparison_sentence(self, best: Row, others: list[Row]) -> str:
        """What follows "The best epoch by X is ...": ``comparison(best, others)`` if given, else the overlap rule.

        Override this (or pass ``comparison``) to report, e.g., paired verdicts instead of interval overlap.
        """
        if self.comparison is not None:
            return str(self.comparison(best, others))
        return self.overlap_sentence(best, others)

    def overlap_sentence(self, best: Row, others: list[Row]) -> str:
        """The overlap rule: which other epochs' intervals overlap the best epoch's interval."""
        monitor = self.monitored()
        assert monitor is not None
        level = format_level(self.confidence_level)
        its = f"Its {level} interval" if level else "Its interval"
        lo, hi = best.get(f"{monitor}_lower"), best.get(f"{monitor}_upper")
        if _is_nan(lo) or _is_nan(hi):
            return f"{its} is not available (n/a), so it cannot be compared with the other epochs."

        def bounds(r: Row) -> Optional[tuple[float, float]]:
            low, up = r.get(f"{monitor}_lower"), r.get(f"{monitor}_upper")
            return None if _is_nan(low) or _is_nan(up) else (low, up)  # type: ignore[return-value]

        comparable = [(r["epoch"], bounds(r)) for r in others]
        missing = [e for e, b in comparable if b is None]
        overlapping = [e for e, b in comparable if b is not None and b[0] <= hi and lo <= b[1]]
        separate = [e for e, b in comparable if b is not None and e not in overlapping]
        note = (
            f" Epoch(s) {', '.join(map(str, missing))} have no interval (n/a) and are not compared." if missing else ""
        )
        if not overlapping and not separate:
            return f"No other epoch has an interval to compare with.{note}"
        if not overlapping:
            return (
                f"{its} overlaps no other epoch's, so it is distinguishable from all of them on this"
                f" validation set.{note}"
            )
        listed = ", ".join(map(str, overlapping))
        if not separate:
            return (
                f"{its} overlaps those of every other epoch ({listed}), so this validation set cannot tell it apart"
                f" from them: treat 'best' as a tie.{note}"
            )
        return (
            f"{its} overlaps those of epoch(s) {listed}, so it is not distinguishable from them, but not those of"
            f" epoch(s) {', '.join(map(str, separate))}, which it beats clearly.{note}"
        )

    def summary(self) -> str:
        """The table and the best-epoch sentence (what is printed at the end of ``fit``)."""
        if not self.rows:
            return "IntervalReport: no validation epoch was recorded."
        return f"{self.format_table()}\n\n{textwrap.fill(self.best_epoch_sentence(), width=110)}"

    # ------------------------------------------------------------------------------------------------- plot
    def _plot_file(self) -> Optional[Path]:
        path = self.path if self.path is not None else self._default_dir
        if path is None:
            return None
        return path / PLOT_FILENAME if self.path is None or path.is_dir() or not path.suffix else path

    def figure(self) -> Any:
        """The band plot as a matplotlib ``Figure`` (made without pyplot, so no global backend is touched): one
        panel per triple, the value with its interval as a band over epochs, the best epoch starred and the
        accumulation factor as a dashed step line when logged.

        Raises:
            ModuleNotFoundError: if matplotlib is not installed.
        """
        from matplotlib.figure import Figure

        names = self.names()
        best_epoch = self.best_epoch()
        epochs = [r["epoch"] for r in self.rows]
        ncols = max(1, min(3, len(names)))
        nrows = max(1, math.ceil(len(names) / ncols))
        height = 3.4 * nrows + 0.6
        fig = Figure(figsize=(4.2 * ncols, height))
        axes = fig.subplots(nrows, ncols, squeeze=False).reshape(-1)
        level = format_level(self.confidence_level)
        band_label = f"{level} interval" if level else "interval"
        factors = [r.get("accumulation_factor", math.nan) for r in self.rows]
        show_factor = any(not math.isnan(f) for f in factors)
        handles: list[Any] = []
        for i, ax in enumerate(axes):
            if i >= len(names):
                ax.set_visible(False)
                continue
            name = names[i]
            color = _COLORS[i % len(_COLORS)]
            pts = [r for r in self.rows if name in r]
            x = [float(r["epoch"]) for r in pts]
            lower = [r.get(f"{name}_lower", math.nan) for r in pts]
            upper = [r.get(f"{name}_upper", math.nan) for r in pts]
            if len(pts) == 1:  # one epoch: a band of visible width around it
                band_x, lower, upper = [x[0] - 0.2, x[0] + 0.2], lower * 2, upper * 2
            else:
                band_x = x
            band = ax.fill_between(band_x, lower, upper, color=color, alpha=0.2, label=band_label)
            (line,) = ax.plot(x, [r[name] for r in pts], "o-", color=color, label="value")
            panel = [line, band]
            if best_epoch is not None and any(r["epoch"] == best_epoch for r in pts):
                best = next(r for r in pts if r["epoch"] == best_epoch)
                (star,) = ax.plot(
                    [best_epoch],
                    [best[name]],
                    marker="*",
                    markersize=14,
                    color="gold",
                    markeredgecolor="k",
                    linestyle="none",
                    label=f"best epoch by {self.monitored()}",
                )
                panel.append(star)
            ax.set_title(name)
            ax.set_xlabel("epoch")
            ax.set_xticks(epochs)
            if len(epochs) == 1:
                ax.set_xlim(epochs[0] - 0.5, epochs[0] + 0.5)
            ax.grid(alpha=0.3)
            if show_factor:
                twin = ax.twinx()
                if len(epochs) == 1:
                    (step,) = twin.plot(
                        [epochs[0] - 0.2, epochs[0] + 0.2],
                        factors * 2,
                        color="0.4",
                        linestyle="--",
                        label="accumulation factor",
                    )
                else:
                    (step,) = twin.step(
                        epochs, factors, where="mid", color="0.4", linestyle="--", label="accumulation factor"
                    )
                twin.set_ylim(0, max([f for f in factors if not math.isnan(f)] + [1]) * 1.25)
                twin.set_ylabel("accumulation factor", color="0.4")
                panel.append(step)
            if not handles:
                handles = panel
        if handles:
            fig.legend(
                handles,
                [h.get_label() for h in handles],
                loc="lower center",
                ncol=len(handles),
                fontsize=9,
                frameon=False,
            )
        title = f"Validation metrics with {level + ' ' if level else ''}{self._interval_word}s"
        fig.suptitle(title)
        fig.tight_layout(rect=(0, 0.5 / height, 1, 1))
        return fig

    def save_plot(self, path: Union[str, os.PathLike]) -> Optional[Path]:
        """Write :meth:`figure` to ``path`` (a PNG) and set :attr:`plot_path`.

        Returns:
            The path written, or ``None`` when matplotlib is not installed (then nothing is written).
        """
        try:
            fig = self.figure()
        except ImportError:
            self.plot_path = None
            return None
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
        self.plot_path = path
        return path
