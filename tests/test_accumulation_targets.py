"""Issue 12: effective-batch targets, step-keyed schedules, and Lightning's BatchSizeFinder, in float64.

Every fit is compared window by window with a plain PyTorch loop over the concatenated window (`plan_windows`
lays the windows out the slow, obvious way), including the partial windows at change points and epoch ends.
"""

from __future__ import annotations

import copy
import logging
import random

import pytest
from lightning.pytorch.callbacks import BatchSizeFinder, ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from lightning_ci import AccumulationScheduler, total_optimizer_steps
from lightning_ci.schedule import (
    Schedule,
    count_optimizer_steps,
    factors_for_micro_batch,
    largest_dividing_micro_batch,
)
from tests.helpers import (
    Regressor,
    Tagger,
    loader,
    make_regression,
    make_tokens,
    max_param_diff,
    mse,
    plan_windows,
    reference_windows,
    token_ce,
    tokens_of,
    trainer,
)

EXACT = 1e-10  # float64 rounding over a few dozen steps is ~1e-15; a wrong window or weight is off by > 1e-3


def _fit_and_reference(cb, model, x, y, epochs, factor_of, interval, loss=mse, bs=4, clip=None, **kwargs):
    batches = list(loader(x, y, bs))
    plan = plan_windows(len(batches), factor_of, epochs, interval, kwargs.get("max_steps", -1))
    ref = reference_windows(copy.deepcopy(model), [[batches[i] for _, i in w] for w in plan], loss, clip)
    t = trainer([cb], max_epochs=epochs, gradient_clip_val=clip, **kwargs)
    t.fit(model, loader(x, y, bs))
    return t, ref, plan


# --------------------------------------------------------------------------- pure schedule arithmetic
def test_factors_for_micro_batch_and_the_error_naming_both_numbers():
    targets = Schedule({0: 32, 1: 128}, quantity="effective batch size")
    assert factors_for_micro_batch(targets, 8).table == {0: 4, 1: 16}
    assert factors_for_micro_batch(targets, 8, world_size=2).table == {0: 2, 1: 8}
    with pytest.raises(ValueError, match=r"effective batch size 32 .*micro-batch size 12\b"):
        factors_for_micro_batch(targets, 12)
    with pytest.raises(ValueError, match=r"32 .*micro-batch size 8 x 3 processes = 24"):
        factors_for_micro_batch(targets, 8, world_size=3)


@pytest.mark.parametrize(
    ("limit", "targets", "world", "expected"),
    [
        (11, [32, 128], 1, 8),
        (12, [24, 48], 1, 12),
        (7, [30], 1, 6),
        (100, [64], 2, 32),
        (5, [64], 1, 4),
        (1, [9], 1, 1),
    ],
)
def test_largest_dividing_micro_batch(limit, targets, world, expected):
    assert largest_dividing_micro_batch(limit, targets, world) == expected


def test_count_optimizer_steps_matches_a_window_by_window_count():
    """Random tables, callables, both intervals, caps: the fast count equals laying the windows out one by one."""
    rng = random.Random(0)
    for _ in range(400):
        batches = rng.randint(1, 25)
        interval = rng.choice(["epoch", "step"])
        table = {k: rng.randint(1, 7) for k in sorted(rng.sample(range(30), rng.randint(1, 4)))}
        schedule = Schedule(table, interval=interval)
        if rng.random() < 0.3:
            schedule = Schedule(lambda k, s=schedule: s.value(k), interval=interval)
        epochs, max_steps = rng.choice([1, 2, 3, 6]), rng.choice([-1, -1, 1, 4, 9, 30])
        want = len(plan_windows(batches, schedule.value, epochs, interval, max_steps))
        assert count_optimizer_steps(batches, schedule, epochs, max_steps) == want, (batches, table, interval)


def test_count_with_unbounded_epochs_is_max_steps():
    assert count_optimizer_steps(10, Schedule({0: 3, 7: 1}, interval="step"), -1, 25) == 25
    assert count_optimizer_steps(10, Schedule(lambda e: e + 1), -1, 12) == 12


# --------------------------------------------------------------------------- effective-batch targets
@pytest.mark.parametrize("interval", ["epoch", "step"])
def test_effective_batch_size_dict_matches_large_batch(interval):
    """Targets 12 then 20 with micro-batch 4: factors 3 then 5, partial windows at the change and epoch ends."""
    x, y = make_regression(46)  # 12 batches, the last of 2
    keys = {"epoch": {0: 12, 1: 20}, "step": {0: 12, 3: 20}}[interval]
    cb = AccumulationScheduler(effective_batch_size=keys, interval=interval)
    factors = {k: v // 4 for k, v in keys.items()}
    factor_of = Schedule(factors, interval=interval).value
    model = Regressor("adamw")
    t, ref, plan = _fit_and_reference(cb, model, x, y, 3, factor_of, interval)
    assert max_param_diff(model, ref) < EXACT
    assert t.global_step == cb.total_optimizer_steps(t) == len(plan)
    assert cb.micro_batch_size == 4
    assert cb.scheduling == factors
    assert cb.effective_batch_size == keys


def test_effective_batch_size_int_is_a_constant_target():
    x, labels = make_tokens(30)
    cb = AccumulationScheduler(effective_batch_size=12, num_items=tokens_of)
    model = Tagger()
    t, ref, plan = _fit_and_reference(cb, model, x, labels, 2, lambda e: 3, "epoch", loss=token_ce)
    assert max_param_diff(model, ref) < EXACT
    assert cb.scheduling == {0: 3}
    assert t.global_step == len(plan) == 2 * 3


def test_effective_batch_size_not_a_multiple_of_the_micro_batch_names_both_numbers():
    x, y = make_regression(46)
    t = trainer([AccumulationScheduler(effective_batch_size={0: 8, 2: 30})], max_epochs=1)
    with pytest.raises(ValueError, match=r"effective batch size 30 \(epoch 2\).*micro-batch size 4\b"):
        t.fit(Regressor(), loader(x, y))
    assert t.global_step == 0 and t.accumulate_grad_batches == 1


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"scheduling": {0: 2}, "effective_batch_size": 8}, ValueError, "exactly one"),
        ({}, ValueError, "exactly one"),
        ({"effective_batch_size": "32"}, TypeError, "effective_batch_size"),
        ({"effective_batch_size": 0}, ValueError, "received 0"),
        ({"effective_batch_size": True}, TypeError, "effective_batch_size"),
        ({"effective_batch_size": {0: 32, 3: 2.5}}, ValueError, "2.5"),
        ({"effective_batch_size": {2: 32}}, ValueError, "epoch 0"),
        ({"scheduling": {0: 2}, "interval": "batch"}, ValueError, "'batch'"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        AccumulationScheduler(**kwargs)


def test_factor_of_an_effective_target_is_known_only_once_the_fit_reads_the_micro_batch():
    cb = AccumulationScheduler(effective_batch_size={0: 32, 1: 128})
    with pytest.raises(RuntimeError, match="micro-batch"):
        cb.factor(0)
    x, y = make_regression(64)
    trainer([cb], max_epochs=1).fit(Regressor(), loader(x, y, batch_size=8))
    assert [cb.factor(e) for e in (0, 1, 5)] == [4, 16, 16]


# --------------------------------------------------------------------------- step-keyed schedules
@pytest.mark.parametrize(
    "schedule",
    [
        {0: 1, 5: 4},  # k=1 for 5 steps, then windows of 4 from batch 5 (misaligned), cut by the epoch end
        {0: 1, 1: 3},  # a 3-batch window starting at batch 1 (the scheduler zeroes the gradients itself)
        {0: 2, 1: 4, 4: 1, 6: 5},  # several changes, some mid-epoch
        {0: 5, 2: 2},  # the change falls on the epoch's last, partial window
    ],
)
def test_step_schedule_matches_large_batch(schedule):
    x, y = make_regression(46)
    cb = AccumulationScheduler(schedule, interval="step")
    factor_of = Schedule(schedule, interval="step").value
    model = Regressor("sgd")
    t, ref, plan = _fit_and_reference(cb, model, x, y, 3, factor_of, "step", clip=0.7)
    assert max_param_diff(model, ref) < EXACT
    assert t.global_step == cb.total_optimizer_steps(t) == total_optimizer_steps(t) == len(plan)
    # the logged factor is the last window's: the one scheduled after all the steps before it
    assert t.callback_metrics["accumulation_factor"].item() == factor_of(len(plan) - 1)


def test_step_schedule_callable_and_token_level():
    x, labels = make_tokens(40)  # 10 batches
    cb = AccumulationScheduler(lambda s: 1 + s // 3, interval="step", num_items=tokens_of)
    model = Tagger()
    t, ref, plan = _fit_and_reference(cb, model, x, labels, 3, lambda s: 1 + s // 3, "step", loss=token_ce)
    assert max_param_diff(model, ref) < EXACT
    assert t.global_step == cb.total_optimizer_steps(t) == len(plan)


def test_step_schedule_with_max_steps_and_logged_values():
    x, y = make_regression(46)
    schedule = {0: 1, 3: 4}
    factor_of = Schedule(schedule, interval="step").value
    cb = AccumulationScheduler(schedule, interval="step")
    model = Regressor("sgd")
    t, ref, plan = _fit_and_reference(cb, model, x, y, 5, factor_of, "step", max_steps=9)
    assert max_param_diff(model, ref) < EXACT
    # epoch 0: 3 windows of 1, then 4, 4 and the last batch; epoch 1: 4, 4, 4 -> max_steps ends the fit
    assert [len(w) for w in plan] == [1, 1, 1, 4, 4, 1, 4, 4, 4]
    assert t.global_step == cb.total_optimizer_steps(t) == len(plan) == 9
    assert t.callback_metrics["accumulation_factor"].item() == 4.0
    # items per step in epoch 1 (the last batch holds 2 samples), logged in float32
    assert t.callback_metrics["effective_batch_size"].item() == pytest.approx((16 + 16 + 14) / 3, rel=1e-6)


class _Resumable:
    """A loader that resumes mid-epoch through Lightning's `_Stateful` protocol (micro-batch 4)."""

    batch_size = 4  # what `effective_batch_size=` reads

    def __init__(self, batches):
        self.batches, self.yielded, self._skip = batches, 0, 0

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        skip, self._skip = self._skip, 0
        self.yielded = skip
        for b in self.batches[skip:]:
            self.yielded += 1
            yield b

    def state_dict(self):
        return {"consumed": self.yielded % len(self.batches)}  # an exhausted epoch resumes at the next one's start

    def load_state_dict(self, state):
        self._skip = state["consumed"]


class _Sized(Regressor):
    def configure_optimizers(self):
        self.total = total_optimizer_steps(self.trainer)
        return super().configure_optimizers()


@pytest.mark.parametrize(
    ("kwargs", "every"),
    [
        ({"scheduling": {0: 1, 3: 3, 8: 2}}, 5),  # resumes in epoch 0, before the change at step 8
        ({"effective_batch_size": {0: 4, 3: 12, 8: 8}}, 7),  # the same schedule as targets (micro-batch 4)
        ({"scheduling": {0: 2, 7: 5}}, 7),  # the checkpoint falls right at the change point
    ],
)
def test_step_schedule_resumes_mid_epoch(tmp_path, kwargs, every):
    """A mid-epoch restart continues the step schedule: same weights and steps as the uninterrupted run."""
    x, y = make_regression(46)
    batches = list(loader(x, y))  # 12 batches

    def fit(model, name, ckpt_path=None):
        ckpt = ModelCheckpoint(dirpath=tmp_path / name, save_top_k=-1, every_n_train_steps=every)
        t = trainer([AccumulationScheduler(**kwargs, interval="step"), ckpt], max_epochs=3, enable_checkpointing=True)
        t.fit(model, _Resumable(batches), ckpt_path=ckpt_path)
        return t

    full = _Sized()
    t_full = fit(full, "full")
    ckpt = next((tmp_path / "full").glob(f"epoch=*-step={every}.ckpt"))
    resumed = _Sized(seed=3)
    t = fit(resumed, "resumed", ckpt_path=str(ckpt))
    assert t.global_step == t_full.global_step == resumed.total == full.total
    assert max_param_diff(resumed, full) < EXACT
    schedule = {0: 1, 3: 3, 8: 2} if "effective_batch_size" in kwargs else next(iter(kwargs.values()))
    assert t.global_step == len(plan_windows(12, Schedule(schedule, interval="step").value, 3, "step"))


# --------------------------------------------------------------------------- BatchSizeFinder
class _OOMAbove(Regressor):
    """Raises CUDA's out-of-memory error above `limit` samples per batch (what Lightning's OOM test looks for)."""

    def __init__(self, limit: int = 12, batch_size: int = 2, n: int = 100):
        super().__init__("sgd")
        self.limit, self.batch_size = limit, batch_size
        self.x, self.y = make_regression(n)
        self.sizes: list[int] = []
        self.total: int | None = None

    def train_dataloader(self):
        return DataLoader(TensorDataset(self.x, self.y), batch_size=self.batch_size)

    def training_step(self, batch, batch_idx):
        if len(batch[0]) > self.limit:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        self.sizes.append(len(batch[0]))
        return super().training_step(batch, batch_idx)

    def configure_optimizers(self):
        self.total = total_optimizer_steps(self.trainer)
        return super().configure_optimizers()


@pytest.mark.parametrize("interval", ["epoch", "step"])
def test_batch_size_finder_picks_the_largest_dividing_micro_batch(interval, tmp_path, caplog):
    """The finder settles on 11 (binsearch, 5% margin); 8 is the largest at or below it that divides 24 and 48."""
    targets = {0: 24, 1: 48}
    factors = {0: 3, 1: 6}
    finder = BatchSizeFinder(mode="binsearch", init_val=2, steps_per_trial=1)
    cb = AccumulationScheduler(effective_batch_size=targets, interval=interval)
    # The module's batch size starts at the finder's init_val: Lightning builds the first trial's loader before it
    # sets init_val, so a larger start runs (and fails) at that size and the search ends at 1.
    model = _OOMAbove(batch_size=2)
    ref_model = _OOMAbove(batch_size=8)
    batches = list(loader(model.x, model.y, 8))  # 13 batches, the last of 4
    plan = plan_windows(len(batches), Schedule(factors, interval=interval).value, 2, interval)
    plain = Regressor("sgd")  # same seed, same weights; its configure_optimizers needs no trainer
    reference = reference_windows(plain, [[batches[i] for _, i in w] for w in plan], mse)

    with caplog.at_level(logging.INFO):
        t = trainer([finder, cb], max_epochs=2, default_root_dir=tmp_path)
        t.fit(model)
    assert finder.optimal_batch_size == 11
    assert cb.micro_batch_size == model.batch_size == 8
    assert cb.scheduling == factors
    assert model.sizes[-13:] == [8] * 12 + [4]  # the fit's last epoch ran on micro-batches of 8
    assert "found micro-batch 11; using 8" in caplog.text
    assert t.callback_metrics["micro_batch_size"].item() == 8.0
    assert max_param_diff(model, reference) < EXACT
    assert t.global_step == model.total == len(plan)  # the count made before the search still holds

    # the finder's trials leave no trace: the same fit without the finder, at micro-batch 8
    plain_cb = AccumulationScheduler(effective_batch_size=targets, interval=interval)
    t_plain = trainer([plain_cb], max_epochs=2, default_root_dir=tmp_path)
    t_plain.fit(ref_model)
    assert max_param_diff(model, ref_model) == 0.0
    assert cb.state_dict() == plain_cb.state_dict()
    assert t.global_step == t_plain.global_step
    assert t.callback_metrics["effective_batch_size"] == t_plain.callback_metrics["effective_batch_size"]


def test_batch_size_finder_whose_find_divides_the_target_keeps_it(tmp_path):
    finder = BatchSizeFinder(mode="power", init_val=2, steps_per_trial=1)  # power: 2, 4, 8, 16 fails -> 8
    cb = AccumulationScheduler(effective_batch_size=32)
    model = _OOMAbove(batch_size=2)
    trainer([finder, cb], max_epochs=1, default_root_dir=tmp_path).fit(model)
    assert finder.optimal_batch_size == 8
    assert cb.micro_batch_size == model.batch_size == 8 and cb.scheduling == {0: 4}
    assert model.sizes[-13:] == [8] * 12 + [4]


@pytest.mark.parametrize("start", [24, 32])
def test_count_before_the_finder_uses_a_dividing_micro_batch(start):
    """From `configure_optimizers` (before the search), a start that does not divide the targets counts as the
    largest one that does, with the loader's samples: ceil(100 / 24) + ceil(100 / 48) = 5 + 3 steps."""
    seen = []

    class Probe(_OOMAbove):
        def configure_optimizers(self):
            seen.append(total_optimizer_steps(self.trainer))
            raise KeyError("stop")

    t = trainer([BatchSizeFinder(), AccumulationScheduler(effective_batch_size={0: 24, 1: 48})], max_epochs=2)
    with pytest.raises(KeyError):
        t.fit(Probe(batch_size=start))
    assert seen == [5 + 3]


def test_divisor_plan_makes_lightning_zero_and_step_exactly_at_window_edges():
    """Lightning zeroes before batch i when i % d == 0 and steps after it when (i + 1) % d == 0 or at the epoch's last
    batch; the per-batch divisor (plus our own zeroing where no divisor can) must give exactly the planned windows."""
    from lightning_ci.accumulation import _modulus

    rng = random.Random(1)
    for _ in range(2000):
        batches, start = rng.randint(1, 150), 0
        while start < batches:
            k = rng.randint(1, 12)
            for i in range(start, min(start + k, batches)):
                d, zero_ourselves = _modulus(i, start, k)
                zero = i % d == 0 or zero_ourselves
                step = (i + 1) % d == 0 or i == batches - 1
                assert zero == (i == start), (i, start, k, d)
                assert step == (i in (start + k - 1, batches - 1)), (i, start, k, d, batches)
            start += k


def test_random_configurations_replay_against_the_plain_loop():
    """A few random configurations of `tests/accum_random_replay.py` (the report ran hundreds): epoch and step keys,
    tables with mid-epoch change points, callables, effective-batch targets, token counts, clipping, max_steps,
    abandoned windows and mid-epoch resumes, each window by window against the float64 plain loop."""
    from tests.accum_random_replay import main

    summary = main(6, seed=3)
    assert summary["failures"] == 0, summary
    assert summary["max_diff"] < EXACT and summary["max_resume_diff"] < EXACT, summary
