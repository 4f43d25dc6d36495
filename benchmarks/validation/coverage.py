"""Coverage study: empirical coverage of nominal 95% intervals on simulated validation sets (issue 5, part 1).

Run (full study, resumable; per-cell results are cached in ``<out>/coverage_results.json``)::

    python benchmarks/validation/coverage.py --out docs/validation

Smoke / quick::

    python benchmarks/validation/coverage.py --quick --out /tmp/cov

Writes ``<out>/coverage_results.json`` (raw per-cell results), ``<out>/coverage.md`` (a markdown fragment for
``docs/validation.md``) and ``<out>/coverage_*.png``.

For each metric (binary accuracy, 3-class macro-F1, binormal AUROC) and each n, ``S`` validation sets are
simulated with a known population value (``coverage_sim.py``). On every set we compute:

- ours: ``BootstrapMetric`` with every ``method`` x ``resampling`` (``coverage_ours.py``), ``B`` replicates,
  ``seed`` = the index of the set;
- anchors (``coverage_anchors.py``): torchmetrics ``BootStrapper`` (vectorised re-implementation of its
  sampling, validated against the real class), ``scipy.stats.bootstrap`` BCa, Wald and Wilson (accuracy),
  DeLong (AUROC).

A cell's groups (ours, bootstrapper, scipy, closed form) are cached separately, keyed by the number of sets
and ``B``, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import coverage_anchors as anchors
import coverage_ours as ours
import coverage_report as report
from coverage_sim import METRICS, simulate, true_value

SIZES = (50, 100, 300, 1000, 5000)
BATCH_SIZES = (1, 8, 64)
TIMING_SIMS = 10
GROUPS = ("ours", "closed_form", "bootstrapper", "scipy")
# Sets per group where the study runs fewer than --sims. Keys: (metric or "*", n or "*"); the most specific key
# wins. The report lists every such cell. ``--no-caps`` lifts them all. The committed study runs every group on
# every set (no caps); the mechanism stays for quick partial runs on a small machine.
SIMS_CAPS: dict[str, dict[tuple[str, Any], int]] = {"ours": {}, "closed_form": {}, "bootstrapper": {}, "scipy": {}}
# the real torchmetrics BootStrapper (B=100, n=100) next to the re-implementation: sets per (strategy, batch size)
VALIDATION: dict[str, Any] = {
    "n": 100,
    "B": 100,
    "metric": "accuracy",
    "sims": {"multinomial": {1: 3, 8: 50, 64: 100}, "poisson": {1: 3, 8: 30, 64: 100}},
}
# the copy-value distribution of the real BootStrapper (raw=True, B copies) against the re-implementation's on the
# first set of the (metric, n) cell, for every metric: a two-sample Kolmogorov-Smirnov test per configuration
# against a reference sample of B_ref copies from the re-implementation (its own Monte Carlo noise negligible)
DISTRIBUTION: dict[str, Any] = {
    "n": 100,
    "B": 2000,
    "B_ref": 200_000,
    "configs": [["poisson", 8], ["multinomial", 8], ["multinomial", 64]],
}


def sims_for(group: str, metric: str, n: int, sims: int, use_caps: bool = True) -> int:
    caps = SIMS_CAPS.get(group, {}) if use_caps else {}
    for key in ((metric, n), ("*", n), (metric, "*"), ("*", "*")):
        if key in caps:
            return min(sims, caps[key])
    return sims


def _stats(lower: np.ndarray, upper: np.ndarray, truth: float, times: list[float], time_note: str) -> dict[str, Any]:
    lower, upper = np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64)
    s = lower.size
    nan = np.isnan(lower) | np.isnan(upper)
    covered = (~nan) & (lower <= truth) & (truth <= upper)
    c = float(covered.mean())
    return {
        "sims": int(s),
        "coverage": c,
        "mcse": math.sqrt(c * (1 - c) / s),
        "miss_low": int(((~nan) & (truth < lower)).sum()),  # interval entirely above the truth
        "miss_high": int(((~nan) & (truth > upper)).sum()),  # interval entirely below the truth
        "nan": int(nan.sum()),
        "mean_width": float(np.nanmean(upper - lower)) if (~nan).any() else float("nan"),
        "median_time_ms": float(np.median(times) * 1e3) if len(times) else None,
        "time_note": time_note,
    }


def group_ours(metric, preds, target, truth, b, timing_sims):
    raw = ours.run_ours(metric, preds, target, b, timing_sims)
    out = {}
    for name, r in raw.items():
        st = _stats(r["lower"], r["upper"], truth, r["times"], "end-to-end BootstrapMetric construct+update+compute")
        st["warned_sims"] = r["warned_sims"]
        st["max_abs_diff_vs_fresh"] = r["max_abs_diff_vs_fresh"]
        out[name] = st
    return out


def group_bootstrapper(metric, preds, target, truth, b):
    sims = preds.shape[0]
    res: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    configs = [("poisson", None)] + [("multinomial", bs) for bs in BATCH_SIZES]
    for strategy, bs in configs:
        lo, hi = np.full(sims, np.nan), np.full(sims, np.nan)
        for i in range(sims):
            rng = np.random.default_rng([i, 1 if strategy == "poisson" else 2, bs or 0])
            vals = anchors.reimpl_bootstrapper_values(metric, preds[i], target[i], bs or 1, strategy, b, rng)
            lo[i], hi[i] = anchors.quantile_interval(vals)
        name = "BootStrapper poisson (any batch size)" if strategy == "poisson" else f"BootStrapper multinomial bs={bs}"
        res[name] = (lo, hi)
    note = "vectorised re-implementation (not timed; see validation)"
    return {k: _stats(lo, hi, truth, [], note) for k, (lo, hi) in res.items()}


def group_scipy(metric, preds, target, truth, b, sims, timing_sims):
    """scipy BCa on every set through the index statistic; on the first ``timing_sims`` sets also the call a user
    writes (paired gather-and-rank statistic), which is the one timed, and the two intervals are compared."""
    lo, hi, times, diff = np.full(sims, np.nan), np.full(sims, np.nan), [], 0.0
    for i in range(sims):
        p, t = preds[i].numpy(), target[i].numpy()
        lo[i], hi[i] = anchors.scipy_bca(metric, p, t, b, seed=i, fast=True)
        if i < timing_sims:
            t0 = time.process_time()
            plain = anchors.scipy_bca(metric, p, t, b, seed=i, fast=False)
            times.append(time.process_time() - t0)
            a, f = np.asarray(plain), np.array([lo[i], hi[i]])
            if (np.isnan(a) != np.isnan(f)).any():
                diff = math.inf
            elif not np.isnan(a).all():
                diff = max(diff, float(np.nanmax(np.abs(a - f))))
    st = _stats(lo, hi, truth, times, "scipy.stats.bootstrap call with the paired gather-and-rank statistic")
    st["max_abs_diff_vs_plain"] = diff
    return {"scipy.stats.bootstrap BCa": st}


def group_closed_form(metric, preds, target, truth):
    n = preds.shape[1]
    out = {}
    if metric == "accuracy":
        correct = (preds == target).sum(1).numpy().astype(np.float64)
        for name, fn in (("Wald (normal approximation)", anchors.wald), ("Wilson", anchors.wilson)):
            t0 = time.process_time()
            lo, hi = fn(correct, n)
            per = (time.process_time() - t0) / correct.size
            out[name] = _stats(lo, hi, truth, [per], "vectorised over all sets, total / sets")
    elif metric == "auroc":
        sims = preds.shape[0]
        lo, hi, times = np.full(sims, np.nan), np.full(sims, np.nan), []
        for i in range(sims):
            t0 = time.process_time()
            _, lo[i], hi[i] = anchors.delong(preds[i].numpy(), target[i].numpy())
            times.append(time.process_time() - t0)
        out["DeLong"] = _stats(lo, hi, truth, times, "per set")
    return out


def validation_run(b_main: int) -> dict[str, Any]:
    """The real torchmetrics BootStrapper next to the re-implementation, on the same sets."""
    v = VALIDATION
    most = max(s for per_bs in v["sims"].values() for s in per_bs.values())
    preds, target = simulate(v["metric"], v["n"], most)
    truth = true_value(v["metric"])
    out: dict[str, Any] = {"setting": json.loads(json.dumps(v))}
    rows = {}
    for strategy, per_bs in v["sims"].items():
        for bs, sims in sorted(per_bs.items()):
            if sims <= 0:
                continue
            real_lo, real_hi, real_t = np.zeros(sims), np.zeros(sims), []
            re_lo, re_hi = np.zeros(sims), np.zeros(sims)
            for i in range(sims):
                real_lo[i], real_hi[i], dt = anchors.real_bootstrapper_interval(
                    preds[i], target[i], bs, strategy, v["B"], seed=i
                )
                real_t.append(dt)
                rng = np.random.default_rng([i, 1 if strategy == "poisson" else 2, bs])
                vals = anchors.reimpl_bootstrapper_values("accuracy", preds[i], target[i], bs, strategy, v["B"], rng)
                re_lo[i], re_hi[i] = anchors.quantile_interval(vals)
            row = {
                "real": _stats(real_lo, real_hi, truth, real_t, "torchmetrics BootStrapper, all updates + compute"),
                "reimpl": _stats(re_lo, re_hi, truth, [], "vectorised re-implementation"),
            }
            rows[f"{strategy} bs={bs}"] = row
            print(
                f"  validation {strategy} bs={bs}: real {row['real']['coverage']:.3f} "
                f"reimpl {row['reimpl']['coverage']:.3f}",
                flush=True,
            )
    out["rows"] = rows
    return out


def distribution_run() -> dict[str, Any]:
    """Copy values of the real BootStrapper and of the re-implementation on one set per metric; KS test each."""
    import scipy.stats

    d = DISTRIBUTION
    rows = {}
    for metric in METRICS:
        preds, target = (x[0] for x in simulate(metric, d["n"], 1))
        for strategy, bs in d["configs"]:
            t0 = time.process_time()
            real = anchors.real_bootstrapper_values(metric, preds, target, bs, strategy, d["B"], seed=0)
            real_s = time.process_time() - t0
            re = anchors.reimpl_bootstrapper_values(
                metric, preds, target, bs, strategy, d["B_ref"], np.random.default_rng([0, 99])
            )
            ks = scipy.stats.ks_2samp(real, re)
            rows[f"{metric} {strategy} bs={bs}"] = {
                "real_mean": float(real.mean()),
                "reimpl_mean": float(re.mean()),
                "real_std": float(real.std(ddof=1)),
                "reimpl_std": float(re.std(ddof=1)),
                # the real class's mean against the reference mean, in standard errors of a B-copy mean
                "z_mean": float((real.mean() - re.mean()) / (re.std(ddof=1) / math.sqrt(d["B"]))),
                "ks_statistic": float(ks.statistic),
                "ks_pvalue": float(ks.pvalue),
                "real_cpu_s": real_s,
            }
            print(f"  distribution {metric} {strategy} bs={bs}: KS p={ks.pvalue:.3f}", flush=True)
    return {"setting": json.loads(json.dumps(d)), "rows": rows}


def machine_info() -> dict[str, str]:
    import scipy
    import torchmetrics

    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "unknown")
    except OSError:
        cpu = platform.processor() or "unknown"
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "torch_threads": str(torch.get_num_threads()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchmetrics": torchmetrics.__version__,
        "scipy": scipy.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
    }


def _update_results(path: Path, mutate) -> dict[str, Any]:
    """Read-merge-write the JSON under an exclusive lock (two processes may run different metrics at once)."""
    import fcntl

    lock_path = path.with_suffix(".lock")
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        results = json.loads(path.read_text()) if path.exists() else {}
        results.setdefault("cells", {})
        mutate(results)
        tmp = path.with_suffix(f".json.tmp{os.getpid()}")
        tmp.write_text(json.dumps(results, indent=1, sort_keys=True))
        tmp.replace(path)
        fcntl.flock(lock, fcntl.LOCK_UN)
    return results


def _remove_lock(path: Path) -> None:
    """Remove the lock file when no other process of the study holds it."""
    import fcntl

    lock_path = path.with_suffix(".lock")
    try:
        with open(lock_path) as lock:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            lock_path.unlink()
    except OSError:
        pass


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sims", type=int, default=2000, help="simulated validation sets per cell (before caps)")
    parser.add_argument("--num-bootstraps", type=int, default=1000, help="bootstrap replicates B (all methods)")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--metrics", nargs="+", default=list(METRICS), choices=list(METRICS))
    parser.add_argument("--quick", action="store_true", help="100 sets, B=200, n in {50, 300}, short validation")
    parser.add_argument("--no-validation", action="store_true", help="skip the real-BootStrapper validation")
    parser.add_argument("--validation-only", action="store_true", help="only the real-BootStrapper validation")
    parser.add_argument("--report-only", action="store_true", help="only rewrite coverage.md and the plots")
    parser.add_argument("--timing-sims", type=int, default=TIMING_SIMS)
    parser.add_argument("--no-caps", action="store_true", help="run every group on all --sims sets")
    parser.add_argument(
        "--groups",
        nargs="+",
        default=list(GROUPS),
        choices=list(GROUPS),
        help="run only these groups (e.g. to split the study over processes)",
    )
    parser.add_argument(
        "--validation-sims",
        type=int,
        default=None,
        help="sets per (strategy, batch size 8 and 64) in the validation; batch size 1 skipped",
    )
    parser.add_argument("--out", default="docs/validation")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.quick:
        args.sims, args.num_bootstraps, args.sizes = 100, 200, [50, 300]
        VALIDATION["sims"] = {"multinomial": {8: 5, 64: 10}, "poisson": {64: 10}}
        DISTRIBUTION.update(B=200, B_ref=2000, configs=[["poisson", 8], ["multinomial", 64]])
    if args.validation_sims is not None:
        k = args.validation_sims
        VALIDATION["sims"] = {"multinomial": {64: k}, "poisson": {64: k}}
        DISTRIBUTION.update(B=max(20, 20 * k), B_ref=1000, configs=[["multinomial", 64]])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "coverage_results.json"
    b = args.num_bootstraps
    # the command that regenerates everything (a --report-only run names the run it reports on)
    cli = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--report-only"]
    cmd = "python benchmarks/validation/coverage.py " + " ".join(cli)
    meta = {
        "command": cmd.strip(),
        "sims": args.sims,
        "num_bootstraps": b,
        "sizes": sorted(args.sizes),
        "timing_sims": args.timing_sims,
        "sims_caps": {}
        if args.no_caps
        else {g: {f"{m}|{n}": v for (m, n), v in c.items()} for g, c in SIMS_CAPS.items()},
        "machine": machine_info(),
    }

    def set_meta(results: dict[str, Any]) -> None:
        if args.report_only or not args.validation_only:
            meta["machine"] = results.get("meta", {}).get("machine", meta["machine"])
            results["meta"] = meta
        results.setdefault("meta", meta)

    results = _update_results(path, set_meta)
    groups = [] if (args.report_only or args.validation_only) else [g for g in GROUPS if g in args.groups]
    data_cache: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]] = {}
    for gname in groups:  # priority: every cell of ours first, then the anchors
        for metric in args.metrics:
            truth = true_value(metric)
            for n in args.sizes:
                key = f"{metric}|{n}"
                s = sims_for(gname, metric, n, args.sims, not args.no_caps)
                cached = results["cells"].get(key, {}).get("groups", {}).get(gname)
                if cached and cached.get("sims") == s and cached.get("B") == b:
                    continue
                if (metric, n) not in data_cache or data_cache[(metric, n)][0].shape[0] < s:
                    data_cache.clear()
                    most = max(s, sims_for("ours", metric, n, args.sims, not args.no_caps))
                    data_cache[(metric, n)] = simulate(metric, n, most)
                preds, target = (x[:s] for x in data_cache[(metric, n)])
                t0, w0 = time.process_time(), time.perf_counter()
                if gname == "ours":
                    configs = group_ours(metric, preds, target, truth, b, args.timing_sims)
                elif gname == "closed_form":
                    configs = group_closed_form(metric, preds, target, truth)
                elif gname == "bootstrapper":
                    configs = group_bootstrapper(metric, preds, target, truth, b)
                else:
                    configs = group_scipy(metric, preds, target, truth, b, s, args.timing_sims)
                entry = {
                    "sims": s,
                    "B": b,
                    "configs": configs,
                    "cpu_s": time.process_time() - t0,
                    "wall_s": time.perf_counter() - w0,
                }

                def put(
                    results: dict[str, Any], key=key, metric=metric, n=n, truth=truth, entry=entry, gname=gname
                ) -> None:
                    cell = results["cells"].setdefault(key, {"metric": metric, "n": n, "groups": {}})
                    cell["true_value"] = truth
                    cell["groups"][gname] = entry

                results = _update_results(path, put)
                print(
                    f"{key:>16} {gname:<12} sims={s:<5} cpu {entry['cpu_s']:7.1f}s wall {entry['wall_s']:7.1f}s",
                    flush=True,
                )
    if (not args.no_validation and not args.report_only) or args.validation_only:
        v = results.get("validation")
        if not v or v.get("setting") != json.loads(json.dumps(VALIDATION)):
            t0 = time.process_time()
            val = validation_run(b)
            val["cpu_s"] = time.process_time() - t0
            results = _update_results(path, lambda r: r.__setitem__("validation", val))
        dist = results.get("validation_distribution")
        if not dist or dist.get("setting") != json.loads(json.dumps(DISTRIBUTION)):
            t0 = time.process_time()
            dist = distribution_run()
            dist["cpu_s"] = time.process_time() - t0
            results = _update_results(path, lambda r: r.__setitem__("validation_distribution", dist))
    report.write_report(results, out, args)
    if args.report_only:
        _remove_lock(path)
    return results


if __name__ == "__main__":
    main()
