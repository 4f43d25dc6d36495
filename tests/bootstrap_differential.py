"""Randomised differential run of ``BootstrapMetric`` against torchmetrics (not collected by pytest).

    PYTHONPATH=. python tests/bootstrap_differential.py --configs 2000 --seed 0

Every configuration draws a metric class and its options (task, average, thresholds, ignore_index, top_k, ...), a
resampling mode and a method, data (probabilities or logits, ties, ignored targets, NaN-free), and a batch split
(empty batches included where torchmetrics accepts them). It then checks:

- ``value`` equals the unwrapped metric updated with the same batches (or both raise);
- the bounds contain a finite ``value`` and lie in the metric's known range;
- with probabilities, the whole result (value, bounds, std) is the same under another batch split, a permutation
  of the samples, and the order two interleaved DDP shards produce (even indices, then odd ones);
- ``persistent(True)``: a ``state_dict`` taken mid-way and loaded into a fresh metric resumes to the same result.

With ``--variants``, a configuration is also drawn (from its own random stream, so the plain configurations stay
the same) as a grouped one (``update(..., groups=ids)``, random ids, groups split across batches) or a paired one
(``PairedBootstrapMetric`` with a second model's predictions): the same checks, with ``value_a``/``value_b``
against torchmetrics and the interval of the difference in the range of a difference.

Prints the number of configurations and of each check, and every failure.
"""

from __future__ import annotations

import argparse
import copy
import random
import traceback
import warnings
from collections import Counter
from typing import Any, Callable

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics import classification as C
from torchmetrics import regression as R
from torchmetrics.aggregation import MeanMetric

from lightning_ci import BootstrapMetric, PairedBootstrapMetric
from lightning_ci.bootstrap._ranges import metric_range

CONFUSION = ["Accuracy", "Precision", "Recall", "F1Score", "FBetaScore", "Specificity", "JaccardIndex",
             "MatthewsCorrCoef", "CohenKappa"]  # fmt: skip
STAT_KINDS = {"Accuracy", "Precision", "Recall", "F1Score", "FBetaScore", "Specificity"}


def _confusion(rng: random.Random) -> tuple[Callable[[], Metric], dict[str, Any]]:
    task = rng.choice(["Binary", "Multiclass", "Multilabel"])
    kind = rng.choice([k for k in CONFUSION if not (task == "Multilabel" and k == "CohenKappa")])
    cls = getattr(C, f"{task}{kind}")
    kw: dict[str, Any] = {}
    c = rng.choice([2, 3, 4])
    if task == "Multiclass":
        kw["num_classes"] = c
    if task == "Multilabel":
        kw["num_labels"] = c
    if task != "Binary" and (kind in STAT_KINDS or kind == "JaccardIndex"):
        kw["average"] = rng.choice(["micro", "macro", "weighted", "none", None])
    if kind == "FBetaScore":
        kw["beta"] = rng.choice([0.5, 2.0])
    if kind == "CohenKappa":
        kw["weights"] = rng.choice([None, "linear", "quadratic"])
    if kind in ("Precision", "Recall", "F1Score", "FBetaScore") and rng.random() < 0.3:
        kw["zero_division"] = rng.choice([0.0, 1.0])
    if task == "Multiclass" and kind == "Accuracy" and rng.random() < 0.15:
        kw["top_k"] = 2  # not the fast path: the generic path
    ignore = rng.choice([None, None, -1, 0]) if rng.random() < 0.4 else None
    if ignore is not None:
        kw["ignore_index"] = ignore
    return (lambda: cls(**kw)), {"task": task.lower(), "c": c, "ignore": ignore, "family": "confusion",
                                 "name": f"{cls.__name__}({kw})"}  # fmt: skip


def _ranking(rng: random.Random) -> tuple[Callable[[], Metric], dict[str, Any]]:
    multiclass = rng.random() < 0.5
    kind = rng.choice(["AUROC", "AveragePrecision"])
    c = rng.choice([3, 4]) if multiclass else 2
    kw: dict[str, Any] = {}
    thresholds = rng.choice([None, None, 5, 11, [0.0, 0.2, 0.5, 0.8, 1.0]])
    if thresholds is not None:
        kw["thresholds"] = thresholds
    if multiclass:
        kw["num_classes"] = c
        kw["average"] = rng.choice(["macro", "weighted", "none", None])
    ignore = rng.choice([None, -1, 0]) if rng.random() < 0.3 else None
    if ignore is not None:
        kw["ignore_index"] = ignore
    if rng.random() < 0.2:
        kw["validate_args"] = False
    if not multiclass and kind == "AUROC" and rng.random() < 0.1:
        kw["max_fpr"] = 0.5  # the generic path
    cls = getattr(C, f"{'Multiclass' if multiclass else 'Binary'}{kind}")
    return (lambda: cls(**kw)), {"task": "multiclass" if multiclass else "binary", "c": c, "ignore": ignore,
                                 "family": "ranking", "name": f"{cls.__name__}({kw})"}  # fmt: skip


def _generic(rng: random.Random) -> tuple[Callable[[], Metric], dict[str, Any]]:
    choices = {
        "MeanSquaredError": lambda: R.MeanSquaredError(),
        "MeanSquaredError2": lambda: R.MeanSquaredError(num_outputs=2),
        "MeanAbsoluteError": lambda: R.MeanAbsoluteError(),
        "PearsonCorrCoef": lambda: R.PearsonCorrCoef(),
        "SpearmanCorrCoef": lambda: R.SpearmanCorrCoef(),
        "KendallRankCorrCoef": lambda: R.KendallRankCorrCoef(),
        "ExplainedVariance": lambda: R.ExplainedVariance(),
        "R2Score": lambda: R.R2Score(),
        "CosineSimilarity": lambda: R.CosineSimilarity(reduction="mean"),
        "MeanMetric": lambda: MeanMetric(),
    }
    name = rng.choice(list(choices))
    return choices[name], {"task": "regression", "generic": name, "family": "generic", "name": name, "ignore": None}


def _data(info: dict[str, Any], n: int, rng: random.Random, logits: bool) -> tuple[Tensor, ...]:
    g = torch.Generator().manual_seed(rng.randrange(1 << 30))
    task, c, ignore = info["task"], info.get("c", 2), info.get("ignore")
    ties = rng.random() < 0.3
    if info["family"] == "generic":
        name = info["generic"]
        if name == "MeanSquaredError2" or name == "CosineSimilarity":
            x = torch.randn(n, 2, generator=g)
            return (rng.choice([1.0, -1.0]) * x + torch.randn(n, 2, generator=g), x)
        if name == "MeanMetric":
            return (torch.randn(n, generator=g), torch.rand(n, generator=g) + 0.1)
        x = torch.randn(n, generator=g)
        y = rng.choice([0.8, -0.8, 0.0]) * x + torch.randn(n, generator=g)
        if ties:
            y = y.round()
        return (y, x)
    if task == "multilabel":
        target = torch.randint(2, (n, c), generator=g)
        score = 0.4 * target + 0.6 * torch.rand(n, c, generator=g)
        if ties:
            score = (score * 4).round() / 4
        preds = torch.logit(score.clamp(0.01, 0.99)) * 3 if logits else score
    elif task == "multiclass":
        target = torch.randint(c, (n,), generator=g)
        raw = torch.randn(n, c, generator=g) + 1.2 * torch.nn.functional.one_hot(target, c)
        if ties:
            raw = raw.round()
        preds = raw if logits else raw.softmax(-1)
        if info["family"] == "confusion" and rng.random() < 0.3:
            preds = preds.argmax(-1)  # class labels
    else:
        target = torch.randint(2, (n,), generator=g)
        score = 0.35 * target + 0.65 * torch.rand(n, generator=g)
        if ties:
            score = (score * 5).round() / 5
        preds = torch.logit(score.clamp(0.01, 0.99)) * 2 if logits else score
        if info["family"] == "confusion" and rng.random() < 0.2:
            preds = (score > 0.5).long()
    if ignore is not None and rng.random() < 0.8:
        mask = torch.rand(target.shape, generator=g) < 0.15
        target = torch.where(mask, torch.full_like(target, ignore), target)
    if info["name"].startswith("BinaryAUROC") and rng.random() < 0.1:
        target = target.float()  # accepted by torchmetrics: BinaryAUROC never validates its tensors
    if rng.random() < 0.15 and n % 2 == 0 and task != "multilabel":
        # an extra dimension (N, ..., 2): torchmetrics flattens it into samples; the bootstrap then resamples
        # elements, which every check here treats alike (split and permute along dim 0)
        half = n // 2
        if preds.ndim == 2 and task == "multiclass":
            preds = preds.reshape(half, 2, preds.shape[1]).movedim(2, 1)  # (N/2, C, 2)
        else:
            preds = preds.reshape(half, 2)
        target = target.reshape(half, 2)
    return (preds, target)


def _split(n: int, rng: random.Random, allow_empty: bool) -> list[int]:
    sizes, left = [], n
    while left > 0:
        s = rng.choice([1, 2, 7, 16, 33, 64, left])
        if allow_empty and rng.random() < 0.1:
            sizes.append(0)
        s = min(s, left)
        sizes.append(s)
        left -= s
    return sizes


def _feed(
    metric: Metric,
    data: tuple[Tensor, ...],
    order: Tensor,
    sizes: list[int],
    groups: Tensor | None = None,
    preds_b: Tensor | None = None,
) -> Metric:
    start = 0
    for s in sizes:
        idx = order[start : start + s]
        args = [d[idx] for d in data]
        if preds_b is not None:  # PairedBootstrapMetric: (preds_a, preds_b, target)
            args = [args[0], preds_b[idx], *args[1:]]
        metric.update(*args, **({} if groups is None else {"groups": groups[idx]}))
        start += s
    return metric


def _same(a: dict[str, Tensor], b: dict[str, Tensor], rtol: float = 1e-6) -> bool:
    return all(torch.allclose(a[k].double(), b[k].double(), rtol=rtol, atol=1e-6, equal_nan=True) for k in a)


def run(num_configs: int, seed: int, verbose: bool, only: list[int] | None = None, variants: bool = False) -> Counter:
    counts: Counter = Counter()
    failures: list[str] = []
    for i in only if only else range(num_configs):
        rng = random.Random(seed * 1_000_003 + i)
        family = rng.choices(["confusion", "ranking", "generic"], weights=[5, 4, 1])[0]
        factory, info = {"confusion": _confusion, "ranking": _ranking, "generic": _generic}[family](rng)
        resampling = rng.choice(["multinomial", "poisson", "bayesian"])
        if family == "generic" and resampling == "bayesian" and info["generic"] != "MeanMetric":
            resampling = "multinomial"
        method = "percentile" if resampling == "bayesian" else rng.choice(["auto", "percentile", "basic", "normal",
                                                                           "bca"])  # fmt: skip
        if family == "generic" and method == "bca":
            method = "percentile"  # the brute-force jackknife: n re-evaluations, too slow for a wide run
        b = 20 if family == "generic" else rng.choice([50, 200])
        n = rng.choice([0, 1, 3, 10, 40, 150]) if family != "generic" else rng.choice([5, 12, 40])
        logits = family != "generic" and rng.random() < 0.25
        data = _data(info, n, rng, logits)
        n = data[1].shape[0]  # samples along dim 0 (an extra dimension halves them)
        allow_empty = True
        sizes = _split(n, rng, allow_empty)
        order = torch.arange(n)
        # grouped / paired variants from a stream of their own: the plain configurations do not change
        vrng = random.Random(seed * 7_000_003 + i + 1)
        variant = vrng.choices(["plain", "grouped", "paired"], weights=[2, 1, 1])[0] if variants else "plain"
        groups = preds_b = None
        if variant == "grouped":
            groups = torch.tensor([vrng.randrange(max(1, n // 3)) * 5 - 7 for _ in range(n)], dtype=torch.long)
        elif variant == "paired":
            other = _data(info, n, random.Random(seed * 5_000_011 + i), logits)
            if len(data) != 2 or other[0].shape != data[0].shape:
                variant = "plain"
            else:
                preds_b = other[0]
        wrapper = PairedBootstrapMetric if variant == "paired" else BootstrapMetric
        key = "difference" if variant == "paired" else "value"
        label = f"#{i} {info['name']} {resampling}/{method} n={n} logits={logits} {variant}"
        counts["configs"] += 1
        counts[f"variant {variant}"] += 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ref = factory()
                ref_err = None
                try:
                    _feed(ref, data, order, sizes)
                    ref_value = ref.compute()
                    if preds_b is not None:
                        ref_value = (ref_value, _feed(factory(), (preds_b, *data[1:]), order, sizes).compute())
                except Exception as err:  # torchmetrics raises: so must we (on update or compute)
                    ref_err = err
                if ref_err is not None and 0 in sizes and n > 0:
                    # many torchmetrics metrics reject an empty batch; BootstrapMetric accepts it as a batch of no
                    # samples: compare with torchmetrics fed the same batches without the empty ones
                    counts["empty batch torchmetrics rejects: compared without it"] += 1
                    ref, ref_err = factory(), None
                    try:
                        nonempty = [x for x in sizes if x > 0]
                        _feed(ref, data, order, nonempty)
                        ref_value = ref.compute()
                        if preds_b is not None:
                            ref_value = (ref_value, _feed(factory(), (preds_b, *data[1:]), order, nonempty).compute())
                    except Exception as err:
                        ref_err = err
                try:
                    metric = wrapper(factory(), num_bootstraps=b, method=method, resampling=resampling,
                                     seed=i)  # fmt: skip
                except ValueError as err:
                    if "Bayesian bootstrap is not available" not in str(err):
                        raise
                    counts["Bayesian refused: generic metric without sample weights (documented)"] += 1
                    continue
                try:
                    _feed(metric, data, order, sizes, groups, preds_b)
                    res = metric.compute()
                except Exception as err:
                    if ref_err is not None:
                        counts["both raise"] += 1
                        continue
                    if n == 0:  # torchmetrics may return something on no data where we raise: report it
                        failures.append(f"{label}: raised on no data: {err!r}")
                        counts["FAIL raises where torchmetrics does not"] += 1
                        continue
                    raise
                ign = info.get("ignore")
                all_ignored = n == 0 or (ign is not None and bool((data[1] == ign).all()))
                if ref_err is not None:
                    if all_ignored:
                        counts["no data (or all ignored): torchmetrics raises, we return NaN"] += 1
                        if not (torch.isnan(res["lower"]).all() and torch.isnan(res["upper"]).all()):
                            failures.append(f"{label}: no data but finite bounds")
                        continue
                    failures.append(f"{label}: torchmetrics raises {ref_err!r}, we do not")
                    counts["FAIL does not raise"] += 1
                    continue
                counts["value checked"] += 1
                pairs = [("value", ref_value)] if preds_b is None else list(zip(("value_a", "value_b"), ref_value))
                for name, want in pairs:
                    if not torch.allclose(res[name].double(), want.double(), rtol=1e-6, atol=1e-6, equal_nan=True):
                        failures.append(f"{label}: {name} {res[name]} != torchmetrics {want}")
                        counts["FAIL value"] += 1
                value = res[key]
                if bool(torch.isnan(res["std"]).all()):  # no sample to resample: NaN bounds by design
                    counts["no samples: NaN bounds"] += 1
                    if not (all_ignored and torch.isnan(res["lower"]).all() and torch.isnan(res["upper"]).all()):
                        failures.append(f"{label}: NaN std with samples present: {res}")
                        counts["FAIL NaN bounds with samples"] += 1
                    continue
                finite = torch.isfinite(value)
                if not bool(((res["lower"] <= value) & (value <= res["upper"]) | ~finite).all()):
                    failures.append(f"{label}: bounds {res['lower']} {res['upper']} miss value {value}")
                    counts["FAIL containment"] += 1
                else:
                    counts["containment checked"] += 1
                low, high = metric_range(factory())
                if preds_b is not None:  # the range of a difference
                    low, high = (low - high, high - low) if low is not None and high is not None else (None, None)
                lo_ok = low is None or bool((res["lower"][finite] >= low).all())
                hi_ok = high is None or bool((res["upper"][finite] <= high).all())
                if not (lo_ok and hi_ok):
                    failures.append(f"{label}: bounds outside range {low, high}: {res['lower']} {res['upper']}")
                    counts["FAIL range"] += 1
                if not logits and n > 0:
                    g = torch.Generator().manual_seed(i)
                    perm = torch.randperm(n, generator=g)
                    interleaved = torch.cat([torch.arange(0, n, 2), torch.arange(1, n, 2)])
                    for how, o in (("split", order), ("permutation", perm), ("interleaved", interleaved)):
                        other = wrapper(factory(), num_bootstraps=b, method=method, resampling=resampling,
                                        seed=i)  # fmt: skip
                        res2 = _feed(other, data, o, _split(n, rng, allow_empty), groups, preds_b).compute()
                        counts[f"invariance ({how}) checked"] += 1
                        # the generic path's point estimate sums batch by batch in float32: rounding
                        if not _same(res, res2, rtol=1e-5 if family == "generic" else 1e-6):
                            failures.append(f"{label}: not invariant under {how}: {res} vs {res2}")
                            counts[f"FAIL invariance ({how})"] += 1
                if n > 1 and len(sizes) > 1:
                    first = wrapper(factory(), num_bootstraps=b, method=method, resampling=resampling, seed=i)
                    first.persistent(True)
                    half = len(sizes) // 2
                    _feed(first, data, order[: sum(sizes[:half])], sizes[:half], groups, preds_b)
                    resumed = wrapper(factory(), num_bootstraps=b, method=method, resampling=resampling)
                    resumed.load_state_dict(copy.deepcopy(first.state_dict()))
                    start = sum(sizes[:half])
                    _feed(resumed, data, order[start:], sizes[half:], groups, preds_b)
                    counts["resume checked"] += 1
                    if not _same(res, resumed.compute()):
                        failures.append(f"{label}: resumed result differs")
                        counts["FAIL resume"] += 1
            except Exception:
                failures.append(f"{label}: crashed\n{traceback.format_exc()}")
                counts["FAIL crash"] += 1
    for f in failures if verbose else failures[:30]:
        print(f)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--only", type=int, nargs="*", help="run only these configuration indices")
    parser.add_argument("--variants", action="store_true", help="also grouped and paired configurations")
    args = parser.parse_args()
    torch.set_num_threads(1)
    counts = run(args.configs, args.seed, args.verbose, args.only, args.variants)
    for key, value in sorted(counts.items()):
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
