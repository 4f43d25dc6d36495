"""A reduced run of the coverage study (benchmarks/validation/coverage.py) through the same code path."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.helpers import load_script

pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "validation" / "coverage.py"


def test_coverage_study_smoke(tmp_path):
    coverage = load_script(SCRIPT, "lightning_ci_validation_coverage")
    sims = 12
    argv = [
        "--sims",
        str(sims),
        "--num-bootstraps",
        "100",
        "--sizes",
        "50",
        "--timing-sims",
        "1",
        "--validation-sims",
        "1",
        "--out",
        str(tmp_path),
    ]
    coverage.main(argv)

    results = json.loads((tmp_path / "coverage_results.json").read_text())
    assert set(results["cells"]) == {"accuracy|50", "macro_f1|50", "auroc|50"}
    expected = {
        "accuracy|50": {"Wald (normal approximation)", "Wilson"},
        "macro_f1|50": set(),
        "auroc|50": {"DeLong"},
    }
    for key, cell in results["cells"].items():
        assert set(cell["groups"]) == {"ours", "closed_form", "bootstrapper", "scipy"}
        names = set()
        for group in cell["groups"].values():
            assert group["sims"] == sims and group["B"] == 100
            for name, st in group["configs"].items():
                names.add(name)
                assert 0.0 <= st["coverage"] <= 1.0, (key, name)
                assert st["mcse"] == pytest.approx(math.sqrt(st["coverage"] * (1 - st["coverage"]) / sims))
                assert st["miss_low"] + st["miss_high"] + st["nan"] == round(sims * (1 - st["coverage"]))
        ours = {n for n in names if n.startswith("ours")}
        assert len(ours) == 9  # 4 methods x (multinomial, poisson) + bayesian percentile
        assert expected[key] | {"scipy.stats.bootstrap BCa", "BootStrapper multinomial bs=1"} <= names
        # the shared-replicate intervals are exactly what a fresh BootstrapMetric(method=m) computes
        for st in cell["groups"]["ours"]["configs"].values():
            assert st["max_abs_diff_vs_fresh"] == 0.0
            assert st["median_time_ms"] > 0
        # within-batch resampling at batch size 1: every BootStrapper copy sees the same data
        assert cell["groups"]["bootstrapper"]["configs"]["BootStrapper multinomial bs=1"]["mean_width"] == 0.0
        # scipy runs through the index statistic; the plain paired call (timed) gives the same interval
        scipy_st = cell["groups"]["scipy"]["configs"]["scipy.stats.bootstrap BCa"]
        assert scipy_st["max_abs_diff_vs_plain"] == 0.0 and scipy_st["median_time_ms"] > 0
    assert set(results["validation"]["rows"]) == {"multinomial bs=64", "poisson bs=64"}
    # the real BootStrapper's copy values against the re-implementation's, one KS test per metric
    dist = results["validation_distribution"]["rows"]
    assert set(dist) == {f"{m} multinomial bs=64" for m in ("accuracy", "macro_f1", "auroc")}
    for row in dist.values():
        assert 0.0 <= row["ks_pvalue"] <= 1.0 and 0.0 <= row["ks_statistic"] <= 1.0
        assert 0.0 < row["real_mean"] < 1.0 and 0.0 < row["reimpl_mean"] < 1.0
        assert math.isfinite(row["z_mean"])

    md = (tmp_path / "coverage.md").read_text()
    assert md.startswith("## Coverage of nominal 95% intervals")
    assert "| method | n=50 |" in md
    assert "validation/coverage_ours.png" in md and "validation/coverage_anchors.png" in md
    assert "Which `method` should be the default" in md
    assert "| metric, sampling | mean real |" in md
    assert "None: every group (ours and every anchor) ran on every set of every cell." in md
    for png in ("coverage_ours.png", "coverage_anchors.png"):
        assert (tmp_path / png).stat().st_size > 10_000
