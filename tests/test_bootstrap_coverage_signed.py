"""A reduced run of the MCC / Cohen's kappa coverage study (benchmarks/validation/coverage_signed.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torchmetrics.classification import BinaryMatthewsCorrCoef, MulticlassCohenKappa

from tests.helpers import load_script

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks" / "validation"))

import coverage_anchors as anchors  # noqa: E402
from coverage_sim import simulate, true_value  # noqa: E402


def test_signed_populations_have_negative_true_values():
    # the population values are exact; a large simulated set agrees with them to its sampling error (sd < 0.003)
    for metric, tm in (("mcc", BinaryMatthewsCorrCoef()), ("kappa", MulticlassCohenKappa(num_classes=3))):
        assert true_value(metric) < -0.1
        preds, target = simulate(metric, 200_000, 1)
        assert abs(float(tm(preds[0], target[0])) - true_value(metric)) < 0.01


@pytest.mark.parametrize("metric", ["mcc", "kappa"])
def test_scipy_statistics_equal_torchmetrics_and_each_other(metric):
    preds, target = (x[0].numpy() for x in simulate(metric, 80, 1))
    stat = anchors.index_statistic(metric, preds, target)
    idx = np.random.default_rng(3).integers(0, 80, (5, 4, 80))
    np.testing.assert_array_equal(stat(idx), anchors.SCIPY_STATISTICS[metric](preds[idx], target[idx], axis=-1))
    tm = BinaryMatthewsCorrCoef() if metric == "mcc" else MulticlassCohenKappa(num_classes=3)
    ref = float(tm(torch.from_numpy(preds), torch.from_numpy(target)))
    assert abs(float(stat(np.arange(80))) - ref) < 1e-6


def test_coverage_signed_smoke(tmp_path):
    signed = load_script(ROOT / "benchmarks" / "validation" / "coverage_signed.py", "lightning_ci_coverage_signed")
    sims = 12
    signed.main(["--sims", str(sims), "--num-bootstraps", "100", "--sizes", "50", "--timing-sims", "1",
                 "--out", str(tmp_path)])  # fmt: skip
    results = json.loads((tmp_path / "coverage_signed_results.json").read_text())
    assert set(results["cells"]) == {"mcc|50", "kappa|50"}
    for cell in results["cells"].values():
        configs = {**cell["groups"]["ours"]["configs"], **cell["groups"]["scipy"]["configs"]}
        assert len([c for c in configs if c.startswith("ours")]) == 9
        # the truth is negative: 0.1.0's bounds, clipped to [0, 1], never contain it
        assert configs[signed.OLD_CLIPPING]["coverage"] == 0.0
        assert configs[signed.OLD_CLIPPING]["miss_low"] == sims
        # ours covers: at a true 95%, 6 or fewer of 12 sets covered has probability about 1e-6
        default = configs["ours bca (multinomial)"]
        assert default["coverage"] > 0.5
        assert default["max_abs_diff_vs_fresh"] == 0.0
        assert configs["scipy.stats.bootstrap BCa"]["max_abs_diff_vs_plain"] == 0.0
    md = (tmp_path / "coverage_signed.md").read_text()
    assert md.startswith("### Metrics whose range crosses 0")
    assert "| 0.1.0: ours bca (multinomial) clipped to [0, 1] | **0.0 ± 0.0** |" in md
