"""``BootstrapMetric`` in the coverage study: every method from one set of replicates per resampling mode.

For ``resampling`` in ("multinomial", "poisson") one ``BootstrapMetric(method="bca")`` is built per mode
and reused across simulated sets: for set ``i`` its engine seed is set to ``i`` (as ``BootstrapMetric(seed=i)``
would set it) and the metric is ``reset()``. Its engine's replicates and jackknife are turned into the four
intervals by ``BootstrapMetric._interval``, the code path of ``BootstrapMetric.compute`` (see
:func:`intervals_from_engine`), so the four methods share one set of replicates instead of paying four times
for them. ``resampling="bayesian"`` goes through
``BootstrapMetric.compute()`` itself (percentile only).

That this shortcut is exact is checked on the first ``timing_sims`` sets of every cell: there a fresh
``BootstrapMetric(base, B, method=m, resampling=r, seed=i)`` is built, updated and computed for every
(method, resampling), timed (CPU time, one thread), and its bounds are compared with the shared-replicate
bounds (the largest absolute difference is stored in the results).
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Callable

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryAUROC,
    BinaryMatthewsCorrCoef,
    MulticlassCohenKappa,
    MulticlassF1Score,
)

from lightning_ci import BootstrapMetric

METHODS = ("percentile", "basic", "normal", "bca")
RESAMPLINGS = ("multinomial", "poisson", "bayesian")
CONFIGS = [(r, m) for r in ("multinomial", "poisson") for m in METHODS] + [("bayesian", "percentile")]


def config_name(resampling: str, method: str) -> str:
    return f"ours {method} ({resampling})"


def base_metric(metric: str) -> Callable[[], Metric]:
    return {
        "accuracy": BinaryAccuracy,
        "macro_f1": lambda: MulticlassF1Score(num_classes=3, average="macro"),
        "auroc": BinaryAUROC,
        "mcc": BinaryMatthewsCorrCoef,
        "kappa": lambda: MulticlassCohenKappa(num_classes=3),
    }[metric]


def intervals_from_engine(bm: BootstrapMetric, out: Any, method: str) -> tuple[float, float]:
    """What ``BootstrapMetric.compute`` returns for ``method``, from an engine output (its own code path)."""
    lower, upper = bm._interval(out, method)
    return float(lower), float(upper)


def run_ours(
    metric: str, preds: torch.Tensor, target: torch.Tensor, num_bootstraps: int, timing_sims: int
) -> dict[str, Any]:
    """Bounds of every (resampling, method) on every simulated set, plus timings and the exactness check."""
    make = base_metric(metric)
    sims = preds.shape[0]
    lower = {c: np.full(sims, np.nan) for c in CONFIGS}
    upper = {c: np.full(sims, np.nan) for c in CONFIGS}
    warned = dict.fromkeys(CONFIGS, 0)
    shared = {
        r: BootstrapMetric(
            make(), num_bootstraps, method="bca" if r != "bayesian" else "percentile", resampling=r, seed=0
        )
        for r in RESAMPLINGS
    }
    for i in range(sims):
        for r, bm in shared.items():
            bm.engine.seed = i  # what BootstrapMetric(seed=i) sets
            bm.reset()
            with warnings.catch_warnings(record=True) as rec:
                warnings.simplefilter("always")
                bm.update(preds[i], target[i])
                if r == "bayesian":
                    res = bm.compute()
                    lower[(r, "percentile")][i], upper[(r, "percentile")][i] = float(res["lower"]), float(res["upper"])
                    warned[(r, "percentile")] += bool(rec)
                    continue
                out = bm.engine.compute()
                engine_warned = bool(rec)
            for m in METHODS:
                with warnings.catch_warnings(record=True) as rec:
                    warnings.simplefilter("always")
                    lower[(r, m)][i], upper[(r, m)][i] = intervals_from_engine(bm, out, m)
                warned[(r, m)] += bool(rec) or engine_warned

    times = {c: [] for c in CONFIGS}
    max_diff = dict.fromkeys(CONFIGS, 0.0)
    for i in range(min(timing_sims, sims)):
        for r, m in CONFIGS:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t0 = time.process_time()
                bm = BootstrapMetric(make(), num_bootstraps, method=m, resampling=r, seed=i)
                bm.update(preds[i], target[i])
                res = bm.compute()
                times[(r, m)].append(time.process_time() - t0)
            diff = max(abs(float(res["lower"]) - lower[(r, m)][i]), abs(float(res["upper"]) - upper[(r, m)][i]))
            max_diff[(r, m)] = max(max_diff[(r, m)], diff)
    return {
        config_name(*c): {
            "lower": lower[c],
            "upper": upper[c],
            "times": times[c],
            "warned_sims": warned[c],
            "max_abs_diff_vs_fresh": max_diff[c],
        }
        for c in CONFIGS
    }
