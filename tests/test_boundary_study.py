"""A reduced run of the boundary coverage study (benchmarks/validation/boundary.py) through the same code path."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import load_script

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "validation" / "boundary.py"


def test_boundary_study_smoke(tmp_path):
    study = load_script(SCRIPT, "lightning_ci_validation_boundary")
    argv = ["--sims", "30", "--num-bootstraps", "60", "--scipy-sims", "2", "--real-sims", "3", "--sizes", "20",
            "--values", "0.95", "1.0", "--mid-sizes", "50", "--out", str(tmp_path)]  # fmt: skip
    study.main(argv)
    results = json.loads((tmp_path / "boundary_results.json").read_text())
    expected = {f"{m}|20|{v}" for m in study.METRICS for v in ("0.95", "1")}
    expected |= {"accuracy|30|0.97", "accuracy_mid|50|0.85", "macro_f1_mid|50|0.7"}
    assert set(results) == expected
    for key, cell in results.items():
        names = set(cell["configs"])
        assert {"ours bca (multinomial)", "ours percentile (poisson)", "BootstrapMetric() default, real class",
                "scipy.stats.bootstrap BCa"} <= names, key  # fmt: skip
        assert sum(n.startswith("ours posterior") for n in names) == 3
        assert sum(n.startswith("switch:") for n in names) == 3
        for name, st in cell["configs"].items():
            assert 0.0 <= st["coverage"] <= 1.0 and 0.0 <= st["zero_width"] <= 1.0, (key, name)
            if "max_abs_diff_vs_library" in st:  # the batched intervals equal the library's on the same replicates
                assert st["max_abs_diff_vs_library"] < 1e-6, (key, name)
    # true accuracy 1.0: every set is all correct, so every bootstrap replicate is too (a point), the posterior not
    perfect = results["accuracy|20|1"]["configs"]
    assert perfect["ours percentile (multinomial)"]["zero_width"] == 1.0
    assert perfect["ours posterior (bayesian, prior table = 0.25/cell)"]["zero_width"] == 0.0
    assert perfect["BootstrapMetric() default, real class"]["zero_width"] == 0.0
    assert "Jeffreys (Beta(k+1/2, n-k+1/2))" in perfect
    text = (tmp_path / "boundary.md").read_text()
    assert text.startswith("## ") and "By this rule the evidence picks" in text
    assert study.decide(results)["winner"] in study.CANDIDATES


def test_boundary_study_tops_up_the_anchors(tmp_path):
    """A second run asking for more anchor sets reruns only the slow anchors of the cached cells."""
    study = load_script(SCRIPT, "lightning_ci_validation_boundary_topup")
    base = ["--sims", "12", "--num-bootstraps", "40", "--sizes", "20", "--values", "0.95", "--mid-sizes", "50",
            "--out", str(tmp_path)]  # fmt: skip
    study.main([*base, "--scipy-sims", "2", "--real-sims", "3"])
    first = json.loads((tmp_path / "boundary_results.json").read_text())
    study.main([*base, "--scipy-sims", "5", "--real-sims", "12"])
    second = json.loads((tmp_path / "boundary_results.json").read_text())
    assert set(first) == set(second)
    for key, cell in second.items():
        configs = cell["configs"]
        assert configs[study.SCIPY]["sims"] == 5 and configs[study.REAL]["sims"] == 12, key
        for name, st in first[key]["configs"].items():
            if name not in (study.SCIPY, study.REAL):  # the engine part is cached, not recomputed
                assert configs[name] == st, (key, name)
