"""benchmarks/gpu_checks.py (the prepared script for a CUDA machine) runs through on CPU."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from tests.helpers import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_checks.py"


@pytest.fixture(scope="module")
def gpu_checks():
    return load_script(SCRIPT, "lightning_ci_gpu_checks")


def test_gpu_checks_script_on_cpu(gpu_checks, tmp_path):
    assert gpu_checks.main(["--device", "cpu", "--quick", "--sections", "syncs,amp,speed", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "gpu_checks.json").read_text())
    assert res["syncs"] == {"skipped": "not a CUDA device"}
    assert res["llm"] == {"skipped": "not selected (--sections)"}
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
    assert "## 4. LLM memory" in md and "Skipped: not selected" in md


def _tiny_llama():
    """A 2-layer Llama-style decoder (hidden 32), built here: the LLM section's code path in seconds."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=128,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        num_labels=2,
        pad_token_id=127,
        use_cache=False,
    )


def test_llm_section_losses_equal_across_splits(gpu_checks):
    pytest.importorskip("peft")
    res = gpu_checks.check_llm(
        torch.device("cpu"),
        _tiny_llama(),
        seq_len=16,
        steps=2,
        effective_batch=8,
        micro_batches=(8, 2, 1),
        probe_seq_lens=(),
        precision="32-true",
    )
    assert res["failed"] == []
    assert res["model"]["class"] == "LlamaForSequenceClassification" and res["model"]["layers"] == 2
    assert 0 < res["model"]["trainable"] < res["model"]["parameters"]  # LoRA: the base stays frozen
    splits = res["splits"]
    assert list(splits) == ["8x1", "2x4", "1x8"] and res["setting"]["reference"] == "8x1"
    ref = splits["8x1"]["losses"]
    assert len(ref) == 2 and all(math.isfinite(v) for v in ref)
    # the first step changed the weights: a split that trained differently would show at this scale
    assert abs(ref[1] - ref[0]) > 1e-3
    for name, row in splits.items():
        assert row["global_step"] == 2 and row["factor"] * row["micro_batch"] == 8, name
        # float32: unit roundoff 6e-8; the splits differ only in summation order, over 2 AdamW steps
        assert row["max_abs_loss_diff"] < 1e-5, (name, row["losses"], ref)
        assert row["tokens_per_s"] > 0
    md = "\n".join(gpu_checks._md_llm(res))
    assert "| 2x4 | n/a (CPU) |" in md


def test_llm_section_records_where_the_largest_micro_batch_runs_out_of_memory(gpu_checks, monkeypatch):
    """A CUDA OOM (simulated above 64 tokens per micro-batch) is caught, recorded, and not tried again."""
    pytest.importorskip("peft")
    step = gpu_checks.LoraModule.training_step

    def training_step(self, batch, batch_idx):
        if batch[0].numel() > 64:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return step(self, batch, batch_idx)

    monkeypatch.setattr(gpu_checks.LoraModule, "training_step", training_step)
    res = gpu_checks.check_llm(
        torch.device("cpu"),
        _tiny_llama(),
        seq_len=8,
        steps=1,
        effective_batch=8,
        micro_batches=(8, 2),
        probe_seq_lens=(16, 32),
        precision="32-true",
    )
    assert res["failed"] == [] and "oom" not in res["splits"]["8x1"]  # 8 x 8 = 64 tokens fit
    probes = res["probes"]
    assert "simulated" in probes["16"]["8x1"]["oom"]  # 8 x 16 = 128 tokens
    assert probes["32"]["8x1"]["oom"] == "not tried: out of memory at 16"
    assert "oom" not in probes["16"]["2x4"] and "oom" not in probes["32"]["2x4"]  # 2 x 32 = 64 tokens
    assert res["first_oom_seq_len_largest"] == 16
    md = "\n".join(gpu_checks._md_llm(res))
    assert "| 16 | **OOM** | n/a (CPU) |" in md and "8 × 1 first runs out of memory at sequence length 16." in md


def test_cli_runs_the_llm_section_alone_and_checks_its_arguments(gpu_checks, tmp_path):
    pytest.importorskip("peft")
    argv = ["--device", "cpu", "--quick", "--sections", "llm", "--llm-micro-batches", "8", "--llm-steps", "1"]
    assert gpu_checks.main([*argv, "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "gpu_checks.json").read_text())
    assert res["amp"] == {"skipped": "not selected (--sections)"}
    assert list(res["llm"]["splits"]) == ["8x1"] and res["llm"]["splits"]["8x1"]["global_step"] == 1
    assert res["llm"]["model"]["layers"] == 2  # --quick: the tiny decoder
    with pytest.raises(SystemExit):
        gpu_checks.main(["--sections", "llm,gpu", "--out", str(tmp_path)])
    with pytest.raises(ValueError, match=r"`micro_batches` to divide `effective_batch` \(8\), but received \[3\]"):
        gpu_checks.check_llm(torch.device("cpu"), _tiny_llama(), effective_batch=8, micro_batches=(8, 3))
