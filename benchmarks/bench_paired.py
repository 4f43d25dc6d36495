"""Paired comparisons: ``PairedBootstrapMetric`` against ``scipy.stats.bootstrap(paired=True)`` and unwrapped metrics.

1. Paired AUROC at n = 20,000, B = 1000: ``PairedBootstrapMetric(BinaryAUROC())`` (update + compute) against
   ``scipy.stats.bootstrap((preds_a, preds_b, target), rank_auroc(a) - rank_auroc(b), paired=True,
   vectorized=True)``; both resample the n examples B times, one resample shared by both score vectors, and
   evaluate the tie-aware (Mann-Whitney) AUROC of both models on every resample. Percentile against
   percentile (median of ``--repeats`` runs); with ``--bca`` also BCa against BCa (scipy's BCa re-evaluates the
   statistic on the n leave-one-out samples, O(n²): minutes at n = 20,000, timed once). Goal: at least 10×.
2. ``update`` time of the paired confusion family against updating the two unwrapped metrics (one
   ``update(preds_a, target)`` and one ``update(preds_b, target)``) over one epoch of 2000 examples in batches
   of 32, for every resampling mode; only the updates are timed on both sides. Goal: at most 1.5×.

Timings are medians of CPU time (``time.process_time``) with one torch thread (``--threads``), in one process:
on a shared, heavily loaded machine CPU time is far steadier than wall time, and both sides run single-threaded
(numpy/scipy here use one thread too). Ratios are the figure to read.

Usage::

    .venv/bin/python benchmarks/bench_paired.py            # n=20,000, B=1000, 3 repeats, percentile
    .venv/bin/python benchmarks/bench_paired.py --quick    # n=2,000, B=200, 1 repeat (smoke run)
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import time
import warnings
from typing import Callable

import numpy as np
import scipy
import torch
from scipy import stats
from torchmetrics import Metric
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC, MulticlassF1Score

from lightning_ci import PairedBootstrapMetric


def rank_auroc(preds: np.ndarray, target: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mann-Whitney AUROC (average ranks, so ties count 1/2), vectorized along ``axis``."""
    ranks = stats.rankdata(preds, axis=axis)
    pos = target.sum(axis=axis)
    neg = target.shape[axis] - pos
    return ((ranks * target).sum(axis=axis) - pos * (pos + 1) / 2) / (pos * neg)


def rank_auroc_difference(preds_a: np.ndarray, preds_b: np.ndarray, target: np.ndarray, axis: int = -1) -> np.ndarray:
    """The paired statistic a scipy user writes: AUROC(A) - AUROC(B) on the same resampled examples."""
    return rank_auroc(preds_a, target, axis=axis) - rank_auroc(preds_b, target, axis=axis)


def median_time(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Median wall time of ``repeats`` calls and the last result."""
    times, out = [], None
    for _ in range(repeats):
        start = time.process_time()
        out = fn()
        times.append(time.process_time() - start)
    return statistics.median(times), out


def auroc_data(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two correlated score vectors (A a little better) on the same n examples."""
    g = torch.Generator().manual_seed(seed)
    target = (torch.rand(n, generator=g) < 0.3).long()
    shared = torch.randn(n, generator=g)
    preds_a = torch.sigmoid(0.8 * shared + 0.6 * torch.randn(n, generator=g) + 1.1 * target)
    preds_b = torch.sigmoid(0.8 * shared + 0.6 * torch.randn(n, generator=g) + 1.0 * target)
    return preds_a, preds_b, target


def bench_auroc(n: int, b: int, repeats: int, scipy_batch: int, with_bca: bool) -> list[str]:
    preds_a, preds_b, target = auroc_data(n)
    pa, pb, t = (x.numpy().astype(np.float64) for x in (preds_a, preds_b, target))

    def ours(method: str) -> dict[str, float]:
        metric = PairedBootstrapMetric(BinaryAUROC(), num_bootstraps=b, method=method, seed=0)
        metric.update(preds_a, preds_b, target)
        return {k: float(v) for k, v in metric.compute().items()}

    def reference(method: str):
        return stats.bootstrap(
            (pa, pb, t),
            rank_auroc_difference,
            paired=True,
            vectorized=True,
            n_resamples=b,
            method=method,
            # BCa's jackknife would otherwise build an n x (n - 1) array per data argument
            batch=None if method == "percentile" else scipy_batch,
            rng=np.random.default_rng(0),
        )

    ours("percentile")  # warm-up (imports, allocator)
    lines = [
        f"### 1. Paired AUROC, n={n}, B={b}: `PairedBootstrapMetric(BinaryAUROC())` against "
        "`scipy.stats.bootstrap(paired=True)` with a rank-AUROC difference statistic",
        "",
        "| method | PairedBootstrapMetric (CPU s) | scipy (CPU s) | speed-up (goal ≥ 10×) | difference [interval] ours "
        "| scipy |",
        "|---|---|---|---|---|---|",
    ]
    methods = [("percentile", "percentile")] + ([("bca", "BCa")] if with_bca else [])
    for method, scipy_method in methods:
        t_ours, res = median_time(lambda m=method: ours(m), repeats)
        ref_repeats = repeats if method == "percentile" else 1  # scipy's BCa is O(n^2): timed once
        t_ref, ref = median_time(lambda m=scipy_method: reference(m), ref_repeats)
        ci = ref.confidence_interval
        lines.append(
            f"| {method} | {t_ours:.3f} s | {t_ref:.3f} s{'' if ref_repeats > 1 else ' (1 run)'} | "
            f"**{t_ref / t_ours:.1f}×** | {res['difference']:+.4f} [{res['lower']:+.4f}, {res['upper']:+.4f}] | "
            f"[{ci.low:+.4f}, {ci.high:+.4f}] |"
        )
    return lines


def _stream(n: int, batch: int, num_classes: int, seed: int = 1) -> list[tuple[torch.Tensor, ...]]:
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(num_classes, (n,), generator=g)
    onehot = torch.nn.functional.one_hot(target, num_classes)
    shared = torch.randn(n, num_classes, generator=g)
    probs_a = (shared + 0.5 * torch.randn(n, num_classes, generator=g) + 1.6 * onehot).softmax(-1)
    probs_b = (shared + 0.5 * torch.randn(n, num_classes, generator=g) + 1.5 * onehot).softmax(-1)
    if num_classes == 2:  # binary: the positive-class probability
        probs_a, probs_b = probs_a[:, 1], probs_b[:, 1]
    return [(probs_a[i : i + batch], probs_b[i : i + batch], target[i : i + batch]) for i in range(0, n, batch)]


def bench_update(n: int, b: int, repeats: int) -> list[str]:
    factories: dict[str, tuple[Callable[[], Metric], int]] = {
        "MulticlassF1Score (macro, 3 classes)": (lambda: MulticlassF1Score(num_classes=3, average="macro"), 3),
        "BinaryAccuracy": (BinaryAccuracy, 2),
    }
    lines = [
        "",
        f"### 2. Update time per epoch ({n} examples, batches of 32, B={b}): the paired confusion family against "
        "the two unwrapped metrics",
        "",
        "| metric (resampling) | two unwrapped metrics (CPU) | PairedBootstrapMetric (CPU) | ratio (goal ≤ 1.5×) |",
        "|---|---|---|---|",
    ]
    for name, (factory, c) in factories.items():
        stream = _stream(n, 32, c)
        for resampling in ("multinomial", "poisson", "bayesian"):

            def plain(factory=factory, stream=stream) -> float:
                ma, mb = factory(), factory()
                start = time.process_time()
                for pa, pb, t in stream:
                    ma.update(pa, t)
                    mb.update(pb, t)
                return time.process_time() - start

            def paired(factory=factory, stream=stream, resampling=resampling) -> float:
                m = PairedBootstrapMetric(factory(), num_bootstraps=b, resampling=resampling, seed=0)
                start = time.process_time()
                for pa, pb, t in stream:
                    m.update(pa, pb, t)
                return time.process_time() - start

            plain()
            paired()  # warm-up
            t_plain = statistics.median(plain() for _ in range(repeats))
            t_paired = statistics.median(paired() for _ in range(repeats))
            lines.append(
                f"| {name} ({resampling}) | {1e3 * t_plain:.2f} ms | {1e3 * t_paired:.2f} ms | "
                f"{t_paired / t_plain:.2f}× |"
            )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="examples of the AUROC benchmark")
    parser.add_argument("--num-bootstraps", "-B", type=int, default=1000, help="number of resamples")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (the median is reported)")
    parser.add_argument("--update-n", type=int, default=2000, help="examples of the update benchmark")
    parser.add_argument("--update-repeats", type=int, default=15, help="timed epochs of the update benchmark")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--scipy-batch", type=int, default=100, help="scipy's `batch` for BCa (bounds memory)")
    parser.add_argument("--bca", action="store_true", help="add the BCa row (scipy's BCa is O(n^2): minutes)")
    parser.add_argument("--quick", action="store_true", help="smoke run: n=2000, B=200, 1 repeat")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.num_bootstraps, args.repeats, args.update_repeats = 2000, 200, 1, 2
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"command: {shlex.join([os.path.basename(sys.executable), *sys.argv])}")
    print(
        f"\nn={args.n} B={args.num_bootstraps} repeats={args.repeats} torch={torch.__version__} "
        f"scipy={scipy.__version__} threads={torch.get_num_threads()} cpus={os.cpu_count()} "
        f"machine={platform.machine()}\n"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lines = bench_auroc(args.n, args.num_bootstraps, args.repeats, args.scipy_batch, args.bca)
        lines += bench_update(args.update_n, args.num_bootstraps, args.update_repeats)
    print("\n".join(lines))
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
