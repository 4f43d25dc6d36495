"""AccumulationScheduler under every DDP launcher: 2 gloo processes on CPU against one process, in float64.

Real ``Trainer.fit`` calls with Lightning's own ``DistributedSampler`` run through ``tests/accum_launcher_script.py``,
one launch per launcher, several configurations each: ``ddp`` in a subprocess (Lightning relaunches ``sys.argv``,
which must be that script rather than pytest); ``ddp_fork`` and ``ddp_spawn`` from this process (the launcher forks
or spawns the two workers itself).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "accum_launcher_script.py"
WORLD = 2
EXACT = 1e-10  # float64 rounding is ~1e-16 here; a missing cross-rank item sum is off by > 1e-3 (tokens differ)
CONFIGS = {  # configuration -> launchers that run it (every ddp_spawn fit spawns two interpreters: the richest only)
    "epoch_tokens_clip": ("ddp", "ddp_fork"),
    "step_effective_tokens": ("ddp", "ddp_fork", "ddp_spawn"),
    "epoch_effective_samples": ("ddp", "ddp_fork"),
    "step_factors_samples": ("ddp", "ddp_fork"),
}


def _launch(launcher: str, out_dir: Path) -> dict:
    if launcher == "ddp":
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        proc = subprocess.run(
            [sys.executable, str(SCRIPT), launcher, str(out_dir)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    else:
        from tests import accum_launcher_script

        threads = torch.get_num_threads()
        try:
            accum_launcher_script.run(launcher, out_dir)
        finally:
            torch.set_num_threads(threads)
    return json.loads((out_dir / f"{launcher}.json").read_text())


@pytest.mark.ddp
@pytest.mark.parametrize("launcher", ["ddp", "ddp_spawn", "ddp_fork"])
def test_launcher_matrix_equals_one_process(launcher, tmp_path):
    """Weights after a real 2-process fit equal one process on the same global windows, under every launcher.

    Each configuration also checks: the real optimizer steps == `total_optimizer_steps` (from
    `configure_optimizers` on every rank, and at the end) == the reference plan's windows, the logged
    `effective_batch_size` (items per step, summed over ranks) == the reference's last epoch, and with
    `effective_batch_size=` the micro-batch read from the loader.
    """
    results = _launch(launcher, tmp_path)
    assert sorted(results) == sorted(name for name, launchers in CONFIGS.items() if launcher in launchers)
    for name, r in results.items():
        assert r["world_size"] == WORLD, name
        assert r["max_diff"] < EXACT, (name, r)
        assert r["global_step"] == r["total_at_configure"] == r["total_at_end"] == r["steps"], (name, r)
        # Lightning logs in float32: relative 1e-6
        assert r["effective_batch_size"] == pytest.approx(r["eff_expected"], rel=1e-6), (name, r)
        assert r["micro_batch_size"] == (4 if "effective" in name else None), (name, r)
