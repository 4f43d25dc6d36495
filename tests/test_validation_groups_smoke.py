"""The grouped-data study (benchmarks/validation/groups*.py) and the cluster-bootstrap benchmark: a reduced run
end to end, and their references (Miller's clustered SE, the NumPy cluster bootstrap) against brute force."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from tests.helpers import load_script

ROOT = Path(__file__).resolve().parents[1]
VALIDATION = ROOT / "benchmarks" / "validation"

ref = load_script(VALIDATION / "groups_ref.py", "lightning_ci_validation_groups_ref")
sim = load_script(VALIDATION / "groups_sim.py", "lightning_ci_validation_groups_sim")


def _tiny(metric: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    s = sim.draw_set(rng, metric, 7, "1-20", 1.0)
    # ids that are neither contiguous nor sorted: the references must not assume either
    perm = rng.permutation(s.groups.size)
    ids = np.array([13, 4, 99, 7, 0, 58, 21])[s.groups]
    return s.preds[perm], s.target[perm], ids[perm]


def test_miller_clustered_se_matches_the_direct_formula():
    rng = np.random.default_rng(0)
    scores = (rng.random(23) < 0.7).astype(float)
    groups = rng.integers(0, 5, 23) * 3 + 1  # 5 clusters, arbitrary ids
    n = scores.size
    mean = scores.mean()
    # Miller (2024): SE^2 = SE_CLT^2 + n^-2 sum_c sum_i sum_{j != i} (s_ic - mean)(s_jc - mean)
    var_clt = sum((s - mean) ** 2 for s in scores) / (n - 1) / n
    cross = 0.0
    for i in range(n):
        for j in range(n):
            if i != j and groups[i] == groups[j]:
                cross += (scores[i] - mean) * (scores[j] - mean)
    m, se = ref.miller_clustered_se(scores, groups)
    assert m == pytest.approx(mean, abs=1e-15)
    assert se == pytest.approx(math.sqrt(var_clt + cross / n**2), rel=1e-12)
    # one sample per cluster: no cross terms, the i.i.d. (CLT) standard error
    _, se_iid = ref.miller_clustered_se(scores, np.arange(n))
    assert se_iid == pytest.approx(math.sqrt(var_clt), rel=1e-12)
    lo, hi = ref.clt_interval(scores)
    assert (hi - lo) / 2 == pytest.approx(ref.Z975 * math.sqrt(var_clt), rel=1e-12)


@pytest.mark.parametrize("metric", ["accuracy", "macro_f1", "auroc"])
def test_numpy_cluster_bootstrap_matches_a_brute_force_loop(metric):
    preds, target, ids = _tiny(metric, seed=3)
    b = 40
    got = ref.cluster_bootstrap_replicates(metric, preds, target, ids, b, np.random.default_rng(11))
    # brute force, same draws: replicate b takes the groups idx[b] (with replacement), each with all its samples
    uniq = np.unique(ids)
    idx = np.random.default_rng(11).integers(0, uniq.size, size=(b, uniq.size))
    for r in range(b):
        rows = np.concatenate([np.flatnonzero(ids == uniq[k]) for k in idx[r]])
        p, t = preds[rows], target[rows]
        if metric == "accuracy":
            want = float((p == t).mean())
        elif metric == "macro_f1":
            want = f1_score(t, p, labels=[0, 1, 2], average="macro", zero_division=0)
        else:
            want = roc_auc_score(t, p) if 0 < t.sum() < t.size else float("nan")
        if math.isnan(want):
            assert math.isnan(got[r])
        else:
            assert got[r] == pytest.approx(want, abs=1e-12), r
    counts = ref.draw_counts(np.random.default_rng(11), uniq.size, b)
    assert (counts.sum(1) == uniq.size).all()


def test_auroc_value_handles_ties_as_sklearn():
    rng = np.random.default_rng(5)
    scores = rng.integers(0, 4, 50).astype(np.float32)  # heavy ties
    target = (rng.random(50) < 0.4).astype(np.int64)
    assert ref.auroc_value(scores, target) == pytest.approx(roc_auc_score(target, scores), abs=1e-12)


def test_true_values_against_monte_carlo():
    rng = np.random.default_rng(7)
    u = rng.standard_normal(1_000_000)
    for sigma in (1.0, 2.0):
        x = 1 / (1 + np.exp(-(math.log(0.85 / 0.15) + sigma * u)))
        # 5 MC s.e. = 5 * sd(x) / sqrt(N)
        assert sim.true_value("accuracy", sigma) == pytest.approx(x.mean(), abs=5 * x.std() / math.sqrt(x.size))
    # sigma = 0 reduces to the unclustered designs of Part 1
    assert sim.true_value("accuracy", 0.0) == 0.85
    assert sim.true_value("macro_f1", 0.0) == pytest.approx(0.696832, abs=1e-6)
    # the simulated sets converge to the truth: one big set per design, tolerance from Miller's clustered SE
    s = sim.draw_set(np.random.default_rng(8), "accuracy", 20_000, "5", 2.0)
    m, se = ref.miller_clustered_se((s.preds == s.target).astype(float), s.groups)
    assert abs(m - sim.true_value("accuracy", 2.0)) < 4 * se  # 4 clustered s.e.
    s = sim.draw_set(np.random.default_rng(9), "auroc", 20_000, "1", 2.0)
    auc = roc_auc_score(s.target, s.preds)
    n1 = s.target.sum()
    n0 = s.target.size - n1
    se_auc = math.sqrt((n0 + n1 + 1) / (12 * n0 * n1))  # Mann-Whitney null s.e., an upper bound near 0.76
    assert abs(auc - sim.true_value("auroc", 2.0)) < 4 * se_auc


def test_groups_study_smoke(tmp_path):
    groups = load_script(VALIDATION / "groups.py", "lightning_ci_validation_groups")
    results = groups.main(["--quick", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "groups_results.json").read_text())
    assert saved["cells"].keys() == results["cells"].keys()
    assert len(saved["cells"]) == 4
    supported = saved["meta"]["groups_supported"]
    for key, cell in saved["cells"].items():
        expected = {"cluster", "iid", "analytic"} if supported[cell["metric"]] else {"iid", "analytic", "reference"}
        want = expected if cell["metric"] == "accuracy" else expected - {"analytic"}
        assert set(cell["groups"]) == want, key
        for grp, entry in cell["groups"].items():
            assert entry["done"] and entry["B"] == 100
            for name, st in groups.summarize(entry).items():
                assert st["sims"] == 20
                assert 0.0 <= st["coverage"] <= 1.0, (key, grp, name)
                assert st["miss_low"] + st["miss_high"] + st["nan"] == round(20 * (1 - st["coverage"]))
                assert st["mean_width"] > 0
    # at sigma = 2 with groups of 1-20 the cluster intervals are wider than the i.i.d. ones
    cell = saved["cells"]["accuracy|G=200|m=1-20|sigma=2"]["groups"]
    cluster = groups.summarize(cell["cluster" if supported["accuracy"] else "reference"])
    iid = groups.summarize(cell["iid"])
    assert cluster["percentile"]["mean_width"] > 1.5 * iid["percentile"]["mean_width"]
    text = (tmp_path / "groups.md").read_text()
    assert text.startswith("## Grouped data") and "Miller clustered SE" in text
    # resumable: a second run finds every chunk cached and computes nothing
    again = groups.main(["--quick", "--out", str(tmp_path)])
    assert again["cells"] == saved["cells"]


def test_bench_groups_smoke(capsys):
    bench = load_script(ROOT / "benchmarks" / "bench_groups.py", "lightning_ci_bench_groups")
    rows = bench.main(["--quick"])
    assert [r["metric"] for r in rows] == ["accuracy", "accuracy", "auroc"]
    for r in rows:
        lo, hi = r["numpy_interval"]
        assert lo < hi and r["numpy_s"] > 0
        # groups of exactly 5 have few distinct count patterns; groups of 1-20 many more
    assert rows[0]["patterns"] < rows[1]["patterns"]
    assert "| case |" in capsys.readouterr().out
