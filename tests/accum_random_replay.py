"""Replay random AccumulationScheduler configurations window by window against a float64 plain PyTorch loop.

Usage: ``python tests/accum_random_replay.py N [SEED]`` prints one line per failure and a JSON summary (how many
configurations, the max |Δw| against the reference, the max |Δw| of resumed runs against uninterrupted ones).
``tests/test_accumulation_targets.py`` runs a few of them; the report for issue 12/13 ran many.

Each configuration draws: samples (batch-mean MSE) or token-level (token-mean CE with ``num_items``) data of a
random size (so the last batch is short), a micro-batch size, epoch or step keys, factors (a table with change
points anywhere, including mid-epoch, or a callable) or effective-batch targets, SGD or AdamW, clipping or not,
``max_steps`` or not, an epoch cut short by ``on_train_batch_start`` returning -1 (an abandoned window), and a
mid-epoch resume from a checkpoint with a resumable loader. The reference lays the windows out on its own, with
nothing from ``lightning_ci`` but the callback under test.
"""

from __future__ import annotations

import copy
import json
import random
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_ci import AccumulationScheduler
from tests.helpers import (
    Regressor,
    Tagger,
    make_regression,
    make_tokens,
    max_param_diff,
    mse,
    reference_windows,
    token_ce,
    tokens_of,
    trainer,
)


@dataclass
class Case:
    seed: int
    task: str
    n: int
    micro: int
    interval: str
    kind: str  # "table", "callable" or "effective"
    table: dict
    epochs: int
    optimizer: str
    clip: Optional[float]
    max_steps: int
    stop: Optional[tuple[int, int]]  # (epoch, batch) where on_train_batch_start returns -1
    resume_at: Optional[int]  # optimizer step of the checkpoint to resume from

    def factor_of(self) -> Callable[[int], int]:
        keys = sorted(self.table)

        def f(key: int) -> int:
            value = self.table[max(k for k in keys if k <= key)]
            return value // self.micro if self.kind == "effective" else value

        return f


def draw(rng: random.Random, seed: int) -> Case:
    task = rng.choice(["samples", "tokens"])
    n, micro = rng.randint(6, 50), rng.randint(1, 6)
    batches = -(-n // micro)
    interval = rng.choice(["epoch", "step"])
    epochs = rng.randint(1, 4)
    horizon = epochs if interval == "epoch" else max(2, epochs * batches)
    keys = sorted({0, *rng.sample(range(1, horizon + 1), min(horizon, rng.randint(0, 3)))})
    factors = {k: rng.randint(1, 7) for k in keys}
    kind = rng.choice(["table", "table", "callable", "effective"])
    table = {k: v * micro for k, v in factors.items()} if kind == "effective" else factors
    stop = None
    if rng.random() < 0.2:
        stop = (rng.randrange(epochs), rng.randrange(batches))
    resume_at = None
    if stop is None and rng.random() < 0.25:
        resume_at = -1  # filled in once the plan is known
    case = Case(
        seed=seed,
        task=task,
        n=n,
        micro=micro,
        interval=interval,
        kind=kind,
        table=table,
        epochs=epochs,
        optimizer=rng.choice(["sgd", "adamw"]),
        clip=rng.choice([None, None, 0.3]),
        max_steps=rng.choice([-1, -1, -1, rng.randint(1, 12)]),
        stop=stop,
        resume_at=resume_at,
    )
    if resume_at is not None:
        steps = len(plan(case, batches))
        if steps < 2:
            case.resume_at = None
        else:
            case.resume_at = rng.randint(1, steps - 1)
    return case


def plan(case: Case, batches: int) -> list[list[tuple[int, int]]]:
    """The windows that step, written out on their own: [[(epoch, batch), ...], ...]."""
    f = case.factor_of()
    out: list[list[tuple[int, int]]] = []
    for epoch in range(case.epochs):
        start = 0
        while start < batches:
            if 0 <= case.max_steps <= len(out):
                return out
            k = f(epoch if case.interval == "epoch" else len(out))
            end = min(start + k, batches)
            if case.stop is not None and case.stop[0] == epoch and start <= case.stop[1] < end:
                break  # the window is abandoned with whatever it backpropagated; the epoch ends
            out.append([(epoch, i) for i in range(start, end)])
            start = end
    return out


class _Resumable:
    def __init__(self, batches, batch_size):
        self.batches, self.batch_size, self.yielded, self._skip = batches, batch_size, 0, 0

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


def _model(case: Case, seed: int = 0):
    if case.task == "tokens":
        return Tagger(seed=seed)
    return Regressor(case.optimizer, seed=seed)


def _stopping(model, stop):
    if stop is None:
        return model

    def on_train_batch_start(batch, batch_idx, _m=model):
        return -1 if (_m.current_epoch, batch_idx) == stop else None

    model.on_train_batch_start = on_train_batch_start
    return model


def replay(case: Case) -> dict[str, Any]:
    x, y = make_tokens(case.n, seed=case.seed) if case.task == "tokens" else make_regression(case.n, seed=case.seed)
    batches = [(x[s : s + case.micro], y[s : s + case.micro]) for s in range(0, case.n, case.micro)]
    windows = plan(case, len(batches))
    loss = token_ce if case.task == "tokens" else mse
    model = _model(case)
    ref = reference_windows(copy.deepcopy(model), [[batches[i] for _, i in w] for w in windows], loss, case.clip)

    def callback():
        kwargs: dict[str, Any] = {"interval": case.interval}
        if case.task == "tokens":
            kwargs["num_items"] = tokens_of
        if case.kind == "effective":
            return AccumulationScheduler(effective_batch_size=case.table, **kwargs)
        if case.kind == "callable":
            return AccumulationScheduler(case.factor_of(), **kwargs)
        return AccumulationScheduler(case.table, **kwargs)

    with tempfile.TemporaryDirectory() as tmp:
        cbs = [callback()]
        if case.resume_at is not None:
            cbs.append(ModelCheckpoint(dirpath=Path(tmp) / "full", save_top_k=-1, every_n_train_steps=1))
        t = trainer(
            cbs,
            max_epochs=case.epochs,
            max_steps=case.max_steps,
            gradient_clip_val=case.clip,
            enable_checkpointing=case.resume_at is not None,
        )
        t.fit(_stopping(model, case.stop), _Resumable(batches, case.micro))
        out: dict[str, Any] = {
            "diff": max_param_diff(model, ref),
            "weight_scale": max(p.abs().max().item() for p in ref.parameters()),
            "steps_ok": t.global_step == len(windows),
            "total_ok": case.stop is not None or cbs[0].total_optimizer_steps(t) == t.global_step,
        }
        if case.resume_at is not None:
            (ckpt,) = (Path(tmp) / "full").glob(f"*-step={case.resume_at}.ckpt")
            resumed = _model(case, seed=99)
            t2 = trainer([callback()], max_epochs=case.epochs, max_steps=case.max_steps, gradient_clip_val=case.clip)
            t2.fit(resumed, _Resumable(batches, case.micro), ckpt_path=str(ckpt))
            out["resume_diff"] = max_param_diff(resumed, model)
            out["resume_steps_ok"] = t2.global_step == t.global_step
    return out


def main(count: int, seed: int = 0) -> dict[str, Any]:
    import logging

    logger = logging.getLogger("lightning.pytorch")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _main(count, seed)
    finally:
        logger.setLevel(level)


def _main(count: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    worst, worst_resume, failures, kinds, worst_case = 0.0, 0.0, [], {}, {}
    for i in range(count):
        case = draw(rng, seed * 100_000 + i)
        r = replay(case)
        if r["diff"] > worst:
            worst_case = {"case": case.__dict__, "weight_scale": r["weight_scale"]}
        worst = max(worst, r["diff"])
        worst_resume = max(worst_resume, r.get("resume_diff", 0.0))
        for key in ("interval", "kind", "task"):
            kinds[f"{key}={getattr(case, key)}"] = kinds.get(f"{key}={getattr(case, key)}", 0) + 1
        kinds["resumed"] = kinds.get("resumed", 0) + (case.resume_at is not None)
        kinds["abandoned"] = kinds.get("abandoned", 0) + (case.stop is not None)
        ok = r["diff"] < 1e-10 and r["steps_ok"] and r["total_ok"]
        ok = ok and r.get("resume_diff", 0.0) < 1e-10 and r.get("resume_steps_ok", True)
        if not ok:
            failures.append({"case": case.__dict__, "result": r})
            print("FAIL", json.dumps(failures[-1], default=str), flush=True)
    summary = {"configurations": count, "max_diff": worst, "max_resume_diff": worst_resume, "failures": len(failures)}
    summary["drawn"] = kinds
    summary["worst"] = worst_case
    return summary


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 0), indent=1))
