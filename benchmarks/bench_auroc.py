"""AUROC bootstrap: ``BootstrapMetric(BinaryAUROC())`` against ``scipy.stats.bootstrap`` with a rank AUROC.

Both sides resample the n (score, label) pairs B times and evaluate the tie-aware (Mann-Whitney) AUROC of
every resample; both are vectorized over the resamples. Timings are the median of ``--repeats`` runs, measured
in the same process with ``time.perf_counter`` (scipy's BCa, which takes minutes at n=20,000, is timed once).
BCa is timed too: scipy's BCa re-evaluates the statistic on
the n leave-one-out samples, while ``BootstrapMetric`` uses the closed-form AUROC jackknife.

Usage::

    .venv/bin/python benchmarks/bench_auroc.py            # n=20,000, B=1000, 5 repeats
    .venv/bin/python benchmarks/bench_auroc.py --quick    # n=2,000, B=200, 1 repeat (smoke run)
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import time
from typing import Callable

import numpy as np
import scipy
import torch
from scipy import stats
from torchmetrics.classification import BinaryAUROC

from lightning_ci import BootstrapMetric


def rank_auroc(preds: np.ndarray, target: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mann-Whitney AUROC (average ranks, so ties count 1/2), vectorized along ``axis``."""
    ranks = stats.rankdata(preds, axis=axis)
    pos = target.sum(axis=axis)
    neg = target.shape[axis] - pos
    return ((ranks * target).sum(axis=axis) - pos * (pos + 1) / 2) / (pos * neg)


def median_time(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Median wall time of ``repeats`` calls and the last result."""
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="number of samples")
    parser.add_argument("--num-bootstraps", "-B", type=int, default=1000, help="number of resamples")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (the median is reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--scipy-batch", type=int, default=200, help="scipy's `batch` for BCa (bounds memory)")
    parser.add_argument("--ties", action="store_true", help="round the scores to 3 decimals (heavy ties)")
    parser.add_argument("--quick", action="store_true", help="smoke run: n=2000, B=200, 1 repeat")
    args = parser.parse_args()
    if args.quick:
        args.n, args.num_bootstraps, args.repeats = 2000, 200, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    n, b = args.n, args.num_bootstraps

    gen = torch.Generator().manual_seed(0)
    target = (torch.rand(n, generator=gen) < 0.3).long()
    preds = (torch.rand(n, generator=gen) + 0.5 * target).div(1.5)
    if args.ties:  # scores rounded to 3 decimals: about 1,000 distinct values
        preds = preds.round(decimals=3)
    p_np, t_np = preds.numpy().astype(np.float64), target.numpy().astype(np.float64)

    def ours(method: str) -> dict:
        metric = BootstrapMetric(BinaryAUROC(), num_bootstraps=b, method=method, seed=0)
        metric.update(preds, target)
        return {k: float(v) for k, v in metric.compute().items()}

    def reference(method: str):
        return stats.bootstrap(
            (p_np, t_np),
            rank_auroc,
            paired=True,
            vectorized=True,
            n_resamples=b,
            method=method,
            # BCa's jackknife would otherwise build an n x (n - 1) array per sample (6.4 GB at n=20,000)
            batch=None if method == "percentile" else args.scipy_batch,
            rng=np.random.default_rng(0),
        )

    ours("percentile")  # warm-up (imports, allocator)
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(
        f"n={n} B={b} ties={args.ties} repeats={args.repeats} torch={torch.__version__} scipy={scipy.__version__}"
        f" threads={torch.get_num_threads()} cpus={os.cpu_count()} loadavg={os.getloadavg()[0]:.2f}"
        f" machine={platform.machine()}"
    )
    print(f"{'method':<11}{'lightning_ci [s]':>18}{'scipy [s]':>12}{'speed-up':>10}   bounds (ours | scipy)")
    for method, scipy_method in (("percentile", "percentile"), ("bca", "BCa")):
        t_ours, res_ours = median_time(lambda m=method: ours(m), args.repeats)
        # scipy's BCa jackknife makes n statistic evaluations on n - 1 samples (O(n^2)): time it once
        ref_repeats = args.repeats if method == "percentile" else 1
        t_ref, res_ref = median_time(lambda m=scipy_method: reference(m), ref_repeats)
        ci = res_ref.confidence_interval
        print(
            f"{method:<11}{t_ours:>18.3f}{t_ref:>12.3f}{t_ref / t_ours:>9.1f}x   "
            f"[{res_ours['lower']:.4f}, {res_ours['upper']:.4f}] | [{ci.low:.4f}, {ci.high:.4f}]"
        )


if __name__ == "__main__":
    main()
