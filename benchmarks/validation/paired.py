"""Paired comparisons study: type-I error, coverage and power of ``PairedBootstrapMetric`` (issue 10, "Evidence").

Run (full study, resumable; per-cell, per-group results are cached in ``<out>/paired_results.json``)::

    python benchmarks/validation/paired.py --out docs/validation

Smoke / quick::

    python benchmarks/validation/paired.py --sims 20 --num-bootstraps 100 --sizes 100 --power-n 100 --out /tmp/p

Writes ``<out>/paired_results.json``, ``<out>/paired.md`` (a fragment of ``docs/validation.md``, stitched in by
``make_report.py``) and ``<out>/paired_power_<metric>.png``.

Two models are scored on the same simulated validation sets (``paired_sim.py``: accuracy, 3-class macro-F1,
binormal AUROC, with three agreement levels each and an analytically known true difference). On every set:

- ``ours``: the default ``PairedBootstrapMetric(base, num_bootstraps=B, seed=i)`` (``method="auto"``: the normal
  interval for a paired difference since Part 4d, ``paired_normal.py``; ``resampling="multinomial"``) on set i; it
  rejects "no difference" when ``p_value < 0.05`` (the inverted interval; and, as a second rule, when its 95%
  interval excludes 0); its interval covers when it contains the true difference. ``ours percentile``,
  ``ours normal`` and ``ours BCa``: the interval of that method from the same replicates and its inverted p-value
  (what ``method=...`` returns with the same seed; BCa checked against a fresh one).
  Cells cached before this change ran ``method="bca"`` alone under the ``ours`` names (``METHOD_OURS_BEFORE``);
  ``paired_report.py`` reads those as ``ours BCa``.
- ``closed``: McNemar's exact test (accuracy), DeLong's paired test (AUROC), and the unpaired z-test from each
  model's own analytic standard error (binomial for accuracy, DeLong's one-sample variance for AUROC).
- ``marginal``: two ``BootstrapMetric(base, B, seed=2i)`` / ``(seed=2i+1)``, one per model: the overlap rule
  (disjoint intervals) and the unpaired z-test from the two bootstrap standard errors.
- ``scipy``: ``scipy.stats.bootstrap((preds_a, preds_b, target), stat_a - stat_b, paired=True, method=M,
  n_resamples=B, rng=default_rng([10, i]))``.

Which groups run on which cells (``plan``): ``ours`` and ``closed`` on every cell; ``marginal`` on the power
cells; ``scipy`` on the power cells with a true difference in ``SCIPY_DELTA_IDS`` (fewer cells, for CPU).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import paired_anchors as anchors
from paired_sim import DELTAS, LEVELS, METRICS, agreement, simulate, true_difference, true_values

SIZES = (100, 300, 1000, 5000)
POWER_N = 1000
POWER_LEVEL_ID = 1  # the middle agreement level
COVERAGE_DELTA_ID = 2  # true difference 0.02: a nonzero-difference coverage cell at every n
SCIPY_DELTA_IDS = (0, 2)
SCIPY_METHOD = "percentile"  # BCa's jackknife would double its cost; ours is the interval being validated
TIMING_SIMS = 5
ALPHA = 0.05
GROUPS = ("ours", "closed", "marginal", "scipy")
POWER_RESULTS = "paired_power_results.json"  # the power cells run on fewer sets (see the report)


# the interval of "ours": the default, `method="auto"` (no method argument is passed), which is the normal
# interval for a paired difference since Part 4d (paired_normal.py); its cached cells say so in
# `_ours_extra["method"]`. Cells cached without that key were run with `method=METHOD_OURS_BEFORE` (BCa, the
# paired default when this part first ran) and are read as "ours BCa" by paired_report.py.
METHOD_OURS = "auto"
METHOD_OURS_BEFORE = "bca"
# computed from the same replicates as the default on every set (Part 4d): row names in the report
OTHER_METHODS = ("percentile", "normal", "bca")
OTHER_NAMES = {"percentile": "ours percentile", "normal": "ours normal", "bca": "ours BCa"}


def cell_key(metric: str, level_id: int, delta_id: int, n: int) -> str:
    return f"{metric}|L{level_id}|D{delta_id}|{n}"


def plan(sizes: tuple[int, ...], power_n: int) -> list[tuple[str, int, int, int, tuple[str, ...]]]:
    """Cells in the order they run, most important first: ``(metric, level_id, delta_id, n, groups)``.

    1. type-I error at the middle agreement level, every n (ours, closed form);
    2. the power cells: n = ``power_n``, middle level, every true difference (+ the marginal intervals);
    3. type-I error at the other agreement levels, at the smallest n and at ``power_n``;
    4. the scipy anchor on the power cells with a true difference in ``SCIPY_DELTA_IDS``;
    5. coverage at the nonzero difference ``DELTAS[COVERAGE_DELTA_ID]`` at every other n;
    6. type-I error at the other agreement levels and the remaining n.
    """
    cells: dict[tuple[str, int, int, int], list[str]] = {}

    def add(m: str, li: int, di: int, n: int, groups: tuple[str, ...]) -> None:
        got = cells.setdefault((m, li, di, n), [])
        got.extend(g for g in groups if g not in got)

    other_levels = {m: [li for li in range(len(LEVELS[m])) if li != POWER_LEVEL_ID] for m in METRICS}
    first_sizes = [n for n in sizes if n in (min(sizes), power_n)]
    for m in METRICS:
        for n in sizes:
            add(m, POWER_LEVEL_ID, 0, n, ("ours", "closed"))
    for m in METRICS:
        for di in range(len(DELTAS)):
            add(m, POWER_LEVEL_ID, di, power_n, ("ours", "closed", "marginal"))
    for m in METRICS:
        for li in other_levels[m]:
            for n in first_sizes:
                add(m, li, 0, n, ("ours", "closed"))
    for m in METRICS:
        for di in SCIPY_DELTA_IDS:
            add(m, POWER_LEVEL_ID, di, power_n, ("scipy",))
    for m in METRICS:
        for n in sizes:
            add(m, POWER_LEVEL_ID, COVERAGE_DELTA_ID, n, ("ours", "closed"))
    for m in METRICS:
        for li in other_levels[m]:
            for n in sizes:
                add(m, li, 0, n, ("ours", "closed"))
    return [(m, li, di, n, tuple(groups)) for (m, li, di, n), groups in cells.items()]


def base_metric(metric: str) -> Callable[[], Any]:
    from torchmetrics.classification import BinaryAccuracy, BinaryAUROC, MulticlassF1Score

    return {
        "accuracy": BinaryAccuracy,
        "macro_f1": lambda: MulticlassF1Score(num_classes=3, average="macro"),
        "auroc": BinaryAUROC,
    }[metric]


def _rate(reject: np.ndarray) -> dict[str, Any]:
    s = reject.size
    r = float(reject.mean())
    return {"sims": int(s), "rejections": int(reject.sum()), "rate": r, "mcse": math.sqrt(r * (1 - r) / s)}


def _interval_stats(lower: np.ndarray, upper: np.ndarray, truth: float) -> dict[str, Any]:
    nan = np.isnan(lower) | np.isnan(upper)
    covered = (~nan) & (lower <= truth) & (truth <= upper)
    c = float(covered.mean())
    s = lower.size
    return {
        "coverage": c,
        "coverage_mcse": math.sqrt(c * (1 - c) / s),
        "miss_low": int(((~nan) & (truth < lower)).sum()),  # interval entirely above the truth
        "miss_high": int(((~nan) & (truth > upper)).sum()),  # interval entirely below the truth
        "nan": int(nan.sum()),
        "mean_width": float(np.nanmean(upper - lower)) if (~nan).any() else float("nan"),
    }


def _excludes_zero(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    return (lower > 0) | (upper < 0)  # NaN bounds never reject


# ----------------------------------------------------------------------------------------------------------
# groups
# ----------------------------------------------------------------------------------------------------------
def _capture_engine(pm: Any) -> dict[str, Any]:
    """Make ``pm.engine`` also compute the jackknife and keep its last output (``captured["out"]``).

    ``PairedBootstrapMetric.compute`` calls ``engine.compute()`` once; the captured output gives the BCa interval
    of the same replicates (``_bca_from``) without a second bootstrap. The jackknife does not change the replicates
    or the percentile result: the fresh-instance check (``max_abs_diff_vs_fresh``) compares with a plain default.
    """
    captured: dict[str, Any] = {}
    engine = pm.engine
    engine.need_jackknife = True
    compute = engine.compute

    def capture() -> Any:
        captured["out"] = compute()
        return captured["out"]

    engine.compute = capture
    return captured


def _method_from(pm: Any, out: Any, method: str) -> tuple[float, float, float]:
    """``(lower, upper, p_value)`` of ``method`` for the engine output ``out``, as ``compute`` makes them."""
    from lightning_ci.bootstrap._engine import EngineOutput
    from lightning_ci.bootstrap.paired import interval_p_value

    value = out.value
    shape = value.shape[1:]
    dtype = value.dtype if value.is_floating_point() else torch.get_default_dtype()
    diff = value[0].to(dtype) - value[1].to(dtype)
    reps = out.replicates.reshape(out.replicates.shape[0], 2, *shape)
    diff_reps = reps[:, 0] - reps[:, 1]
    jack = out.jackknife.reshape(-1, 2, *shape)
    jack = jack[:, 0] - jack[:, 1]
    weights = out.jackknife_weights
    diff_out = EngineOutput(value=diff, replicates=diff_reps, jackknife=jack, jackknife_weights=weights)
    lower, upper = pm._interval(diff_out, method)
    p_value = interval_p_value(
        diff_reps,
        diff,
        method=method,
        jackknife=jack,
        jackknife_weights=None if weights is None else weights.reshape(-1),
    )
    return float(lower), float(upper), float(p_value.to(dtype))  # compute returns the p-value in the value's dtype


def group_ours(metric, pa, pb, t, truth, b, timing_sims) -> dict[str, Any]:
    """The default ``PairedBootstrapMetric(base, B, seed=i)`` reused across sets (``reset()``, then ``seed = i``).

    "ours" is the default, ``method="auto"`` (what it resolves to is recorded in ``_ours_extra["method"]``), and
    its ``p_value`` (the inverted interval). "ours <m>" for each m in ``OTHER_METHODS`` is the
    interval of method m computed from the *same* replicates (the engine also computes the jackknife;
    ``_method_from``) and its inverted p-value: what ``method=m`` returns with the same seed.
    On the first ``timing_sims`` sets a fresh default ``PairedBootstrapMetric(base, B, seed=i)`` is also built,
    updated, computed and timed; its result is compared with the reused one's, and its values with the unwrapped
    metric; a fresh ``method="bca"`` one is compared with the BCa bounds and p-value.
    """
    from lightning_ci import PairedBootstrapMetric

    make = base_metric(metric)
    sims = t.shape[0]
    keys = ("value_a", "value_b", "difference", "lower", "upper", "std", "p_value")
    res = {k: np.full(sims, np.nan) for k in keys}
    other = {m: {k: np.full(sims, np.nan) for k in ("lower", "upper", "p_value")} for m in OTHER_METHODS}
    warned, times, max_diff, max_fresh, max_bca = 0, [], 0.0, 0.0, 0.0
    pm = PairedBootstrapMetric(make(), num_bootstraps=b, seed=0)  # the default: method=METHOD_OURS
    assert pm.method_requested == METHOD_OURS
    method = pm.method
    captured = _capture_engine(pm)
    for i in range(sims):
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            pm.reset()
            pm.seed = i
            pm.update(pa[i], pb[i], t[i])
            out = pm.compute()
            for m, store in other.items():
                store["lower"][i], store["upper"][i], store["p_value"][i] = _method_from(pm, captured["out"], m)
        warned += bool(rec)
        for k in keys:
            res[k][i] = float(out[k])
        if i < timing_sims:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t0 = time.process_time()
                fresh = PairedBootstrapMetric(make(), num_bootstraps=b, seed=i)
                fresh.update(pa[i], pb[i], t[i])
                fout = fresh.compute()
                times.append(time.process_time() - t0)
                fresh_bca = PairedBootstrapMetric(make(), num_bootstraps=b, method="bca", seed=i)
                fresh_bca.update(pa[i], pb[i], t[i])
                bout = fresh_bca.compute()
            max_fresh = max([max_fresh] + [abs(float(fout[k]) - res[k][i]) for k in keys])
            max_bca = max([max_bca] + [abs(float(bout[k]) - other["bca"][k][i]) for k in other["bca"]])
            for k, p in (("value_a", pa[i]), ("value_b", pb[i])):  # the point values equal the unwrapped metric
                ref = make()
                ref.update(p, t[i])
                max_diff = max(max_diff, abs(float(ref.compute()) - res[k][i]))
    lo, hi, p = res["lower"], res["upper"], res["p_value"]
    by_p = p < ALPHA
    by_ci = _excludes_zero(lo, hi)
    configs: dict[str, Any] = {
        "ours (p < 0.05)": {**_rate(by_p), "nan_p": int(np.isnan(p).sum())},
        "ours (interval excludes 0)": {**_rate(by_ci), **_interval_stats(lo, hi, truth)},
    }
    disagree = {}
    for m, store in other.items():
        name = OTHER_NAMES[m]
        m_p, m_ci = store["p_value"] < ALPHA, _excludes_zero(store["lower"], store["upper"])
        configs[f"{name} (p < 0.05)"] = {**_rate(m_p), "nan_p": int(np.isnan(store["p_value"]).sum())}
        configs[f"{name} (interval excludes 0)"] = {
            **_rate(m_ci),
            **_interval_stats(store["lower"], store["upper"], truth),
        }
        disagree[m] = int((m_p != m_ci).sum())
    return {
        **configs,
        "_ours_extra": {
            "method": method,
            "methods": list(OTHER_METHODS),
            "decisions_disagree": int((by_p != by_ci).sum()),
            "other_decisions_disagree": disagree,  # per method: sets where its p-value and interval disagree
            "warned_sims": warned,
            "median_time_ms": float(np.median(times) * 1e3) if times else None,
            "max_abs_value_diff_vs_unwrapped": max_diff,
            "max_abs_diff_vs_fresh": max_fresh,
            "max_abs_bca_diff_vs_fresh": max_bca,
            "mean_difference": float(np.nanmean(res["difference"])),
            "mean_std": float(np.nanmean(res["std"])),
            "sd_difference": float(np.nanstd(res["difference"], ddof=1)) if sims > 1 else float("nan"),
        },
    }


def group_closed(metric, pa, pb, t, truth, b, timing_sims) -> dict[str, Any]:
    pa, pb, t = pa.numpy(), pb.numpy(), t.numpy()
    n = t.shape[1]
    if metric == "accuracy":
        bb, cc = anchors.discordant_counts(pa, pb, t)
        p_mc = anchors.mcnemar_exact(bb, cc)
        acc_a, acc_b = (pa == t).mean(1), (pb == t).mean(1)
        se = lambda p: np.sqrt(p * (1 - p) / n)  # noqa: E731
        p_z = anchors.unpaired_z(acc_a, acc_b, se(acc_a), se(acc_b))
        return {
            "McNemar exact": _rate(p_mc < ALPHA),
            "unpaired z (analytic s.e.)": _rate(p_z < ALPHA),
        }
    if metric == "auroc":
        sims = t.shape[0]
        p_d, p_z = np.empty(sims), np.empty(sims)
        for i in range(sims):
            d = anchors.delong_paired(pa[i], pb[i], t[i])
            p_d[i] = d["p_value"]
            p_z[i] = anchors.unpaired_z(d["auc_a"], d["auc_b"], math.sqrt(d["var_a"]), math.sqrt(d["var_b"]))
        return {"DeLong paired": _rate(p_d < ALPHA), "unpaired z (analytic s.e.)": _rate(p_z < ALPHA)}
    return {}


def group_marginal(metric, pa, pb, t, truth, b, timing_sims) -> dict[str, Any]:
    from lightning_ci import BootstrapMetric

    make = base_metric(metric)
    sims = t.shape[0]
    out = {k: np.full(sims, np.nan) for k in ("va", "vb", "la", "ua", "lb", "ub", "sa", "sb")}
    bms = {"a": BootstrapMetric(make(), b, seed=0), "b": BootstrapMetric(make(), b, seed=1)}
    max_diff = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(sims):
            for side, preds, seed in (("a", pa, 2 * i), ("b", pb, 2 * i + 1)):
                bm = bms[side]
                bm.reset()
                bm.seed = seed  # what BootstrapMetric(seed=seed) sets
                bm.update(preds[i], t[i])
                r = bm.compute()
                out["v" + side][i], out["l" + side][i] = float(r["value"]), float(r["lower"])
                out["u" + side][i], out["s" + side][i] = float(r["upper"]), float(r["std"])
                if i < timing_sims:  # the reused metric gives what a fresh one gives
                    fresh = BootstrapMetric(make(), b, seed=seed)
                    fresh.update(preds[i], t[i])
                    rf = fresh.compute()
                    max_diff = max(
                        max_diff,
                        abs(float(rf["lower"]) - out["l" + side][i]),
                        abs(float(rf["upper"]) - out["u" + side][i]),
                    )
    overlap = anchors.overlap_reject(out["la"], out["ua"], out["lb"], out["ub"])
    p_z = anchors.unpaired_z(out["va"], out["vb"], out["sa"], out["sb"])
    return {
        "overlap rule (two marginal intervals)": _rate(overlap),
        "unpaired z (bootstrap s.e.)": _rate(p_z < ALPHA),
        "_marginal_extra": {"max_abs_diff_vs_fresh": max_diff},
    }


def group_scipy(metric, pa, pb, t, truth, b, timing_sims) -> dict[str, Any]:
    pa, pb, t = pa.numpy(), pb.numpy(), t.numpy()
    sims = t.shape[0]
    lo, hi = np.full(sims, np.nan), np.full(sims, np.nan)
    times, max_diff = [], 0.0
    for i in range(sims):
        lo[i], hi[i] = anchors.scipy_paired(metric, pa[i], pb[i], t[i], b, seed=[10, i], method=SCIPY_METHOD)
        if i < timing_sims:  # the call a user writes: same interval, timed
            t0 = time.process_time()
            plo, phi = anchors.scipy_paired(
                metric, pa[i], pb[i], t[i], b, seed=[10, i], method=SCIPY_METHOD, fast=False
            )
            times.append(time.process_time() - t0)
            max_diff = max(max_diff, abs(plo - lo[i]), abs(phi - hi[i]))
    name = f"scipy.stats.bootstrap paired {SCIPY_METHOD} (interval excludes 0)"
    return {
        name: {**_rate(_excludes_zero(lo, hi)), **_interval_stats(lo, hi, truth)},
        "_scipy_extra": {
            "max_abs_diff_vs_plain": max_diff,
            "median_time_ms": float(np.median(times) * 1e3) if times else None,
        },
    }


GROUP_FNS = {"ours": group_ours, "closed": group_closed, "marginal": group_marginal, "scipy": group_scipy}


def have_paired() -> bool:
    try:
        from lightning_ci import PairedBootstrapMetric  # noqa: F401
    except ImportError:
        return False
    return True


# ----------------------------------------------------------------------------------------------------------
# driver
# ----------------------------------------------------------------------------------------------------------
def _load(path: Path) -> dict[str, Any]:
    if path.exists():
        return json.loads(path.read_text())
    return {"cells": {}}


def _save(path: Path, results: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1, sort_keys=True))
    os.replace(tmp, path)


def _done(res: dict[str, Any], group: str, args: argparse.Namespace) -> bool:
    """Whether a cached (cell, group) result is at the requested S and B (and, for "ours", of the default)."""
    if res.get("sims") != args.sims or res.get("B") != args.num_bootstraps:
        return False
    return _is_default(res, group)


def _is_default(res: dict[str, Any], group: str) -> bool:
    """False for an "ours" result cached before Part 4d (without the per-method rows of the same replicates,
    ``_ours_extra["methods"]``), which is recomputed; True for every other result."""
    return group != "ours" or "methods" in res.get("configs", {}).get("_ours_extra", {})


def run(args: argparse.Namespace) -> dict[str, Any]:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / args.results_file
    results = _load(path)
    for part in args.merge:  # runs split over processes (each with its own --out): union of their groups
        for key, cell in _load(Path(part))["cells"].items():
            mine = results["cells"].setdefault(key, {k: v for k, v in cell.items() if k != "groups"})
            have = mine.setdefault("groups", {})
            for g, res in cell.get("groups", {}).items():
                mine_sims, mine_new = have.get(g, {}).get("sims", 0), _is_default(have.get(g, {}), g)
                if (res.get("sims", 0), _is_default(res, g)) >= (mine_sims, mine_new):  # never back to BCa-only
                    have[g] = res
    groups_wanted = set() if args.report_only else set(args.groups)
    if "ours" in groups_wanted and not have_paired():
        print("lightning_ci.PairedBootstrapMetric is not available yet: skipping the 'ours' group", flush=True)
        groups_wanted.discard("ours")
    sizes = tuple(args.sizes)
    cells = plan(sizes, args.power_n)
    cells.sort(key=lambda cell: cell[3] in args.defer_n)  # stable: deferred sizes last, in plan order
    for metric, li, di, n, groups in cells:
        if (args.metrics and metric not in args.metrics) or (args.level_ids and li not in args.level_ids):
            continue
        if args.delta_ids is not None and di not in args.delta_ids:
            continue
        key = cell_key(metric, li, di, n)
        cell = results["cells"].setdefault(key, {})
        truth = true_difference(metric, DELTAS[di])
        va, vb = true_values(metric, DELTAS[di])
        cell.update(
            {
                "metric": metric,
                "level_id": li,
                "level": LEVELS[metric][li],
                "delta_id": di,
                "delta": DELTAS[di],
                "n": n,
                "true_difference": truth,
                "true_a": va,
                "true_b": vb,
                "agreement": agreement(metric, LEVELS[metric][li], DELTAS[di]),
            }
        )
        cell.setdefault("groups", {})
        todo = [g for g in groups if g in groups_wanted and not _done(cell["groups"].get(g, {}), g, args)]
        if not todo:
            continue
        pa, pb, t = simulate(metric, li, di, n, args.sims)
        for g in todo:
            t0 = time.time()
            configs = GROUP_FNS[g](metric, pa, pb, t, truth, args.num_bootstraps, args.timing_sims)
            cell["groups"][g] = {
                "sims": args.sims,
                "B": args.num_bootstraps,
                "configs": configs,
                "wall_s": time.time() - t0,
            }
            _save(path, results)
            print(f"{key} {g}: {time.time() - t0:.1f} s", flush=True)
    results["meta"] = {
        "sims": args.sims,
        "B": args.num_bootstraps,
        "sizes": list(sizes),
        "power_n": args.power_n,
        "scipy_method": SCIPY_METHOD,
        "scipy_delta_ids": list(SCIPY_DELTA_IDS),
        "alpha": ALPHA,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "command": "python benchmarks/validation/paired.py " + " ".join(args.argv),
    }
    _save(path, results)
    return results


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sims", type=int, default=2000, help="simulated sets per cell (S)")
    parser.add_argument("--num-bootstraps", type=int, default=1000, help="replicates per bootstrap (B)")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--power-n", type=int, default=POWER_N)
    parser.add_argument("--metrics", nargs="+", default=None, choices=METRICS)
    parser.add_argument("--level-ids", type=int, nargs="+", default=None, help="only these agreement levels")
    parser.add_argument("--delta-ids", type=int, nargs="+", default=None, help="only these true differences")
    parser.add_argument("--defer-n", type=int, nargs="+", default=[], help="run the cells of these n last")
    parser.add_argument(
        "--merge", nargs="+", default=[], help="results files of partial runs to merge into <out> first"
    )
    parser.add_argument("--groups", nargs="+", default=list(GROUPS), choices=GROUPS)
    parser.add_argument("--timing-sims", type=int, default=TIMING_SIMS)
    parser.add_argument(
        "--results-file",
        default="paired_results.json",
        help="cache file under --out (the power curves' reduced-S run uses paired_power_results.json)",
    )
    parser.add_argument("--report-only", action="store_true", help="merge and report, run no cell")
    parser.add_argument("--no-report", action="store_true", help="only run the cells")
    parser.add_argument("--out", default="docs/validation")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    torch.set_num_threads(1)
    args = parse(argv)
    results = run(args)
    if not args.no_report:
        import paired_report

        power_path = Path(args.out) / POWER_RESULTS
        power = _load(power_path) if power_path.exists() and args.results_file != POWER_RESULTS else None
        paired_report.write_report(results, Path(args.out), power)
    return results


if __name__ == "__main__":
    main()
