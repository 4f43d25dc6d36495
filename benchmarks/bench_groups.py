"""Cluster bootstrap speed: ``BootstrapMetric.update(..., groups=ids)`` against a vectorised NumPy cluster bootstrap.

The anchor (``benchmarks/validation/groups_ref.py``) is the NumPy version issue 11 describes: one ``integers``
call and one ``bincount`` over all B replicates' group draws (``c [B, G]``), then one matrix product
``c @ K`` with the per-group cell counts for accuracy, and for AUROC a loop over replicates on the once-sorted
scores (per-sample weights = the drawn count of their group). Both sides make B = 1000 replicates and a
percentile interval; ours is timed end to end (construct, ``update``, ``compute``), the anchor from the raw
arrays to the interval. Each case alternates ours and NumPy ``--repeats`` times and reports medians of wall
time (``time.perf_counter``) and the ratio NumPy / ours.

Cases (data from ``groups_sim.py``'s designs, sigma = 1, seed fixed):

1. accuracy, 10,000 groups of exactly 5 samples: few distinct per-group count vectors, which ours may merge
   (goal: at least 10x faster);
2. accuracy, 10,000 groups of 1-20 samples (many distinct count vectors; goal: no slower than NumPy);
3. AUROC, 4,000 groups of 5 samples (n = 20,000; O(B n), goal: no slower than NumPy).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_groups.py            # B = 1000, 7 repeats
    python benchmarks/bench_groups.py --quick                       # smoke: small sizes, B = 100, 1 repeat
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
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC

from lightning_ci import BootstrapMetric

sys.path.insert(0, str(Path(__file__).resolve().parent / "validation"))

import groups_ref as ref
import groups_sim as sim

SEED = 2026  # data seed, fixed


def make_case(metric: str, num_groups: int, sizes: str) -> sim.GroupedSet:
    rng = np.random.default_rng([SEED, sim.METRIC_IDS[metric], num_groups, sim.SIZE_IDS[sizes]])
    return sim.draw_set(rng, metric, num_groups, sizes, 1.0)


def distinct_patterns(s: sim.GroupedSet, metric: str) -> tuple[int, int]:
    """Distinct per-group count vectors: confusion cells for accuracy, (positives, negatives) for AUROC; and how
    many of them the confusion engine draws (accuracy reads only the correct and wrong counts of a group)."""
    gidx, g = ref.group_index(s.groups)
    if metric == "auroc":
        k = np.stack([np.bincount(gidx, weights=s.target, minlength=g), np.bincount(gidx, minlength=g)], 1)
        distinct = int(np.unique(k, axis=0).shape[0])
        return distinct, distinct
    k = ref.cells_per_group(s.preds, s.target, gidx, g, 2)
    folded = np.stack([k[:, 0] + k[:, 3], k[:, 1] + k[:, 2]], 1)  # (tn + tp, fp + fn)
    return int(np.unique(k, axis=0).shape[0]), int(np.unique(folded, axis=0).shape[0])


def numpy_interval(metric: str, s: sim.GroupedSet, b: int, seed: int) -> tuple[float, float]:
    reps = ref.cluster_bootstrap_replicates(metric, s.preds, s.target, s.groups, b, np.random.default_rng(seed))
    return ref.percentile_interval(reps)


def ours_interval(metric: str, s: sim.GroupedSet, b: int, seed: int, method: str) -> tuple[float, float]:
    base = BinaryAUROC() if metric == "auroc" else BinaryAccuracy()
    bm = BootstrapMetric(base, b, method=method, seed=seed)
    bm.update(torch.from_numpy(s.preds), torch.from_numpy(s.target), groups=torch.from_numpy(s.groups))
    out = bm.compute()
    return float(out["lower"]), float(out["upper"])


def groups_supported() -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ours_interval("accuracy", make_case("accuracy", 20, "5"), 10, 0, "percentile")
    except (TypeError, ValueError):
        return False
    return True


def alternate(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, tuple[float, float, Any]]:
    """Median CPU time and median wall time per function (calls alternating), plus the last result.

    Both sides run on one thread, so CPU time (``time.process_time``) is their cost even when the machine is
    shared; the wall time is reported beside it.
    """
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    wall: dict[str, list[float]] = {k: [] for k in fns}
    last: dict[str, Any] = {}
    for _ in range(repeats):
        for k, fn in fns.items():
            c0, w0 = time.process_time(), time.perf_counter()
            last[k] = fn()
            cpu[k].append(time.process_time() - c0)
            wall[k].append(time.perf_counter() - w0)
    return {k: (statistics.median(cpu[k]), statistics.median(wall[k]), last[k]) for k in fns}


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-bootstraps", "-B", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 500 groups (AUROC 200), B = 100, 1 repeat")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    b = args.num_bootstraps
    big, auroc_g = 10_000, 4_000
    if args.quick:
        b, args.repeats, big, auroc_g = 100, 1, 500, 200
    cases = [
        ("accuracy", big, "5", "≥ 10× faster"),
        ("accuracy", big, "1-20", "no slower (≥ 1×)"),
        ("auroc", auroc_g, "5", "no slower (≥ 1×)"),
    ]
    supported = groups_supported()
    cmd = "python benchmarks/bench_groups.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    print(
        f"Command: `{cmd.strip()}` (B = {b}, {args.repeats} alternating repeats on one thread; medians of CPU"
        " time, medians of wall time in parentheses)"
    )
    print()
    print(
        f"- torch {torch.__version__}, numpy {np.__version__}, Python {platform.python_version()}, "
        f"{os.cpu_count()} cores, torch threads {torch.get_num_threads()}, load average "
        f"{os.getloadavg()[0]:.1f} at the start"
    )
    if not supported:
        print("- **`BootstrapMetric.update` has no `groups=` in this checkout: only the NumPy side is timed.**")
    print()
    print(
        "| case | n | G | distinct group patterns (drawn by ours) | NumPy cluster bootstrap | ours (percentile)"
        " | ratio NumPy/ours | goal | ours (default method: BCa) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    rows = []
    for metric, g, sizes, goal in cases:
        s = make_case(metric, g, sizes)
        fns: dict[str, Callable[[], Any]] = {"numpy": lambda m=metric, s=s: numpy_interval(m, s, b, 0)}
        note = ""
        if supported:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ours_interval(metric, s, 10, 0, "percentile")
                fns["ours"] = lambda m=metric, s=s: ours_interval(m, s, b, 0, "percentile")
                fns["ours_auto"] = lambda m=metric, s=s: ours_interval(m, s, b, 0, "auto")
            except (TypeError, ValueError) as err:  # this metric's engine has no groups= yet
                note = f"n/a ({type(err).__name__}: {err})"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for fn in fns.values():  # warm-up (first-call costs)
                fn()
            res = alternate(fns, args.repeats)
        row = {
            "metric": metric,
            "n": int(s.groups.size),
            "G": g,
            "sizes": sizes,
            "patterns": distinct_patterns(s, metric)[0],
            "patterns_drawn": distinct_patterns(s, metric)[1],
            "numpy_s": res["numpy"][0],
            "numpy_wall_s": res["numpy"][1],
            "numpy_interval": res["numpy"][2],
        }
        if "ours" in fns:
            row.update(
                ours_s=res["ours"][0],
                ours_wall_s=res["ours"][1],
                ours_auto_s=res["ours_auto"][0],
                ours_interval=res["ours"][2],
                ratio=res["numpy"][0] / res["ours"][0],
            )
        rows.append(row)
        name = f"{'accuracy' if metric == 'accuracy' else 'AUROC'}, groups of {sizes}"
        np_txt = f"{1e3 * row['numpy_s']:.1f} ms ({1e3 * row['numpy_wall_s']:.0f})"
        if "ours" in fns:
            ours = f"{1e3 * row['ours_s']:.1f} ms ({1e3 * row['ours_wall_s']:.0f})"
            ratio, auto = f"**{row['ratio']:.1f}×**", f"{1e3 * row['ours_auto_s']:.1f} ms"
        else:
            ours, ratio, auto = note or "n/a", "n/a", "n/a"
        patterns = f"{row['patterns']} ({row['patterns_drawn']})"
        print(f"| {name} | {row['n']} | {g} | {patterns} | {np_txt} | {ours} | {ratio} | {goal} | {auto} |")
    print()
    print("Intervals (same data, independent draws; they agree to Monte Carlo error):")
    print()
    for row in rows:
        o = row.get("ours_interval")
        o_txt = f"[{o[0]:.4f}, {o[1]:.4f}]" if o else "n/a"
        lo, hi = row["numpy_interval"]
        print(f"- {row['metric']} G={row['G']} sizes {row['sizes']}: NumPy [{lo:.4f}, {hi:.4f}], ours {o_txt}")
    return rows


if __name__ == "__main__":
    main()
