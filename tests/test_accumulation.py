"""AccumulationScheduler against a plain PyTorch loop on the concatenated window, in float64."""

from __future__ import annotations

import copy
import csv
import pickle
from unittest.mock import Mock

import pytest
import torch
from lightning.pytorch.callbacks import GradientAccumulationScheduler, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins import MixedPrecision
from lightning.pytorch.strategies import DeepSpeedStrategy, SingleDeviceStrategy

from lightning_ci import AccumulationScheduler, total_optimizer_steps
from lightning_ci.schedule import EpochSchedule
from tests.helpers import (
    Regressor,
    Tagger,
    loader,
    make_regression,
    make_tokens,
    max_param_diff,
    mse,
    reference_fit,
    token_ce,
    tokens_of,
    trainer,
)

# float64 rounding over a few dozen steps stays ~1e-15; a wrong weighting is off by >1e-3 (checked below).
EXACT = 1e-10


def _batches(x, y, bs=4):
    return list(loader(x, y, bs))


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_partial_windows_and_short_batch_match_large_batch(optimizer):
    """{0: 5, 1: 3} on 46 samples, micro-batch 4: windows 5,5,2 then 3,3,3,3 with a last batch of 2."""
    x, y = make_regression(46)
    sched = {0: 5, 1: 3}
    model = Regressor(optimizer)
    ref = reference_fit(copy.deepcopy(model), _batches(x, y), EpochSchedule(sched), 2, mse)
    trainer([AccumulationScheduler(sched)], max_epochs=2).fit(model, loader(x, y))
    assert max_param_diff(model, ref) < EXACT
    assert model.seen_factors == [5] * 12 + [3] * 12


def test_lightning_builtin_is_not_exact_here():
    """The same comparison with Lightning's own scheduler fails: this is what the test above guards."""
    x, y = make_regression(46)
    sched = {0: 5, 1: 3}
    model = Regressor("sgd")
    ref = reference_fit(copy.deepcopy(model), _batches(x, y), EpochSchedule(sched), 2, mse)
    trainer([GradientAccumulationScheduler(dict(sched))], max_epochs=2).fit(model, loader(x, y))
    assert max_param_diff(model, ref) > 1e-3


def test_token_level_loss_with_num_items():
    """Padded sequences of varying length: sum of token losses over the window / tokens in the window."""
    x, labels = make_tokens(30)
    sched = {0: 3, 1: 2}
    model = Tagger()
    ref = reference_fit(copy.deepcopy(model), _batches(x, labels), EpochSchedule(sched), 2, token_ce)
    trainer([AccumulationScheduler(sched, num_items=tokens_of)], max_epochs=2).fit(model, loader(x, labels))
    assert max_param_diff(model, ref) < EXACT

    # Without the token count, micro-batches are weighted by samples: measurably different.
    wrong = Tagger()
    trainer([AccumulationScheduler(sched)], max_epochs=2).fit(wrong, loader(x, labels))
    assert max_param_diff(wrong, ref) > 1e-4


def test_num_items_may_return_int():
    x, labels = make_tokens(20)
    model = Tagger()
    ref = reference_fit(copy.deepcopy(model), _batches(x, labels), EpochSchedule({0: 4}), 1, token_ce)
    cb = AccumulationScheduler({0: 4}, num_items=lambda b: int((b[1] != -100).sum()))
    trainer([cb], max_epochs=1).fit(model, loader(x, labels))
    assert max_param_diff(model, ref) < EXACT


def test_gradient_clipping_sees_final_gradient():
    """Clipping by norm acts on the window's mean gradient, as in the large-batch loop."""
    x, y = make_regression(46)
    sched = {0: 5, 1: 3}
    model = Regressor("sgd")
    ref = reference_fit(copy.deepcopy(model), _batches(x, y), EpochSchedule(sched), 2, mse, clip_norm=0.5)
    t = trainer([AccumulationScheduler(sched)], max_epochs=2, gradient_clip_val=0.5, gradient_clip_algorithm="norm")
    t.fit(model, loader(x, y))
    assert max_param_diff(model, ref) < EXACT


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_mixed_precision(precision):
    """bf16 autocast and fp16 autocast with a GradScaler (on CPU) stay close to the float32 reference.

    Low-precision rounding bounds the agreement (~1e-2 relative for bf16); the wrong weighting of the
    partial window (Lightning's built-in) is off by much more, which the last assertion checks.
    """
    x, y = make_regression(46)
    x, y = x.float(), y.float()
    sched = {0: 5, 1: 3}

    def fresh():
        m = Regressor("sgd")
        return m.float()

    ref = reference_fit(fresh(), _batches(x, y), EpochSchedule(sched), 2, mse, clip_norm=1.0)
    kwargs = dict(precision=None, gradient_clip_val=1.0)
    if precision == "16-mixed":
        plugin = MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu", init_scale=2.0**10))
        kwargs.update(plugins=[plugin])
    else:
        kwargs.update(precision="bf16-mixed")
    ours, builtin = fresh(), fresh()
    trainer([AccumulationScheduler(sched)], max_epochs=2, **kwargs).fit(ours, loader(x, y))
    trainer([GradientAccumulationScheduler(dict(sched))], max_epochs=2, **kwargs).fit(builtin, loader(x, y))
    err_ours, err_builtin = max_param_diff(ours, ref), max_param_diff(builtin, ref)
    assert err_ours < 2e-2
    assert err_builtin > 3 * err_ours


# --------------------------------------------------------------------------- optimizer-step count
@pytest.mark.parametrize(
    ("sched", "n", "epochs", "extra"),
    [
        ({0: 4, 1: 2}, 40, 3, {}),  # 10 batches: 3 + 5 + 5 = 13 (Lightning estimates 30)
        ({0: 5, 1: 3}, 46, 3, {}),
        ({2: 3}, 46, 4, {"limit_train_batches": 7}),
        ({0: 3, 1: 1}, 46, 3, {"max_steps": 6}),
        (lambda e: e + 1, 46, 3, {"limit_train_batches": 0.5}),
    ],
)
def test_total_optimizer_steps_equals_global_step(sched, n, epochs, extra):
    x, y = make_regression(n)
    cb = AccumulationScheduler(sched)
    t = trainer([cb], max_epochs=epochs, **extra)
    model = Regressor("sgd")
    t.fit(model, loader(x, y))
    assert cb.total_optimizer_steps(t) == t.global_step
    assert total_optimizer_steps(t) == t.global_step


def test_estimated_stepping_batches_is_wrong_ours_is_right():
    x, y = make_regression(40)
    cb = AccumulationScheduler({0: 4, 1: 2})
    t = trainer([cb], max_epochs=3)
    t.fit(Regressor("sgd"), loader(x, y))
    assert t.global_step == 13
    assert cb.total_optimizer_steps(t) == 13


def test_total_optimizer_steps_sizes_onecycle_from_configure_optimizers():
    """OneCycleLR raises if stepped past total_steps; sized by us it ends exactly at its last step."""
    x, y = make_regression(46)
    totals = []

    def onecycle(module, opt):
        total = total_optimizer_steps(module.trainer)
        totals.append(total)
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=total)

    model = Regressor("sgd", lr_schedule=onecycle)
    t = trainer([AccumulationScheduler({0: 5, 2: 2})], max_epochs=3)
    t.fit(model, loader(x, y))
    assert totals == [t.global_step] == [3 + 3 + 6]
    sched = t.lr_scheduler_configs[0].scheduler
    assert sched.last_epoch == totals[0]


def test_estimated_stepping_batches_right_for_constant_schedule():
    x, y = make_regression(46)  # 12 batches, factor 5 -> 3 steps per epoch
    seen = []

    class Probe(Regressor):
        def configure_optimizers(self):
            seen.append(self.trainer.estimated_stepping_batches)
            return super().configure_optimizers()

    t = trainer([AccumulationScheduler({0: 5})], max_epochs=2)
    t.fit(Probe(), loader(x, y))
    assert seen == [t.global_step] == [6]


def test_total_optimizer_steps_without_callback_uses_trainer_factor():
    x, y = make_regression(46)
    t = trainer([], max_epochs=2, accumulate_grad_batches=5)
    t.fit(Regressor("sgd"), loader(x, y))
    assert total_optimizer_steps(t) == t.global_step == 6


# --------------------------------------------------------------------------- logging
def test_logs_factor_and_effective_batch_size(tmp_path):
    x, y = make_regression(46)
    logger = CSVLogger(tmp_path, name="", version="")
    t = trainer([AccumulationScheduler({0: 5, 1: 3})], max_epochs=2, logger=logger, log_every_n_steps=1)
    model = Regressor("sgd")
    # The CSV keeps one row per optimizer step: the last micro-batch of the first window is batch 4,
    # still evaluated with the initial weights.
    first_loss = mse(model, x[16:20], y[16:20]).item()
    t.fit(model, loader(x, y))
    with open(tmp_path / "metrics.csv") as f:
        table = list(csv.DictReader(f))
    rows = [r for r in table if r.get("accumulation_factor")]
    assert [float(r["accumulation_factor"]) for r in rows] == [5.0, 3.0]
    # 46 items in 3 steps (epoch 0), in 4 steps (epoch 1)
    assert [float(r["effective_batch_size"]) for r in rows] == pytest.approx([46 / 3, 46 / 4])
    # the logged training loss is still the per-batch mean loss of the user's training_step
    losses = [float(r["train_loss"]) for r in table if r.get("train_loss")]
    assert len(losses) == 3 + 4
    assert losses[0] == pytest.approx(first_loss, rel=1e-12)


# --------------------------------------------------------------------------- checkpoints
def _fit_with_checkpoints(tmp_path, sched, epochs, every_n_train_steps=None, ckpt_path=None, model=None):
    x, y = make_regression(46)
    model = model or Regressor("sgd")
    ckpt = ModelCheckpoint(
        dirpath=tmp_path,
        save_top_k=-1,
        every_n_train_steps=every_n_train_steps,
        every_n_epochs=None if every_n_train_steps else 1,
        save_on_train_epoch_end=True,
    )
    cb = AccumulationScheduler(sched)
    t = trainer([cb, ckpt], max_epochs=epochs, enable_checkpointing=True)
    t.fit(model, loader(x, y), ckpt_path=ckpt_path)
    return model, t, cb


def test_resume_at_epoch_boundary_equals_uninterrupted(tmp_path):
    sched = {0: 5, 1: 3, 2: 2}
    full, _, _ = _fit_with_checkpoints(tmp_path / "full", sched, 3)
    _fit_with_checkpoints(tmp_path / "part", sched, 1)
    (ckpt,) = (tmp_path / "part").glob("epoch=0*.ckpt")
    state = torch.load(ckpt, weights_only=False)
    assert any("AccumulationScheduler" in k for k in state["callbacks"])
    resumed, t, cb = _fit_with_checkpoints(
        tmp_path / "resumed", sched, 3, ckpt_path=str(ckpt), model=Regressor("sgd", seed=123)
    )
    assert max_param_diff(resumed, full) < EXACT
    assert t.global_step == cb.total_optimizer_steps(t) == 3 + 4 + 6


def test_resume_mid_epoch_uses_scheduled_factor(tmp_path):
    """Lightning skips on_train_epoch_start on a mid-epoch restart; the factor must still be the scheduled one."""
    sched = {0: 2, 1: 3}
    _fit_with_checkpoints(tmp_path / "part", sched, 2, every_n_train_steps=8)  # step 8 = batch 4 of epoch 1
    ckpt = next((tmp_path / "part").glob("epoch=1-step=8*.ckpt"))
    model = Regressor("sgd")
    with pytest.warns(Warning):  # Lightning: the plain DataLoader is not resumable
        _, t, cb = _fit_with_checkpoints(tmp_path / "resumed", sched, 2, ckpt_path=str(ckpt), model=model)
    assert model.seen_factors and set(model.seen_factors) == {3}
    assert t.global_step == cb.total_optimizer_steps(t) == 6 + 4


def test_resume_with_different_schedule_warns(tmp_path):
    _fit_with_checkpoints(tmp_path / "part", {0: 5}, 1)
    (ckpt,) = (tmp_path / "part").glob("epoch=0*.ckpt")
    with pytest.warns(UserWarning, match="different accumulation schedule"):
        _fit_with_checkpoints(tmp_path / "resumed", {0: 2}, 2, ckpt_path=str(ckpt))


def test_state_dict_round_trip_and_old_checkpoint():
    """The state records the factors the fit applied (never evaluates the schedule anew), and old formats load."""
    x, y = make_regression(8)
    cb = AccumulationScheduler({0: 2, 3: 4})
    trainer([cb], max_epochs=5).fit(Regressor(), loader(x, y))
    state = cb.state_dict()
    assert state["factors"] == [2, 2, 2, 4, 4]  # version 1's key, still written for epoch schedules
    assert state["history"] == [[0, 2], [3, 4]]
    other = AccumulationScheduler({0: 2, 3: 4})
    other.load_state_dict(state)
    assert other.state_dict()["history"] == state["history"]
    other.load_state_dict({})  # a checkpoint without our keys still loads
    other.load_state_dict({"version": 1, "factors": [2, 2, 2, 4, 4], "scheduling": {0: 2, 3: 4}})
    assert other.state_dict()["history"] == [[0, 2], [3, 4]]


# --------------------------------------------------------------------------- validation and refusals
@pytest.mark.parametrize(
    ("scheduling", "match"),
    [
        ({}, "non-empty"),
        ({-1: 2}, "-1"),
        ({"1": 2}, "'1'"),
        ({1.0: 2}, "1.0"),
        ({True: 2}, "True"),
        ({0: True}, "True"),
        ({0: 0}, "received 0"),
        ({0: -2}, "received -2"),
        ({0: 2.5}, "2.5"),
        ({0: 2, 3: "4"}, "'4'"),
        (lambda e: 0, "received 0"),
    ],
)
def test_bad_schedules_raise_naming_the_value(scheduling, match):
    with pytest.raises(ValueError, match=match):
        AccumulationScheduler(scheduling)


def test_bad_types_raise():
    with pytest.raises(TypeError, match="dict"):
        AccumulationScheduler([(0, 2)])
    with pytest.raises(TypeError, match="num_items"):
        AccumulationScheduler({0: 2}, num_items=3)


def test_callable_returning_bad_factor_later_raises_at_that_epoch():
    cb = AccumulationScheduler(lambda e: 2 if e < 1 else 0)
    with pytest.raises(ValueError, match=r"scheduling\(1\)"):
        cb.factor(1)


def test_caller_dict_not_mutated_and_epoch0_defaults_to_1():
    sched = {2: 4}
    cb = AccumulationScheduler(sched)
    assert sched == {2: 4}
    assert [cb.factor(e) for e in range(4)] == [1, 1, 4, 4]
    assert cb.scheduling == {0: 1, 2: 4}


class _Manual(Regressor):
    def __init__(self):
        super().__init__()
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        return None


def test_refuses_manual_optimization():
    x, y = make_regression(8)
    with pytest.raises(RuntimeError, match="automatic optimization"):
        trainer([AccumulationScheduler({0: 2})], max_epochs=1).fit(_Manual(), loader(x, y))


def test_refuses_deepspeed():
    """Detected with `isinstance`, so a `Mock(spec=DeepSpeedStrategy)` (as Lightning's own tests use) is refused."""
    fake = Mock()
    fake.strategy = Mock(spec=DeepSpeedStrategy)
    with pytest.raises(RuntimeError, match="gradient_accumulation_steps"):
        AccumulationScheduler({0: 2}).setup(fake, Mock(automatic_optimization=True), "fit")
    # a strategy that merely has "DeepSpeed" in its name is not DeepSpeed
    named_alike = type("DeepSpeedStrategy", (SingleDeviceStrategy,), {})
    x, y = make_regression(8)
    trainer([AccumulationScheduler({0: 2})], max_epochs=1, strategy=named_alike(device="cpu")).fit(
        Regressor(), loader(x, y)
    )


def test_refuses_trainer_accumulate_grad_batches():
    x, y = make_regression(8)
    t = trainer([AccumulationScheduler({0: 2})], max_epochs=1, accumulate_grad_batches=2)
    with pytest.raises(ValueError, match=r"AccumulationScheduler\(\{0: k\}\)"):
        t.fit(Regressor(), loader(x, y))


def test_refuses_two_schedulers():
    x, y = make_regression(8)
    t = trainer([AccumulationScheduler({0: 2}), GradientAccumulationScheduler({0: 2})], max_epochs=1)
    with pytest.raises(ValueError, match="Keep exactly one"):
        t.fit(Regressor(), loader(x, y))


def test_warns_when_epoch_shorter_than_factor():
    x, y = make_regression(12)  # 3 batches
    model = Regressor()
    ref = reference_fit(copy.deepcopy(model), _batches(x, y), EpochSchedule({0: 8}), 1, mse)
    with pytest.warns(UserWarning, match="fewer than its accumulation factor 8"):
        trainer([AccumulationScheduler({0: 8})], max_epochs=1).fit(model, loader(x, y))
    assert max_param_diff(model, ref) < EXACT


def test_trainer_and_callback_reusable_after_fit():
    x, y = make_regression(46)
    cb = AccumulationScheduler({0: 5})
    t = trainer([cb], max_epochs=1)
    t.fit(Regressor(), loader(x, y))
    assert t.accumulate_grad_batches == 1  # restored, so a second fit on this Trainer is not refused
    model = Regressor()
    ref = reference_fit(copy.deepcopy(model), _batches(x, y), EpochSchedule({0: 5}), 1, mse)
    trainer([cb], max_epochs=1).fit(model, loader(x, y))
    assert max_param_diff(model, ref) < EXACT


# --------------------------------------------------------------------------- pickling
def test_pickle_round_trip_before_and_after_fit():
    cb = AccumulationScheduler({0: 3, 2: 1}, num_items=tokens_of)
    clone = pickle.loads(pickle.dumps(cb))
    assert [clone.factor(e) for e in range(4)] == [3, 3, 1, 1]
    x, labels = make_tokens(20)
    trainer([cb], max_epochs=1).fit(Tagger(), loader(x, labels))
    clone = pickle.loads(pickle.dumps(cb))
    assert clone.num_items is tokens_of
    assert clone.state_dict() == cb.state_dict()
