"""The paired p-value study (benchmarks/validation/paired_pvalue.py): its emulations against references, and a
reduced run end to end."""

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

study = load_script(VALIDATION / "paired_pvalue.py", "lightning_ci_validation_paired_pvalue")


def test_self_check():
    # emulated accuracy / macro-F1 = torchmetrics; the linear AUROC permutation = brute-force swaps (with ties)
    study.self_check()


def test_permutation_on_accuracy_is_mcnemar_exact():
    # 6 examples only A gets right, 1 only B: McNemar exact p = 2 P(Bin(7, 1/2) <= 1) = 0.125
    target = np.zeros((1, 40), dtype=np.int64)
    pa, pb = target.copy(), target.copy()
    pa[0, 6:7] = 1  # A wrong once
    pb[0, :6] = 1  # B wrong six times
    b = 20000
    rng = np.random.default_rng(0)
    _, _, p_perm, _, extra = study.confusion_chunk(pa, pb, target, "accuracy", b, rng, np.random.default_rng(1))
    exact = 2 * scipy.stats.binom.cdf(1, 7, 0.5)
    assert extra["mcnemar"][0] == pytest.approx(exact)
    # Monte Carlo: sd = sqrt(0.125 * 0.875 / 20000) = 0.0023; 5 sd
    assert abs(p_perm[0] - exact) < 5 * math.sqrt(exact * (1 - exact) / b)


def test_expanded_percentile_inverts_hesterberg():
    n = 100
    p_a = np.array([0.0, 0.01, 0.05, 0.3, 1.0])
    p_d = study.expanded_p(p_a, n)
    assert p_d[0] == 0.0 and p_d[-1] == 1.0
    assert np.all(p_d[1:-1] > p_a[1:-1])
    # alpha' of the expanded interval at alpha = p_d is p_a: z_{alpha'/2} = sqrt(n/(n-1)) t_{alpha/2, n-1}
    back = 2 * scipy.stats.norm.sf(math.sqrt(n / (n - 1)) * scipy.stats.t.isf(p_d[1:-1] / 2, n - 1))
    np.testing.assert_allclose(back, p_a[1:-1], rtol=1e-9)


def test_adversarial_cells_have_equal_true_metrics():
    from paired_sim import F1_COND, F1_PRIORS, macro_f1_of_cond

    eta = study.adv_f1_eta()
    assert macro_f1_of_cond(eta * np.eye(3) + (1 - eta) * study.ADV_F1_ALT) == pytest.approx(
        macro_f1_of_cond(F1_COND), abs=1e-12
    )
    (a1, a0), (b1, b0) = study.ADV_ACC
    prevalence = 0.4
    assert prevalence * a1 + (1 - prevalence) * a0 == pytest.approx(prevalence * b1 + (1 - prevalence) * b0)
    assert F1_PRIORS.sum() == pytest.approx(1.0)


def test_study_smoke(tmp_path):
    study.main(["--sims", "20", "--num-bootstraps", "50", "--cells", "2", "--out", str(tmp_path)])
    results = json.loads((tmp_path / "paired_pvalue.json").read_text())
    assert len(results) == 2
    for r in results.values():
        assert r["sims"] == 20 and r["B"] == 50
        for name in study.CANDIDATES:
            assert 0.0 <= r[name] <= 1.0
    md = (tmp_path / "paired_pvalue.md").read_text()
    assert "Cells run: 2 of" in md and "pending" in md
    before = (tmp_path / "paired_pvalue.json").read_text()
    study.main(["--sims", "20", "--num-bootstraps", "50", "--cells", "2", "--out", str(tmp_path)])  # resumes
    assert (tmp_path / "paired_pvalue.json").read_text() == before
