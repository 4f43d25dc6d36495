"""benchmarks/gpu_checks.py (the prepared script for a CUDA machine) runs through on CPU."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_checks.py"


def test_gpu_checks_script_on_cpu(tmp_path):
    gpu_checks = load_script(SCRIPT, "lightning_ci_gpu_checks")
    assert gpu_checks.main(["--device", "cpu", "--quick", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "gpu_checks.json").read_text())
    assert res["syncs"] == {"skipped": "not a CUDA device"}
    rows = res["amp"]["rows"]
    assert set(rows) == {"32-true", "bf16-mixed", "16-mixed"}
    for row in rows.values():
        assert row["ours"]["finite"] and row["ours"]["global_step"] == row["ours"]["total_optimizer_steps"] == 7
        # Lightning's built-in weights the partial windows wrongly: far off next to ours at any precision
        assert row["GAS"]["max_abs_diff"] > 5 * row["ours"]["max_abs_diff"]
    assert rows["32-true"]["ours"]["max_abs_diff"] < 1e-5  # float32 rounding only
    assert rows["bf16-mixed"]["ours"]["max_abs_diff"] < 2e-2  # bf16 autocast: ~3 significant digits
    speed = res["speed"]
    assert speed["epoch_speedup_vs_BootStrapper"] > 1.0
    assert set(speed["update_ratio_vs_unwrapped"]) == {"multinomial", "poisson", "bayesian"}
    md = (tmp_path / "gpu_checks.md").read_text()
    assert md.startswith("# GPU checks on CPU") and "| 32-true |" in md
