"""Issue 13, items 6-12: the AccumulationScheduler findings of the differential audit, one test (or more) each.

Every test here failed on main before the fix (the audit's repro, or a smaller one).
"""

from __future__ import annotations

import copy
import pickle
import re
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import IterableDataset

from lightning_ci import AccumulationScheduler, total_optimizer_steps
from tests.helpers import (
    Regressor,
    loader,
    make_regression,
    max_param_diff,
    mse,
    plan_windows,
    reference_windows,
    trainer,
)

EXACT = 1e-10  # float64 rounding over a few dozen steps is ~1e-15; every failure below is off by > 1e-3
README = Path(__file__).resolve().parents[1] / "README.md"


def _batches(x, y, bs=4):
    return list(loader(x, y, bs))


class _Batches:
    """Pre-made batches as a train loader (a plain list would be read as a list of loaders)."""

    def __init__(self, batches):
        self.batches = batches

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)


# --------------------------------------------------------------------------- 6. abandoned windows
class _StopEpochAt(Regressor):
    """Returns -1 from `on_train_batch_start` at one (epoch, batch): Lightning ends the epoch there."""

    def __init__(self, epoch: int, batch: int):
        super().__init__("sgd")
        self.stop = (epoch, batch)

    def on_train_batch_start(self, batch, batch_idx):
        if (self.current_epoch, batch_idx) == self.stop:
            return -1
        return None


def test_window_abandoned_by_on_train_batch_start_does_not_leak():
    """{0: 4}, 12 batches; epoch 0 stops at batch 5: window [0..3] steps, batch 4 is backpropagated and dropped.

    Lightning zeroes the gradient at the next window's start, so batch 4 never reaches a step; its item count
    must not either (on main the next step was scaled by 16 / (16 + 4)).
    """
    x, y = make_regression(46)
    batches = _batches(x, y)
    model = _StopEpochAt(0, 5)
    plan = plan_windows(len(batches), lambda e: 4, 2)
    plan = [w for w in plan if w[0][0] == 1 or w[-1][1] < 4]  # epoch 0 keeps only its first window
    ref = reference_windows(copy.deepcopy(model), [[batches[i] for _, i in w] for w in plan], mse)
    t = trainer([AccumulationScheduler({0: 4})], max_epochs=2)
    t.fit(model, loader(x, y))
    assert t.global_step == len(plan) == 1 + 3
    assert max_param_diff(model, ref) < EXACT


def test_window_abandoned_by_none_batch_does_not_leak():
    """A loader yielding None at a window's last slot: Lightning skips the step and zeroes at the next window."""
    x, y = make_regression(46)
    batches = _batches(x, y)
    data = [*batches[:2], None, *batches[2:]]  # 13 entries; factor 3: batches 0, 1 are dropped with the None
    model = Regressor("sgd")
    windows = [batches[2:5], batches[5:8], batches[8:11], batches[11:]]
    ref = reference_windows(copy.deepcopy(model), windows, mse)
    t = trainer([AccumulationScheduler({0: 3})], max_epochs=1)
    with pytest.warns(UserWarning, match="yielded None"):
        t.fit(model, _Batches(data))
    assert t.global_step == 4
    assert max_param_diff(model, ref) < EXACT


# --------------------------------------------------------------------------- 7. callable schedules and checkpoints
def _ckpt_trainer(tmp_path, cb, **kwargs):
    ckpt = ModelCheckpoint(dirpath=tmp_path, save_top_k=-1, every_n_epochs=1, save_on_train_epoch_end=True)
    return trainer([cb, ckpt], enable_checkpointing=True, **kwargs)


def test_callable_schedule_not_evaluated_past_the_fit_at_checkpoint_save(tmp_path):
    """The audit's repro: the fit reaches epochs 0-1 only (max_steps=6); the list has two entries."""
    x, y = make_regression(46)  # 12 batches: 4 steps in epoch 0 (k=3), 2 in epoch 1 (k=2)
    cb = AccumulationScheduler(lambda e: [3, 2][e])
    t = _ckpt_trainer(tmp_path, cb, max_epochs=50, max_steps=6)
    t.fit(Regressor(), loader(x, y))
    assert t.global_step == 6
    assert list(tmp_path.glob("*.ckpt")), "no checkpoint was written"
    assert cb.total_optimizer_steps(t) == 6


@pytest.mark.parametrize("checkpointing", [True, False])
def test_bad_callable_factor_fails_at_fit_start_whatever_the_checkpointing(tmp_path, checkpointing):
    """A factor of 0 at epoch 2 fails at one predictable point: fit start, before any optimizer step."""
    x, y = make_regression(46)
    cb = AccumulationScheduler(lambda e: 0 if e == 2 else 2)
    t = _ckpt_trainer(tmp_path, cb, max_epochs=3) if checkpointing else trainer([cb], max_epochs=3)
    with pytest.raises(ValueError, match=r"scheduling\(2\)"):
        t.fit(Regressor(), loader(x, y))
    assert t.global_step == 0


def test_bad_callable_factor_in_an_epoch_never_reached_is_fine(tmp_path):
    x, y = make_regression(46)  # 12 batches, factor 2: 6 steps per epoch; max_steps=8 ends in epoch 1
    cb = AccumulationScheduler(lambda e: 0 if e == 2 else 2)
    t = _ckpt_trainer(tmp_path, cb, max_epochs=3, max_steps=8)
    t.fit(Regressor(), loader(x, y))
    assert t.global_step == 8


# --------------------------------------------------------------------------- 8. resumable loaders
class _ResumableBatches:
    """A loader that resumes mid-epoch through Lightning's `_Stateful` protocol (`state_dict`/`load_state_dict`)."""

    def __init__(self, batches):
        self.batches = batches
        self.yielded = 0
        self._skip = 0
        self.loaded: list[dict] = []

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
        self.loaded.append(state)
        self._skip = state["consumed"]


class _SizedByTotal(Regressor):
    """Calls `total_optimizer_steps` from `configure_optimizers`, as the README recommends."""

    def configure_optimizers(self):
        self.total = total_optimizer_steps(self.trainer)
        return super().configure_optimizers()


def test_total_optimizer_steps_leaves_a_resumable_loader_to_be_restored(tmp_path):
    x, y = make_regression(46)
    batches = _batches(x, y)  # 12 batches; {0: 2, 1: 3}: 6 + 4 steps
    sched = {0: 2, 1: 3}

    def fit(model, name, ckpt_path=None):
        ckpt = ModelCheckpoint(dirpath=tmp_path / name, save_top_k=-1, every_n_train_steps=8)
        data = _ResumableBatches(batches)
        t = trainer([AccumulationScheduler(sched), ckpt], max_epochs=2, enable_checkpointing=True)
        t.fit(model, data, ckpt_path=ckpt_path)
        return t, data

    full = _SizedByTotal()
    fit(full, "full")  # step 8 = after batch 5 of epoch 1 (mid-epoch): a checkpoint
    ckpt = next((tmp_path / "full").glob("epoch=1-step=8*.ckpt"))
    resumed = _SizedByTotal(seed=7)
    t, data = fit(resumed, "resumed", ckpt_path=str(ckpt))
    assert data.loaded == [{"consumed": 6}]
    assert resumed.seen_factors == [3] * 6  # batches 6..11 of epoch 1, not the whole epoch again
    assert t.global_step == resumed.total == full.total == 10
    assert max_param_diff(resumed, full) < EXACT


# --------------------------------------------------------------------------- 9. ambiguous default item counts
class _SeqFirst(Regressor):
    """x[T, B, D] with y[B]: the loss averages over the B sequences."""

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x.mean(0)), y)


def test_sequence_first_batches_warn_naming_num_items():
    x, y = make_regression(24)
    seqs = torch.stack([x, x.flip(0), x * 0.5])  # [T=3, 24, 3]
    data = [(seqs[:, i : i + 4], y[i : i + 4]) for i in range(0, 24, 4)]
    with pytest.warns(UserWarning, match="num_items"):
        trainer([AccumulationScheduler({0: 2})], max_epochs=1).fit(_SeqFirst(), _Batches(data))


class _DictBatch(Regressor):
    def training_step(self, batch, batch_idx):
        return torch.nn.functional.mse_loss(self.net(batch["x"]), batch["y"])


def test_dict_with_a_0d_first_value_warns_and_counts_the_samples():
    """{"step": tensor(i), "x": [B, D], "y": [B, 1]}: the 0-d tensor is no batch; count B, and say so."""
    x, y = make_regression(46)
    batches = _batches(x, y)
    data = [{"step": torch.tensor(i), "x": bx, "y": by} for i, (bx, by) in enumerate(batches)]
    model = _DictBatch()
    ref = reference_windows(copy.deepcopy(model), [batches[s : s + 5] for s in range(0, 12, 5)], mse)
    with pytest.warns(UserWarning, match="num_items"):
        trainer([AccumulationScheduler({0: 5})], max_epochs=1).fit(model, _Batches(data))
    assert max_param_diff(model, ref) < EXACT  # counted 1 per batch on main: the short last batch weighed 4/2 x


def test_unambiguous_batches_do_not_warn(recwarn):
    x, y = make_regression(46)
    trainer([AccumulationScheduler({0: 5})], max_epochs=1).fit(Regressor(), loader(x, y))
    assert not [w for w in recwarn if "num_items" in str(w.message)]


# --------------------------------------------------------------------------- 10. refit after an exception
class _Fails(Regressor):
    def training_step(self, batch, batch_idx):
        if batch_idx == 3:
            raise KeyError("boom")
        return super().training_step(batch, batch_idx)


def test_trainer_usable_after_an_exception():
    x, y = make_regression(46)
    cb = AccumulationScheduler({0: 3})
    t = trainer([cb], max_epochs=1)
    with pytest.raises(KeyError, match="boom"):
        t.fit(_Fails(), loader(x, y))
    assert t.accumulate_grad_batches == 1
    model = Regressor()
    ref = reference_windows(copy.deepcopy(model), [_batches(x, y)[s : s + 3] for s in range(0, 12, 3)], mse)
    t.fit(model, loader(x, y))
    assert max_param_diff(model, ref) < EXACT


# --------------------------------------------------------------------------- 11. loaders without a length
class _Stream(IterableDataset):
    def __init__(self, x, y, batch_size=4):
        self.x, self.y, self.bs = x, y, batch_size

    def __iter__(self):
        for s in range(0, len(self.x), self.bs):
            yield self.x[s : s + self.bs], self.y[s : s + self.bs]


def test_total_optimizer_steps_without_length_warns_it_is_an_upper_bound():
    x, y = make_regression(48)  # 12 batches: 12 steps in one epoch, far fewer than max_steps=100
    cb = AccumulationScheduler({0: 1})
    t = trainer([cb], max_epochs=1, max_steps=100)
    t.fit(Regressor(), torch.utils.data.DataLoader(_Stream(x, y), batch_size=None))
    assert t.global_step == 12
    with pytest.warns(UserWarning, match="upper bound"):
        assert cb.total_optimizer_steps(t) == 100


# --------------------------------------------------------------------------- 12. documented placement and pickling
class _GradProbe(Callback):
    def __init__(self):
        self.grads: list[torch.Tensor] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.grads.append(torch.cat([p.grad.flatten().clone() for p in pl_module.parameters()]))


@pytest.mark.parametrize("probe_first", [True, False])
def test_every_on_before_optimizer_step_sees_the_final_gradient(probe_first):
    """Wherever the scheduler sits among the callbacks, gradients are final when `on_before_optimizer_step` runs."""
    x, y = make_regression(46)
    batches = _batches(x, y)
    model = Regressor("sgd")
    ref_model = copy.deepcopy(model)
    ref_opt = ref_model.configure_optimizers()
    expected = []
    for s in range(0, 12, 5):  # windows 5, 5, 2
        bx, by = torch.cat([b[0] for b in batches[s : s + 5]]), torch.cat([b[1] for b in batches[s : s + 5]])
        ref_opt.zero_grad()
        mse(ref_model, bx, by).backward()
        expected.append(torch.cat([p.grad.flatten().clone() for p in ref_model.parameters()]))
        ref_opt.step()
    probe, sched = _GradProbe(), AccumulationScheduler({0: 5})
    trainer([probe, sched] if probe_first else [sched, probe], max_epochs=1).fit(model, loader(x, y))
    assert len(probe.grads) == 3
    for got, want in zip(probe.grads, expected):
        assert (got - want).abs().max().item() < EXACT


def test_readme_says_where_to_place_it_and_shows_a_module_level_num_items():
    text = README.read_text()
    section = text[text.index("## `AccumulationScheduler`") :]
    section = section[: section.index("\n## ", 10)]
    assert "on_before_optimizer_step" in section
    assert "ddp_spawn" in section
    assert re.search(r"^def \w+\(batch\)", section, flags=re.M), "no module-level num_items function in the README"


def test_lambda_num_items_does_not_pickle_but_a_module_level_function_does():
    """What the README says about `ddp_spawn`, checked: the callback is pickled into the workers."""
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        pickle.dumps(AccumulationScheduler({0: 2}, num_items=lambda b: b[1].numel()))
    from tests.helpers import tokens_of

    assert pickle.loads(pickle.dumps(AccumulationScheduler({0: 2}, num_items=tokens_of))).num_items is tokens_of
