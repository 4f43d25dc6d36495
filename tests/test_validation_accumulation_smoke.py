"""Smoke test of the accumulation study (benchmarks/validation/accumulation.py) through its own code path.

It runs the study with ``--quick --no-curves`` (one seed of every exactness case, every step-total case; the
MiniLM curves are left to the full run) and checks the headline claims and that the fragment is written.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "validation" / "accumulation.py"


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("accumulation")
    module = load_script(SCRIPT, "validation_accumulation")
    res = module.main(["--quick", "--no-curves", "--out", str(out)])
    return out, res


def test_ours_is_exact_and_lightning_is_not_on_partial_windows(study):
    _, res = study
    rows = res["exactness"]
    assert rows
    for r in rows:
        w = r["max_abs_dw"]
        assert w["floor"] <= 1e-10, r["case"]
        assert w["ours"] <= 1e-10, (r["case"], r["optimizer"], w["ours"])
    partial = [r for r in rows if r["case"] == "partial last window"]
    assert partial and all(r["max_abs_dw"]["GAS"] > 1e-3 for r in partial)
    assert all(r["max_abs_dw"]["Trainer(k)"] > 1e-3 for r in partial)
    tokens = [r for r in rows if r["task"] == "tokens"]
    assert tokens and all(r["max_abs_dw"]["GAS"] > 1e-3 and r["max_abs_dw"]["ours, samples"] > 1e-3 for r in tokens)
    # the full-window control: Lightning agrees with the large batch too
    control = [r for r in rows if r["case"].startswith("full windows")]
    assert control and all(r["max_abs_dw"]["GAS"] <= 1e-10 for r in control)


def test_step_totals(study):
    _, res = study
    rows = res["step_totals"]
    for r in rows:
        assert r["total_optimizer_steps"] == r["global_step_ours"] == r["global_step_lightning"]
        assert r["total_optimizer_steps"] == r["expected_sum_ceil"]
        assert r["end_lr_frac_ours"] == pytest.approx(0.0, abs=1e-12)
    head = rows[0]
    assert head["schedule"] == "{0: 4, 1: 2}"
    assert (head["total_optimizer_steps"], head["estimate_under_lightning"]) == (13, 30)
    assert head["end_lr_frac_estimate"] == pytest.approx(1 - 13 / 30)


def test_fragment_and_results_written(study):
    out, _ = study
    md = (out / "accumulation.md").read_text(encoding="utf-8")
    assert md.startswith("## Accumulation study")
    assert "--quick --no-curves" in md
    assert "validation/accumulation_lr.png" in md
    assert "| partial last window |" in md
    assert (out / "accumulation_lr.png").stat().st_size > 1000
    saved = json.loads((out / "accumulation_results.json").read_text(encoding="utf-8"))
    assert saved["exactness_seeds"] == [0]
