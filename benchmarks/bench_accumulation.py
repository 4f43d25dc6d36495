"""AccumulationScheduler overhead against Lightning's own accumulation, and peak memory against the factor.

Run:  python benchmarks/bench_accumulation.py            (full: 9 repeats)
      python benchmarks/bench_accumulation.py --quick    (smoke: 2 repeats)

Step time: the same MLP, data and factor k, trained with ``Trainer(accumulate_grad_batches=k)`` (Lightning's
built-in, which is not exact for partial windows) and with ``AccumulationScheduler({0: k})``. Each repeat
runs both, in alternating order; the time is taken over the second epoch only (the first warms up), and
the table reports medians and the median of the per-repeat ratios, in wall-clock time and in this process's
CPU time (``time.process_time``). On a shared machine the CPU time is the figure to read: wall time also
counts the time other jobs hold the cores. Run it with ``OMP_NUM_THREADS=1`` there.

Peak memory: each factor runs in a fresh process and reports its peak RSS (``ru_maxrss``). With the
callback, the extra state is a few scalars, so the peak does not grow with k (it cannot: gradients are
accumulated in place, as with Lightning's own accumulation).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import lightning
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_ci import AccumulationScheduler

WIDTH, DEPTH, BATCH, BATCHES = 1024, 3, 64, 96


class MLP(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        layers: list[nn.Module] = [nn.Linear(256, WIDTH), nn.ReLU()]
        for _ in range(DEPTH - 1):
            layers += [nn.Linear(WIDTH, WIDTH), nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.Linear(WIDTH, 10))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-4)


class EpochTimer(Callback):
    def __init__(self) -> None:
        self.times: list[float] = []

        self.cpu_times: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module):
        self._t0, self._c0 = time.perf_counter(), time.process_time()

    def on_train_epoch_end(self, trainer, pl_module):
        self.times.append(time.perf_counter() - self._t0)
        self.cpu_times.append(time.process_time() - self._c0)


def data() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    n = BATCH * BATCHES - BATCH // 2  # a short last batch, so the last window is partial too
    x = torch.randn(n, 256, generator=g)
    y = torch.randint(10, (n,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=BATCH)


def fit(k: int, ours: bool, epochs: int = 2) -> tuple[float, float]:
    timer = EpochTimer()
    callbacks: list[Callback] = [timer]
    if ours:
        callbacks.append(AccumulationScheduler({0: k}))
    trainer = Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=epochs,
        accumulate_grad_batches=1 if ours else k,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
    )
    trainer.fit(MLP(), data())
    return timer.times[-1] / BATCHES, timer.cpu_times[-1] / BATCHES  # wall, CPU s per micro-batch, 2nd epoch


def callback_cost(k: int, repeats: int = 2000) -> tuple[float, float]:
    """The callback's own work, isolated: CPU seconds per micro-batch (hooks) and per optimizer step (rescale).

    Calls the hooks directly with the benchmark's batch and the MLP's parameter shapes, so that the
    end-to-end ratio above, which is noisy on a shared machine, can be read against what the callback
    adds at most.
    """
    from types import SimpleNamespace

    cb = AccumulationScheduler({0: k})
    # `fit_loop._should_accumulate` answers "not the window's last batch", as inside a window
    trainer = SimpleNamespace(
        current_epoch=0,
        accumulate_grad_batches=k,
        world_size=1,
        strategy=None,
        fit_loop=SimpleNamespace(_should_accumulate=lambda: True),
    )
    module = SimpleNamespace(device=torch.device("cpu"))
    loader = data()
    batch = next(iter(loader))
    params = [p.detach().clone().requires_grad_(True) for p in MLP().parameters()]
    for p in params:
        p.grad = torch.randn_like(p)
    opt = torch.optim.AdamW(params)
    trainer.optimizers = [opt]  # the rescale covers the trainer's optimizers
    t0 = time.process_time()
    for i in range(repeats):
        cb.on_train_batch_start(trainer, module, batch, i)
        loss = params[0][0, 0] * 1.0
        cb.on_before_backward(trainer, module, loss)  # registers the weighting hook (a scalar multiply)
        cb.on_after_backward(trainer, module)  # asks whether the window ends here
    per_batch = (time.process_time() - t0) / repeats
    steps = max(1, repeats // k)
    t0 = time.process_time()
    for _ in range(steps):
        cb._window_items = torch.tensor(float(k * BATCH), dtype=torch.float64)
        cb.on_before_optimizer_step(trainer, module, opt)
    per_step = (time.process_time() - t0) / steps
    return per_batch, per_step


def peak_rss_child(k: int) -> None:
    fit(k, ours=True, epochs=1)
    print(json.dumps({"k": k, "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 repeats instead of 9")
    parser.add_argument("--factor", type=int, default=4)
    parser.add_argument("--_rss-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._rss_child is not None:
        peak_rss_child(args._rss_child)
        return
    import logging

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    repeats = 2 if args.quick else 9
    k = args.factor
    load_start = os.getloadavg()[0]
    wall: dict[bool, list[float]] = {False: [], True: []}
    cpu: dict[bool, list[float]] = {False: [], True: []}
    for r in range(repeats):
        order = (False, True) if r % 2 == 0 else (True, False)
        for flag in order:
            w, c = fit(k, flag)
            wall[flag].append(w)
            cpu[flag].append(c)
    per_batch, per_step = callback_cost(k)
    added = per_batch + per_step / k

    rss = []
    for factor in (1, 4, 16):
        out = (
            subprocess.run(
                [sys.executable, __file__, "--_rss-child", str(factor)], capture_output=True, text=True, check=True
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        rss.append(json.loads(out))

    params = sum(p.numel() for p in MLP().parameters())
    print(f"# AccumulationScheduler benchmark ({'quick' if args.quick else 'full'})")
    env = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " if "OMP_NUM_THREADS" in os.environ else ""
    print(f"command: {env}python benchmarks/bench_accumulation.py{' --quick' if args.quick else ''}")
    print(
        f"machine: {platform.machine()}, {torch.get_num_threads()} threads; torch {torch.__version__}, "
        f"lightning {lightning.__version__}"
    )
    print(f"model: MLP {params / 1e6:.1f}M params, micro-batch {BATCH}, {BATCHES} batches/epoch, factor {k}")
    print()
    print(f"load average (1 min): {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")
    print()
    print("| run | median CPU time per micro-batch | median wall time per micro-batch | repeats |")
    print("|---|---|---|---|")
    for flag, name in (
        (False, f"Lightning `accumulate_grad_batches={k}`"),
        (True, f"`AccumulationScheduler({{0: {k}}})`"),
    ):
        print(
            f"| {name} | {statistics.median(cpu[flag]) * 1e3:.2f} ms | {statistics.median(wall[flag]) * 1e3:.2f} ms"
            f" | {repeats} |"
        )
    ratio = {name: [o / b for o, b in zip(t[True], t[False])] for name, t in (("cpu", cpu), ("wall", wall))}
    med = {name: statistics.median(r) for name, r in ratio.items()}
    print(
        f"| **overhead (median of paired ratios)** | **{(med['cpu'] - 1) * 100:+.1f}%**"
        f" | {(med['wall'] - 1) * 100:+.1f}% | |"
    )
    print(
        "| paired ratios, min … max | "
        + " | ".join(f"{(min(r) - 1) * 100:+.1f}% … {(max(r) - 1) * 100:+.1f}%" for r in ratio.values())
        + " | |"
    )
    print()
    med_b = statistics.median(cpu[False])
    print(
        f"The callback's own work, timed in isolation (CPU time): {per_batch * 1e6:.0f} µs per micro-batch (item"
        f" count, loss hook, window check) + {per_step * 1e6:.0f} µs per optimizer step (one fused rescale of the"
        f" gradients), i.e. {added * 1e6:.0f} µs per micro-batch = **{added / med_b * 100:.1f}%** of Lightning's"
        " median CPU time per micro-batch. The end-to-end ratios above also carry the machine's noise."
    )
    print()
    print("| factor k | peak RSS (fresh process, 1 epoch) |")
    print("|---|---|")
    for row in rss:
        print(f"| {row['k']} | {row['maxrss_mib']:.0f} MiB |")


if __name__ == "__main__":
    main()
