"""The checks that need a GPU, in one script: run it as it stands on a machine with CUDA.

1. **No host syncs in ``update``.** For accuracy, macro-F1 (3 classes) and AUROC, with every resampling mode and
   ``validate_args=False``, ``BootstrapMetric.update`` runs under ``torch.cuda.set_sync_debug_mode("error")``
   after one warm-up update; a sync raises and is recorded. The same with ``validate_args=True`` is reported
   for information: torchmetrics' own input validation syncs in the unwrapped metric too.
2. **AMP with accumulation.** A float32 regression model trained for 2 epochs with ``AccumulationScheduler
   ({0: 5, 1: 3})`` on 46 samples in batches of 4 (partial windows and a short last batch) under
   ``32-true``, ``bf16-mixed`` and ``16-mixed`` (GradScaler, initial scale 2**10), against a plain PyTorch
   float32 loop with one step per window on the concatenated samples, and Lightning's
   ``GradientAccumulationScheduler`` on the same. Reports ``max |Δw|`` and checks that
   ``total_optimizer_steps`` equals ``global_step``.
3. **Speed on the device.** One validation epoch (2,000 samples, batches of 64, B = 1000) of macro-F1 with
   ``BootstrapMetric`` against torchmetrics' ``BootStrapper``, and ``update`` time against the unwrapped
   metric, for each resampling mode; medians of repeats with ``torch.cuda.synchronize()`` around each.

4. **LLM memory at a fixed effective batch.** A Qwen2-0.5B-shaped decoder (494M parameters, built from a config
   with random weights: no hub access), ``AutoModelForSequenceClassification`` with LoRA through peft (r = 16 on
   the attention projections, float32 adapters over bf16 base weights), ``bf16-mixed``, synthetic token ids.
   The effective batch 64 runs as micro-batch x factor = 64 x 1, 16 x 4, 4 x 16 and 1 x 64 through
   ``AccumulationScheduler(effective_batch_size=64)`` in a Lightning ``Trainer``, 20 optimizer steps each at
   sequence length 512: peak memory (``torch.cuda.max_memory_allocated``, reset between splits), tokens per
   second, and the 20 optimizer steps' losses, which must agree across the splits within ``LOSS_TOL``
   (bf16 rounding). Then one optimizer step of each split at sequence lengths 1024 … 8192 shows where 64 x 1
   runs out of memory (the CUDA OOM is caught and recorded) while the smaller micro-batches still fit.

Usage::

    python benchmarks/gpu_checks.py --out "$OUT"                  # on the GPU machine (about 5 minutes)
    python benchmarks/gpu_checks.py --out "$OUT" --sections llm   # one section (syncs, amp, speed, llm)
    python benchmarks/gpu_checks.py --device cpu --quick          # the code paths on CPU (no sync check; llm: a
                                                                  # tiny decoder, effective batch 8, 2 steps)

Writes ``gpu_checks.json`` and ``gpu_checks.md`` (with the device name) to ``--out``; exit code 1 if a check
fails (a sync in update with ``validate_args=False``, a wrong step count, non-finite weights or losses, or
losses that differ between the splits of section 4).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import GradientAccumulationScheduler
from lightning.pytorch.plugins import MixedPrecision
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_ci import AccumulationScheduler, total_optimizer_steps
from lightning_ci.bootstrap import BootstrapMetric

sys.path.insert(0, str(Path(__file__).resolve().parent / "validation"))

# the float64 study's model, loss, optimizer and per-window reference loop, used here in float32
from accum_exact import Wrapped, build_net, make_regression, mse_loss, reference_fit

RESAMPLING = ("multinomial", "poisson", "bayesian")


def _metrics(validate_args: bool) -> dict[str, Callable[[], Any]]:
    from torchmetrics.classification import BinaryAccuracy, BinaryAUROC, MulticlassF1Score

    return {
        "accuracy": lambda: BinaryAccuracy(validate_args=validate_args),
        "macro_f1": lambda: MulticlassF1Score(num_classes=3, average="macro", validate_args=validate_args),
        "auroc": lambda: BinaryAUROC(validate_args=validate_args),
    }


def _batch(metric: str, n: int, device: torch.device, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    if metric == "macro_f1":
        return (torch.randint(3, (n,), generator=gen).to(device), torch.randint(3, (n,), generator=gen).to(device))
    target = torch.randint(2, (n,), generator=gen).to(device)
    if metric == "accuracy":
        return torch.randint(2, (n,), generator=gen).to(device), target
    return torch.rand(n, generator=gen).to(device), target


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ------------------------------------------------------------------------------------------------ 1. syncs
def check_syncs(device: torch.device) -> dict[str, Any]:
    if device.type != "cuda":
        return {"skipped": "not a CUDA device"}
    rows = {}
    gen = torch.Generator().manual_seed(0)
    for validate_args in (False, True):
        for metric, make in _metrics(validate_args).items():
            for resampling in RESAMPLING:
                m = BootstrapMetric(make(), num_bootstraps=1000, resampling=resampling, seed=0).to(device)
                m.update(*_batch(metric, 64, device, gen))  # warm-up: lazy state, RNG, kernels
                batches = [_batch(metric, 64, device, gen) for _ in range(5)]
                _sync(device)
                torch.cuda.set_sync_debug_mode("error")
                try:
                    for b in batches:
                        m.update(*b)
                    result = "no sync"
                except RuntimeError as err:
                    result = f"sync: {str(err).splitlines()[0][:120]}"
                finally:
                    torch.cuda.set_sync_debug_mode(0)
                out = m.compute()
                rows[f"{metric} {resampling} validate_args={validate_args}"] = {
                    "update": result,
                    "value_finite": bool(torch.isfinite(out["value"]).item()),
                }
    failed = [k for k, r in rows.items() if "validate_args=False" in k and r["update"] != "no sync"]
    return {"rows": rows, "failed": failed}


# ------------------------------------------------------------------------------------------------ 2. AMP
def _regression(n: int = 46) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = make_regression(n, seed=0)
    return x.float(), y.float()


def _net(device: torch.device) -> nn.Module:
    return build_net("linear", seed=0).float().to(device)  # the same initial weights for every run


def check_amp(device: torch.device) -> dict[str, Any]:
    x, y = _regression()
    sched, epochs, bs = {0: 5, 1: 3}, 2, 4
    ref = _net(device)
    batches = [(x[s : s + bs].to(device), y[s : s + bs].to(device)) for s in range(0, x.shape[0], bs)]
    reference_fit(ref, batches, sched, epochs, mse_loss, "SGD")
    accelerator = "gpu" if device.type == "cuda" else "cpu"
    rows = {}
    for precision in ("32-true", "bf16-mixed", "16-mixed"):
        row: dict[str, Any] = {}
        for name, make_cb in (
            ("ours", lambda: AccumulationScheduler(sched)),
            ("GAS", lambda: GradientAccumulationScheduler(dict(sched))),
        ):
            model = Wrapped(_net(device), mse_loss, "SGD")
            kwargs: dict[str, Any] = {"precision": precision}
            if precision == "16-mixed":
                scaler = torch.amp.GradScaler(device.type, init_scale=2.0**10)
                kwargs = {"plugins": [MixedPrecision("16-mixed", device.type, scaler=scaler)]}
            cb = make_cb()
            trainer = Trainer(
                accelerator=accelerator,
                devices=1,
                max_epochs=epochs,
                callbacks=[cb],
                logger=False,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
                **kwargs,
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                trainer.fit(model, DataLoader(TensorDataset(x, y), batch_size=bs))
            diff = max(
                (p.detach().cpu() - q.detach().cpu()).abs().max().item()
                for p, q in zip(model.parameters(), ref.parameters())
            )
            finite = all(bool(torch.isfinite(p).all()) for p in model.parameters())
            row[name] = {"max_abs_diff": diff, "finite": finite, "global_step": trainer.global_step}
            if name == "ours":
                row[name]["total_optimizer_steps"] = total_optimizer_steps(trainer)
        rows[precision] = row
    failed = [
        p
        for p, r in rows.items()
        if not r["ours"]["finite"] or r["ours"]["total_optimizer_steps"] != r["ours"]["global_step"]
    ]
    return {"rows": rows, "failed": failed, "schedule": sched, "epochs": epochs, "batch_size": bs}


# ------------------------------------------------------------------------------------------------ 3. speed
def _median_time(fn: Callable[[], Any], device: torch.device, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def check_speed(device: torch.device, quick: bool) -> dict[str, Any]:
    from torchmetrics.classification import MulticlassF1Score
    from torchmetrics.wrappers import BootStrapper

    n, bs, b = (256, 64, 100) if quick else (2000, 64, 1000)
    repeats = 2 if quick else 5
    gen = torch.Generator().manual_seed(0)
    stream = [_batch("macro_f1", min(bs, n - s), device, gen) for s in range(0, n, bs)]

    def base():
        return MulticlassF1Score(num_classes=3, average="macro", validate_args=False)

    def epoch(metric_fn):
        def run():
            m = metric_fn().to(device)
            for p, t in stream:
                m.update(p, t)
            return m.compute()

        return run

    def updates(metric_fn):
        m = metric_fn().to(device)

        def run():
            for p, t in stream:
                m.update(p, t)

        return run

    ours_epoch = _median_time(epoch(lambda: BootstrapMetric(base(), num_bootstraps=b, seed=0)), device, repeats)
    anchor_epoch = _median_time(
        epoch(lambda: BootStrapper(base(), num_bootstraps=b, quantile=torch.tensor([0.025, 0.975]))),
        device,
        1 if not quick else repeats,
    )
    plain_update = _median_time(updates(base), device, repeats)
    update_ratio = {
        r: _median_time(
            updates(lambda r=r: BootstrapMetric(base(), num_bootstraps=b, resampling=r, seed=0)), device, repeats
        )
        / plain_update
        for r in RESAMPLING
    }
    return {
        "setting": {"n": n, "batch_size": bs, "B": b, "repeats": repeats},
        "epoch_s": {"BootstrapMetric": ours_epoch, "BootStrapper": anchor_epoch},
        "epoch_speedup_vs_BootStrapper": anchor_epoch / ours_epoch,
        "update_s_unwrapped": plain_update,
        "update_ratio_vs_unwrapped": update_ratio,
    }


# ------------------------------------------------------------------------------------------------ 4. LLM memory
EFFECTIVE_BATCH = 64
MICRO_BATCHES = (64, 16, 4, 1)  # micro-batch x accumulation factor = 64 x 1, 16 x 4, 4 x 16, 1 x 64
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
# The largest |Δ loss| of an optimizer step between two splits of the same windows that rounding explains; set
# before any GPU run. The splits compute the same maths in other shapes and orders: under bf16 autocast every
# matmul rounds its output to 8 significant bits (unit roundoff 2**-8 = 3.9e-3) and the kernels change with the
# micro-batch shape, so per-sample losses differ by a few units of roundoff of the logits, averaged over 64
# samples; AdamW's normalised steps then carry the differences into the weights at the scale of the learning
# rate. Measured on CPU (bf16 autocast, a 2-layer decoder, this task, 20 steps of 64 x 1, 16 x 4 and 4 x 16):
# at most 2.6e-4, while the loss fell by 0.03-0.05 a step. A 24-layer model rounds more times along each path;
# 1e-2 (about 4 units of bf16 roundoff at a loss of 0.7) leaves room for that and stays below one step's
# movement, so a split that trained on other windows or with another factor would show. float32: unit roundoff
# 6e-8; 1e-4 leaves a similar margin.
LOSS_TOL = {"bf16-mixed": 1e-2, "32-true": 1e-4}


def qwen2_05b_config() -> Any:
    """A Qwen2-0.5B-shaped decoder (494M parameters before LoRA), randomly initialised: no hub access needed."""
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=151936,
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        max_position_embeddings=32768,
        rope_theta=1e6,
        tie_word_embeddings=True,
        num_labels=2,
        pad_token_id=151935,
        use_cache=False,
    )


def tiny_decoder_config() -> Any:
    """A 2-layer Llama-style decoder (hidden 64): the same code path in seconds on CPU."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=512,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        num_labels=2,
        pad_token_id=511,
        use_cache=False,
    )


def build_lora_classifier(config: Any, device: torch.device, dtype: torch.dtype, seed: int = 0) -> nn.Module:
    """``AutoModelForSequenceClassification`` from ``config`` with LoRA (r=16 on the attention projections).

    The frozen base weights are kept in ``dtype``; the trainable ones (LoRA adapters, the score head) in
    float32, as in the usual bf16 LoRA recipe. Dropout is off, so that every split sees the same function.
    """
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForSequenceClassification.from_config(config, dtype=dtype)
    model = get_peft_model(
        model, LoraConfig(task_type="SEQ_CLS", r=16, lora_alpha=32, lora_dropout=0.0, target_modules=list(LORA_TARGETS))
    )
    for p in model.parameters():
        if p.requires_grad:
            p.data = p.data.float()
    return model


def synthetic_tokens(n: int, seq_len: int, config: Any, seed: int = 0) -> TensorDataset:
    """``n`` sequences of random token ids (never the pad id) with a random label, carried by the last token
    (id 1 for label 1, id 0 for label 0), so that the classifier learns it within a few steps."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, config.pad_token_id, (n, seq_len), generator=g)  # ids 2 .. pad_token_id - 1
    labels = torch.randint(2, (n,), generator=g)
    ids[:, -1] = labels
    return TensorDataset(ids, labels)


class LoraModule(LightningModule):
    """The classifier in Lightning; keeps each micro-batch's (optimizer step, loss x items, items)."""

    def __init__(self, model: nn.Module, lr: float) -> None:
        super().__init__()
        self.model, self.lr = model, lr
        self.records: list[tuple[int, torch.Tensor, int]] = []

    def training_step(self, batch, batch_idx):
        ids, labels = batch
        loss = self.model(input_ids=ids, labels=labels).loss
        self.records.append((self.trainer.global_step, loss.detach().float() * ids.shape[0], ids.shape[0]))
        return loss

    def configure_optimizers(self):
        return torch.optim.AdamW([p for p in self.parameters() if p.requires_grad], lr=self.lr, weight_decay=0.0)

    def step_losses(self) -> list[float]:
        """The loss of each optimizer step: the item-weighted mean over its window (as one large batch)."""
        sums: dict[int, list[float]] = {}
        for step, loss_sum, n in self.records:
            acc = sums.setdefault(step, [0.0, 0.0])
            acc[0] += float(loss_sum)
            acc[1] += n
        return [sums[s][0] / sums[s][1] for s in sorted(sums)]


class StepTimer(Callback):
    """Wall-clock time at the end of each optimizer step (device synchronised)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._seen = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step > self._seen:
            self._seen = trainer.global_step
            _sync(pl_module.device)
            self.times.append(time.perf_counter())


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _llm_fit(
    model: nn.Module,
    init: dict[str, torch.Tensor],
    data: TensorDataset,
    micro: int,
    steps: int,
    device: torch.device,
    precision: str,
    lr: float,
    effective_batch: int,
) -> dict[str, Any]:
    """One fit of ``steps`` optimizer steps at ``effective_batch`` with micro-batch ``micro``; OOM is caught."""
    model.load_state_dict(init, strict=False)  # the same trainable weights for every split
    for p in model.parameters():
        p.grad = None
    module, timer = LoraModule(model, lr), StepTimer()
    trainer = Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=1,
        precision=precision,
        max_steps=steps,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[AccumulationScheduler(effective_batch_size=effective_batch), timer],
    )
    loader = DataLoader(data, batch_size=micro, shuffle=False)
    _free(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    row: dict[str, Any] = {"micro_batch": micro, "factor": effective_batch // micro}
    t0 = time.perf_counter()
    oom = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.fit(module, loader)
    except torch.cuda.OutOfMemoryError as err:
        oom = str(err).splitlines()[0][:160]
    row["wall_s"] = time.perf_counter() - t0
    if device.type == "cuda":
        row["peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        row["peak_reserved_gib"] = torch.cuda.max_memory_reserved(device) / 2**30
    if oom is not None:
        row["oom"] = oom
    else:
        tokens_per_step = effective_batch * data.tensors[0].shape[1]
        row["global_step"] = trainer.global_step
        row["losses"] = module.step_losses()
        row["finite"] = all(math.isfinite(v) for v in row["losses"])
        # throughput after the first optimizer step (which carries the kernels' warm-up)
        t = timer.times
        row["tokens_per_s"] = tokens_per_step * (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 else None
    model.cpu()
    del trainer, module, loader
    for p in model.parameters():
        p.grad = None
    _free(device)
    return row


def check_llm(
    device: torch.device,
    config: Any = None,
    *,
    seq_len: int = 512,
    steps: int = 20,
    probe_seq_lens: tuple[int, ...] = (1024, 2048, 4096, 8192),
    precision: str | None = None,
    lr: float = 1e-3,
    budget_s: float = 200.0,
    effective_batch: int = EFFECTIVE_BATCH,
    micro_batches: tuple[int, ...] = MICRO_BATCHES,
) -> dict[str, Any]:
    """LoRA finetuning of a decoder at one effective batch split several ways; memory, speed, equal losses.

    1. ``steps`` optimizer steps at ``seq_len`` for each micro-batch size: peak memory, tokens per second, and
       the loss of each optimizer step, compared with the first split's within ``LOSS_TOL[precision]``.
    2. One optimizer step of each split at each of ``probe_seq_lens``: peak memory, or where it runs out of
       memory (a split that ran out at a shorter length is not tried again). Probes stop (and say so) once the
       section has run ``budget_s`` seconds.

    The main run uses the defaults (a Qwen2-0.5B-shaped model, 64 = 64 x 1 = 16 x 4 = 4 x 16 = 1 x 64); the
    CPU test passes a tiny decoder's config, a smaller effective batch and a few steps through the same code.
    """
    bad = [m for m in micro_batches if m < 1 or effective_batch % m]
    if bad:
        raise ValueError(
            f"Expected every micro-batch in `micro_batches` to divide `effective_batch` ({effective_batch}), but"
            f" received {bad}."
        )
    t_start = time.perf_counter()
    config = qwen2_05b_config() if config is None else config
    if precision is None:
        precision = "bf16-mixed" if device.type == "cuda" else "32-true"
    dtype = torch.bfloat16 if precision.startswith("bf16") else torch.float32
    model = build_lora_classifier(config, device, dtype)
    init = {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}
    n_params = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    data = synthetic_tokens(effective_batch * steps, seq_len, config)
    names = {m: f"{m}x{effective_batch // m}" for m in micro_batches}
    splits = {
        names[m]: _llm_fit(model, init, data, m, steps, device, precision, lr, effective_batch) for m in micro_batches
    }
    tol = LOSS_TOL[precision]
    ref_name = next((n for n, r in splits.items() if "losses" in r), None)
    failed = [n for n, r in splits.items() if "oom" not in r and not (r["finite"] and r["global_step"] == steps)]
    if ref_name is None:
        failed.append("every split ran out of memory")
    else:
        ref = splits[ref_name]["losses"]
        for name, r in splits.items():
            if "losses" in r:
                r["max_abs_loss_diff"] = max(abs(a - b) for a, b in zip(r["losses"], ref))
                if r["max_abs_loss_diff"] > tol:
                    failed.append(f"{name}: losses differ from {ref_name} by {r['max_abs_loss_diff']:.2e} > {tol}")
    probes: dict[str, dict[str, Any]] = {}
    for length in probe_seq_lens:
        probe_data = synthetic_tokens(effective_batch, length, config, seed=1)
        for m in micro_batches:
            name = names[m]
            shorter = [int(k) for k, row in probes.items() if "oom" in row.get(name, {})]
            if shorter:
                probes.setdefault(str(length), {})[name] = {"oom": f"not tried: out of memory at {min(shorter)}"}
                continue
            if time.perf_counter() - t_start > budget_s:
                probes.setdefault(str(length), {})[name] = {"skipped": f"section time budget {budget_s:.0f} s spent"}
                continue
            r = _llm_fit(model, init, probe_data, m, 1, device, precision, lr, effective_batch)
            probes.setdefault(str(length), {})[name] = {
                key: r[key] for key in ("peak_gib", "peak_reserved_gib", "oom", "wall_s") if key in r
            }
    largest = names[max(micro_batches)]
    first_oom = next((int(length) for length, row in probes.items() if "oom" in row.get(largest, {})), None)
    return {
        "model": {
            "class": type(model.base_model.model).__name__,
            "layers": config.num_hidden_layers,
            "hidden": config.hidden_size,
            "vocab": config.vocab_size,
            "parameters": n_params,
            "trainable": n_train,
            "lora": {"r": 16, "alpha": 32, "targets": list(LORA_TARGETS)},
            "base_dtype": str(dtype).replace("torch.", ""),
        },
        "setting": {
            "seq_len": seq_len,
            "steps": steps,
            "effective_batch": effective_batch,
            "precision": precision,
            "optimizer": f"AdamW(lr={lr}, weight_decay=0)",
            "loss_tol": tol,
            "reference": ref_name,
        },
        "splits": splits,
        "probes": probes,
        "largest_micro_batch": largest,
        "first_oom_seq_len_largest": first_oom,
        "failed": failed,
        "wall_s": time.perf_counter() - t_start,
    }


# ------------------------------------------------------------------------------------------------ report
def _md_syncs(syncs: dict[str, Any]) -> list[str]:
    lines = ["## 1. Host syncs in update", ""]
    if "skipped" in syncs:
        return [*lines, f"Skipped: {syncs['skipped']}.", ""]
    lines += ["| metric, resampling, validate_args | update | compute value finite |", "|---|---|---|"]
    lines += [f"| {k} | {r['update']} | {r['value_finite']} |" for k, r in syncs["rows"].items()]
    return [*lines, ""]


def _md_amp(amp: dict[str, Any]) -> list[str]:
    lines = ["## 2. AMP with accumulation", ""]
    if "skipped" in amp:
        return [*lines, f"Skipped: {amp['skipped']}.", ""]
    lines += [
        f"Schedule {amp['schedule']}, {amp['epochs']} epochs, batch size {amp['batch_size']}, 46 samples; "
        "max |Δw| against a float32 per-window reference.",
        "",
        "| precision | ours max abs diff | GAS max abs diff | ours steps / total_optimizer_steps |",
        "|---|---|---|---|",
    ]
    for p, r in amp["rows"].items():
        o, g = r["ours"], r["GAS"]
        lines.append(
            f"| {p} | {o['max_abs_diff']:.2e} | {g['max_abs_diff']:.2e} | "
            f"{o['global_step']} / {o['total_optimizer_steps']} |"
        )
    return [*lines, ""]


def _md_speed(s: dict[str, Any]) -> list[str]:
    lines = ["## 3. Speed", ""]
    if "skipped" in s:
        return [*lines, f"Skipped: {s['skipped']}.", ""]
    lines += [
        f"Setting: {s['setting']} (macro-F1, 3 classes).",
        "",
        f"- One validation epoch: BootstrapMetric {s['epoch_s']['BootstrapMetric'] * 1e3:.1f} ms, "
        f"BootStrapper {s['epoch_s']['BootStrapper'] * 1e3:.0f} ms: "
        f"**{s['epoch_speedup_vs_BootStrapper']:.0f}×**.",
        "- update time / unwrapped metric: "
        + ", ".join(f"{r} {v:.2f}×" for r, v in s["update_ratio_vs_unwrapped"].items()),
        "",
    ]
    return lines


def _gib(row: dict[str, Any]) -> str:
    if "skipped" in row:
        return "skipped"
    if "oom" in row:
        return "**OOM**"
    return f"{row['peak_gib']:.1f} GiB" if "peak_gib" in row else "n/a (CPU)"


def _md_llm(llm: dict[str, Any]) -> list[str]:
    lines = ["## 4. LLM memory: LoRA at one effective batch, split into micro-batches", ""]
    if "skipped" in llm:
        return [*lines, f"Skipped: {llm['skipped']}.", ""]
    m, st = llm["model"], llm["setting"]
    lines += [
        f"{m['class']} from a config ({m['layers']} layers, hidden {m['hidden']}, vocab {m['vocab']}; "
        f"{m['parameters'] / 1e6:.3g}M parameters, random init, base weights {m['base_dtype']}), LoRA r="
        f"{m['lora']['r']} alpha={m['lora']['alpha']} on {', '.join(m['lora']['targets'])} + the score head "
        f"({m['trainable'] / 1e6:.3g}M trainable, float32); synthetic token ids, sequence length "
        f"{st['seq_len']}; precision {st['precision']}, {st['optimizer']}; `AccumulationScheduler("
        f"effective_batch_size={st['effective_batch']})` in a Lightning Trainer, {st['steps']} optimizer "
        f"step{'s' if st['steps'] != 1 else ''} per split. Peak = `torch.cuda.max_memory_allocated` over the fit "
        "(reset before each split). Tokens per second exclude the first optimizer step.",
        "",
        f"| micro-batch × factor | peak memory | tokens / s | max \\|Δ loss\\| vs {st['reference']} "
        f"(tolerance {st['loss_tol']}) | first → last step loss |",
        "|---|---|---|---|---|",
    ]
    for name, r in llm["splits"].items():
        if "oom" in r:
            lines.append(f"| {name} | **OOM** | | | |")
            continue
        tps = f"{r['tokens_per_s']:,.0f}" if r.get("tokens_per_s") else "n/a"
        lines.append(
            f"| {name} | {_gib(r)} | {tps} | {r.get('max_abs_loss_diff', float('nan')):.1e} | "
            f"{r['losses'][0]:.4f} → {r['losses'][-1]:.4f} |"
        )
    if llm["probes"]:
        names = list(llm["splits"])
        lines += [
            "",
            f"Peak memory for one optimizer step at effective batch {st['effective_batch']}, by sequence length:",
            "",
            "| sequence length | " + " | ".join(names) + " |",
            "|---" * (len(names) + 1) + "|",
        ]
        for length, row in llm["probes"].items():
            lines.append(f"| {length} | " + " | ".join(_gib(row.get(n, {"skipped": 1})) for n in names) + " |")
        first, largest = llm["first_oom_seq_len_largest"], llm["largest_micro_batch"].replace("x", " × ")
        lines += [
            "",
            f"{largest} first runs out of memory at sequence length {first}."
            if first is not None
            else f"{largest} did not run out of memory at the lengths tried.",
        ]
    lines += ["", f"Section wall time {llm['wall_s']:.0f} s.", ""]
    return lines


def _markdown(res: dict[str, Any]) -> str:
    lines = [
        f"# GPU checks on {res['device_name']}",
        "",
        f"Command: `{res['command']}`",
        "",
        f"torch {res['versions']['torch']}, CUDA {res['versions']['cuda']}, Python {res['versions']['python']}.",
        "",
    ]
    for key, fn in (("syncs", _md_syncs), ("amp", _md_amp), ("speed", _md_speed), ("llm", _md_llm)):
        lines += fn(res[key])
    return "\n".join(lines)


SECTIONS = ("syncs", "amp", "speed", "llm")


def _sections(text: str) -> tuple[str, ...]:
    chosen = tuple(x.strip() for x in text.split(",") if x.strip())
    unknown = [x for x in chosen if x not in SECTIONS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {','.join(SECTIONS)}, got {text!r}")
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="small speed setting; the tiny decoder for 'llm'")
    parser.add_argument(
        "--sections",
        type=_sections,
        default=SECTIONS,
        help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)",
    )
    parser.add_argument(
        "--llm-model",
        choices=("qwen2-0.5b", "tiny"),
        default=None,
        help="decoder for 'llm' (default: qwen2-0.5b; with --quick: tiny, effective batch 8, 2 steps, no probes)",
    )
    parser.add_argument("--llm-seq-len", type=int, default=None, help="default 512 (16 with --quick)")
    parser.add_argument("--llm-steps", type=int, default=None, help="default 20 (2 with --quick)")
    parser.add_argument("--llm-effective-batch", type=int, default=None, help="default 64 (8 with --quick)")
    parser.add_argument("--llm-micro-batches", default=None, help="default 64,16,4,1 (8,2,1 with --quick)")
    parser.add_argument(
        "--llm-probe-lens",
        default=None,
        help="sequence lengths of the out-of-memory probes, default 1024,2048,4096,8192 ('' or --quick: none)",
    )
    parser.add_argument("--llm-budget-s", type=float, default=200.0, help="start no probe after this many seconds")
    parser.add_argument("--out", default=".")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or 'cpu'})"
    res: dict[str, Any] = {
        "device_name": name,
        "command": "python benchmarks/gpu_checks.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "versions": {"torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version()},
    }

    def pick(value: Any, full: Any, small: Any) -> Any:
        return value if value is not None else (small if args.quick else full)

    def ints(text: str) -> tuple[int, ...]:
        return tuple(int(x) for x in text.split(",") if x.strip())

    tiny = pick(args.llm_model, "qwen2-0.5b", "tiny") == "tiny"
    llm_kwargs: dict[str, Any] = {
        "seq_len": pick(args.llm_seq_len, 512, 16),
        "steps": pick(args.llm_steps, 20, 2),
        "effective_batch": pick(args.llm_effective_batch, EFFECTIVE_BATCH, 8),
        "micro_batches": ints(pick(args.llm_micro_batches, "64,16,4,1", "8,2,1")),
        "probe_seq_lens": ints(pick(args.llm_probe_lens, "1024,2048,4096,8192", "")),
        "budget_s": args.llm_budget_s,
    }
    runs: dict[str, Callable[[], dict[str, Any]]] = {
        "syncs": lambda: check_syncs(device),
        "amp": lambda: check_amp(device),
        "speed": lambda: check_speed(device, args.quick),
        "llm": lambda: check_llm(device, tiny_decoder_config() if tiny else None, **llm_kwargs),
    }
    for key in SECTIONS:
        if key not in args.sections:
            res[key] = {"skipped": "not selected (--sections)"}
            continue
        t0 = time.perf_counter()
        res[key] = runs[key]()
        print(f"{key}: done in {time.perf_counter() - t0:.1f} s", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_checks.json").write_text(json.dumps(res, indent=1, default=str))
    md = _markdown(res)
    (out / "gpu_checks.md").write_text(md)
    print(md)
    failed = [f"{key}: {f}" for key in SECTIONS for f in res[key].get("failed", [])]
    if failed:
        print(f"FAILED: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
