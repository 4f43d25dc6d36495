"""``BootstrapMetric.loggable`` and ``loggable(collection)``: Lightning-native logging of bootstrap intervals.

The logged values are checked against ``to_log_dict(metric.compute(), name)`` of a fresh metric with the same
seed on the same data (the documented manual way), per epoch; the bootstrap must run once and the metric reset
once per validation run, however many views are logged.
"""

from __future__ import annotations

import copy
import pickle
import warnings
from typing import Any

import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics import MeanMetric, Metric, MetricCollection
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryAUROC,
    MulticlassAccuracy,
    MulticlassAUROC,
    MulticlassF1Score,
)
from torchmetrics.regression import MeanSquaredError

from lightning_ci import BootstrapMetric, loggable, to_log_dict
from lightning_ci.bootstrap import BootstrapView

N, C = 200, 3  # even N: Lightning's DistributedSampler then pads nothing on 2 ranks (see test_loggable_ddp.py)


# ------------------------------------------------------------------------------------------------ shared parts
def make_data(n: int = N, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = (x @ torch.randn(4, C, generator=g) + 0.8 * torch.randn(n, C, generator=g)).argmax(-1)
    return x, y


def epoch_weights(epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The classifier's weights in ``epoch``: fixed per epoch, so every launcher sees the same model."""
    g = torch.Generator().manual_seed(100 + epoch)
    return torch.randn(C, 4, generator=g), torch.randn(C, generator=g)


def set_epoch_weights(net: torch.nn.Linear, epoch: int) -> None:
    weight, bias = epoch_weights(epoch)
    with torch.no_grad():
        net.weight.copy_(weight)
        net.bias.copy_(bias)


class CountingBootstrap(BootstrapMetric):
    """Counts the bootstraps (``compute``) and resets."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.__dict__["computes"] = 0
        self.__dict__["resets"] = 0

    def compute(self) -> dict[str, torch.Tensor]:
        self.__dict__["computes"] += 1
        return super().compute()

    def reset(self) -> None:
        self.__dict__["resets"] += 1
        super().reset()


# name -> (factory of the BootstrapMetric, input of the metric from (probs, target), include_std)
METRICS = {
    "val_acc": (lambda: CountingBootstrap(MulticlassAccuracy(C), num_bootstraps=200, seed=1), "probs", False),
    "val_f1": (
        lambda: CountingBootstrap(MulticlassF1Score(C, average=None), num_bootstraps=200, seed=2),
        "probs",
        True,
    ),
    "val_auroc": (lambda: CountingBootstrap(BinaryAUROC(), num_bootstraps=200, seed=3), "binary", False),
}
COLLECTION = {  # logged through loggable(MetricCollection(..., prefix="coll_"))
    "auc": (lambda: CountingBootstrap(MulticlassAUROC(C), num_bootstraps=200, seed=4), "probs"),
    "mse": (lambda: CountingBootstrap(MeanSquaredError(), num_bootstraps=30, seed=5), "regression"),
}


def metric_inputs(kind: str, probs: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if kind == "probs":
        return probs, target
    if kind == "binary":
        return probs[:, 0], (target == 0).long()
    return probs[:, 0], (target == 0).float()  # regression (generic path)


class ViewsModule(LightningModule):
    """Logs every metric with ``self.log_dict(...loggable...)`` in ``validation_step``; never trains (lr=0).

    A plain torchmetrics metric is logged in ``training_step`` first, so Lightning lists the module's metrics
    before any ``loggable`` call when the sanity check is off.
    """

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(4, C)
        self.train_mean = MeanMetric()
        self.plain_acc = MulticlassAccuracy(C)  # a plain metric in the collection: passed through
        for name, (factory, _, _) in METRICS.items():
            setattr(self, name, factory())
        self.coll = MetricCollection({k: f() for k, (f, _) in COLLECTION.items()}, prefix="coll_")
        self.plain = MetricCollection({"plain_acc": self.plain_acc})

    def on_validation_epoch_start(self) -> None:
        set_epoch_weights(self.net, self.current_epoch)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.net(x), y)
        self.train_mean.update(loss.detach())
        self.log("train_mean", self.train_mean, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        probs = self.net(x).softmax(-1)
        for name, (_, kind, include_std) in METRICS.items():
            metric = getattr(self, name)
            metric.update(*metric_inputs(kind, probs, y))
            self.log_dict(metric.loggable(name, include_std=include_std), on_epoch=True)
        for key, (_, kind) in COLLECTION.items():
            self.coll[key].update(*metric_inputs(kind, probs, y))
        self.plain_acc.update(probs, y)
        self.log_dict({**loggable(self.coll), **loggable(self.plain)}, on_epoch=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)

    def bootstrap_metrics(self) -> dict[str, CountingBootstrap]:
        return {**{n: getattr(self, n) for n in METRICS}, **{f"coll_{k}": self.coll[k] for k in COLLECTION}}


def reference_logs(epoch: int, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """What the module should log in ``epoch``: ``to_log_dict`` of fresh metrics updated on all the data."""
    weight, bias = epoch_weights(epoch)
    probs = (x @ weight.T + bias).softmax(-1)
    out: dict[str, float] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, (factory, kind, include_std) in METRICS.items():
            metric = factory()
            metric.update(*metric_inputs(kind, probs, y))
            out.update({k: float(v) for k, v in to_log_dict(metric.compute(), name, include_std).items()})
        for key, (factory, kind) in COLLECTION.items():
            metric = factory()
            metric.update(*metric_inputs(kind, probs, y))
            out.update({k: float(v) for k, v in to_log_dict(metric.compute(), f"coll_{key}").items()})
    out["plain_acc"] = float(MulticlassAccuracy(C)(probs, y))
    return out


class Recorder(Callback):
    """``trainer.callback_metrics`` after every validation run (sanity check included), as floats."""

    def __init__(self) -> None:
        self.runs: list[tuple[int, bool, dict[str, float]]] = []

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        self.runs.append((trainer.current_epoch, trainer.sanity_checking, metrics))


def loaders(batch_size: int = 16) -> tuple[DataLoader, DataLoader]:
    x, y = make_data()
    data = TensorDataset(x, y)
    return DataLoader(data, batch_size=batch_size), DataLoader(data, batch_size=batch_size)


def quiet_trainer(**kwargs: Any) -> Trainer:
    defaults: dict[str, Any] = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        max_epochs=2,
    )
    defaults.update(kwargs)
    return Trainer(**defaults)


def logged_names() -> list[str]:
    names = ["val_acc", "val_acc_lower", "val_acc_upper"]
    names += [f"val_f1_{i}{s}" for i in range(C) for s in ("", "_lower", "_upper", "_std")]
    names += ["val_auroc", "val_auroc_lower", "val_auroc_upper"]
    names += [f"coll_{k}{s}" for k in COLLECTION for s in ("", "_lower", "_upper")]
    return [*names, "plain_acc"]


# ------------------------------------------------------------------------------------------------ in Lightning
@pytest.mark.parametrize("sanity_steps", [0, 2])
def test_lightning_logs_views_per_epoch_equal_to_manual_compute(sanity_steps: int):
    x, y = make_data()
    model, recorder = ViewsModule(), Recorder()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_trainer(num_sanity_val_steps=sanity_steps, callbacks=[recorder]).fit(model, *loaders())
    # no "compute called before update" warning from any view, nor any other compute/update warning
    assert not [w for w in caught if "before the ``update``" in str(w.message)]

    epochs = [r for r in recorder.runs if not r[1]]
    assert [e for e, _, _ in epochs] == [0, 1]
    for epoch, _, logged in epochs:
        ref = reference_logs(epoch, x, y)
        assert sorted(n for n in logged if n != "train_mean") == sorted(logged_names())
        for name in logged_names():
            # the same seed on the same data: bit-identical up to float32 printing of the logged tensor
            assert logged[name] == pytest.approx(ref[name], rel=0, abs=1e-7), (epoch, name)
        assert logged["val_acc_lower"] < logged["val_acc"] < logged["val_acc_upper"]
    assert reference_logs(0, x, y)["val_acc"] != reference_logs(1, x, y)["val_acc"]  # epochs do differ

    # one bootstrap and one reset per validation run (sanity check included), however many views
    runs = len(recorder.runs)
    assert runs == 2 + (1 if sanity_steps else 0)
    for name, metric in model.bootstrap_metrics().items():
        assert (metric.computes, metric.resets) == (runs, runs), name
        assert not metric.engine.update_called  # Lightning reset it after the last epoch


def test_trainer_validate_returns_the_views_and_resets():
    x, y = make_data()
    model = ViewsModule()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (result,) = quiet_trainer().validate(model, loaders()[1], verbose=False)
    ref = reference_logs(0, x, y)
    assert set(result) == set(logged_names())
    for name in logged_names():
        assert result[name] == pytest.approx(ref[name], rel=0, abs=1e-7), name
    assert all(m.computes == m.resets == 1 for m in model.bootstrap_metrics().values())


# ------------------------------------------------------------------------------------------------ the views
def _binary(seed: int, n: int = 60) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(2, (n,), generator=g)
    return (0.6 * target + 0.7 * torch.rand(n, generator=g)).clamp(0, 1), target


@pytest.mark.parametrize("include_std", [False, True])
def test_names_and_values_match_to_log_dict_scalar_and_vector(include_std: bool):
    x, y = make_data(90, seed=1)
    probs = (x @ torch.randn(4, C, generator=torch.Generator().manual_seed(2))).softmax(-1)
    for metric in (
        BootstrapMetric(MulticlassAccuracy(C), num_bootstraps=100, seed=0),
        BootstrapMetric(MulticlassF1Score(C, average=None), num_bootstraps=100, seed=0),
        BootstrapMetric(MulticlassAUROC(C, average="none"), num_bootstraps=100, seed=0),
    ):
        metric.update(probs, y)
        views = metric.loggable("m", include_std=include_std)
        expected = to_log_dict(metric.compute(), "m", include_std=include_std)
        assert list(views) == list(expected)  # same names, same order
        assert all(isinstance(v, BootstrapView) for v in views.values())
        for name, view in views.items():
            value = view.compute()
            assert value.shape == torch.Size([]), name
            assert torch.equal(value, expected[name]), name


def test_one_bootstrap_for_all_views_and_new_state_recomputes():
    probs, target = _binary(0)
    metric = CountingBootstrap(BinaryAccuracy(), num_bootstraps=100, seed=0)
    metric.update(probs[:30], target[:30])
    views = metric.loggable("acc", include_std=True)
    first = {k: v.compute() for k, v in views.items()}
    assert metric.computes == 1
    assert {k: v.compute() for k, v in views.items()} == first and metric.computes == 1
    metric.update(probs[30:], target[30:])  # a new state: the views must not serve the old result
    second = {k: v.compute() for k, v in views.items()}
    assert metric.computes == 2
    fresh = BootstrapMetric(BinaryAccuracy(), num_bootstraps=100, seed=0)
    fresh.update(probs, target)
    assert second == to_log_dict(fresh.compute(), "acc", include_std=True)


def _regression_metric(**kwargs: Any) -> BootstrapMetric:
    return BootstrapMetric(MeanSquaredError(), num_bootstraps=20, seed=0, **kwargs)


@pytest.mark.parametrize(
    "factory",
    [
        lambda: BootstrapMetric(BinaryAccuracy(), num_bootstraps=100, seed=0),  # tensor states
        lambda: BootstrapMetric(BinaryAUROC(), num_bootstraps=100, seed=0),  # list (cat) states
        lambda: BootstrapMetric(BinaryAUROC(), num_bootstraps=100, seed=0, compute_with_cache=False),
        lambda: BootstrapMetric(BinaryAccuracy(), num_bootstraps=100, seed=0, compute_with_cache=False),
        _regression_metric,  # generic path
    ],
    ids=["confusion", "ranking", "ranking-nocache", "confusion-nocache", "generic"],
)
def test_no_stale_result_after_a_direct_reset_and_as_many_updates(factory):
    # The user resets the metric directly (not through a view), then updates it as many times with other data:
    # the update count is the same as before, so the cache must see that the state changed.
    (p1, t1), (p2, t2) = _binary(1), _binary(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metric = factory()
        metric.update(p1.float(), t1.float() if "MeanSquared" in str(metric.engine.base_metric) else t1)
        views = metric.loggable("m")
        before = {k: v.compute() for k, v in views.items()}
        metric.reset()
        target = t2.float() if "MeanSquared" in str(metric.engine.base_metric) else t2
        metric.update(p2.float(), target)
        after = {k: v.compute() for k, v in views.items()}
        ref = factory()
        ref.update(p2.float(), target)
        expected = to_log_dict(ref.compute(), "m")
    assert after == expected
    assert after != before


def test_view_reset_resets_the_parent_once():
    probs, target = _binary(3)
    metric = CountingBootstrap(BinaryAccuracy(), num_bootstraps=50, seed=0)
    metric.update(probs, target)
    views = list(metric.loggable("acc", include_std=True).values())
    for view in views:  # what Lightning does at the end of an epoch: compute every logged view, then reset each
        view.compute()
    for view in views:
        view.reset()
    assert metric.resets == 1
    assert not metric.engine.update_called
    assert all(not v.update_called for v in views)


def test_loggable_returns_the_same_views_every_call_and_they_are_submodules():
    metric = BootstrapMetric(MulticlassF1Score(C, average=None), num_bootstraps=50, seed=0)
    first = metric.loggable("f1")
    assert all(a is b for a, b in zip(first.values(), metric.loggable("f1").values()))
    other = metric.loggable("other_name")  # views are per entry, not per name
    assert all(a is b for a, b in zip(first.values(), other.values()))
    modules = {id(m) for m in metric.modules()}
    assert all(id(v) in modules for v in first.values())
    # stateless: no parameters, buffers or state_dict entries are added to the wrapper
    assert not any(k for k in metric.state_dict() if "loggable" in k)


def test_views_are_created_before_loggable_is_called():
    # Lightning lists a LightningModule's metrics once (named_modules) at the first self.log of a metric; every
    # view that loggable will return must already be there, for scalar and vector metrics alike.
    module = torch.nn.Module()
    module.acc = BootstrapMetric(BinaryAccuracy(), num_bootstraps=50, seed=0)
    module.f1 = BootstrapMetric(MulticlassF1Score(C, average=None), num_bootstraps=50, seed=0)
    module.auroc = BootstrapMetric(MulticlassAUROC(C, average=None), num_bootstraps=50, seed=0)
    listed = {id(m) for _, m in module.named_modules()}
    for metric, name in ((module.acc, "acc"), (module.f1, "f1"), (module.auroc, "auroc")):
        views = metric.loggable(name, include_std=True)
        assert all(id(v) in listed for v in views.values()), name
    assert len(module.f1.loggable("f1")) == 3 * C and len(module.auroc.loggable("auroc")) == 3 * C


def test_views_survive_pickle_and_deepcopy():
    probs, target = _binary(4)
    metric = BootstrapMetric(BinaryAccuracy(), num_bootstraps=50, seed=0)
    metric.update(probs, target)
    metric.loggable("acc")
    expected = to_log_dict(metric.compute(), "acc")
    for copied in (pickle.loads(pickle.dumps(metric)), copy.deepcopy(metric)):
        views = copied.loggable("acc")
        assert all(v.parent is copied for v in views.values())
        assert {k: v.compute() for k, v in views.items()} == expected
        copied.update(probs[:10], target[:10])  # the copy's views follow the copy, not the original
        assert views["acc_lower"].compute() == copied.compute()["lower"]
        assert views["acc_lower"].compute() != expected["acc_lower"]
        assert metric.loggable("acc")["acc_lower"].compute() == expected["acc_lower"]


def test_view_refuses_update_and_bad_arguments():
    metric = BootstrapMetric(BinaryAccuracy(), num_bootstraps=50, seed=0)
    view = metric.loggable("acc")["acc"]
    with pytest.raises(RuntimeError, match="cannot be updated"):
        view.update(torch.rand(3), torch.tensor([0, 1, 1]))
    with pytest.raises(RuntimeError, match="cannot be updated"):
        view(torch.rand(3), torch.tensor([0, 1, 1]))
    with pytest.raises(TypeError, match="`name`"):
        metric.loggable("")
    with pytest.raises(TypeError, match="`name`"):
        metric.loggable(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`include_std`"):
        metric.loggable("acc", include_std="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`key`"):
        BootstrapView(metric, "median")


def test_view_refuses_a_result_of_another_size_than_its_names():
    probs, target = _binary(5)
    metric = BootstrapMetric(BinaryAccuracy(), num_bootstraps=50, seed=0)
    metric.update(probs, target)
    views = metric.loggable("acc")
    metric._loggable_views.numel = 2  # as if the size had been guessed wrong
    with pytest.raises(ValueError, match="returned 1"):
        views["acc"].compute()


# ------------------------------------------------------------------------------------------------ collections
@pytest.mark.parametrize("size", [1, 2, 3])
def test_collection_names_do_not_depend_on_its_size(size: int):
    probs, target = _binary(6)
    factories = {
        "acc": lambda: BootstrapMetric(BinaryAccuracy(), num_bootstraps=50, seed=0),
        "auroc": lambda: BootstrapMetric(BinaryAUROC(), num_bootstraps=50, seed=1),
        "plain": BinaryAccuracy,
    }
    keys = list(factories)[:size]
    coll = MetricCollection({k: factories[k]() for k in keys}, prefix="val_", postfix="_ep")
    coll.update(probs, target)
    views = loggable(coll)
    expected: list[str] = []
    for k in keys:
        expected += [f"val_{k}_ep"] if k == "plain" else [f"val_{k}_ep{s}" for s in ("", "_lower", "_upper")]
    assert list(views) == expected
    if "plain" in keys:
        assert views["val_plain_ep"] is coll["plain"]  # passed through; Lightning logs it as usual
    for k in keys[:2]:
        ref = factories[k]()
        ref.update(probs, target)
        assert {n: v.compute() for n, v in views.items() if n.startswith(f"val_{k}_")} == to_log_dict(
            ref.compute(), f"val_{k}_ep"
        )


def test_collection_include_std_and_mapping_input_and_errors():
    metrics = torch.nn.ModuleDict({"a": BootstrapMetric(BinaryAccuracy(), num_bootstraps=50, seed=0)})
    assert list(loggable(metrics, include_std=True)) == ["a", "a_lower", "a_upper", "a_std"]
    assert list(loggable({"b": metrics["a"]})) == ["b", "b_lower", "b_upper"]
    with pytest.raises(TypeError, match="`metrics`"):
        loggable([metrics["a"]])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`metrics`"):
        loggable({"a": torch.tensor(1.0)})  # type: ignore[dict-item]


def test_plain_metric_still_logs_itself():
    # sanity of the pass-through: a plain metric in the dict is the metric itself
    m: Metric = MeanMetric()
    assert loggable({"m": m}) == {"m": m}


def test_generic_vector_metric_is_named_per_element_and_probed_at_most_twice(monkeypatch):
    from scipy.stats import spearmanr
    from torchmetrics.regression import SpearmanCorrCoef

    import lightning_ci.bootstrap.views as views_module

    probes = []
    real = views_module._result_numel
    monkeypatch.setattr(views_module, "_result_numel", lambda parent: probes.append(1) or real(parent))
    g = torch.Generator().manual_seed(0)
    target = torch.randn(40, 2, generator=g)
    preds = target + torch.randn(40, 2, generator=g)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the generic path says it is slow
        metric = BootstrapMetric(SpearmanCorrCoef(num_outputs=2), num_bootstraps=20, seed=0)
        assert list(metric.loggable("rho")) == ["rho", "rho_lower", "rho_upper"]  # size unknown before data
        for i in range(0, 40, 10):
            metric.update(preds[i : i + 10], target[i : i + 10])
            views = metric.loggable("rho")
        expected = to_log_dict(metric.compute(), "rho")
    assert list(views) == [f"rho_{i}{s}" for i in range(2) for s in ("", "_lower", "_upper")] == list(expected)
    assert {k: v.compute() for k, v in views.items()} == expected
    assert float(expected["rho_1"]) == pytest.approx(spearmanr(preds[:, 1], target[:, 1]).statistic, abs=1e-6)
    assert len(probes) == 2  # once before any update, once after the first; never per batch
