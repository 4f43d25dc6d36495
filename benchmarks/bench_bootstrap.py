"""Benchmark ``BootstrapMetric`` against its anchors, in one run.

1. One validation epoch of a confusion-family metric (``MulticlassF1Score``, 3 classes, macro): 2,000
   samples in batches of 32 with B = 1000, ``update`` for every batch then ``compute``, against torchmetrics'
   ``BootStrapper(base, num_bootstraps=1000)`` on the same stream. Reports the ratio (goal >= 200x).
2. ``update`` time of ``BootstrapMetric`` against the unwrapped metric, per epoch of 63 batches of 32
   (goal <= 1.5x), for each resampling mode.
3. Poisson-mode state memory for n = 1e4 ... 1e6 samples (goal: flat), for ``BinaryAccuracy`` and a binned
   ``BinaryAUROC(thresholds=100)``.

Times are medians over repeats (``time.perf_counter``). The machine's load average is printed with the
table, because a busy 2-core machine inflates every figure (the ratios less so).

Usage::

    .venv/bin/python benchmarks/bench_bootstrap.py            # full run (BootStrapper alone takes ~25 s+)
    .venv/bin/python benchmarks/bench_bootstrap.py --quick    # a short run: 128-sample epoch, fewer repeats
    .venv/bin/python benchmarks/bench_bootstrap.py --threads 1  # single-threaded torch (busy machines)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from typing import Callable

import torch
from torchmetrics import Metric
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC, MulticlassF1Score
from torchmetrics.wrappers import BootStrapper

from lightning_ci.bootstrap import BootstrapMetric

NUM_CLASSES = 3


def _stream(n: int, batch: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(NUM_CLASSES, (n,), generator=g)
    logits = torch.randn(n, NUM_CLASSES, generator=g) + 1.5 * torch.nn.functional.one_hot(target, NUM_CLASSES)
    probs = logits.softmax(-1)
    return [(probs[i : i + batch], target[i : i + batch]) for i in range(0, n, batch)]


def _median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _f1() -> Metric:
    return MulticlassF1Score(num_classes=NUM_CLASSES, average="macro")


def bench_epoch(n: int, num_bootstraps: int, repeats: int, anchor_repeats: int) -> dict[str, float]:
    stream = _stream(n, 32)

    def ours() -> None:
        # percentile, as BootStrapper offers (the default "auto" adds BCa's exact jackknife, ~1-2 ms)
        m = BootstrapMetric(_f1(), num_bootstraps=num_bootstraps, method="percentile", seed=0)
        for preds, target in stream:
            m.update(preds, target)
        m.compute()

    def anchor() -> None:
        m = BootStrapper(_f1(), num_bootstraps=num_bootstraps, quantile=torch.tensor([0.025, 0.975]))
        for preds, target in stream:
            m.update(preds, target)
        m.compute()

    ours()  # warm-up
    t_ours = _median_time(ours, repeats)
    t_anchor = _median_time(anchor, anchor_repeats)
    return {"ours": t_ours, "anchor": t_anchor}


def bench_update(n: int, num_bootstraps: int, repeats: int) -> dict[str, tuple[float, float]]:
    stream = _stream(n, 32, seed=1)
    out = {}
    for name, factory in (("MulticlassF1Score", _f1), ("BinaryAUROC", BinaryAUROC)):
        for resampling in ("multinomial", "poisson", "bayesian"):
            data = stream if name == "MulticlassF1Score" else [(p[:, 0], (t == 0).long()) for p, t in stream]

            def plain(factory=factory, data=data) -> None:
                m = factory()
                for preds, target in data:
                    m.update(preds, target)

            def wrapped(factory=factory, data=data, resampling=resampling) -> None:
                m = BootstrapMetric(factory(), num_bootstraps=num_bootstraps, resampling=resampling, seed=0)
                # time only the updates: construction is paid once per run, not per batch
                start = time.perf_counter()
                for preds, target in data:
                    m.update(preds, target)
                wrapped.elapsed = time.perf_counter() - start  # type: ignore[attr-defined]

            def wrapped_updates(wrapped=wrapped) -> float:
                wrapped()
                return wrapped.elapsed  # type: ignore[attr-defined]

            plain()
            wrapped_updates()
            t_plain = _median_time(plain, repeats)
            t_wrapped = statistics.median(wrapped_updates() for _ in range(repeats))
            out[f"{name} ({resampling})"] = (t_plain, t_wrapped)
    return out


def _state_bytes(metric: BootstrapMetric) -> int:
    engine = metric.engine
    total = 0
    for name in engine._defaults:
        value = getattr(engine, name)
        tensors = value if isinstance(value, list) else [value]
        total += sum(t.numel() * t.element_size() for t in tensors)
    return total


def bench_poisson_memory(sizes: list[int], num_bootstraps: int) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    chunk = 10_000
    for name, factory in (("BinaryAccuracy", BinaryAccuracy), ("BinaryAUROC(thresholds=100)", None)):
        row = []
        for n in sizes:
            base = BinaryAccuracy() if factory is not None else BinaryAUROC(thresholds=100)
            m = BootstrapMetric(base, num_bootstraps=num_bootstraps, resampling="poisson", seed=0)
            g = torch.Generator().manual_seed(n)
            for _ in range(0, n, chunk):
                target = torch.randint(2, (chunk,), generator=g)
                preds = (0.3 * target + 0.7 * torch.rand(chunk, generator=g)).clamp(0, 1)
                m.update(preds, target)
            row.append(_state_bytes(m))
        out[name] = row
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run: 128-sample epoch, n <= 1e5")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: leave)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    n = 128 if args.quick else 2000  # BootStrapper runs 1000 metric copies per batch: 4 batches in --quick
    repeats = 3 if args.quick else 7
    sizes = [10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000]
    command = "python benchmarks/bench_bootstrap.py" + (" --quick" if args.quick else "")
    if args.threads:
        command += f" --threads {args.threads}"

    epoch = bench_epoch(n, 1000, repeats, anchor_repeats=1)
    update = bench_update(2000, 1000, repeats)
    memory = bench_poisson_memory(sizes, 1000)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"Command: `{command}`  ")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
        f"load average {load:.1f}, Python {sys.version.split()[0]}\n"
    )
    print(f"### 1. One validation epoch: MulticlassF1Score (macro, 3 classes), {n} samples, batches of 32, B=1000\n")
    print("| implementation | epoch time (median) | ratio |")
    print("|---|---|---|")
    print(f"| torchmetrics `BootStrapper(num_bootstraps=1000)` | {epoch['anchor']:.3f} s | 1× |")
    print(
        f"| `BootstrapMetric(num_bootstraps=1000)` | {epoch['ours'] * 1000:.1f} ms | "
        f"**{epoch['anchor'] / epoch['ours']:.0f}× faster** (goal ≥ 200×) |"
    )
    print("\n### 2. Update time per epoch (2000 samples, 63 batches of 32, B=1000)\n")
    print("| metric (resampling) | unwrapped | BootstrapMetric | ratio (goal ≤ 1.5×) |")
    print("|---|---|---|---|")
    for key, (plain, wrapped) in update.items():
        print(f"| {key} | {plain * 1000:.1f} ms | {wrapped * 1000:.1f} ms | {wrapped / plain:.2f}× |")
    print("\n### 3. Poisson-mode state memory (B=1000)\n")
    print("| metric | " + " | ".join(f"n = {s:.0e}" for s in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for key, row in memory.items():
        print(f"| {key} | " + " | ".join(f"{b / 1024:.1f} KiB" for b in row) + " |")


if __name__ == "__main__":
    main()
