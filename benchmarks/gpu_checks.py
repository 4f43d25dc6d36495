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

Usage::

    python benchmarks/gpu_checks.py --out "$OUT"           # on the GPU machine (about 2 minutes)
    python benchmarks/gpu_checks.py --device cpu --quick   # exercises the code paths on CPU (no sync check)

Writes ``gpu_checks.json`` and ``gpu_checks.md`` (with the device name) to ``--out``; exit code 1 if a check
fails (a sync in update with ``validate_args=False``, a wrong step count, or non-finite weights).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from lightning.pytorch import Trainer
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
                    "update": result, "value_finite": bool(torch.isfinite(out["value"]).item()),
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
    batches = [(x[s:s + bs].to(device), y[s:s + bs].to(device)) for s in range(0, x.shape[0], bs)]
    reference_fit(ref, batches, sched, epochs, mse_loss, "SGD")
    accelerator = "gpu" if device.type == "cuda" else "cpu"
    rows = {}
    for precision in ("32-true", "bf16-mixed", "16-mixed"):
        row: dict[str, Any] = {}
        for name, make_cb in (("ours", lambda: AccumulationScheduler(sched)),
                              ("GAS", lambda: GradientAccumulationScheduler(dict(sched)))):
            model = Wrapped(_net(device), mse_loss, "SGD")
            kwargs: dict[str, Any] = {"precision": precision}
            if precision == "16-mixed":
                scaler = torch.amp.GradScaler(device.type, init_scale=2.0**10)
                kwargs = {"plugins": [MixedPrecision("16-mixed", device.type, scaler=scaler)]}
            cb = make_cb()
            trainer = Trainer(accelerator=accelerator, devices=1, max_epochs=epochs, callbacks=[cb], logger=False,
                              enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                              **kwargs)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                trainer.fit(model, DataLoader(TensorDataset(x, y), batch_size=bs))
            diff = max((p.detach().cpu() - q.detach().cpu()).abs().max().item()
                       for p, q in zip(model.parameters(), ref.parameters()))
            finite = all(bool(torch.isfinite(p).all()) for p in model.parameters())
            row[name] = {"max_abs_diff": diff, "finite": finite, "global_step": trainer.global_step}
            if name == "ours":
                row[name]["total_optimizer_steps"] = total_optimizer_steps(trainer)
        rows[precision] = row
    failed = [p for p, r in rows.items()
              if not r["ours"]["finite"] or r["ours"]["total_optimizer_steps"] != r["ours"]["global_step"]]
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
        device, 1 if not quick else repeats)
    plain_update = _median_time(updates(base), device, repeats)
    update_ratio = {
        r: _median_time(updates(lambda r=r: BootstrapMetric(base(), num_bootstraps=b, resampling=r, seed=0)),
                        device, repeats) / plain_update
        for r in RESAMPLING
    }
    return {
        "setting": {"n": n, "batch_size": bs, "B": b, "repeats": repeats},
        "epoch_s": {"BootstrapMetric": ours_epoch, "BootStrapper": anchor_epoch},
        "epoch_speedup_vs_BootStrapper": anchor_epoch / ours_epoch,
        "update_s_unwrapped": plain_update,
        "update_ratio_vs_unwrapped": update_ratio,
    }


# ------------------------------------------------------------------------------------------------ report
def _markdown(res: dict[str, Any]) -> str:
    lines = [f"# GPU checks on {res['device_name']}", "", f"Command: `{res['command']}`", "",
             f"torch {res['versions']['torch']}, CUDA {res['versions']['cuda']}, "
             f"Python {res['versions']['python']}.", "", "## 1. Host syncs in update", ""]
    syncs = res["syncs"]
    if "skipped" in syncs:
        lines.append(f"Skipped: {syncs['skipped']}.")
    else:
        lines += ["| metric, resampling, validate_args | update | compute value finite |", "|---|---|---|"]
        lines += [f"| {k} | {r['update']} | {r['value_finite']} |" for k, r in syncs["rows"].items()]
    lines += ["", "## 2. AMP with accumulation", "",
              f"Schedule {res['amp']['schedule']}, {res['amp']['epochs']} epochs, batch size "
              f"{res['amp']['batch_size']}, 46 samples; max |Δw| against a float32 per-window reference.", "",
              "| precision | ours max abs diff | GAS max abs diff | ours steps / total_optimizer_steps |",
              "|---|---|---|---|"]
    for p, r in res["amp"]["rows"].items():
        o, g = r["ours"], r["GAS"]
        lines.append(f"| {p} | {o['max_abs_diff']:.2e} | {g['max_abs_diff']:.2e} | "
                     f"{o['global_step']} / {o['total_optimizer_steps']} |")
    s = res["speed"]
    lines += ["", "## 3. Speed", "", f"Setting: {s['setting']} (macro-F1, 3 classes).", "",
              f"- One validation epoch: BootstrapMetric {s['epoch_s']['BootstrapMetric'] * 1e3:.1f} ms, "
              f"BootStrapper {s['epoch_s']['BootStrapper'] * 1e3:.0f} ms: "
              f"**{s['epoch_speedup_vs_BootStrapper']:.0f}×**.",
              "- update time / unwrapped metric: "
              + ", ".join(f"{r} {v:.2f}×" for r, v in s["update_ratio_vs_unwrapped"].items()), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="small speed setting")
    parser.add_argument("--out", default=".")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or 'cpu'})"
    res: dict[str, Any] = {
        "device_name": name,
        "command": "python benchmarks/gpu_checks.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "versions": {"torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version()},
    }
    for key, fn in (("syncs", lambda: check_syncs(device)), ("amp", lambda: check_amp(device)),
                    ("speed", lambda: check_speed(device, args.quick))):
        t0 = time.perf_counter()
        res[key] = fn()
        print(f"{key}: done in {time.perf_counter() - t0:.1f} s", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_checks.json").write_text(json.dumps(res, indent=1, default=str))
    md = _markdown(res)
    (out / "gpu_checks.md").write_text(md)
    print(md)
    failed = res["syncs"].get("failed", []) + res["amp"]["failed"]
    if failed:
        print(f"FAILED: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
