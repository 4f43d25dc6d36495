"""Tests of the confusion-matrix bootstrap engine (``lightning_ci/bootstrap/confusion.py``)."""

from __future__ import annotations

import copy
import math
import warnings
from typing import Callable

import pytest
import torch
from torchmetrics import Accuracy, F1Score, Metric
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryAUROC,
    BinaryCohenKappa,
    BinaryF1Score,
    BinaryFBetaScore,
    BinaryJaccardIndex,
    BinaryMatthewsCorrCoef,
    BinaryPrecision,
    BinaryRecall,
    BinarySpecificity,
    MulticlassAccuracy,
    MulticlassCohenKappa,
    MulticlassF1Score,
    MulticlassFBetaScore,
    MulticlassJaccardIndex,
    MulticlassMatthewsCorrCoef,
    MulticlassPrecision,
    MulticlassRecall,
    MulticlassSpecificity,
    MultilabelAccuracy,
    MultilabelF1Score,
    MultilabelFBetaScore,
    MultilabelJaccardIndex,
    MultilabelMatthewsCorrCoef,
    MultilabelPrecision,
    MultilabelRecall,
    MultilabelSpecificity,
)

from lightning_ci.bootstrap.confusion import (
    ConfusionEngine,
    _dirichlet_rows,
    _multinomial_rows,
    confusion_metric_from_counts,
)

C = 4  # classes
L = 3  # labels
AVERAGES = ("micro", "macro", "weighted", "none", None)


# --------------------------------------------------------------------------------------------------
# the metric cases
# --------------------------------------------------------------------------------------------------
def _cases() -> list[tuple[str, str, Callable[[], Metric]]]:
    """(id, task, factory) for every metric x task x option the engine supports."""
    cases: list[tuple[str, str, Callable[[], Metric]]] = []

    def add(name: str, task: str, factory: Callable[[], Metric]) -> None:
        cases.append((name, task, factory))

    # binary
    add("bin-acc", "binary", lambda: BinaryAccuracy())
    add("bin-acc-ignore", "binary", lambda: BinaryAccuracy(ignore_index=-1))
    add("bin-acc-thr", "binary", lambda: BinaryAccuracy(threshold=0.3))
    add("bin-prec", "binary", lambda: BinaryPrecision())
    add("bin-prec-zd1", "binary", lambda: BinaryPrecision(zero_division=1))
    add("bin-rec", "binary", lambda: BinaryRecall(ignore_index=-1))
    add("bin-f1", "binary", lambda: BinaryF1Score())
    add("bin-f2", "binary", lambda: BinaryFBetaScore(beta=2.0))
    add("bin-spec", "binary", lambda: BinarySpecificity())
    add("bin-jac", "binary", lambda: BinaryJaccardIndex())
    add("bin-jac-ignore", "binary", lambda: BinaryJaccardIndex(ignore_index=-1))
    add("bin-mcc", "binary", lambda: BinaryMatthewsCorrCoef())
    add("bin-kappa", "binary", lambda: BinaryCohenKappa())
    add("bin-kappa-lin", "binary", lambda: BinaryCohenKappa(weights="linear"))
    # multiclass
    stat = {
        "acc": lambda **k: MulticlassAccuracy(num_classes=C, **k),
        "prec": lambda **k: MulticlassPrecision(num_classes=C, **k),
        "rec": lambda **k: MulticlassRecall(num_classes=C, **k),
        "f1": lambda **k: MulticlassF1Score(num_classes=C, **k),
        "fhalf": lambda **k: MulticlassFBetaScore(beta=0.5, num_classes=C, **k),
        "spec": lambda **k: MulticlassSpecificity(num_classes=C, **k),
        "jac": lambda **k: MulticlassJaccardIndex(num_classes=C, **k),
    }
    for name, make in stat.items():
        for avg in AVERAGES:
            add(f"mc-{name}-{avg}", "multiclass", lambda make=make, avg=avg: make(average=avg))
        for avg in ("micro", "macro", "weighted"):
            add(f"mc-{name}-{avg}-ign0", "multiclass", lambda make=make, avg=avg: make(average=avg, ignore_index=0))
        add(f"mc-{name}-macro-ign-100", "multiclass", lambda make=make: make(average="macro", ignore_index=-100))
    add("mc-prec-macro-zd1", "multiclass", lambda: MulticlassPrecision(num_classes=C, zero_division=1))
    add("mc-jac-none-zd1", "multiclass", lambda: MulticlassJaccardIndex(num_classes=C, average=None, zero_division=1))
    add("mc-mcc", "multiclass", lambda: MulticlassMatthewsCorrCoef(num_classes=C))
    add("mc-mcc-ign", "multiclass", lambda: MulticlassMatthewsCorrCoef(num_classes=C, ignore_index=-100))
    add("mc2-mcc", "multiclass", lambda: MulticlassMatthewsCorrCoef(num_classes=2))
    for w in (None, "linear", "quadratic"):
        add(f"mc-kappa-{w}", "multiclass", lambda w=w: MulticlassCohenKappa(num_classes=C, weights=w))
    add("mc-task-wrapper", "multiclass", lambda: Accuracy(task="multiclass", num_classes=C, average="macro"))
    # multilabel
    stat_ml = {
        "acc": lambda **k: MultilabelAccuracy(num_labels=L, **k),
        "prec": lambda **k: MultilabelPrecision(num_labels=L, **k),
        "rec": lambda **k: MultilabelRecall(num_labels=L, **k),
        "f1": lambda **k: MultilabelF1Score(num_labels=L, **k),
        "f2": lambda **k: MultilabelFBetaScore(beta=2.0, num_labels=L, **k),
        "spec": lambda **k: MultilabelSpecificity(num_labels=L, **k),
        "jac": lambda **k: MultilabelJaccardIndex(num_labels=L, **k),
    }
    for name, make in stat_ml.items():
        for avg in AVERAGES:
            add(f"ml-{name}-{avg}", "multilabel", lambda make=make, avg=avg: make(average=avg))
        add(f"ml-{name}-macro-ign", "multilabel", lambda make=make: make(average="macro", ignore_index=-1))
    add("ml-mcc", "multilabel", lambda: MultilabelMatthewsCorrCoef(num_labels=L))
    add("ml-mcc-ign", "multilabel", lambda: MultilabelMatthewsCorrCoef(num_labels=L, ignore_index=-1))
    add("ml-task-wrapper", "multilabel", lambda: F1Score(task="multilabel", num_labels=L, average="micro"))
    return cases


CASES = _cases()
CASE_IDS = [c[0] for c in CASES]


def _ignore_value(metric: Metric):
    return getattr(metric, "ignore_index", None)


def make_data(
    task: str, n: int, seed: int, ignore=None, extra_dim: bool = False, classes: int = C
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random predictions correlated with the targets; for C > 2 the last class never occurs as a target."""
    g = torch.Generator().manual_seed(seed)
    shape = (n, 2) if extra_dim else (n,)
    if task == "binary":
        target = (torch.rand(shape, generator=g) < 0.4).long()
        preds = (0.35 * target + 0.65 * torch.rand(shape, generator=g)).clamp(0, 1)
    elif task == "multiclass":
        target = torch.randint(classes - 1 if classes > 2 else 2, shape, generator=g)
        logits = torch.randn(*shape, classes, generator=g) + 1.5 * torch.nn.functional.one_hot(target, classes)
        preds = logits.movedim(-1, 1)  # (N, C, ...)
    else:
        target = (torch.rand(n, L, *shape[1:], generator=g) < 0.4).long()
        preds = torch.randn(n, L, *shape[1:], generator=g) + 1.2 * (2 * target - 1)  # logits
    if ignore is not None:
        mask = torch.rand(target.shape, generator=g) < 0.1
        target = torch.where(mask, torch.full_like(target, ignore), target)
    return preds, target


def _batches(preds: torch.Tensor, target: torch.Tensor, sizes: tuple[int, ...]):
    start = 0
    for size in sizes:
        yield preds[start : start + size], target[start : start + size]
        start += size


def _engine(metric: Metric, resampling: str = "multinomial", b: int = 64, seed: int = 0, jack: bool = False):
    return ConfusionEngine(copy.deepcopy(metric), b, resampling, seed, jack)


# --------------------------------------------------------------------------------------------------
# supports
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_supports_every_case(case):
    assert ConfusionEngine.supports(case[2](), "multinomial")


@pytest.mark.parametrize(
    "metric",
    [
        MulticlassAccuracy(num_classes=C, top_k=2),
        BinaryAccuracy(multidim_average="samplewise"),
        MultilabelF1Score(num_labels=L, multidim_average="samplewise"),
        BinaryAUROC(),
        type("MyAccuracy", (BinaryAccuracy,), {})(),
    ],
    ids=["top_k", "samplewise", "ml-samplewise", "auroc", "subclass"],
)
def test_supports_false(metric):
    assert not ConfusionEngine.supports(metric, "multinomial")


def test_supports_unknown_resampling_and_constructor_error():
    assert not ConfusionEngine.supports(BinaryAccuracy(), "jackknife")
    with pytest.raises(ValueError, match="base_metric"):
        ConfusionEngine(BinaryAUROC(), 10, "multinomial", 0, False)


# --------------------------------------------------------------------------------------------------
# value == unwrapped metric; replicates shaped [B, *S]
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_value_equals_unwrapped_metric(case):
    _, task, factory = case
    metric = factory()
    classes = getattr(metric, "num_classes", C)
    preds, target = make_data(task, 57, seed=1, ignore=_ignore_value(metric), classes=classes)
    engine = _engine(metric, b=32)
    for p, t in _batches(preds, target, (20, 1, 36)):
        metric.update(p, t)
        engine.update(p, t)
    expected = metric.compute()
    out = engine.compute()
    torch.testing.assert_close(out.value, expected, rtol=0, atol=0, equal_nan=True)
    assert out.replicates.shape == (32, *expected.shape)
    assert out.replicates.dtype == torch.float32
    assert out.jackknife is None and out.jackknife_weights is None


@pytest.mark.parametrize("resampling", ["poisson", "bayesian"])
@pytest.mark.parametrize(
    "case", [c for c in CASES if c[0].endswith(("macro", "none", "mcc", "kappa", "-acc"))], ids=lambda c: c[0]
)
def test_value_equals_unwrapped_metric_other_modes(case, resampling):
    _, task, factory = case
    metric = factory()
    classes = getattr(metric, "num_classes", C)
    preds, target = make_data(task, 40, seed=2, ignore=_ignore_value(metric), classes=classes)
    engine = _engine(metric, resampling, b=16, jack=True)
    for p, t in _batches(preds, target, (13, 27)):
        metric.update(p, t)
        engine.update(p, t)
    out = engine.compute()
    torch.testing.assert_close(out.value, metric.compute(), rtol=0, atol=0, equal_nan=True)
    assert out.replicates.shape == (16, *out.value.shape)


@pytest.mark.parametrize(
    ("task", "factory"),
    [
        ("binary", lambda: BinaryF1Score(ignore_index=-1)),
        ("multiclass", lambda: MulticlassRecall(num_classes=C, average="weighted")),
        ("multilabel", lambda: MultilabelPrecision(num_labels=L, average="macro")),
    ],
)
def test_value_with_extra_dimensions(task, factory):
    metric = factory()
    preds, target = make_data(task, 30, seed=3, ignore=_ignore_value(metric), extra_dim=True)
    engine = _engine(metric, jack=True)
    metric.update(preds, target)
    engine.update(preds, target)
    out = engine.compute()
    torch.testing.assert_close(out.value, metric.compute(), rtol=0, atol=0)
    assert int(out.jackknife_weights.sum()) == target.numel() // (L if task == "multilabel" else 1)


@pytest.mark.parametrize(
    "factory", [lambda: BinaryJaccardIndex(ignore_index=-1), lambda: BinaryF1Score(ignore_index=-1)]
)
def test_binary_logit_detection_on_kept_elements(factory):
    """Confusion-matrix metrics drop ignored elements before deciding that preds are logits."""
    preds = torch.tensor([0.2, 0.7, 0.6, 0.9, 5.0, -3.0])
    target = torch.tensor([0, 1, 0, 1, -1, -1])
    metric = factory()
    engine = _engine(metric)
    metric.update(preds, target)
    engine.update(preds, target)
    torch.testing.assert_close(engine.compute().value, metric.compute(), rtol=0, atol=0)


# --------------------------------------------------------------------------------------------------
# the batched formulas equal torchmetrics on random and degenerate confusion matrices
# --------------------------------------------------------------------------------------------------
def _random_confmats(task: str, seed: int) -> torch.Tensor:
    """A batch of integer confusion matrices: random ones and degenerate ones."""
    g = torch.Generator().manual_seed(seed)
    if task == "multilabel":
        k_shape = (L, 2, 2)
        per_label = True
    else:
        k = 2 if task == "binary" else C
        k_shape = (k, k)
        per_label = False
    mats = [torch.randint(0, 6, k_shape, generator=g) for _ in range(12)]
    zero = torch.zeros(k_shape, dtype=torch.long)
    mats.append(zero.clone())  # no data at all
    for cell in range(min(zero.numel(), 8)):  # one non-empty cell: all one class, all wrong, ...
        m = zero.clone().flatten()
        m[cell] = 3
        mats.append(m.reshape(k_shape))
    m = torch.randint(1, 5, k_shape, generator=g)
    if per_label:
        m[0] = 0  # a label with no data
        m[1, 1] = 0  # a label that is never positive
    else:
        m[0, :] = 0  # a class absent from the targets
        m[:, -1] = 0  # a class never predicted
    mats.append(m)
    perfect = torch.tensor([[[2, 0], [0, 2]]] * L) if per_label else torch.diag_embed(torch.full(k_shape[:-1], 2))
    mats.append(perfect)
    if per_label:  # every label must see the same number of rows: pad each label's tn cell
        mats = [x.clone() for x in mats]
        for x in mats:
            n = x.reshape(L, 4).sum(-1).max()
            x[:, 0, 0] += n - x.reshape(L, 4).sum(-1)
    return torch.stack(mats)


def _repeat(values: list[int], counts: torch.Tensor) -> torch.Tensor:
    return torch.tensor([v for v, c in zip(values, counts.tolist()) for _ in range(c)], dtype=torch.long)


def _data_from_confmat(task: str, cm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer predictions and targets realising a confusion matrix (rows = target)."""
    if task == "multilabel":
        cols_p, cols_t = [], []
        for lab in range(L):
            counts = cm[lab].flatten()  # tn, fp, fn, tp
            cols_t.append(_repeat([0, 0, 1, 1], counts))
            cols_p.append(_repeat([0, 1, 0, 1], counts))
        return torch.stack(cols_p, 1), torch.stack(cols_t, 1)
    k = cm.shape[0]
    codes = _repeat(list(range(k * k)), cm.flatten())
    return codes % k, codes // k


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_batched_formula_equals_torchmetrics(case):
    _, task, factory = case
    ref = factory()
    if task == "multiclass" and ref.num_classes == 2:
        mats = _random_confmats("binary", seed=5)
    else:
        mats = _random_confmats(task, seed=len(case[0]))
    ignore = _ignore_value(ref)
    if task == "multiclass" and ignore is not None and 0 <= ignore < C:
        mats[:, ignore, :] = 0  # elements whose target is ``ignore_index`` never reach the counts
    ours = confusion_metric_from_counts(ref, mats.float())
    assert ours.dtype == torch.float32
    for i, cm in enumerate(mats):
        ref.reset()
        preds, target = _data_from_confmat(task, cm)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # compute before update, for the empty matrix
            if preds.shape[0] > 0:
                ref.update(preds, target)
            expected = ref.compute()
        torch.testing.assert_close(
            ours[i],
            expected.float().reshape(ours[i].shape),
            rtol=1e-5,  # float32 rounding of differently ordered sums
            atol=1e-6,
            equal_nan=True,
            msg=lambda m, cm=cm: f"{m}\nconfusion matrix:\n{cm}",
        )


# --------------------------------------------------------------------------------------------------
# multinomial sampling
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("counts", [[5, 0, 17, 1, 77], [1] * 600], ids=["binomials", "per-sample"])
def test_multinomial_rows_moments(counts):
    counts = torch.tensor(counts)
    n, b = int(counts.sum()), 4000
    gen = torch.Generator().manual_seed(11)
    x = _multinomial_rows(counts, b, gen)
    assert x.shape == (b, counts.numel())
    assert torch.equal(x.sum(-1), torch.full((b,), float(n), dtype=torch.float64))
    assert torch.equal(x, x.round()) and (x >= 0).all()
    assert (x[:, counts == 0] == 0).all()
    p = counts.double() / n
    # mean of B multinomial counts: sd = sqrt(n p (1-p) / B); 5 sd, plus a float floor for p = 0
    sd_mean = (n * p * (1 - p) / b).sqrt()
    assert ((x.mean(0) - n * p).abs() <= 5 * sd_mean + 1e-12).all()
    # variance n p (1-p); its estimate over B draws has relative sd ~ sqrt(2 / B) (~2.2%); allow 12%
    var = x.var(0)
    target_var = n * p * (1 - p)
    assert ((var - target_var).abs() <= 0.12 * target_var + 1e-12).all()
    # the covariance of two cells is -n p_i p_j
    i = int(p.argmax())
    j = (i + 1) % counts.numel()
    cov = float(((x[:, i] - x[:, i].mean()) * (x[:, j] - x[:, j].mean())).mean())
    # the sample covariance has sd about sqrt(var_i var_j / B) (+ cov² / B, negligible); 5 sd
    assert abs(cov + n * float(p[i] * p[j])) <= 5 * math.sqrt(float(target_var[i] * target_var[j]) / b)


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_multinomial_engine_sums_and_means(task):
    metric = BinaryAccuracy() if task == "binary" else MulticlassF1Score(num_classes=C)
    preds, target = make_data(task, 200, seed=4)
    engine = _engine(metric, b=3000)
    engine.update(preds, target)
    cells = engine.replicate_cells()
    counts = engine.counts[:-1].double()
    n = float(counts.sum())
    assert torch.equal(cells.sum(-1), torch.full((3000,), n, dtype=torch.float64))
    p = counts / n
    sd_mean = (n * p * (1 - p) / 3000).sqrt()  # Monte Carlo sd of the mean replicate count
    assert ((cells.mean(0) - counts).abs() <= 5 * sd_mean + 1e-12).all()


@pytest.mark.parametrize("resampling", ["multinomial", "bayesian"])
@pytest.mark.parametrize(
    ("task", "factory"),
    [
        ("binary", lambda: BinaryMatthewsCorrCoef(ignore_index=-1)),
        ("multiclass", lambda: MulticlassF1Score(num_classes=C, average=None)),
        ("multilabel", lambda: MultilabelJaccardIndex(num_labels=L, average="weighted", ignore_index=-1)),
    ],
)
def test_seed_and_batch_invariance(task, factory, resampling):
    metric = factory()
    preds, target = make_data(task, 48, seed=5, ignore=_ignore_value(metric))
    one = _engine(metric, resampling, b=200, seed=3, jack=True)
    one.update(preds, target)
    ref = one.compute()

    single = _engine(metric, resampling, b=200, seed=3, jack=True)
    perm = torch.randperm(48, generator=torch.Generator().manual_seed(0))
    for i in perm:  # one sample at a time, shuffled
        single.update(preds[i : i + 1], target[i : i + 1])
    out = single.compute()
    torch.testing.assert_close(out.replicates, ref.replicates, rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(out.jackknife, ref.jackknife, rtol=0, atol=0, equal_nan=True)
    assert torch.equal(out.jackknife_weights, ref.jackknife_weights)

    same = _engine(metric, resampling, b=200, seed=3)
    same.update(preds, target)
    torch.testing.assert_close(same.compute().replicates, ref.replicates, rtol=0, atol=0, equal_nan=True)
    other = _engine(metric, resampling, b=200, seed=4)
    other.update(preds, target)
    assert not torch.equal(other.compute().replicates.nan_to_num(), ref.replicates.nan_to_num())


def test_multilabel_multinomial_resamples_rows():
    """Rows are resampled whole: two labels that are always equal stay equal in every replicate."""
    g = torch.Generator().manual_seed(6)
    target = (torch.rand(80, generator=g) < 0.5).long()
    preds = (torch.rand(80, generator=g) < 0.7).long() * target + (1 - target) * (torch.rand(80, generator=g) < 0.2)
    target2 = torch.stack([target, target, 1 - target], 1)
    preds2 = torch.stack([preds, preds, 1 - preds], 1)
    engine = _engine(MultilabelAccuracy(num_labels=3, average=None), b=500)
    engine.update(preds2, target2)
    cells = engine.replicate_cells().reshape(500, 3, 4)
    assert torch.equal(cells[:, 0], cells[:, 1])
    assert torch.equal(cells[:, 2], cells[:, 0].flip(-1))  # label 2 swaps tn<->tp and fp<->fn
    assert torch.equal(cells.sum(-1), torch.full((500, 3), 80.0, dtype=torch.float64))


@pytest.mark.parametrize("resampling", ["multinomial", "bayesian"])
def test_draws_in_chunks_of_replicates(monkeypatch, resampling):
    """With many distinct rows the per-atom weights are drawn in chunks of B; still exact and invariant."""
    from lightning_ci.bootstrap import confusion

    monkeypatch.setattr(confusion, "_DRAW_ELEMENTS", 500)  # 150 replicates x ~40 rows -> chunks of 12
    metric = MultilabelF1Score(num_labels=6, average="macro")
    g = torch.Generator().manual_seed(15)
    target = torch.randint(2, (60, 6), generator=g)
    preds = torch.rand(60, 6, generator=g)
    one = _engine(metric, resampling, b=150, seed=1)
    one.update(preds, target)
    cells = one.replicate_cells()
    torch.testing.assert_close(cells.reshape(150, 6, 4).sum(-1), torch.full((150, 6), 60.0, dtype=torch.float64))
    ref = one.compute()
    assert ref.replicates.shape == (150,)
    many = _engine(metric, resampling, b=150, seed=1)
    for i in range(0, 60, 7):
        many.update(preds[i : i + 7], target[i : i + 7])
    torch.testing.assert_close(many.compute().replicates, ref.replicates, rtol=0, atol=0, equal_nan=True)
    assert ref.replicates.std() > 0


# --------------------------------------------------------------------------------------------------
# jackknife
# --------------------------------------------------------------------------------------------------
def _codes_for_test(task: str, metric: Metric, preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The atom key of every sample, computed independently of the engine (ignored = last)."""
    ign = _ignore_value(metric)
    if task == "binary":
        p = (preds > 0.5).long()
        key = 2 * target + p
        return torch.where(target == ign, 4, key) if ign is not None else key
    if task == "multiclass":
        p = preds.argmax(1)
        key = target * C + p
        return torch.where(target == ign, C * C, key) if ign is not None else key
    p = (preds > 0).long()  # logits: sigmoid(x) > 0.5
    key = torch.where(target == ign, 4, 2 * target + p) if ign is not None else 2 * target + p
    return (key * 5 ** torch.arange(L - 1, -1, -1)).sum(-1)  # lexicographic order of the rows


@pytest.mark.parametrize(
    ("task", "factory"),
    [
        ("binary", lambda: BinaryF1Score()),
        ("binary", lambda: BinaryMatthewsCorrCoef(ignore_index=-1)),
        ("multiclass", lambda: MulticlassPrecision(num_classes=C, average="macro")),
        ("multiclass", lambda: MulticlassRecall(num_classes=C, average=None, ignore_index=1)),
        ("multiclass", lambda: MulticlassCohenKappa(num_classes=C, weights="quadratic")),
        ("multiclass", lambda: MulticlassJaccardIndex(num_classes=C, average="micro")),
        ("multiclass", lambda: MulticlassJaccardIndex(num_classes=C, average="macro", ignore_index=0)),
        ("multiclass", lambda: MulticlassMatthewsCorrCoef(num_classes=C)),
        ("multiclass", lambda: MulticlassFBetaScore(beta=2.0, num_classes=C, average="weighted")),
        ("multilabel", lambda: MultilabelF1Score(num_labels=L, average="macro")),
        ("multilabel", lambda: MultilabelSpecificity(num_labels=L, average=None, ignore_index=-1)),
    ],
)
@pytest.mark.parametrize("resampling", ["multinomial", "poisson"])
def test_jackknife_equals_brute_force(task, factory, resampling):
    metric = factory()
    n = 23
    preds, target = make_data(task, n, seed=7, ignore=_ignore_value(metric))
    engine = _engine(metric, resampling, b=8, jack=True)
    engine.update(preds[:10], target[:10])
    engine.update(preds[10:], target[10:])
    out = engine.compute()
    assert int(out.jackknife_weights.sum()) == n
    assert out.jackknife.shape == (out.jackknife_weights.numel(), *out.value.shape)

    keys = _codes_for_test(task, metric, preds, target)
    distinct, counts = torch.unique(keys, return_counts=True)
    assert torch.equal(out.jackknife_weights, counts)
    for i in range(n):
        keep = torch.arange(n) != i
        ref = factory()
        ref.update(preds[keep], target[keep])
        j = int((distinct == keys[i]).nonzero())
        torch.testing.assert_close(
            out.jackknife[j], ref.compute().float().reshape(out.value.shape), rtol=1e-5, atol=1e-6, equal_nan=True
        )


# --------------------------------------------------------------------------------------------------
# Bayesian and Poisson modes
# --------------------------------------------------------------------------------------------------
def test_dirichlet_rows_moments():
    counts = torch.tensor([3, 0, 10, 1, 26])
    b, n = 4000, 40.0
    x = _dirichlet_rows(counts, b, torch.Generator().manual_seed(8))
    torch.testing.assert_close(x.sum(-1), torch.full((b,), n, dtype=torch.float64))
    assert (x[:, 1] == 0).all() and (x[:, counts > 0] > 0).all()
    a = counts.double()
    a0 = a.sum()
    mean = a / a0
    var = a * (a0 - a) / (a0**2 * (a0 + 1))  # Dirichlet variance of each proportion
    p = x / n
    assert ((p.mean(0) - mean).abs() <= 5 * (var / b).sqrt() + 1e-12).all()  # 5 Monte Carlo sd
    assert ((p.var(0) - var).abs() <= 0.15 * var + 1e-12).all()  # rel. sd of a variance ~ sqrt(2/B)


def test_bayesian_engine_dirichlet_means():
    preds, target = make_data("multiclass", 120, seed=9)
    engine = _engine(MulticlassAccuracy(num_classes=C), "bayesian", b=3000)
    engine.update(preds, target)
    cells = engine.replicate_cells()
    counts = engine.counts[:-1].double()
    n = float(counts.sum())
    torch.testing.assert_close(cells.sum(-1), torch.full((3000,), n, dtype=torch.float64))
    assert (cells[:, counts == 0] == 0).all()
    mean = counts / n
    var = counts * (n - counts) / (n**2 * (n + 1))
    assert (((cells / n).mean(0) - mean).abs() <= 5 * (var / 3000).sqrt() + 1e-12).all()


@pytest.mark.parametrize(
    ("task", "factory", "sizes"),
    [
        ("binary", lambda: BinaryAccuracy(), (100, 3, 97)),  # batches larger and smaller than 4 cells
        ("multiclass", lambda: MulticlassF1Score(num_classes=C), (5, 150, 45)),
        ("multilabel", lambda: MultilabelF1Score(num_labels=L), (60, 140)),
    ],
)
def test_poisson_state_shape_and_mean(task, factory, sizes):
    b = 2000
    metric = factory()
    engine = _engine(metric, "poisson", b=b)
    preds, target = make_data(task, sum(sizes), seed=10)
    for p, t in _batches(preds, target, sizes):
        engine.update(p, t)
        metric.update(p, t)
    k = {"binary": 4, "multiclass": C * C, "multilabel": 4 * L}[task]
    cells = engine.replicate_cells()
    assert cells.shape == (b, k)
    # multilabel: Poisson(m) per distinct row pattern at compute, so each per-label cell is Poisson(count) too
    counts = (engine.counts[:k] if task != "multilabel" else engine._atoms()[0]).double()
    # each cell count is Poisson(m): the mean of B of them has sd sqrt(m / B)
    assert ((cells.mean(0) - counts).abs() <= 5 * (counts / b).sqrt() + 1e-12).all()
    # and its variance is m too: the sample variance of B Poisson(m) has sd ~ m sqrt(2 / B) (+ m^0.5 / B)
    var_tol = 5 * (counts * (2 / b) ** 0.5 + counts.sqrt() / b) + 1e-12
    assert ((cells.var(0) - counts).abs() <= var_tol).all()
    out = engine.compute()
    torch.testing.assert_close(out.value, metric.compute(), rtol=0, atol=0)
    assert out.replicates.shape == (b, *out.value.shape)


def test_poisson_multilabel_shares_weights_across_labels():
    target = torch.ones(50, 2, dtype=torch.long)
    preds = torch.ones(50, 2, dtype=torch.long)
    engine = _engine(MultilabelRecall(num_labels=2), "poisson", b=300)
    for i in range(0, 50, 7):
        engine.update(preds[i : i + 7], target[i : i + 7])
    tp = engine.replicate_cells().reshape(300, 2, 4)[..., 3]
    assert torch.equal(tp[:, 0], tp[:, 1])  # one weight per sample, shared by its labels
    assert tp[:, 0].var() > 10  # Var Poisson(50) = 50, so the weights do vary


# --------------------------------------------------------------------------------------------------
# RNG hygiene, reset, empty states
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("resampling", ["multinomial", "bayesian", "poisson"])
@pytest.mark.parametrize(
    ("task", "factory"),
    [
        ("binary", lambda: BinaryAccuracy()),
        ("multiclass", lambda: MulticlassCohenKappa(num_classes=C)),
        ("multilabel", lambda: MultilabelMatthewsCorrCoef(num_labels=L)),
    ],
)
def test_global_rng_untouched(task, factory, resampling):
    preds, target = make_data(task, 30, seed=12)
    engine = _engine(factory(), resampling, b=50, jack=True)
    state = torch.get_rng_state()
    engine.update(preds, target)
    engine.compute()
    assert torch.equal(torch.get_rng_state(), state)


def test_reset_gives_fresh_state_and_same_poisson_replicates():
    preds, target = make_data("binary", 40, seed=13)
    engine = _engine(BinaryAccuracy(), "poisson", b=20)
    engine.update(preds, target)
    first = engine.compute().replicates
    engine.reset()
    assert int(engine.counts.sum()) == 0 and not hasattr(engine, "poisson_counts")
    engine.update(preds, target)
    torch.testing.assert_close(engine.compute().replicates, first, rtol=0, atol=0)


def test_task_wrapper_metric_supported_and_pickles():
    import pickle

    metric = Accuracy(task="binary")
    engine = _engine(metric, b=10)
    preds, target = make_data("binary", 20, seed=14)
    engine.update(preds, target)
    clone = pickle.loads(pickle.dumps(engine))
    torch.testing.assert_close(clone.compute().replicates, engine.compute().replicates)


def test_multinomial_speed_many_replicates():
    """B = 10,000 replicates of 4 cells are a handful of binomial calls (no loop over B)."""
    import time

    counts = torch.tensor([400, 37, 51, 512])
    gen = torch.Generator().manual_seed(0)
    _multinomial_rows(counts, 10_000, gen)  # warm-up
    start = time.perf_counter()
    x = _multinomial_rows(counts, 10_000, gen)
    elapsed = time.perf_counter() - start
    assert x.shape == (10_000, 4)
    assert elapsed < 0.5, f"{elapsed=}"  # about 5 ms on 2 CPU cores; generous for loaded CI machines
    assert math.isclose(float(x.sum()), 10_000 * 1000)


def test_poisson_binary_multiclass_independent_of_batching():
    """Poisson(count) per cell at compute: the same replicates whatever the batching (and DDP split)."""
    preds, target = make_data("multiclass", 90, seed=21)
    one = _engine(MulticlassF1Score(num_classes=C), "poisson", b=200)
    many = _engine(MulticlassF1Score(num_classes=C), "poisson", b=200)
    one.update(preds, target)
    for i in range(0, 90, 7):
        many.update(preds[i : i + 7], target[i : i + 7])
    torch.testing.assert_close(one.compute().replicates, many.compute().replicates, rtol=0, atol=0)
