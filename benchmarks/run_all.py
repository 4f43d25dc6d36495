"""Run every benchmark in one go and write ``docs/benchmarks.md``: one table of ratios, then each full output.

Run:  python benchmarks/run_all.py [--quick] [--out docs/benchmarks.md]

Each benchmark compares against its anchor inside the same process and run, so the ratios are paired
measurements; absolute times on a shared 2-core machine are noisy, ratios much less so. The summary table
quotes the ratios parsed from each script's own output; the full outputs follow it.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BENCHMARKS = {
    "bootstrap": ["benchmarks/bench_bootstrap.py"],
    "auroc": ["benchmarks/bench_auroc.py"],
    "accumulation": ["benchmarks/bench_accumulation.py"],
    "paired": ["benchmarks/bench_paired.py"],
    "groups": ["benchmarks/bench_groups.py"],
}
PAIRED_TITLE = "## Paired comparisons (`benchmarks/bench_paired.py`)"


def run(name: str, quick: bool) -> str:
    cmd = [sys.executable, *BENCHMARKS[name]] + (["--quick"] if quick else [])
    print(f"running {' '.join(cmd[1:])} ...", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
    return proc.stdout.strip()


def _find(pattern: str, text: str, default: str = "n/a") -> str:
    m = re.search(pattern, text, flags=re.M)
    return m.group(1) if m else default


def summary(outputs: dict[str, str]) -> list[str]:
    b, a, acc = outputs["bootstrap"], outputs["auroc"], outputs["accumulation"]
    rows = [
        (
            "One validation epoch, confusion family (macro-F1, B=1000)",
            "torchmetrics `BootStrapper`",
            "≥ 200× faster",
            _find(r"\*\*(\d[\d.,]*)× faster\*\*", b) + "× faster",
        ),
        (
            "AUROC bootstrap, n=20,000, B=1000, percentile",
            "`scipy.stats.bootstrap`",
            "≥ 8× faster",
            _find(r"^percentile\s+\S+\s+\S+\s+([\d.]+)x", a) + "× faster",
        ),
        (
            "AUROC bootstrap, n=20,000, B=1000, BCa",
            "`scipy.stats.bootstrap` (n-point jackknife)",
            "(cheap BCa)",
            _find(r"^bca\s+\S+\s+\S+\s+([\d.]+)x", a) + "× faster",
        ),
    ]
    for line in re.findall(r"^\| (.+?) \| [\d.]+ ms \| [\d.]+ ms \| ([\d.]+)× \|$", b, flags=re.M):
        rows.append((f"Update time: {line[0]}", "the unwrapped metric", "≤ 1.5×", f"{line[1]}×"))
    rows.append(
        (
            "Poisson-mode state memory, n = 1e4 … 1e6",
            "itself",
            "flat",
            "see table below",
        )
    )
    rows.append(
        (
            "Step time, `AccumulationScheduler` vs `accumulate_grad_batches`",
            "Lightning's own accumulation",
            "≤ 2% overhead",
            _find(r"overhead \(median of paired ratios\)\*\* \| \*\*([+-][\d.]+%)\*\*", acc),
        )
    )
    rows.append(
        (
            "`AccumulationScheduler`'s own work per micro-batch, timed in isolation",
            "Lightning's median micro-batch time",
            "≤ 2% overhead",
            _find(r"= \*\*([\d.]+%)\*\* of Lightning", acc),
        )
    )
    rss = re.findall(r"^\| (\d+) \| (\d+) MiB \|$", acc, flags=re.M)
    rows.append(
        (
            "Peak memory vs accumulation factor",
            "factor 1",
            "independent of k",
            ", ".join(f"k={k}: {m} MiB" for k, m in rss) or "n/a",
        )
    )
    if "paired" in outputs:
        rows += paired_rows(outputs["paired"])
    grouped = outputs.get("groups", "")
    for case, goal in (
        ("accuracy, groups of 5", "≥ 10× faster"),
        ("accuracy, groups of 1-20", "≥ 1×"),
        ("AUROC, groups of 5", "≥ 1×"),
    ):
        rows.append(
            (
                f"Cluster bootstrap (`groups=`), {case}, B=1000",
                "vectorised NumPy cluster bootstrap",
                goal,
                _find(rf"^\| {re.escape(case)} \|(?:[^|]*\|){{5}} \*\*([\d.]+)×\*\*", grouped) + "× faster",
            )
        )
    lines = ["| what | against | goal | measured |", "|---|---|---|---|"]
    lines += [f"| {w} | {ag} | {g} | {m} |" for w, ag, g, m in rows]
    return lines


def paired_rows(p: str) -> list[tuple[str, str, str, str]]:
    """Summary rows of ``bench_paired.py``: each starts with "Paired" (``--only paired`` replaces them)."""
    rows = []
    for method, ratio in re.findall(r"^\| (percentile|bca) \|[^|]+\|[^|]+\| \*\*([\d.]+)×\*\* \|", p, flags=re.M):
        rows.append(
            (
                f"Paired AUROC, n=20,000, B=1000, {method}",
                "`scipy.stats.bootstrap(paired=True)`, rank-AUROC difference",
                "≥ 10× faster",
                f"{ratio}× faster",
            )
        )
    for name, ratio in re.findall(r"^\| (.+?) \| [\d.]+ ms \| [\d.]+ ms \| ([\d.]+)× \|$", p, flags=re.M):
        rows.append((f"Paired update time: {name}", "the two unwrapped metrics", "≤ 1.5×", f"{ratio}×"))
    return rows


def splice_paired(out: Path, output: str, command: str) -> None:
    """Replace the paired summary rows and the paired section of an existing ``docs/benchmarks.md``."""
    text = out.read_text()
    lines = [line for line in text.splitlines() if not line.startswith("| Paired")]
    i = lines.index("## Summary (ratios, CPU)") + 1
    while i < len(lines) and not lines[i].startswith("|"):
        i += 1
    while i < len(lines) and lines[i].startswith("|"):
        i += 1
    lines[i:i] = [f"| {w} | {ag} | {g} | {m} |" for w, ag, g, m in paired_rows(output)]
    text = "\n".join(lines) + "\n"
    text = re.sub(re.escape(PAIRED_TITLE) + r".*?(?=\n## |\Z)", "", text, flags=re.S).rstrip() + "\n"
    out.write_text(text + "\n" + paired_section(output, command))


def paired_section(output: str, command: str | None = None) -> str:
    ran = (
        f"These figures were measured by `{command}` (one run), separately from the rest of this file.\n\n"
        if command
        else ""
    )
    return f"{PAIRED_TITLE}\n\n{ran}{output}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="pass --quick to every benchmark")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    parser.add_argument("--only", choices=["paired"], default=None, help="re-run one benchmark, splice it in")
    args = parser.parse_args()

    import lightning
    import scipy
    import torch
    import torchmetrics

    if args.only:  # re-run one benchmark and splice its section into the existing file
        if args.only != "paired" or not Path(args.out).exists():
            raise SystemExit("--only supports 'paired' with an existing --out file")
        output = run("paired", args.quick)
        splice_paired(Path(args.out), output, "python benchmarks/run_all.py --only paired")
        print(f"updated {args.out}", file=sys.stderr)
        return
    outputs = {name: run(name, args.quick) for name in BENCHMARKS}
    command = "python benchmarks/run_all.py" + (" --quick" if args.quick else "")
    load = os.getloadavg()[0]
    text = [
        "# Benchmarks",
        "",
        "Every figure below was produced by one run of:",
        "",
        "```bash",
        command,
        "```",
        "",
        f"- date: {datetime.date.today().isoformat()}",
        f"- machine: CPU only, {platform.machine()}, {os.cpu_count()} cores, load average {load:.1f} at the end",
        f"- versions: Python {platform.python_version()}, torch {torch.__version__}, lightning {lightning.__version__},"
        f" torchmetrics {torchmetrics.__version__}, scipy {scipy.__version__}",
        "- GPU: none was available to this run; no GPU figures are reported. On a CUDA machine, "
        "`python benchmarks/gpu_checks.py --out DIR` runs the GPU checks (host syncs in `update`, AMP with "
        "accumulation, speed) and the LLM memory evidence (LoRA on a 0.5B decoder at effective batch 64 as "
        "64×1, 16×4, 4×16 and 1×64: peak memory, tokens/s, equal losses, where 64×1 runs out of memory; "
        "`--sections llm` alone), and labels its output with the card.",
        "",
        "Each benchmark times ours and its anchor in the same process, alternating or back to back, and reports",
        "medians; the ratio is the figure to read. The machine is shared, so absolute times vary from run to run.",
        "",
        "## Summary (ratios, CPU)",
        "",
        *summary(outputs),
        "",
        "## `BootstrapMetric` against torchmetrics' `BootStrapper` (`benchmarks/bench_bootstrap.py`)",
        "",
        outputs["bootstrap"],
        "",
        "## AUROC against `scipy.stats.bootstrap` (`benchmarks/bench_auroc.py`)",
        "",
        "```text",
        outputs["auroc"],
        "```",
        "",
        "## `AccumulationScheduler` against Lightning's accumulation (`benchmarks/bench_accumulation.py`)",
        "",
        outputs["accumulation"],
        "",
        paired_section(outputs["paired"]),
        "## Grouped data (cluster bootstrap) (`benchmarks/bench_groups.py`)",
        "",
        outputs["groups"],
        "",
    ]
    Path(args.out).write_text("\n".join(text))
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
