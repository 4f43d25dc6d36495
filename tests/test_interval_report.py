"""``IntervalReport``: rows from real fits, the table, the best-epoch sentence, the plot, resume."""

from __future__ import annotations

import math
import sys
import types
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from lightning_ci import AccumulationScheduler, BootstrapMetric, IntervalReport, to_log_dict
from lightning_ci.integration.report import PLOT_FILENAME, format_level
from tests.test_loggable import C, epoch_weights, make_data, set_epoch_weights


class ReportModule(LightningModule):
    """Validation accuracy (scalar) and per-class F1 (vector) logged with ``loggable``; weights fixed per epoch.

    ``val_once`` is logged (with bounds) in epoch 0 only: a later epoch's row must not repeat it.
    """

    def __init__(self, lr: float = 0.0) -> None:
        super().__init__()
        self.net = torch.nn.Linear(4, C)
        self.lr = lr
        self.val_acc = BootstrapMetric(MulticlassAccuracy(C), num_bootstraps=200, seed=1)
        self.val_f1 = BootstrapMetric(MulticlassF1Score(C, average=None), num_bootstraps=200, seed=2)

    def on_validation_epoch_start(self) -> None:
        set_epoch_weights(self.net, self.current_epoch)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        probs = self.net(x).softmax(-1)
        self.val_acc.update(probs, y)
        self.val_f1.update(probs, y)
        self.log_dict(self.val_acc.loggable("val_acc"), on_epoch=True)
        self.log_dict(self.val_f1.loggable("val_f1"), on_epoch=True)

    def on_validation_epoch_end(self) -> None:
        if self.current_epoch == 0 and not self.trainer.sanity_checking:
            self.log_dict({"val_once": 0.5, "val_once_lower": 0.4, "val_once_upper": 0.6})

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def loaders() -> tuple[DataLoader, DataLoader]:
    x, y = make_data()
    data = TensorDataset(x, y)
    return DataLoader(data, batch_size=16), DataLoader(data, batch_size=50)


def fit(report: IntervalReport, max_epochs: int = 3, **kwargs: Any) -> Trainer:
    callbacks = [report, *kwargs.pop("callbacks", [])]
    options: dict[str, Any] = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        max_epochs=max_epochs,
        callbacks=callbacks,
    )
    options.update(kwargs)
    trainer = Trainer(**options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(ReportModule(), *loaders())
    return trainer


def expected_row(epoch: int) -> dict[str, float]:
    x, y = make_data()
    weight, bias = epoch_weights(epoch)
    probs = (x @ weight.T + bias).softmax(-1)
    row: dict[str, float] = {"epoch": epoch}
    for name, metric in (
        ("val_acc", BootstrapMetric(MulticlassAccuracy(C), num_bootstraps=200, seed=1)),
        ("val_f1", BootstrapMetric(MulticlassF1Score(C, average=None), num_bootstraps=200, seed=2)),
    ):
        metric.update(probs, y)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a class F1 may be degenerate (the same in every replicate)
            row.update({k: float(v) for k, v in to_log_dict(metric.compute(), name).items()})
    return row


# ------------------------------------------------------------------------------------------------ real fits
def test_fit_records_rows_prints_the_report_and_writes_the_plot(tmp_path: Path, capsys):
    report = IntervalReport(monitor="val_acc")
    # factors 1, 2, 3: each row must carry its own epoch's factor, logged after validation, at epoch end
    fit(report, callbacks=[AccumulationScheduler({0: 1, 1: 2, 2: 3})], default_root_dir=tmp_path)

    assert [r["epoch"] for r in report.rows] == [0, 1, 2]  # the sanity check is not a row
    for row in report.rows:
        ref = expected_row(row["epoch"])
        extra = {"accumulation_factor", "effective_batch_size"} | (
            {"val_once", "val_once_lower", "val_once_upper"} if row["epoch"] == 0 else set()
        )
        assert set(row) == set(ref) | extra
        for key, value in ref.items():
            assert row[key] == pytest.approx(value, rel=0, abs=1e-7), (row["epoch"], key)
        assert row["accumulation_factor"] == row["epoch"] + 1
        # 200 samples in batches of 16 (13 batches): every window holds 16 samples but the last, short one
        steps = math.ceil(13 / (row["epoch"] + 1))
        assert row["effective_batch_size"] == pytest.approx(200 / steps)

    out = capsys.readouterr().out
    best = max(report.rows, key=lambda r: r["val_acc"])["epoch"]
    assert report.best_epoch() == best
    assert f"The best epoch by val_acc is epoch {best}," in out
    assert report.format_table() in out
    assert f"{best}* " in report.format_table()
    assert report.plot_path == tmp_path / PLOT_FILENAME and report.plot_path.stat().st_size > 10_000
    assert f"plot: {report.plot_path}" in out


def test_default_plot_path_is_the_loggers_log_dir(tmp_path: Path):
    report = IntervalReport()
    logger = CSVLogger(tmp_path, name="run")
    fit(report, max_epochs=1, logger=logger)
    assert report.plot_path == Path(logger.log_dir) / PLOT_FILENAME
    assert report.plot_path.is_file()
    assert report.monitored() == "val_acc"  # monitor=None: the first triple logged


def test_resume_keeps_the_rows(tmp_path: Path):
    first = IntervalReport(monitor="val_acc", plot=False, verbose=False)
    checkpoint = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    fit(first, max_epochs=2, callbacks=[checkpoint], enable_checkpointing=True)
    resumed = IntervalReport(monitor="val_acc", plot=False, verbose=False)
    trainer = Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        max_epochs=3,
        callbacks=[resumed, ModelCheckpoint(dirpath=tmp_path / "2")],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(ReportModule(), *loaders(), ckpt_path=tmp_path / "last.ckpt")
    assert [r["epoch"] for r in resumed.rows] == [0, 1, 2]
    assert resumed.rows[:2] == first.rows
    assert resumed.rows[2]["val_acc"] == pytest.approx(expected_row(2)["val_acc"], abs=1e-7)


def test_validate_records_a_row_and_prints_nothing(capsys):
    report = IntervalReport()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Trainer(
            accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False, callbacks=[report]
        ).validate(ReportModule(), loaders()[1], verbose=False)
    assert [r["epoch"] for r in report.rows] == [0]
    assert report.rows[0]["val_acc"] == pytest.approx(expected_row(0)["val_acc"], abs=1e-7)
    assert capsys.readouterr().out == ""


# ------------------------------------------------------------------------------------------------ the text
def _rows(values: list[tuple[float, float, float]], name: str = "m") -> list[dict[str, float]]:
    return [{"epoch": e, name: v, f"{name}_lower": lo, f"{name}_upper": hi} for e, (v, lo, hi) in enumerate(values)]


def test_level_formatting():
    assert [format_level(c) for c in (0.95, 0.975, 0.9, 0.999, None)] == ["95%", "97.5%", "90%", "99.9%", ""]


def test_nan_shows_as_na_and_is_never_best_nor_compared():
    report = IntervalReport(monitor="m", plot=False, confidence_level=0.975)
    nan = math.nan
    report.rows = _rows([(0.7, 0.6, 0.8), (nan, nan, nan), (0.75, nan, nan), (0.74, 0.7, 0.78)])
    table = report.format_table()
    assert "n/a [n/a, n/a]" in table and "0.750 [n/a, n/a]" in table and "nan" not in table
    assert "97.5% bootstrap interval" in table
    assert report.best_epoch() == 2  # the largest value; its bounds are NaN
    sentence = report.best_epoch_sentence()
    assert sentence.startswith("The best epoch by m is epoch 2, 0.750 [n/a, n/a].")
    assert "not available (n/a)" in sentence and "beats" not in sentence

    report.rows[2]["m"] = 0.1  # now epoch 3 is best; epoch 1 and 2 have no interval and are not compared
    sentence = report.best_epoch_sentence()
    assert "epoch 3" in sentence and "overlaps no other epoch's" not in sentence
    assert "overlaps those of every other epoch (0)" in sentence
    assert "Epoch(s) 1, 2 have no interval (n/a) and are not compared." in sentence


@pytest.mark.parametrize(
    ("values", "phrase"),
    [
        ([(0.70, 0.60, 0.80), (0.75, 0.65, 0.85)], "overlaps those of every other epoch (0)"),
        ([(0.50, 0.45, 0.55), (0.75, 0.65, 0.85)], "overlaps no other epoch's"),
        (
            [(0.50, 0.45, 0.55), (0.70, 0.60, 0.80), (0.75, 0.65, 0.85)],
            "overlaps those of epoch(s) 1, so it is not distinguishable from them, but not those of epoch(s) 0",
        ),
        ([(0.75, 0.65, 0.85)], "It is the only epoch"),
    ],
)
def test_overlap_sentences(values, phrase):
    report = IntervalReport(monitor="m", plot=False, confidence_level=0.95)
    report.rows = _rows(values)
    assert phrase in report.best_epoch_sentence()
    assert f"is epoch {len(values) - 1}," in report.best_epoch_sentence()


def test_mode_min_picks_the_lowest_first_on_ties():
    report = IntervalReport(monitor="loss", mode="min", plot=False)
    report.rows = _rows([(0.3, 0.2, 0.4), (0.1, 0.05, 0.15), (0.1, 0.05, 0.15), (0.2, 0.1, 0.3)], name="loss")
    assert report.best_epoch() == 1
    assert report.best_epoch_sentence().startswith("The best epoch by loss (lowest) is epoch 1, 0.100 [0.050, 0.150].")
    assert "* = best epoch by loss (lowest)" in report.format_table()
    report.mode = "max"
    assert report.best_epoch() == 0


def test_comparison_hook_and_override_replace_the_overlap_rule():
    seen = []

    def paired(best, others):
        seen.append((best["epoch"], [r["epoch"] for r in others]))
        return "A paired comparison says: epoch 1 is better than epoch 0."

    report = IntervalReport(monitor="m", plot=False, comparison=paired)
    report.rows = _rows([(0.70, 0.60, 0.80), (0.75, 0.65, 0.85)])
    assert report.best_epoch_sentence().endswith("A paired comparison says: epoch 1 is better than epoch 0.")
    assert seen == [(1, [0])]

    class Verdicts(IntervalReport):
        def comparison_sentence(self, best, others):
            return f"{len(others)} verdict(s)."

    sub = Verdicts(monitor="m", plot=False)
    sub.rows = report.rows
    assert sub.best_epoch_sentence().endswith("1 verdict(s).")
    assert "overlap" not in sub.summary()


def test_metrics_selection_expands_vectors_and_extra_columns():
    report = IntervalReport(monitor="acc", plot=False, metrics=["f1", "acc"], extra_metrics=["loss"])
    row = {"epoch": 0, "loss": 0.5, **{k: v for k, v in _rows([(0.9, 0.8, 0.95)], "acc")[0].items()}}
    for i in range(2):
        row.update({k: v for k, v in _rows([(0.5 + i / 10, 0.4, 0.7)], f"f1_{i}")[0].items() if k != "epoch"})
    row.update({"other": 1.0, "other_lower": 0.0, "other_upper": 2.0})
    report.rows = [row]
    assert report.names() == ["f1_0", "f1_1", "acc"]
    header = report.format_table().splitlines()[0].split()
    assert header == ["epoch", "f1_0", "f1_1", "acc", "loss"]
    assert "0.500" in report.format_table().splitlines()[2].split()[-1]


def test_small_and_large_values_keep_their_digits():
    report = IntervalReport(monitor="mse", plot=False)
    report.rows = _rows([(0.00042, 0.00031, 0.00057), (12345678.0, 1.2e7, 1.3e7)], "mse")
    table = report.format_table()
    assert "0.00042 [0.00031, 0.00057]" in table and "1.23e+07 [1.2e+07, 1.3e+07]" in table


def test_interval_word_and_level_come_from_the_modules_metrics():
    stub = types.SimpleNamespace()
    report = IntervalReport(monitor="m", plot=False)
    report.rows = _rows([(0.7, 0.6, 0.8)])
    report.setup(stub, torch.nn.Linear(2, 2), "validate")  # type: ignore[arg-type]  # no BootstrapMetric
    assert "metric [interval]" in report.format_table()
    module = torch.nn.ModuleList([BootstrapMetric(MulticlassAccuracy(C), confidence_level=0.975) for _ in range(2)])
    report.setup(stub, module, "validate")  # type: ignore[arg-type]
    assert "metric [97.5% bootstrap interval]" in report.format_table()
    module.append(BootstrapMetric(MulticlassAccuracy(C), confidence_level=0.9))
    report.setup(stub, module, "validate")  # type: ignore[arg-type]  # levels differ: none is printed
    assert "metric [bootstrap interval]" in report.format_table()


def test_empty_report():
    report = IntervalReport(plot=False)
    assert report.summary() == "IntervalReport: no validation epoch was recorded."
    assert report.best_epoch() is None
    report.rows = [{"epoch": 0, "loss": 1.0}]
    assert report.best_epoch_sentence() == "No best epoch: no interval was logged."


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"mode": "maximum"}, ValueError, "`mode`"),
        ({"monitor": 3}, TypeError, "`monitor`"),
        ({"plot": "yes"}, TypeError, "`plot`"),
        ({"path": 3}, TypeError, "`path`"),
        ({"metrics": "val_acc"}, TypeError, "`metrics`"),
        ({"extra_metrics": "loss"}, TypeError, "`extra_metrics`"),
        ({"confidence_level": 95}, ValueError, "`confidence_level`"),
        ({"confidence_level": True}, ValueError, "`confidence_level`"),
        ({"comparison": "paired"}, TypeError, "`comparison`"),
        ({"verbose": 1}, TypeError, "`verbose`"),
        ({"digits": -1}, ValueError, "`digits`"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        IntervalReport(**kwargs)


# ------------------------------------------------------------------------------------------------ the plot
def test_one_epoch_plot_shows_a_band_and_min_mode_stars_the_lowest(tmp_path: Path):
    report = IntervalReport(monitor="loss", mode="min", confidence_level=0.9)
    report.rows = [
        {
            "epoch": 0,
            **{k: v for k, v in _rows([(0.3, 0.2, 0.4)], "loss")[0].items() if k != "epoch"},
            "accumulation_factor": 2.0,
        }
    ]
    fig = report.figure()
    ax = fig.axes[0]
    (band,) = [c for c in ax.collections if c.get_label() == "90% interval"]
    extent = band.get_paths()[0].get_extents()
    assert extent.width > 0.3 and extent.y0 == pytest.approx(0.2) and extent.y1 == pytest.approx(0.4)
    report.rows += _rows([(0.3, 0.2, 0.4), (0.1, 0.05, 0.2), (0.2, 0.1, 0.3)], "loss")[1:]
    fig = report.figure()
    (star,) = [line for line in fig.axes[0].lines if line.get_label() == "best epoch by loss"]
    assert list(star.get_xdata()) == [1] and list(star.get_ydata()) == [0.1]
    assert report.save_plot(tmp_path / "sub" / "p.png") == tmp_path / "sub" / "p.png"
    assert (tmp_path / "sub" / "p.png").stat().st_size > 5_000


def test_without_matplotlib_one_line_and_no_plot(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    report = IntervalReport(monitor="m", path=tmp_path)
    report.rows = _rows([(0.7, 0.6, 0.8)])
    report.on_fit_end(types.SimpleNamespace(is_global_zero=True, callback_metrics={}), None)  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert report.plot_path is None and not list(tmp_path.iterdir())
    notes = [line for line in out.splitlines() if "matplotlib" in line]
    assert notes == ["IntervalReport: matplotlib is not installed, so no plot was written (pip install matplotlib)."]
    assert "The best epoch by m is epoch 0" in out


def test_non_zero_rank_prints_and_plots_nothing(tmp_path: Path, capsys):
    report = IntervalReport(monitor="m", path=tmp_path / "x.png")
    report.rows = _rows([(0.7, 0.6, 0.8)])
    report.on_fit_end(types.SimpleNamespace(is_global_zero=False, callback_metrics={}), None)  # type: ignore[arg-type]
    assert capsys.readouterr().out == "" and report.plot_path is None and not (tmp_path / "x.png").exists()


def test_state_dict_round_trip():
    report = IntervalReport(monitor="m")
    report.rows = _rows([(0.7, 0.6, 0.8), (0.75, 0.65, 0.85)])
    restored = IntervalReport(monitor="m")
    restored.load_state_dict(report.state_dict())
    assert restored.rows == report.rows and restored.rows is not report.rows
    restored.load_state_dict({})  # an old checkpoint without rows
    assert restored.rows == []
    assert IntervalReport(monitor="a").state_key != IntervalReport(monitor="b").state_key


class TwoLoaders(LightningModule):
    """One accuracy per validation dataloader, logged with the same name: Lightning adds ``/dataloader_idx_k``."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(4, C)
        self.accs = torch.nn.ModuleList(
            [BootstrapMetric(MulticlassAccuracy(C), num_bootstraps=100, seed=k) for k in range(2)]
        )

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        x, y = batch
        self.accs[dataloader_idx].update(self.net(x).softmax(-1), y)
        self.log_dict(self.accs[dataloader_idx].loggable("val_acc"), on_epoch=True)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self.net(batch[0]).sum() * 0.0

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_several_validation_dataloaders_give_one_triple_each():
    torch.manual_seed(0)
    model = TwoLoaders()
    x, y = make_data()
    halves = [DataLoader(TensorDataset(x[i::2], y[i::2]), batch_size=25) for i in range(2)]
    report = IntervalReport(plot=False, verbose=False)
    trainer = Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        max_epochs=1,
        callbacks=[report],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, loaders()[0], halves)
    (row,) = report.rows
    assert report.names() == ["val_acc/dataloader_idx_0", "val_acc/dataloader_idx_1"]
    probs = model.net(x).softmax(-1).detach()
    for k in range(2):
        ref = BootstrapMetric(MulticlassAccuracy(C), num_bootstraps=100, seed=k)
        ref.update(probs[k::2], y[k::2])
        expected = to_log_dict(ref.compute(), f"val_acc/dataloader_idx_{k}")
        for suffix in ("", "_lower", "_upper"):
            key = f"val_acc/dataloader_idx_{k}{suffix}"
            assert row[key] == pytest.approx(float(expected[key]), rel=0, abs=1e-7), key


def test_path_as_file_or_directory(tmp_path: Path):
    assert IntervalReport(path=tmp_path / "p.png")._plot_file() == tmp_path / "p.png"
    assert IntervalReport(path=tmp_path)._plot_file() == tmp_path / PLOT_FILENAME  # an existing directory
    assert IntervalReport(path=tmp_path / "plots")._plot_file() == tmp_path / "plots" / PLOT_FILENAME
