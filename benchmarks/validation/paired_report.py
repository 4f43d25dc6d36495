"""Tables, plots and the markdown fragment ``paired.md`` of the paired study (``paired.py``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from paired_sim import (
    ACC_PB,
    ACC_PREVALENCE,
    AUC_MU_B,
    AUC_PREVALENCE,
    DATA_SEED,
    DELTAS,
    F1_COND,
    F1_PRIORS,
    LEVEL_NAMES,
    LEVELS,
    METRICS,
)

TITLES = {"accuracy": "Binary accuracy", "macro_f1": "Macro-F1 (3 classes)", "auroc": "Binary AUROC"}
OURS_P = "ours (p < 0.05)"
OURS_CI = "ours (interval excludes 0)"
OURS_BCA_P = "ours BCa (p < 0.05)"
OURS_BCA_CI = "ours BCa (interval excludes 0)"
OURS_PCT_P = "ours percentile (p < 0.05)"
OURS_PCT_CI = "ours percentile (interval excludes 0)"
COVERAGE_BAND = (0.935, 0.965)
Z = 1.96


def type1_band(sims: int, alpha: float = 0.05) -> tuple[float, float]:
    """The 95% Monte Carlo band of a rejection rate whose true value is ``alpha``."""
    h = Z * math.sqrt(alpha * (1 - alpha) / sims)
    return alpha - h, alpha + h


def _legacy_ours(group: dict[str, Any]) -> bool:
    """An "ours" result cached before the default moved to the percentile interval: BCa alone, under the ours
    names, with no "method" recorded (``paired.METHOD_OURS_BEFORE``)."""
    return "method" not in group.get("configs", {}).get("_ours_extra", {})


def _configs(cell: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The cell's rows by name; a legacy BCa-only "ours" result is read as the "ours BCa" rows."""
    out: dict[str, dict[str, Any]] = {}
    for name, g in cell.get("groups", {}).items():
        configs = {k: v for k, v in g["configs"].items() if not k.startswith("_")}
        if name == "ours" and _legacy_ours(g):
            configs = {{OURS_P: OURS_BCA_P, OURS_CI: OURS_BCA_CI}.get(k, k): v for k, v in configs.items()}
        elif name == "ours":  # the rows of the method the default resolved to repeat the default's: drop them
            from paired import OTHER_NAMES

            same = OTHER_NAMES.get(g["configs"]["_ours_extra"]["method"], "")
            configs = {k: v for k, v in configs.items() if not k.startswith(same + " (")}
        out.update(configs)
    return out


def default_method(results: dict[str, Any]) -> str:
    """The interval ``method="auto"`` resolved to in the cached "ours" results (the most common one)."""
    seen = [
        c["groups"]["ours"]["configs"]["_ours_extra"]["method"]
        for c in results["cells"].values()
        if "ours" in c.get("groups", {}) and not _legacy_ours(c["groups"]["ours"])
    ]
    return max(set(seen), key=seen.count) if seen else "percentile"


def _extra(cell: dict[str, Any], group: str) -> dict[str, Any]:
    """The group's diagnostics; none for a legacy BCa-only "ours" result (they describe BCa, not the default)."""
    g = cell.get("groups", {}).get(group, {})
    if group == "ours" and _legacy_ours(g):
        return {}
    return g.get("configs", {}).get(f"_{group}_extra", {})


def _cells(results: dict[str, Any], **where: Any) -> list[dict[str, Any]]:
    cells = [c for c in results["cells"].values() if all(c.get(k) == v for k, v in where.items())]
    return sorted(cells, key=lambda c: (METRICS.index(c["metric"]), c["level_id"], c["delta_id"], c["n"]))


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _fmt_rate(st: dict[str, Any] | None, band: tuple[float, float] | None) -> str:
    if st is None:
        return "–"
    s = f"{_pct(st['rate'])} ± {_pct(st['mcse'])}"
    if band is not None and not band[0] <= st["rate"] <= band[1]:
        s = f"**{s}**"
    return s


def coverage_band(sims: int) -> tuple[float, float]:
    """[93.5, 96.5]%, widened to the 95% Monte Carlo band of 95% where S is too small for it (S < 811)."""
    h = Z * math.sqrt(0.95 * 0.05 / sims)
    return min(COVERAGE_BAND[0], 0.95 - h), max(COVERAGE_BAND[1], 0.95 + h)


def _fmt_cov(st: dict[str, Any] | None) -> str:
    if st is None or "coverage" not in st:
        return "–"
    s = f"{_pct(st['coverage'])} ± {_pct(st['coverage_mcse'])}"
    band = coverage_band(st["sims"])
    if not band[0] <= st["coverage"] <= band[1]:
        s = f"**{s}**"
    return s


def _level_label(metric: str, level: float) -> str:
    return f"{LEVEL_NAMES[metric]} = {level:g}"


# ------------------------------------------------------------------------------------------------------------
# tables
# ------------------------------------------------------------------------------------------------------------
def type1_table(results: dict[str, Any], metric: str) -> str:
    cells = _cells(results, metric=metric, delta_id=0)
    sizes = sorted({c["n"] for c in cells})
    levels = sorted({c["level_id"] for c in cells})
    names = [k for k in power_names(cells) if "overlap" not in k and "bootstrap s.e." not in k and "scipy" not in k]
    rows = ["| agreement | test | " + " | ".join(f"n={n}" for n in sizes) + " |", "|---|---|" + "---|" * len(sizes)]
    for li in levels:
        for name in names:
            vals = []
            for n in sizes:
                c = next((c for c in cells if c["level_id"] == li and c["n"] == n), None)
                st = _configs(c).get(name) if c else None
                band = type1_band(st["sims"]) if st else None
                vals.append(_fmt_rate(st, band))
            c0 = next(c for c in cells if c["level_id"] == li)
            label = _level_label(metric, c0["level"])
            if metric != "auroc":
                label += f" (P(pred_A = pred_B) = {c0['agreement']:.3f})"
            if any(v != "–" for v in vals):
                rows.append(f"| {label} | {name} | " + " | ".join(vals) + " |")
    return "\n".join(rows) if len(rows) > 2 else "(not run yet)"


def coverage_table(results: dict[str, Any], metric: str) -> str:
    """Coverage of the default's interval ("ours") and, on the row below, of BCa's from the same replicates."""
    cells = [c for c in _cells(results, metric=metric) if {OURS_CI, OURS_BCA_CI} & set(_configs(c))]
    sizes = sorted({c["n"] for c in cells})
    keys = sorted({(c["level_id"], c["delta_id"]) for c in cells})
    rows = [
        "| agreement | true difference | interval | " + " | ".join(f"n={n}" for n in sizes) + " |",
        "|---|---|---|" + "---|" * len(sizes),
    ]
    rows_ci = ((OURS_CI, f"ours (default, {default_method(results)})"), (OURS_PCT_CI, "ours percentile"),
               (OURS_BCA_CI, "ours BCa"))  # fmt: skip
    for li, di in keys:
        for name, label in rows_ci:
            vals, c0 = [], None
            for n in sizes:
                c = next((c for c in cells if (c["level_id"], c["delta_id"], c["n"]) == (li, di, n)), None)
                c0 = c0 or c
                vals.append(_fmt_cov(_configs(c).get(name)) if c else "–")
            if any(v != "–" for v in vals):
                rows.append(
                    f"| {_level_label(metric, c0['level'])} | {c0['true_difference']:+.4f} | {label} | "
                    + " | ".join(vals)
                    + " |"
                )
    return "\n".join(rows)


def power_names(cells: list[dict[str, Any]]) -> list[str]:
    names: list[str] = []
    for c in cells:
        for k in _configs(c):
            if k not in names:
                names.append(k)
    first = [OURS_P, OURS_CI, OURS_PCT_P, OURS_BCA_P, OURS_BCA_CI]
    # the percentile interval's "excludes 0" row repeats its p-value row (the p-value is the inverted interval)
    return [n for n in first if n in names] + [n for n in names if n not in first and n != OURS_PCT_CI]


def power_cells(results: dict[str, Any], metric: str) -> list[dict[str, Any]]:
    meta = results["meta"]
    from paired import POWER_LEVEL_ID

    return _cells(results, metric=metric, level_id=POWER_LEVEL_ID, n=meta["power_n"])


def power_table(results: dict[str, Any], metric: str) -> str:
    cells = power_cells(results, metric)
    rows = [
        "| test | " + " | ".join(f"Δ={c['true_difference']:+.3f}" for c in cells) + " |",
        "|---|" + "---|" * len(cells),
    ]
    for name in power_names(cells):
        vals = []
        for c in cells:
            st = _configs(c).get(name)
            band = type1_band(st["sims"]) if st and c["delta_id"] == 0 else None
            vals.append(_fmt_rate(st, band))
        rows.append(f"| {name} | " + " | ".join(vals) + " |")
    if any(OURS_CI in _configs(c) for c in cells):
        rows.append(_coverage_row(cells))
    return "\n".join(rows) if len(rows) > 2 else "(not run yet)"


def diagnostics_table(results: dict[str, Any]) -> str:
    rows = [
        "| metric | agreement | Δ | n | mean bootstrap std / sd of the difference over sets | mean width | "
        "p and interval decisions differ | warned sets | median ms per set |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in _cells(results):
        ex = _extra(c, "ours")
        ci = _configs(c).get(OURS_CI)
        if not ex or ci is None:
            continue
        ratio = ex["mean_std"] / ex["sd_difference"] if ex.get("sd_difference") else float("nan")
        t = ex.get("median_time_ms")
        rows.append(
            f"| {c['metric']} | {c['level']:g} | {c['true_difference']:+.3f} | {c['n']} | {ratio:.3f} | "
            f"{ci['mean_width']:.4f} | {ex['decisions_disagree']} | {ex['warned_sims']} | "
            f"{'–' if t is None else f'{t:.1f}'} |"
        )
    return "\n".join(rows)


def outside_lines(results: dict[str, Any]) -> list[str]:
    """Every cell of ours outside its band, with a likely reason."""
    out = []
    for c in _cells(results):
        cfg = _configs(c)
        ex = _extra(c, "ours")
        if not ex:
            continue
        ratio = ex["mean_std"] / ex["sd_difference"] if ex.get("sd_difference") else float("nan")
        where = f"{c['metric']}, {_level_label(c['metric'], c['level'])}, Δ = {c['true_difference']:+.3f}, n = {c['n']}"
        reason = []
        if c["metric"] == "accuracy":
            reason.append(f"expected discordant pairs n·d = {c['n'] * c['level']:.0f}")
        reason.append(f"bootstrap std / true sd = {ratio:.2f}")
        if c["delta_id"] == 0:
            for name in (OURS_P, OURS_CI):
                st = cfg.get(name)
                if st is None:
                    continue
                lo, hi = type1_band(st["sims"])
                if not lo <= st["rate"] <= hi:
                    out.append(
                        f"- {where}: {name} rejects {_pct(st['rate'])}% (band [{_pct(lo)}, {_pct(hi)}]); "
                        + "; ".join(reason)
                    )
        st = cfg.get(OURS_CI)
        band = coverage_band(st["sims"]) if st is not None else None
        if c["delta_id"] != 0 and st is not None and not band[0] <= st["coverage"] <= band[1]:
            out.append(
                f"- {where}: coverage {_pct(st['coverage'])}% (band [{_pct(band[0])}, {_pct(band[1])}]; misses with "
                "the interval above / "
                f"below the truth: {st['miss_low']} / {st['miss_high']}); " + "; ".join(reason)
            )
    return out or ["- none: every cell of ours lies inside its band."]


def checks_lines(results: dict[str, Any]) -> list[str]:
    cells = list(results["cells"].values())

    def recorded(group: str, key: str) -> list[Any]:
        """The cells' recorded ``key`` of ``group``'s extras, where there is one."""
        return [v for c in cells if (v := _extra(c, group).get(key)) is not None]

    vd = recorded("ours", "max_abs_value_diff_vs_unwrapped")
    md = recorded("marginal", "max_abs_diff_vs_fresh")
    sd = recorded("scipy", "max_abs_diff_vs_plain")
    st = recorded("scipy", "median_time_ms")
    fd = recorded("ours", "max_abs_diff_vs_fresh")
    bd = recorded("ours", "max_abs_bca_diff_vs_fresh")
    lines = []
    if fd:
        lines.append(
            "- Ours is one default `PairedBootstrapMetric` reused across sets (`reset()`, then `seed = i`); on the "
            f"first sets of {len(fd)} cells a fresh `PairedBootstrapMetric(base, B, seed=i)` gives results within "
            f"{max(fd):.3g} of it."
        )
    if bd:
        lines.append(
            "- Ours BCa (the BCa bounds and p-value of the default's replicates, the engine also computing the "
            f'jackknife) against a fresh `PairedBootstrapMetric(base, B, method="bca", seed=i)` (first sets of '
            f"{len(bd)} cells): largest |difference| {max(bd):.3g}."
        )
    if vd:
        lines.append(
            f"- `value_a` / `value_b` against the unwrapped metric on each model (first sets of {len(vd)} cells): "
            f"largest |difference| {max(vd):.3g}."
        )
    if md:
        lines.append(
            "- The marginal `BootstrapMetric`s are reused across sets (`reset()`, then `seed = ...`); on the first "
            f"sets of {len(md)} cells a fresh `BootstrapMetric(seed=...)` gives bounds within {max(md):.3g} of them."
        )
    if sd:
        lines.append(
            f"- The scipy anchor's index statistic against the plain `paired=True` call a user writes (first sets of "
            f"{len(sd)} cells): largest bound difference {max(sd):.3g}; the plain call takes a median "
            f"{sorted(st)[len(st) // 2]:.0f} ms per set at n = {results['meta']['power_n']}."
        )
    return lines


# ------------------------------------------------------------------------------------------------------------
# plots
# ------------------------------------------------------------------------------------------------------------
STYLE = {
    OURS_P: ("C0", "-", "o"),
    OURS_CI: ("C0", ":", "s"),
    OURS_BCA_P: ("C2", "-", "o"),
    OURS_BCA_CI: ("C2", ":", "s"),
    "McNemar exact": ("C1", "--", "^"),
    "DeLong paired": ("C1", "--", "^"),
    "overlap rule (two marginal intervals)": ("C3", "--", "v"),
    "unpaired z (bootstrap s.e.)": ("C4", "--", "d"),
    "unpaired z (analytic s.e.)": ("C5", "-.", "x"),
}


def plot_power(results: dict[str, Any], out: Path, metric: str) -> str | None:
    cells = power_cells(results, metric)
    if not any(_configs(c) for c in cells):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for name in power_names(cells):
        xs, ys, es = [], [], []
        for c in cells:
            st = _configs(c).get(name)
            if st is None:
                continue
            xs.append(c["true_difference"])
            ys.append(st["rate"])
            es.append(Z * st["mcse"])
        colour, ls, marker = STYLE.get(name, ("C6", "--", "*"))
        ax.errorbar(xs, ys, yerr=es, color=colour, ls=ls, marker=marker, ms=4, lw=1.2, capsize=2, label=name)
    sims = (
        min(_configs(c)[OURS_P]["sims"] for c in cells if OURS_P in _configs(c))
        if any(OURS_P in _configs(c) for c in cells)
        else results["meta"]["sims"]
    )
    lo, hi = type1_band(sims)
    ax.axhspan(lo, hi, color="0.85", label=f"5% ± MC band (S = {sims})")
    ax.axhline(0.05, color="k", lw=0.8)
    c0 = cells[0]
    ax.set_xlabel(f"true difference A − B (model B: {c0['true_b']:.4f})")
    ax.set_ylabel("rejection rate at α = 0.05")
    ax.set_ylim(0, 1.02)
    ax.set_title(
        f"{TITLES[metric]}: n = {c0['n']}, {_level_label(metric, c0['level'])}, B = {results['meta']['B']}",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7.5, loc="upper left")
    fig.tight_layout()
    name = f"paired_power_{metric}.png"
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return name


# ------------------------------------------------------------------------------------------------------------
# the fragment
# ------------------------------------------------------------------------------------------------------------
def findings(results: dict[str, Any], power: dict[str, Any] | None) -> list[str]:
    """Summary sentences computed from the tables (no number is written by hand)."""
    lines = []
    runs = [(f"S = {results['meta']['sims']}", results)]
    if power:
        runs.append((f"power run, S = {power['meta']['sims']}", power))
    tests = (
        (f"ours (the default, {default_method(results)})", OURS_P, OURS_CI),
        ("ours percentile", OURS_PCT_P, OURS_PCT_CI),
        ("ours BCa", OURS_BCA_P, OURS_BCA_CI),
    )
    for label, res in runs:
        for who, p_name, ci_name in tests:
            rates, outside = [], 0
            for c in _cells(res, delta_id=0):
                st = _configs(c).get(p_name)
                if st is None:
                    continue
                rates.append(st["rate"])
                lo, hi = type1_band(st["sims"])
                outside += not lo <= st["rate"] <= hi
            if rates:
                lines.append(
                    f"- Type-I error of {who} ({label}): {_pct(min(rates))}–{_pct(max(rates))}% over {len(rates)} "
                    f"null cells, {outside} outside the Monte Carlo band."
                )
            covs = [
                (_configs(c)[ci_name]["coverage"], _configs(c)[ci_name]["sims"])
                for c in _cells(res)
                if c["delta_id"] != 0 and ci_name in _configs(c)
            ]
            if covs:
                bad = sum(not coverage_band(n)[0] <= v <= coverage_band(n)[1] for v, n in covs)
                lines.append(
                    f"- Coverage of the {who} interval at a nonzero true difference ({label}): "
                    f"{_pct(min(v for v, _ in covs))}–{_pct(max(v for v, _ in covs))}% over {len(covs)} cells, "
                    f"{bad} outside the band."
                )
    presults = power or results
    for m in METRICS:
        cells = [c for c in power_cells(presults, m) if c["delta_id"] != 0 and OURS_P in _configs(c)]
        for c in cells:
            cfg = _configs(c)
            others = ", ".join(f"{k} {_pct(v['rate'])}%" for k, v in cfg.items() if k not in (OURS_P, OURS_CI))
            lines.append(
                f"- Power, {m}, Δ = {c['true_difference']:+.3f}, n = {c['n']} (S = {cfg[OURS_P]['sims']}): ours "
                f"{_pct(cfg[OURS_P]['rate'])}%; {others}."
            )
    lines.append(
        "- Reading the anchors: McNemar's exact test is conservative where few pairs disagree (the discreteness of "
        "an exact binomial test); the unpaired z-test and the overlap rule ignore the positive correlation of the "
        "two models' errors, so they overstate the standard error of the difference, almost never reject under the "
        "null, and lose most of their power."
    )
    return lines


def _coverage_row(cells: list[dict[str, Any]]) -> str:
    vals = [_fmt_cov(_configs(c).get(OURS_CI)) for c in cells]
    return "| coverage of ours' 95% interval for the true difference | " + " | ".join(vals) + " |"


def not_run_lines(results: dict[str, Any], power: dict[str, Any] | None) -> list[str]:
    """Cells (and groups) of the full plan with no result at the full S, grouped by what is missing."""
    from paired import POWER_N, SIZES, _is_default, cell_key, plan

    sims = results["meta"]["sims"]
    missing: dict[str, list[str]] = {}
    for m, li, di, n, groups in plan(SIZES, POWER_N):
        cell = results["cells"].get(cell_key(m, li, di, n), {})
        for g in groups:
            res = cell.get("groups", {}).get(g, {})
            if res.get("sims") != sims or not _is_default(res, g):  # a BCa-only "ours" is not the default's run
                missing.setdefault(g, []).append(f"{m} {_level_label(m, LEVELS[m][li])} Δ={DELTAS[di]:g} n={n}")
    if not missing:
        return ["None: every planned cell ran on all S sets."]
    lines = [
        f"These planned cells have no result at S = {sims} yet: the run shares a 2-core machine with other jobs"
        " and was stopped at the session's deadline. `python benchmarks/validation/paired.py --out docs/validation`"
        " resumes it (the cache keeps every finished (cell, test) pair)"
        + (
            "; the power cells are reported below from a run on the first "
            f"{power['meta']['sims']} sets of each cell instead."
            if power
            else "."
        ),
        "",
    ]
    for g, cells in missing.items():
        lines.append(f"- `{g}` ({len(cells)} cells): " + "; ".join(cells))
    return lines


def write_report(results: dict[str, Any], out: Path, power: dict[str, Any] | None = None) -> None:
    meta = results["meta"]
    sims, b = meta["sims"], meta["B"]
    lo, hi = type1_band(sims)
    presults = power or results
    psims = presults["meta"]["sims"]
    pngs = {m: plot_power(presults, out, m) for m in METRICS}
    wall = sum(
        g.get("wall_s", 0.0)
        for r in (results, power or {"cells": {}})
        for c in r["cells"].values()
        for g in c["groups"].values()
    )
    from paired import COVERAGE_DELTA_ID, METHOD_OURS, METHOD_OURS_BEFORE, POWER_LEVEL_ID, SCIPY_DELTA_IDS

    md = [
        "## Paired comparisons: type-I error, coverage and power",
        "",
        "Regenerate (resumable; per-cell results are cached in `validation/paired_results.json`):",
        "",
        "```bash",
        "python benchmarks/validation/paired.py --out docs/validation",
        "```",
        "",
        f"- **Replicates:** B = {b} for every bootstrap (ours, the marginal intervals of the overlap rule, scipy).",
        f"- **Simulated sets:** S = {sims} per cell for every test that runs on the cell.",
        f"- **Seeds (fixed before the first run, not tuned):** the sets of cell (metric, agreement level, true "
        f"difference, n) from `numpy.random.default_rng(SeedSequence([{DATA_SEED}, metric_id, level_id, delta_id, "
        "n]))`, drawn for all sets up front; on set i: `PairedBootstrapMetric(seed=i)`, the two marginal "
        "`BootstrapMetric(seed=2i)` and `(seed=2i+1)`, scipy `rng=default_rng([10, i])`.",
        f"- **Versions:** Python {meta['python']}, torch {meta['torch']}, numpy {meta['numpy']}; one torch thread on "
        f"a shared 2-core CPU machine; the cells took {wall / 60:.0f} minutes of wall time in all.",
        "",
        "**Data** (`benchmarks/validation/paired_sim.py`). Two models are scored on the same examples. The *true "
        "difference* is M(A) − M(B) of the population metrics, M = the limit of the plug-in metric on n i.i.d. "
        "examples, computed analytically:",
        f"- Accuracy: target ~ Bernoulli({ACC_PREVALENCE}); (A right, B right) is a 2×2 joint draw with "
        f"P(B right) = {ACC_PB}, P(A right) = {ACC_PB} + Δ and discordance d = P(exactly one is right) "
        f"∈ {LEVELS['accuracy']}. True difference Δ.",
        f"- Macro-F1: 3 classes, priors {tuple(F1_PRIORS.tolist())}; B predicts from P(pred | target) rows "
        f"{[tuple(r) for r in F1_COND.tolist()]}; with probability ρ ∈ {LEVELS['macro_f1']} A and B share one draw, "
        "otherwise they draw independently; A is then replaced by the target with probability η, solved for the "
        "true difference of mean_k 2·P_kk / (P_k· + P_·k).",
        f"- AUROC: prevalence {AUC_PREVALENCE}; scores μ·y + e with (e_A, e_B) bivariate standard normal of "
        f"correlation r ∈ {LEVELS['auroc']}, μ_B = {AUC_MU_B}; AUC = Φ(μ/√2), μ_A solved for the true difference.",
        "",
        "**Tests.** *Ours*: the default `PairedBootstrapMetric(base, num_bootstraps=B, seed=i)` "
        f'(`method="{METHOD_OURS}"`: the {default_method(results)} interval for a paired difference since Part 4d; '
        '`resampling="multinomial"`), base metrics `BinaryAccuracy()`, '
        '`MulticlassF1Score(num_classes=3, average="macro")`, `BinaryAUROC()`; it rejects when `p_value < 0.05` '
        "(the inverted interval; and, second row, when the 95% interval excludes 0). *Ours percentile*: the "
        "percentile interval of the same replicates and its inverted p-value (the paired default from Part 4b "
        'to Part 4d; what `method="percentile"` returns with the same seed). *Ours BCa*: the BCa interval '
        f'of the same replicates and its inverted p-value, what `method="{METHOD_OURS_BEFORE}"` returns (the '
        "paired default when this part first ran; the engine also computes the jackknife, which leaves the "
        "replicates and the default's result unchanged, checked below). A cell cached before the default "
        f'changed ran `method="{METHOD_OURS_BEFORE}"` alone: it shows the BCa rows only. '
        "*McNemar exact*: two-sided binomial test of the "
        "discordant pairs. *DeLong paired*: DeLong et al. (1988) with Sun and Xu's O(n log n) midranks (checked "
        "against the direct O(n²) placement values in `tests/test_validation_paired_smoke.py`). *Overlap rule*: "
        "two marginal `BootstrapMetric` 95% intervals, one per model, rejecting when they are disjoint. *Unpaired "
        "z*: (value_A − value_B) / √(se_A² + se_B²), each model's own standard error as if the two were independent "
        "(the two bootstrap stds; or binomial / DeLong's one-sample variance). *scipy*: "
        "`scipy.stats.bootstrap((preds_a, preds_b, target), stat_a − stat_b, paired=True, "
        f'method="{meta["scipy_method"]}", n_resamples=B)`, rejecting when its interval excludes 0; run through '
        "an index statistic with the same "
        "resamples and bit-identical values (checked against the plain call below).",
        "",
        "**Which tests run where.** Every cell: ours, McNemar / DeLong, the analytic unpaired z. The power cells "
        f"(n = {meta['power_n']}, the middle agreement level, every Δ in {DELTAS}): also the overlap rule and the "
        f"bootstrap-s.e. unpaired z. The scipy anchor runs on fewer cells, for CPU: the power cells with Δ ∈ "
        f"{tuple(DELTAS[i] for i in SCIPY_DELTA_IDS)}. Coverage at a nonzero difference: the power cells and Δ = "
        f"{DELTAS[COVERAGE_DELTA_ID]} at every n (middle agreement level).",
        "",
        f"**Bands.** A rejection rate under the null is within its Monte Carlo band when it lies in 5% ± "
        f"1.96·√(0.05·0.95/S) = [{_pct(lo)}, {_pct(hi)}]% at S = {sims}; coverage is judged against [93.5, 96.5]% "
        "(widened to 95% ± 1.96·√(0.05·0.95/S) where S is smaller than that band allows). "
        "Entries are rate ± Monte Carlo standard error √(r(1−r)/S); **bold** = outside its band.",
        "",
        "### Type-I error (equal true metric), rejection rate at α = 0.05 (%)",
        "",
    ]
    for m in METRICS:
        if _cells(results, metric=m, delta_id=0):
            md += [f"**{TITLES[m]}**", "", type1_table(results, m), ""]
    md += ["### Coverage of the 95% interval for the difference (%)", ""]
    for m in METRICS:
        if any(OURS_CI in _configs(c) for c in _cells(results, metric=m)):
            md += [f"**{TITLES[m]}**", "", coverage_table(results, m), ""]
    md += [
        "### Power against the true difference (rejection rate at α = 0.05, %)",
        "",
        f"All tests on the same sets (n = {meta['power_n']}, middle agreement level {POWER_LEVEL_ID}), "
        + (
            f"**S = {psims} sets per cell** (fewer than the S = {sims} of the tables above, for CPU: the cached run "
            "`python benchmarks/validation/paired.py --sims "
            f"{psims} --sizes {meta['power_n']} --level-ids {POWER_LEVEL_ID} --results-file paired_power_results.json"
            " --out docs/validation`; the sets are the first ones of the full cells, so the full run extends them). "
            if power
            else f"S = {psims} sets per cell. "
        )
        + f"The Δ = 0 column is the type-I error (bold outside its band, 5% ± {_pct(Z * math.sqrt(0.0475 / psims))}"
        " pt at this S); the last row is the coverage of ours' interval for the true difference.",
        "",
    ]
    for m in METRICS:
        if power_cells(presults, m):
            md += [
                f"**{TITLES[m]}**",
                "",
                power_table(presults, m),
                "",
            ]
            if pngs[m]:
                md += [f"![power, {TITLES[m]}](validation/{pngs[m]})", ""]
    outside = outside_lines(results)
    if power:
        outside += [f"{line} (power run, S = {psims})" for line in outside_lines(power) if "none:" not in line]
    md += ["### Findings", "", *findings(results, power), ""]
    md += ["### Cells of ours (the default) outside their band", "", *outside, ""]
    md += ["### Cells not run yet", "", *not_run_lines(results, power), ""]
    md += ["### Checks", "", *checks_lines(results), *(checks_lines(power) if power else []), ""]
    md += [
        "<details><summary>Diagnostics of ours per cell</summary>",
        "",
        "'bootstrap std / sd' compares the mean bootstrap standard error of the difference with the standard "
        "deviation of the observed difference over the S sets (1 = right on average; below 1 = intervals too "
        "narrow).",
        "",
        diagnostics_table(results),
        "",
        "</details>",
        "",
    ]
    (out / "paired.md").write_text("\n".join(md))
