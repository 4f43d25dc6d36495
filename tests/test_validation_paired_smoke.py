"""The paired study (benchmarks/validation/paired.py): its anchors against references, its simulation against
its analytic truth, and a reduced run end to end through the same code path."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from tests.helpers import load_script

ROOT = Path(__file__).resolve().parents[1]
VALIDATION = ROOT / "benchmarks" / "validation"
sys.path.insert(0, str(VALIDATION))

anchors = load_script(VALIDATION / "paired_anchors.py", "lightning_ci_validation_paired_anchors")
sim = load_script(VALIDATION / "paired_sim.py", "lightning_ci_validation_paired_sim")


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("n", [7, 60, 400])
def test_delong_fast_equals_slow(n, ties):
    rng = np.random.default_rng([10, n, ties])
    target = (rng.random(n) < 0.4).astype(np.int64)
    target[:2], target[2:4] = 1, 0  # at least two of each class
    shared = rng.standard_normal(n)
    a = shared + rng.standard_normal(n) + target
    b = shared + rng.standard_normal(n) + 0.8 * target
    if ties:  # a few distinct values: many ties within and across the classes
        a, b = np.round(a), np.round(b)
    fast, slow = anchors.delong_paired(a, b, target), anchors.delong_paired_slow(a, b, target)
    for key in fast:
        assert fast[key] == pytest.approx(slow[key], rel=1e-10, abs=1e-13), key
    # the AUCs are the Mann-Whitney statistics
    for s, key in ((a, "auc_a"), (b, "auc_b")):
        u = scipy.stats.mannwhitneyu(s[target == 1], s[target == 0]).statistic
        assert fast[key] == pytest.approx(u / ((target == 1).sum() * (target == 0).sum()), rel=1e-12)


def test_delong_identical_models_do_not_reject():
    rng = np.random.default_rng(1)
    target = (rng.random(50) < 0.5).astype(np.int64)
    s = rng.standard_normal(50) + target
    out = anchors.delong_paired(s, s.copy(), target)
    assert out["var_diff"] == pytest.approx(0.0, abs=1e-15) and out["p_value"] == 1.0


def test_mcnemar_exact_matches_scipy_binomtest():
    b, c = np.meshgrid(np.arange(0, 16), np.arange(0, 16))
    b, c = b.ravel(), c.ravel()
    ours = anchors.mcnemar_exact(b, c)
    for bi, ci, p in zip(b, c, ours):
        ref = 1.0 if bi + ci == 0 else scipy.stats.binomtest(int(bi), int(bi + ci), 0.5).pvalue
        assert p == pytest.approx(ref, rel=1e-12, abs=1e-300), (bi, ci)
    # and the discordant counts it is fed
    pa, pb, t = np.array([[1, 0, 1, 1, 0]]), np.array([[1, 1, 0, 0, 0]]), np.array([[1, 1, 1, 0, 0]])
    assert [x.tolist() for x in anchors.discordant_counts(pa, pb, t)] == [[1], [2]]


def test_overlap_and_unpaired_z():
    assert anchors.overlap_reject([0.5], [0.6], [0.61], [0.7]).tolist() == [True]
    assert anchors.overlap_reject([0.5], [0.62], [0.61], [0.7]).tolist() == [False]
    assert anchors.overlap_reject([np.nan], [np.nan], [0.1], [0.2]).tolist() == [False]
    p = anchors.unpaired_z(np.array([0.9, 0.5]), np.array([0.8, 0.5]), np.array([0.03, 0.0]), np.array([0.04, 0.0]))
    assert p[0] == pytest.approx(2 * scipy.stats.norm.sf(0.1 / 0.05)) and p[1] == 1.0


@pytest.mark.parametrize("metric", sim.METRICS)
def test_simulation_matches_its_analytic_truth(metric):
    """One large set (seeded like a cell) against the analytic population values of paired_sim."""
    n, di, li = 100_000, 3, 1  # the largest true difference, 0.04
    pa, pb, t = (x[0].numpy() for x in sim.simulate(metric, li, di, n, 1))
    true_a, true_b = sim.true_values(metric, sim.DELTAS[di])
    assert true_a - true_b == pytest.approx(sim.DELTAS[di], abs=1e-9)  # η / μ_A solved for the requested Δ
    if metric == "accuracy":
        d = sim.LEVELS[metric][li]
        ra, rb = pa == t, pb == t
        # 4 MC s.e. of a proportion: 4 * sqrt(p (1 - p) / n)
        for got, want in ((ra.mean(), true_a), (rb.mean(), true_b), ((ra != rb).mean(), d)):
            assert abs(got - want) < 4 * math.sqrt(want * (1 - want) / n)
    elif metric == "macro_f1":
        # the simulated P(pred | target) rows against η I + (1 - η) COND (A) and COND (B), per cell:
        # 4 MC s.e. = 4 * sqrt(q (1 - q) / n_t)
        eta = sim.f1_eta(sim.DELTAS[di])
        for preds, cond in ((pa, eta * np.eye(3) + (1 - eta) * sim.F1_COND), (pb, sim.F1_COND)):
            for k in range(3):
                rows = preds[t == k]
                for j in range(3):
                    q = cond[k, j]
                    assert abs((rows == j).mean() - q) < 4 * math.sqrt(q * (1 - q) / rows.size)
        agree = (pa == pb).mean()
        want = sim.agreement(metric, sim.LEVELS[metric][li], sim.DELTAS[di])
        assert abs(agree - want) < 4 * math.sqrt(want * (1 - want) / n)
    else:
        y = t.astype(bool)
        m, k = y.sum(), (~y).sum()
        for s, want in ((pa, true_a), (pb, true_b)):
            auc = scipy.stats.mannwhitneyu(s[y], s[~y]).statistic / (m * k)
            # Var(AUC) <= AUC (1 - AUC) / min(m, k) (Birnbaum and Klose); 4 times that s.e.
            assert abs(auc - want) < 4 * math.sqrt(want * (1 - want) / min(m, k))
        z = np.log(pa / (1 - pa)), np.log(pb / (1 - pb))
        r = np.corrcoef(z[0][~y], z[1][~y])[0, 1]
        # s.e. of a correlation coefficient ≈ (1 - r²) / sqrt(k); 4 of them
        assert abs(r - sim.LEVELS[metric][li]) < 4 * (1 - r**2) / math.sqrt(k)


def test_paired_study_smoke(tmp_path):
    pytest.importorskip("matplotlib")
    paired = load_script(VALIDATION / "paired.py", "lightning_ci_validation_paired")
    sims, b = 8, 100
    argv = [
        "--sims",
        str(sims),
        "--num-bootstraps",
        str(b),
        "--sizes",
        "100",
        "--power-n",
        "100",
        "--level-ids",
        "1",
        "--delta-ids",
        "0",
        "2",
        "--timing-sims",
        "2",
        "--out",
        str(tmp_path),
    ]
    paired.main(argv)

    results = json.loads((tmp_path / "paired_results.json").read_text())
    assert set(results["cells"]) == {f"{m}|L1|D{d}|100" for m in sim.METRICS for d in (0, 2)}
    for key, cell in results["cells"].items():
        assert set(cell["groups"]) == {"ours", "closed", "marginal", "scipy"}, key
        configs = {}
        for group in cell["groups"].values():
            assert group["sims"] == sims and group["B"] == b
            configs.update({k: v for k, v in group["configs"].items() if not k.startswith("_")})
        for name, st in configs.items():
            assert st["sims"] == sims and 0 <= st["rejections"] <= sims, (key, name)
            assert st["rate"] == st["rejections"] / sims
            assert st["mcse"] == pytest.approx(math.sqrt(st["rate"] * (1 - st["rate"]) / sims))
            if "coverage" in st:
                assert st["miss_low"] + st["miss_high"] + st["nan"] == round(sims * (1 - st["coverage"]))
        expected = {
            "ours (p < 0.05)",
            "ours (interval excludes 0)",
            "ours BCa (p < 0.05)",
            "ours BCa (interval excludes 0)",
            "ours percentile (p < 0.05)",
            "ours percentile (interval excludes 0)",
            "ours normal (p < 0.05)",
            "ours normal (interval excludes 0)",
            "overlap rule (two marginal intervals)",
            "unpaired z (bootstrap s.e.)",
        }
        expected |= {"accuracy": {"McNemar exact"}, "auroc": {"DeLong paired"}, "macro_f1": set()}[cell["metric"]]
        assert expected <= set(configs), key
        extra = cell["groups"]["ours"]["configs"]["_ours_extra"]
        # value_a, value_b == the unwrapped metric: bit-identical on the confusion path; the ranking engine's
        # AUROC differs from torchmetrics' float32 value by rounding only (BootstrapMetric's too): 4 float32 eps
        tol = 4 * float(np.finfo(np.float32).eps) if cell["metric"] == "auroc" else 0.0
        assert extra["max_abs_value_diff_vs_unwrapped"] <= tol
        assert extra["max_abs_diff_vs_fresh"] == 0.0  # reset() + seed = i gives what a fresh (seed=i) gives
        assert extra["method"] == "normal"  # "ours" is the default, method="auto" (Part 4d)
        # the same replicates give the default and the "ours normal" rows: identical decisions and coverage
        for suffix in (" (p < 0.05)", " (interval excludes 0)"):
            assert configs["ours" + suffix] == configs["ours normal" + suffix]
        # the BCa of the default's replicates (jackknife added to its engine) is what a fresh method="bca" gives
        assert extra["max_abs_bca_diff_vs_fresh"] == 0.0
        assert cell["groups"]["marginal"]["configs"]["_marginal_extra"]["max_abs_diff_vs_fresh"] == 0.0
        assert cell["groups"]["scipy"]["configs"]["_scipy_extra"]["max_abs_diff_vs_plain"] == 0.0
    md = (tmp_path / "paired.md").read_text()
    assert md.startswith("## Paired comparisons") and "Type-I error" in md and "Power against" in md
    for m in sim.METRICS:
        assert (tmp_path / f"paired_power_{m}.png").stat().st_size > 0
    # Part 4d's decision script reads these cells; with 6 of the 54 cells it reports the decision as pending
    normal = load_script(VALIDATION / "paired_normal.py", "lightning_ci_validation_paired_normal")
    verdict = normal.main(["--out", str(tmp_path)])
    assert verdict["null_cells"] == 3 and verdict["alt_cells"] == 3 and not verdict["adopt_normal"]
    assert "pending" in (tmp_path / "paired_normal.md").read_text()
    # resumable: a second run with the same arguments recomputes nothing
    before = (tmp_path / "paired_results.json").read_text()
    paired.main([*argv, "--no-report"])
    after = json.loads((tmp_path / "paired_results.json").read_text())
    assert {k: c["groups"] for k, c in after["cells"].items()} == {
        k: c["groups"] for k, c in json.loads(before)["cells"].items()
    }
