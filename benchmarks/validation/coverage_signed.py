"""Coverage study for metrics whose range crosses 0: Matthews' correlation and Cohen's kappa (issue 13).

Run (resumable; per-cell results are cached in ``<out>/coverage_signed_results.json``)::

    python benchmarks/validation/coverage_signed.py --out docs/validation

Writes ``<out>/coverage_signed_results.json`` and ``<out>/coverage_signed.md``, a markdown fragment that
``coverage_report.write_report`` appends to ``coverage.md`` (so ``coverage.py --report-only`` and then
``make_report.py`` put it into ``docs/validation.md``).

Both metrics have a *negative* population value here (``coverage_sim.py``: MCC -0.1216, kappa -0.1179): the
predictions agree with the target less often than chance. Up to 0.1.0, ``BootstrapMetric`` clipped its bounds
to torchmetrics' ``plot_lower_bound``/``plot_upper_bound``, which are 0 and 1 for both metrics, so no interval
could contain the truth. The study runs, on the same simulated sets and seeds as the main study:

- ours: ``BootstrapMetric`` with every ``method`` x ``resampling`` (``coverage_ours.run_ours``: one set of
  replicates per mode, turned into each interval by the code path of ``compute``; fresh instances timed and
  compared on the first sets);
- the 0.1.0 behaviour: the default (BCa, multinomial) bounds clipped to [0, 1], exactly what 0.1.0 returned;
- ``scipy.stats.bootstrap`` BCa, paired over (preds, target), through the index statistic of
  ``coverage_anchors`` (bit-identical to the plain paired call, which is run and compared on the first sets).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import coverage as study
import coverage_ours as ours
import coverage_report as report
from coverage_sim import (
    DATA_SEED,
    KAPPA_COND,
    KAPPA_PRIORS,
    MCC_JOINT,
    METRIC_IDS,
    SIGNED_METRICS,
    simulate,
    true_value,
)

SIZES = (50, 200, 1000)
OLD_CLIPPING = report.OLD_CLIPPING  # the row name of the 0.1.0 behaviour
DEFAULT = ("multinomial", "bca")  # what BootstrapMetric's default (method="auto", multinomial) resolves to


def run_cell(metric: str, n: int, sims: int, b: int, timing_sims: int) -> dict[str, Any]:
    preds, target = simulate(metric, n, sims)
    truth = true_value(metric)
    t0, w0 = time.process_time(), time.perf_counter()
    raw = ours.run_ours(metric, preds, target, b, timing_sims)
    configs: dict[str, Any] = {}
    for name, r in raw.items():
        note = "end-to-end BootstrapMetric construct+update+compute"
        st = study._stats(r["lower"], r["upper"], truth, r["times"], note)
        st["warned_sims"] = r["warned_sims"]
        st["max_abs_diff_vs_fresh"] = r["max_abs_diff_vs_fresh"]
        configs[name] = st
    default = raw[ours.config_name(*DEFAULT)]
    configs[OLD_CLIPPING] = study._stats(
        np.clip(default["lower"], 0.0, 1.0), np.clip(default["upper"], 0.0, 1.0), truth, [],
        "the default's bounds clipped to torchmetrics' plot range [0, 1], as 0.1.0 returned them",
    )  # fmt: skip
    ours_group = {"sims": sims, "B": b, "configs": configs, "cpu_s": time.process_time() - t0,
                  "wall_s": time.perf_counter() - w0}  # fmt: skip
    t0, w0 = time.process_time(), time.perf_counter()
    scipy_configs = study.group_scipy(metric, preds, target, truth, b, sims, timing_sims)
    scipy_group = {"sims": sims, "B": b, "configs": scipy_configs, "cpu_s": time.process_time() - t0,
                   "wall_s": time.perf_counter() - w0}  # fmt: skip
    return {"metric": metric, "n": n, "true_value": truth, "groups": {"ours": ours_group, "scipy": scipy_group}}


def _fragment(results: dict[str, Any]) -> str:
    meta = results["meta"]
    mach = meta["machine"]
    total_cpu = sum(g["cpu_s"] for c in results["cells"].values() for g in c["groups"].values())
    ids = ", ".join(f"{METRIC_IDS[m]} = {m}" for m in SIGNED_METRICS)
    exact = max((st.get("max_abs_diff_vs_fresh", 0.0) for c in results["cells"].values()
                 for st in c["groups"]["ours"]["configs"].values()), default=0.0)  # fmt: skip
    scipy_diff = max((c["groups"]["scipy"]["configs"]["scipy.stats.bootstrap BCa"]["max_abs_diff_vs_plain"]
                      for c in results["cells"].values()), default=0.0)  # fmt: skip
    md = [
        "### Metrics whose range crosses 0: MCC and Cohen's kappa",
        "",
        "Up to 0.1.0, `BootstrapMetric` clipped its bounds to torchmetrics' `plot_lower_bound`/`plot_upper_bound`, "
        "plotting hints of 0 and 1 for MCC and kappa, whose range is [-1, 1]. Now the bounds are clipped to the "
        "metric's mathematical range only. Both metrics have a negative true value here, so the 0.1.0 row cannot "
        "cover.",
        "",
        "```bash",
        meta["command"],
        "```",
        "",
        f"- **Replicates:** B = {meta['num_bootstraps']} (ours and scipy). **Simulated sets:** S = {meta['sims']} "
        "per (metric, n) cell.",
        f"- **Seeds (fixed, not tuned):** data of cell (metric, n) from `numpy.random.default_rng(SeedSequence("
        f"[{DATA_SEED}, metric_id, n]))` ({ids}); `BootstrapMetric(seed=i)` and scipy `rng=default_rng(i)` on set i.",
        f"- **Machine:** {mach['cpu']}, {mach['cores']} cores, torch threads = {mach['torch_threads']}; torch "
        f"{mach['torch']}, torchmetrics {mach['torchmetrics']}, scipy {mach['scipy']}. {total_cpu / 60:.0f} CPU "
        "minutes.",
        f"- **MCC** (`BinaryMatthewsCorrCoef()`): the 2x2 joint table (rows = target, columns = pred) "
        f"{np.round(MCC_JOINT, 4).tolist()}; true MCC {true_value('mcc'):.6f}.",
        f"- **Cohen's kappa** (`MulticlassCohenKappa(num_classes=3)`): priors {tuple(KAPPA_PRIORS.tolist())}, "
        f"P(pred | target) rows {[tuple(r) for r in KAPPA_COND.tolist()]}; true kappa {true_value('kappa'):.6f}.",
        f"- Ours is computed as in the main study (shared replicates per mode; fresh instances on the first "
        f"{meta['timing_sims']} sets differ by at most {exact:.3g}); scipy BCa through the index statistic (the "
        f"plain paired call on the first {meta['timing_sims']} sets differs by at most {scipy_diff:.3g}). "
        f"`{OLD_CLIPPING}` is the default's bounds clipped to [0, 1] on the same sets.",
        "",
    ]
    for metric in SIGNED_METRICS:
        if not report._cells(results, metric):
            continue
        title = report.TITLES[metric]
        md += [f"**{title}: coverage (%)**", "", report.coverage_table(results, metric), ""]
        md += [f"Mean interval width, {title}:", "", report.value_table(results, metric, "mean_width", ".4f"), ""]
    md += ["Findings:", "", *findings(results), ""]
    return "\n".join(md)


def findings(results: dict[str, Any]) -> list[str]:
    out = []
    for metric in SIGNED_METRICS:
        cells = report._cells(results, metric)
        if not cells:
            continue
        title = report.TITLES[metric]
        old = [100 * report._configs(c)[OLD_CLIPPING]["coverage"] for c in cells]
        default = [report._configs(c)[ours.config_name(*DEFAULT)] for c in cells]
        low = [c for c, st in zip(cells, default) if st["coverage"] < 0.95 - report.mc_halfwidth(st["sims"])]
        cov = ", ".join(f"{100 * st['coverage']:.1f}% at n={c['n']}" for c, st in zip(cells, default))
        scipy = [report._configs(c)["scipy.stats.bootstrap BCa"]["coverage"] for c in low]
        below = "; ".join(f"n = {c['n']} (scipy's BCa: {100 * v:.1f}%)" for c, v in zip(low, scipy))
        out.append(
            f"- {title}: the default (BCa, multinomial) covers {cov}"
            + (f"; below the Monte Carlo band at {below}." if low else ", within or above the Monte Carlo band.")
            + f" The 0.1.0 clipping covers {max(old):.1f}% at best."
        )
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sims", type=int, default=2000)
    parser.add_argument("--num-bootstraps", type=int, default=1000)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--metrics", nargs="+", default=list(SIGNED_METRICS), choices=list(SIGNED_METRICS))
    parser.add_argument("--timing-sims", type=int, default=study.TIMING_SIMS)
    parser.add_argument("--out", default="docs/validation")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "coverage_signed_results.json"
    cli = argv if argv is not None else sys.argv[1:]
    meta = {
        "command": ("python benchmarks/validation/coverage_signed.py " + " ".join(cli)).strip(),
        "sims": args.sims, "num_bootstraps": args.num_bootstraps, "sizes": sorted(args.sizes),
        "timing_sims": args.timing_sims, "machine": study.machine_info(),
    }  # fmt: skip
    results = study._update_results(path, lambda r: r.__setitem__("meta", meta))
    for metric in args.metrics:
        for n in args.sizes:
            key = f"{metric}|{n}"
            cached = results["cells"].get(key)
            if cached and all(g["sims"] == args.sims and g["B"] == args.num_bootstraps
                              for g in cached["groups"].values()):  # fmt: skip
                continue
            cell = run_cell(metric, n, args.sims, args.num_bootstraps, args.timing_sims)
            results = study._update_results(path, lambda r, key=key, cell=cell: r["cells"].__setitem__(key, cell))
            cpu = sum(g["cpu_s"] for g in cell["groups"].values())
            print(f"{key:>12} sims={args.sims} cpu {cpu:7.1f}s", flush=True)
    (out / "coverage_signed.md").write_text(_fragment(results))
    study._remove_lock(path)
    return results


if __name__ == "__main__":
    main()
