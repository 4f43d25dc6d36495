"""``BootstrapMetric``: bootstrap confidence bounds for any torchmetrics metric, exact and fast where possible."""

from __future__ import annotations

import importlib
import secrets
import warnings
from collections.abc import Sequence
from copy import deepcopy
from typing import Any, ClassVar, Optional, Union

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.wrappers.abstract import WrapperMetric

from lightning_ci.bootstrap._engine import (
    GROUP_STATES,
    RESAMPLING_MODES,
    BootstrapEngine,
    EngineOutput,
    GroupsError,
)
from lightning_ci.bootstrap._ranges import metric_range
from lightning_ci.bootstrap.generic import GenericEngine
from lightning_ci.intervals import INTERVAL_METHODS, _rank_zero_warn, bootstrap_std, confidence_interval

__all__ = ["BootstrapMetric", "to_log_dict"]

#: named priors of the posterior mode, as pseudo-counts per confusion cell (``"table"`` depends on the table)
PRIORS = ("table", "jeffreys", "uniform")
_NAMED_PRIORS = {"jeffreys": 0.5, "uniform": 1.0}
#: the prior used when ``prior`` is not given (chosen by the boundary study, docs/validation.md Part 4)
DEFAULT_PRIOR = "table"
#: ``method="auto"`` uses the posterior when the smallest per-class TP/FN/FP count is below this (rule stated
#: before the boundary study: the textbook "at least 5 events" of the normal approximation)
AUTO_SMALL_COUNT = 5

_FAST_ENGINES = (
    ("lightning_ci.bootstrap.confusion", "ConfusionEngine"),
    ("lightning_ci.bootstrap.ranking", "RankingEngine"),
)


def _fast_engine_classes() -> list[type[BootstrapEngine]]:
    """The fast engines in priority order, imported lazily (a module that is not there is skipped)."""
    classes = []
    for module_name, class_name in _FAST_ENGINES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name == module_name:
                continue
            raise
        cls = getattr(module, class_name, None)
        if cls is not None:
            classes.append(cls)
    return classes


def select_engine(base_metric: Metric, resampling: str, paired: bool = False) -> type[BootstrapEngine]:
    """The engine class used for ``base_metric``: confusion family, then ranking family, then generic."""
    for cls in _fast_engine_classes():
        supports = cls.supports_paired if paired and hasattr(cls, "supports_paired") else cls.supports
        if supports(base_metric, resampling):
            return cls
    return GenericEngine


def _check_prior(prior: Any) -> None:
    """Validate the ``prior`` argument of :class:`BootstrapMetric` (None, a named prior or a number >= 0)."""
    if prior is None:
        return
    if isinstance(prior, str):
        if prior not in PRIORS:
            raise ValueError(
                f"Expected argument `prior` to be None, one of {PRIORS} or a pseudo-count >= 0 but received {prior!r}"
            )
        return
    if isinstance(prior, bool) or not isinstance(prior, (int, float)):
        raise TypeError(
            f"Expected argument `prior` to be None, one of {PRIORS} or a pseudo-count >= 0 but received {prior!r}"
        )
    if not (prior >= 0 and prior < float("inf")):
        raise ValueError(f"Expected argument `prior` to be a finite pseudo-count >= 0 but received {prior!r}")


def _prior_value(prior: Any, cells_per_table: int) -> float:
    """Pseudo-count per cell of a named or numeric prior (``"table"``: one pseudo-count per table)."""
    if prior == "table":
        return 1.0 / cells_per_table
    if isinstance(prior, str):
        return _NAMED_PRIORS[prior]
    return float(prior)


def _result_value(val: Any) -> Tensor:
    return val["value"] if isinstance(val, dict) else val


class BootstrapMetric(WrapperMetric):
    r"""Bootstrap confidence bounds for a torchmetrics metric, resampling the whole evaluation set.

    ``compute()`` returns a dict of tensors:

    - ``"value"``: the wrapped metric on all the data seen (equal to computing the unwrapped metric);
    - ``"lower"`` / ``"upper"``: the bounds at ``confidence_level`` (per element for vector metrics such as
      ``average=None``, with quantiles along the replicate dimension), clipped to the metric's mathematical
      range where it is known (never to torchmetrics' plotting hints) and always containing a finite value;
    - ``"std"``: the bootstrap standard error.

    How the ``B`` replicates are made depends on the metric (chosen automatically):

    - confusion-matrix metrics (accuracy, precision, recall, F-beta, specificity, Jaccard, MCC, Cohen's
      kappa) resample the confusion counts, ``O(B·C²)`` whatever the number of samples;
    - ranking metrics (AUROC, average precision) resample the sorted scores, vectorised over replicates;
    - any other metric goes through a generic path that stores its inputs and re-runs ``update``/``compute``
      ``B`` times; it is correct but slow and warns once.

    ``resampling`` selects the bootstrap:

    - ``"multinomial"``: the classic nonparametric bootstrap of the whole evaluation set. Each replicate
      draws ``n`` samples with replacement from every sample seen, across batches and DDP ranks.
    - ``"poisson"``: every sample gets an independent ``Poisson(1)`` weight per replicate. The weights are
      drawn at compute time; the summed weights of ``m`` identical units are drawn at once as ``Poisson(m)``,
      so binary/multiclass confusion metrics and binary binned ranking metrics keep a constant-size state.
    - ``"bayesian"``: the Bayesian bootstrap (Rubin, 1981): ``Dirichlet(1, ..., 1)`` weights over the
      samples seen. Only ``method="percentile"`` applies. For the confusion family it is the exact posterior
      ``Dirichlet(counts + prior)`` of the confusion-cell probabilities, with ``prior`` pseudo-counts in
      *every* cell (default ``prior="table"``: one pseudo-count per table), so 30 of 30 correct still gives
      a real interval; ``prior=0`` is Rubin's Bayesian bootstrap, ``Dirichlet(counts)``.

    ``prior`` (confusion family only; ranking and generic metrics refuse it) is a pseudo-count per cell or a
    name. What each means for accuracy, with k of n correct:

    - ``"table"`` (default): ``1/K`` per cell of a K-cell table (1/4 binary, 1/C² multiclass, 1/4 per label
      multilabel). Binary accuracy ~ ``Beta(k + 1/2, n - k + 1/2)``, Jeffreys' interval; multiclass accuracy
      ~ ``Beta(k + 1/C, n - k + (C - 1)/C)``; recall of a class ~ ``Beta(tp + 1/K, fn + (C - 1)/K)``.
    - ``"jeffreys"``: 1/2 per cell (Jeffreys' prior of the cell multinomial). Binary accuracy ~
      ``Beta(k + 1, n - k + 1)``, the uniform prior on accuracy.
    - ``"uniform"``: 1 per cell (Bayes-Laplace on the cells). Binary accuracy ~ ``Beta(k + 2, n - k + 2)``.
    - a number ``a >= 0``: ``a`` per cell; binary accuracy ~ ``Beta(k + 2a, n - k + 2a)``.

    Multilabel adds the pseudo-counts per label: each label's 2 x 2 table is exactly ``Dirichlet(counts_l +
    prior)`` while the rows keep their cross-label dependence.

    **Reading a Bayesian credible interval next to a confidence interval.** The multinomial/Poisson bounds
    form a *confidence interval*: a procedure that, over repeated validation sets drawn from the same
    population, contains the true metric about ``confidence_level`` of the time; any single interval
    either contains it or not. The Bayesian bootstrap bounds form a *credible interval*: given the samples
    seen, and a noninformative Dirichlet prior on the population supported on those samples, the metric of
    the population lies inside with posterior probability ``confidence_level``. For a metric that is a
    smooth function of the data and ``n`` in the hundreds or more, the two are numerically almost the same
    (the Bayesian bootstrap is a smoothed multinomial bootstrap); read them as the same width of
    uncertainty, with different wording ("95% of such intervals cover" versus "95% posterior
    probability"). They differ when ``n`` is small, when a class is rare, or when the metric is near its
    bound: the Bayesian bootstrap never puts weight on values unseen in the data, so neither interval says
    anything about errors the validation set never exhibited.

    ``method`` turns replicates into bounds: ``"percentile"``, ``"basic"``, ``"normal"`` or ``"bca"``
    (bias-corrected and accelerated; the jackknife it needs is exact and cheap on the fast paths). The
    default ``"auto"`` is ``"bca"`` on the confusion and ranking fast paths and ``"percentile"`` with
    ``resampling="bayesian"`` or on the generic path (where a jackknife costs ``n`` re-evaluations). The
    coverage study in ``docs/validation.md`` chose it: over 2,000 simulated sets per cell, BCa was the only
    method never below the Monte Carlo band of 95% for accuracy, macro-F1 and AUROC at n = 50 ... 5000,
    at about 1% more width than percentile, which under-covers at n <= 100 (93.2-94.2%).

    **Near 0 and 1** no bootstrap works: with 30 of 30 correct every resample is 30 of 30, and the interval
    is a point (about 60% coverage at n = 30, accuracy 0.97). So on the confusion family ``"auto"`` (with
    multinomial or Poisson resampling) switches, at compute time, to the posterior ``Dirichlet(counts +
    prior)`` (its percentile credible interval) whenever the smallest count the metric rests on is below 5:
    for each class that occurs, its true positives, false negatives and false positives (per label for
    multilabel; for binary, the smallest of the four cells). The boundary study in ``docs/validation.md``
    chose this rule. After ``compute``, ``self.method`` says which was used: ``"posterior"`` or ``"bca"``
    (``self.method_requested`` keeps ``"auto"``). An interval always contains the estimate, so at 30 of 30
    the default is ``[q, 1]`` with ``q`` the 2.5% posterior quantile (Jeffreys' interval, with its usual
    end at 1). A mode chosen explicitly (``method="percentile"``, ``prior=0``, ...) that gives a point interval
    says so in a warning that names the option giving a real one.
    Degenerate cases (all replicates equal, the metric undefined in some replicates) give finite bounds
    and a ``UserWarning``.

    Every mode draws its replicates in ``compute`` from the synced state and the seed: the result depends only
    on the multiset of samples seen and the seed, not on batch sizes, the order of the samples, the DDP launcher
    (``ddp``, ``ddp_spawn``, ``ddp_fork``) or the number of ranks (for logits, torchmetrics itself decides per
    batch whether to normalise them, so pass probabilities or the same batches).

    ``forward(*args)`` updates the bootstrap state and returns the wrapped metric's value on that batch
    only (no interval, which would cost ``B`` replicates per step), so ``self.log("acc_step", m(p, t))``
    works as with the unwrapped metric.

    Args:
        base_metric: the metric to wrap. It is copied; the instance passed in is not modified.
        num_bootstraps: number of bootstrap replicates ``B`` (an integer of at least 2).
        confidence_level: nominal level of the two-sided interval, in ``(0, 1)``.
        method: ``"auto"`` (default: ``"bca"`` on the fast paths, else ``"percentile"``), ``"percentile"``,
            ``"basic"``, ``"normal"`` or ``"bca"``.
        resampling: ``"multinomial"``, ``"poisson"`` or ``"bayesian"``.
        seed: fixes the result. ``None`` draws a seed with :mod:`secrets` (the global torch RNG is never
            used); under an initialised ``torch.distributed`` process group rank 0's seed is broadcast at
            the first ``compute`` so that all ranks agree.
        prior: pseudo-counts per confusion cell for the posterior (``resampling="bayesian"``, and the
            small-count regime of ``method="auto"``): ``None`` (the default, ``"table"``), ``"table"``,
            ``"jeffreys"``, ``"uniform"`` or a number ``>= 0`` (0: no prior). Confusion family only.
        kwargs: torchmetrics ``Metric`` keyword arguments (``sync_on_compute``, ``process_group``,
            ``dist_sync_fn``, ``compute_on_cpu``, ...), passed on to the replicate engine that holds the
            states.

    Raises:
        TypeError: if ``base_metric`` is not a torchmetrics ``Metric``, ``seed`` is not an int or None, or
            ``prior`` is not None, a string or a number.
        ValueError: if ``num_bootstraps`` is not an integer larger than 1, ``confidence_level`` is not in
            ``(0, 1)``, ``method`` or ``resampling`` is unknown, or ``resampling="bayesian"`` is combined
            with a method other than ``"percentile"`` (or with a generic metric that takes no sample weights);
            if ``prior`` is an unknown name, negative or not finite, is given for a metric outside the
            confusion family, or with a mode that never uses the posterior (not bayesian, not ``"auto"``).

    Example:
        >>> import torch
        >>> from torchmetrics.classification import BinaryAccuracy
        >>> from lightning_ci.bootstrap import BootstrapMetric, to_log_dict
        >>> preds = torch.tensor([0.9, 0.2, 0.8, 0.4, 0.7, 0.1, 0.6, 0.3, 0.55, 0.45] * 10)
        >>> target = torch.tensor([1, 0, 1, 1, 1, 0, 0, 0, 1, 0] * 10)
        >>> metric = BootstrapMetric(BinaryAccuracy(), num_bootstraps=200, seed=7)
        >>> for i in range(0, 100, 32):
        ...     metric.update(preds[i:i + 32], target[i:i + 32])
        >>> result = metric.compute()
        >>> sorted(result)
        ['lower', 'std', 'upper', 'value']
        >>> result["value"]
        tensor(0.8000)
        >>> bool(result["lower"] < result["value"] < result["upper"] <= 1)
        True
        >>> sorted(to_log_dict(result, "val_acc"))
        ['val_acc', 'val_acc_lower', 'val_acc_upper']

        Near the boundary (30 of 30 correct) the default switches to the posterior and gives a real interval:

        >>> perfect = BootstrapMetric(BinaryAccuracy(), seed=0)
        >>> perfect.update(torch.ones(30), torch.ones(30))
        >>> result = perfect.compute()
        >>> perfect.method, round(result["lower"].item(), 2), result["upper"].item()
        ('posterior', 0.92, 1.0)
    """

    is_differentiable: ClassVar[bool] = False
    higher_is_better: Optional[bool] = None
    full_state_update: ClassVar[bool] = False
    plot_lower_bound: Optional[float] = None
    plot_upper_bound: Optional[float] = None

    engine: BootstrapEngine
    _paired: ClassVar[bool] = False

    def __init__(
        self,
        base_metric: Metric,
        num_bootstraps: int = 1000,
        confidence_level: float = 0.95,
        method: str = "auto",
        resampling: str = "multinomial",
        seed: Optional[int] = None,
        prior: Optional[Union[float, str]] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(base_metric, Metric):
            raise TypeError(
                "Expected argument `base_metric` to be an instance of `torchmetrics.Metric` but received "
                f"{base_metric!r}"
            )
        if isinstance(num_bootstraps, bool) or not isinstance(num_bootstraps, int) or num_bootstraps < 2:
            raise ValueError(
                f"Expected argument `num_bootstraps` to be an integer larger than 1 but received {num_bootstraps}"
            )
        if (
            isinstance(confidence_level, bool)
            or not isinstance(confidence_level, (int, float))
            or not 0 < confidence_level < 1
        ):
            raise ValueError(
                f"Expected argument `confidence_level` to be a float in (0, 1) but received {confidence_level}"
            )
        if not isinstance(method, str) or method.lower() not in ("auto", *INTERVAL_METHODS):
            raise ValueError(
                f"Expected argument `method` to be 'auto' or one of {INTERVAL_METHODS} but received {method}"
            )
        if resampling not in RESAMPLING_MODES:
            raise ValueError(
                f"Expected argument `resampling` to be one of {RESAMPLING_MODES} but received {resampling}"
            )
        method = method.lower()
        if resampling == "bayesian" and method not in ("percentile", "auto"):
            raise ValueError(
                "Expected argument `method` to be 'percentile' with `resampling='bayesian'` but received "
                f"{method}: a Bayesian bootstrap gives a posterior credible interval, read off the quantiles of "
                "the posterior draws; the basic, normal and BCa corrections are frequentist and do not apply."
            )
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"Expected argument `seed` to be an integer or None but received {seed!r}")
        _check_prior(prior)
        if prior is not None and resampling != "bayesian" and method != "auto":
            raise ValueError(
                f"Expected argument `prior` only with `resampling='bayesian'` or `method='auto'` but received "
                f"prior={prior!r} with resampling={resampling!r} and method={method!r}: a prior enters only the "
                "posterior, which those modes use."
            )

        self.num_bootstraps = num_bootstraps
        self.confidence_level = float(confidence_level)
        self.resampling = resampling
        # per-instance copies of the wrapped metric's constants (Metric.__setattr__ forbids assigning them)
        self.__dict__["higher_is_better"] = base_metric.higher_is_better
        self.__dict__["plot_lower_bound"] = base_metric.plot_lower_bound
        self.__dict__["plot_upper_bound"] = base_metric.plot_upper_bound
        self._seed_given = seed is not None
        self._seed_synced = self._seed_given
        seed = int(seed) if seed is not None else secrets.randbits(63)

        engine_metric = deepcopy(base_metric)
        engine_metric.reset()
        self.__dict__["_template"] = deepcopy(engine_metric)  # the wrapped metric, never updated (not a module)
        engine_cls = select_engine(engine_metric, resampling, self._paired)
        # the confusion family's posterior; not for paired comparisons (joint cells), which keep the bootstrap
        posterior_capable = hasattr(engine_cls, "posterior_output") and not self._paired
        if prior is not None and self._paired:
            raise ValueError(
                f"Expected `prior=None` for a paired comparison but received prior={prior!r}: the posterior mode"
                " covers one model's confusion table, not the joint table of two models. Use the bootstrap"
                " (`resampling='multinomial'`, the default)."
            )
        if prior is not None and not posterior_capable:
            raise ValueError(
                f"Expected argument `prior` only for confusion-matrix metrics (accuracy, precision, recall, F-beta, "
                f"specificity, Jaccard, MCC, kappa) but received prior={prior!r} for "
                f"{type(base_metric).__name__}, which goes through the {engine_cls.__name__}: its Bayesian mode has "
                "no cell counts to put pseudo-counts on. Leave `prior=None`."
            )
        self.method_requested = method
        self._prior_given = prior is not None
        if method == "auto":
            fast = engine_cls is not GenericEngine
            # a paired difference takes the normal interval (percentile under the Bayesian bootstrap): on the
            # lumpy bootstrap distribution of a difference with few discordant pairs, BCa rejected a true null up
            # to 10% of the time at alpha = 0.05 and the percentile interval up to 7% (macro-F1, n = 100); the
            # symmetric normal interval held the level (docs/validation.md, Parts 4, 4b and 4d)
            if resampling == "bayesian":
                method = "percentile"
            elif self._paired:
                method = "normal"
            else:
                method = "bca" if fast else "percentile"
        self.method = method
        if engine_cls is GenericEngine and self._paired:
            from lightning_ci.bootstrap.paired import PairedClones

            engine_metric = PairedClones(engine_metric)
        self.engine = engine_cls(
            engine_metric, num_bootstraps, resampling, seed, method == "bca", paired=self._paired, **kwargs
        )
        #: the resolved pseudo-count per confusion cell (None where the engine has no posterior mode)
        self.prior: Optional[float] = None
        if posterior_capable:
            self.prior = _prior_value(DEFAULT_PRIOR if prior is None else prior, self.engine.cells_per_table)
            if resampling == "bayesian":
                self.engine.prior = self.prior
            elif self.method_requested == "auto" and self.prior > 0:
                self.engine.auto_prior = self.prior
                self.engine.auto_threshold = AUTO_SMALL_COUNT
        self._base_method = method
        # the metric's mathematical range (not torchmetrics' plot hints, which are 0/1 for MCC and kappa)
        self._range = metric_range(base_metric)
        self._batch_metric: Optional[Metric] = None  # made on the first forward (batch values only)
        self._grouped: Optional[bool] = None  # whether the updates since the last reset passed ``groups``

    @property
    def seed(self) -> int:
        """The seed of the replicate engine (drawn with :mod:`secrets` when ``seed=None``).

        It can be set, e.g. ``metric.seed = epoch`` right after ``reset()``, to give each evaluation
        independent bootstrap noise while staying reproducible. Set it on every rank alike under DDP.
        """
        return self.engine.seed

    @seed.setter
    def seed(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"Expected argument `seed` to be an integer but received {value!r}")
        self.engine.seed = int(value)
        self.engine._computed = None
        self._seed_given = self._seed_synced = True

    def _check_groups(self, groups: Optional[Tensor]) -> None:
        """``groups`` must be given in every update since the last reset, or in none."""
        grouped = groups is not None
        if self._grouped is not None and grouped != self._grouped:
            raise GroupsError(
                "Expected argument `groups` in every `update` since the last `reset` or in none, but "
                + ("received groups after updates without them." if grouped else "it is missing in this update.")
            )
        if grouped and self._prior_given:
            raise ValueError(
                f"Expected `prior=None` with `groups` but received prior={self.prior!r}: with groups the units are"
                " groups, and Bayesian resampling gives each group a Dirichlet(1, ..., 1) weight (Rubin's Bayesian"
                " bootstrap over groups); a per-cell prior has no meaning there."
            )
        self._grouped = grouped

    def update(self, *args: Any, groups: Optional[Tensor] = None, **kwargs: Any) -> None:
        """Update the bootstrap state; takes exactly what the wrapped metric's ``update`` takes.

        Args:
            args: the wrapped metric's ``update`` arguments (e.g. ``preds, target``).
            groups: optional integer tensor, one group id per sample (per row for multilabel). The units that
                are resampled are then the groups (the cluster bootstrap): ``"multinomial"`` draws G groups with
                replacement, ``"poisson"``/``"bayesian"`` give each group one weight shared by its samples, BCa
                uses the leave-one-group-out jackknife. The same id is the same group across batches and DDP
                ranks. The wrapped metric never sees it, and the value does not change. Give it in every update
                since the last reset, or in none.
            kwargs: the wrapped metric's keyword arguments.

        Raises:
            ValueError: if ``groups`` is given in some updates and not in others, or its length is not the
                batch's number of samples; also a ``TypeError`` (the same exception) for non-integer ids.

        Example:
            >>> import torch
            >>> from torchmetrics.classification import BinaryAccuracy
            >>> target = torch.ones(120, dtype=torch.long)
            >>> preds = (torch.arange(120) % 9 != 0).long()  # 14 errors
            >>> documents = torch.arange(120) // 4  # 30 documents of 4 sentences
            >>> metric = BootstrapMetric(BinaryAccuracy(), num_bootstraps=500, seed=0)
            >>> metric.update(preds, target, groups=documents)  # resample documents, not sentences
            >>> result = metric.compute()
            >>> result["value"]
            tensor(0.8833)
            >>> bool(result["lower"] < result["value"] < result["upper"])
            True
        """
        self._check_groups(groups)
        if groups is None:
            self.engine.update(*args, **kwargs)
        else:
            self.engine.update(*args, groups=groups, **kwargs)

    def forward(self, *args: Any, groups: Optional[Tensor] = None, **kwargs: Any) -> Any:
        """Update the bootstrap state and return the wrapped metric's value on this batch alone."""
        self.update(*args, groups=groups, **kwargs)
        if self._batch_metric is None:
            batch_metric = deepcopy(self._template)
            batch_metric.reset()
            self._batch_metric = batch_metric.to(self.device)
        self._batch_metric.reset()
        value = self._batch_metric(*args, **kwargs)
        self._batch_metric.reset()
        return value

    def _sync_seed(self) -> None:
        """Broadcast rank 0's drawn seed once, so that every rank makes the same replicates."""
        if self._seed_synced:
            return
        dist = torch.distributed
        if not (dist.is_available() and dist.is_initialized()) or not self.engine.sync_on_compute:
            return
        group = self.engine.process_group
        src = 0 if group is None else dist.get_global_rank(group, 0)
        backend = dist.get_backend(group)
        device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
        seed = torch.tensor([self.engine.seed], dtype=torch.int64, device=device)
        dist.broadcast(seed, src=src, group=group)
        self.engine.seed = int(seed.item())
        self._seed_synced = True

    def compute(self) -> dict[str, Tensor]:
        """Compute the point estimate, the bounds and the bootstrap standard error.

        The bounds are clipped to the metric's mathematical range where it is known (e.g. [-1, 1] for
        Matthews' correlation and Cohen's kappa, [0, 1] for accuracy; no clipping for metrics without a
        known range), and always contain a finite ``value``. With no samples to resample (``compute``
        before any ``update``, or every sample ignored), ``value`` is what the wrapped metric returns on no
        data (NaN where it cannot compute one), and the bounds and std are NaN, with a warning.

        Returns:
            ``{"value", "lower", "upper", "std"}``, each a tensor of the wrapped metric's shape.
        """
        self._sync_seed()
        with warnings.catch_warnings():
            # the engine is internal: say it in BootstrapMetric's own name below, not in the engine's
            warnings.filterwarnings("ignore", message=r".*was called before the ``update`` method.*")
            out = self.engine.compute()
        value = out.value
        dtype = value.dtype if value.is_floating_point() else torch.get_default_dtype()
        if out.replicates.shape[0] == 0:
            _rank_zero_warn(
                "BootstrapMetric.compute() found no samples to resample (it was called before any `update`, or "
                "every sample was ignored or empty); the bounds and std are NaN, and the value is the wrapped "
                "metric's on no data."
            )
            nan = torch.full(value.shape, float("nan"), dtype=dtype, device=value.device)
            return {"value": value, "lower": nan, "upper": nan.clone(), "std": nan.clone()}
        replicates = out.replicates.reshape(out.replicates.shape[0], *value.shape)
        posterior = bool(getattr(self.engine, "posterior_used", False))
        self.method = "posterior" if posterior and self.resampling != "bayesian" else self._base_method
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            lower, upper = self._interval(out, "percentile" if posterior else self.method)
        for w in caught:
            if self.prior is not None and "degenerate" in str(w.message):
                continue  # said below, naming the option that gives a real interval
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        zero = (lower == upper) & torch.isfinite(value) & (replicates == replicates[:1]).all(0)
        if self.prior is not None and bool(zero.any()):
            _rank_zero_warn(
                f"BootstrapMetric: a zero-width interval for {int(zero.sum())} of {zero.numel()} element(s): every "
                f"{'posterior draw' if posterior else 'bootstrap replicate'} equals the estimate (e.g. 30 of 30 "
                "correct: a resample cannot contain an error the data do not), so the interval is the point "
                f"estimate. For a real interval use `method='auto'` (the default, which switches to the posterior "
                f"Dirichlet(counts + prior) when a count is below {AUTO_SMALL_COUNT}) or `resampling='bayesian'` with "
                f"`prior='{DEFAULT_PRIOR}'` (or any pseudo-count > 0)."
            )
        std = bootstrap_std(replicates)
        return {"value": value, "lower": lower, "upper": upper, "std": std.to(dtype)}

    def persistent(self, mode: bool = False) -> None:
        """Make the bootstrap state part of ``state_dict`` (``mode=True``) or not (the default).

        With ``persistent(True)``, ``state_dict()`` holds everything ``compute`` needs: the replicate engine's
        states (counts, stored samples, the wrapped metric's own states on the generic path) and the seed, so
        that ``load_state_dict`` into a fresh ``BootstrapMetric`` of the same configuration resumes an
        interrupted evaluation to the identical result.
        """
        self.engine.persistent(mode)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        if prefix + "engine._bootstrap_seed" in state_dict:  # the saved seed: every rank loads the same one
            self._seed_given = self._seed_synced = True
        if any(prefix + "engine." + name in state_dict for name in GROUP_STATES):  # a grouped evaluation resumes
            self._grouped = True
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _interval(self, out: EngineOutput, method: str) -> tuple[Tensor, Tensor]:
        """The ``(lower, upper)`` that ``compute`` returns for the engine output ``out`` and ``method``.

        Clipped to the metric's range (``self._range``) and widened to contain a finite estimate, in the dtype
        of the value (the default float dtype for an integer value).
        """
        value = out.value
        # Metric's compute wrapper squeezes every one-element tensor (``_squeeze_if_scalar``), so restore the
        # documented shapes: replicates [B, *S], jackknife [m, *S], weights [m]
        replicates = out.replicates.reshape(out.replicates.shape[0], *value.shape)
        jackknife = None if out.jackknife is None else out.jackknife.reshape(-1, *value.shape)
        weights = None if out.jackknife_weights is None else out.jackknife_weights.reshape(-1)
        lower, upper = confidence_interval(
            replicates,
            value,
            confidence_level=self.confidence_level,
            method=method,
            jackknife=jackknife,
            jackknife_weights=weights,
            bounds=self._range,
        )
        # an interval (e.g. percentile on a skewed bootstrap distribution) may miss the estimate: widen it
        finite = torch.isfinite(value)
        est = value.to(lower.dtype)
        lower = torch.where(finite, torch.minimum(lower, est), lower)
        upper = torch.where(finite, torch.maximum(upper, est), upper)
        dtype = value.dtype if value.is_floating_point() else torch.get_default_dtype()
        return lower.to(dtype), upper.to(dtype)

    def reset(self) -> None:
        """Reset to a fresh state (the seed is kept)."""
        self.engine.reset()
        self._grouped = None
        if self._batch_metric is not None:
            self._batch_metric.reset()
        super().reset()

    def plot(
        self,
        val: Optional[Union[dict[str, Tensor], Sequence[dict[str, Tensor]]]] = None,
        ax: Optional[Any] = None,
    ) -> tuple[Any, Any]:
        """Plot a result (value with error bars) or a sequence of results (a line with a shaded band).

        Args:
            val: a result of :meth:`compute`, or a sequence of them (e.g. one per epoch). If ``None``,
                :meth:`compute` is called.
            ax: a matplotlib axis to draw on; a new figure is made if ``None``.

        Returns:
            ``(figure, axis)``.

        Raises:
            ModuleNotFoundError: if matplotlib is not installed.

        Example:
            >>> import matplotlib
            >>> matplotlib.use("Agg")
            >>> import torch
            >>> from torchmetrics.classification import BinaryAccuracy
            >>> metric = BootstrapMetric(BinaryAccuracy(), num_bootstraps=100, seed=0)
            >>> results = []
            >>> for epoch in range(3):
            ...     metric.reset()
            ...     metric.update(torch.rand(50, generator=torch.Generator().manual_seed(epoch)),
            ...                   torch.arange(50) % 2)
            ...     results.append(metric.compute())
            >>> fig, ax = metric.plot(results)
        """
        try:
            import matplotlib.pyplot as plt
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ModuleNotFoundError(
                "`BootstrapMetric.plot` requires matplotlib. Install it with `pip install matplotlib`."
            ) from err
        val = self.compute() if val is None else val
        fig, ax = plt.subplots() if ax is None else (ax.get_figure(), ax)
        name = self._template.__class__.__name__
        label = f"{100 * self.confidence_level:g}% {self.method} ({self.resampling})"
        if isinstance(val, dict):
            value = val["value"].detach().cpu().double().reshape(-1)
            lower = val["lower"].detach().cpu().double().reshape(-1)
            upper = val["upper"].detach().cpu().double().reshape(-1)
            x = torch.arange(value.numel())
            ax.errorbar(
                x.numpy(),
                value.numpy(),
                yerr=torch.stack([value - lower, upper - value]).clamp(min=0).numpy(),
                fmt="o",
                markersize=8,
                capsize=6,
                label=label,
            )
            if value.numel() > 1:
                ax.set_xticks(x.numpy())
                ax.set_xlabel("Class")
            else:
                ax.get_xaxis().set_visible(False)
        elif isinstance(val, Sequence) and len(val) > 0 and all(isinstance(v, dict) for v in val):
            values = torch.stack([v["value"].detach().cpu().double().reshape(-1) for v in val])
            lowers = torch.stack([v["lower"].detach().cpu().double().reshape(-1) for v in val])
            uppers = torch.stack([v["upper"].detach().cpu().double().reshape(-1) for v in val])
            steps = torch.arange(len(val)).numpy()
            multi = values.shape[1] > 1
            for k in range(values.shape[1]):
                (line,) = ax.plot(steps, values[:, k].numpy(), marker="o", label=f"{k}" if multi else label)
                ax.fill_between(steps, lowers[:, k].numpy(), uppers[:, k].numpy(), color=line.get_color(), alpha=0.25)
            ax.set_xlabel("Step")
            ax.set_xticks(steps)
        else:
            raise ValueError("Expected `val` to be a result dict of `compute()` or a non-empty sequence of them.")
        ax.set_ylabel(name)
        ax.set_title(label)
        ylim = ax.get_ylim()
        low = self.plot_lower_bound if self.plot_lower_bound is not None else ylim[0]
        high = self.plot_upper_bound if self.plot_upper_bound is not None else ylim[1]
        pad = 0.05 * (high - low) if high > low else 0.05
        ax.set_ylim(bottom=low - pad, top=high + pad)
        handles, labels = ax.get_legend_handles_labels()
        if handles and labels:
            ax.legend(loc="best")
        return fig, ax

    # -- Lightning-native logging: the views live in lightning_ci/bootstrap/views.py ---------------------------
    def loggable(self, name: str, include_std: bool = False) -> dict[str, Metric]:
        """Views of the result for ``LightningModule.log_dict``: Lightning then computes, syncs and resets.

        Returns ``{name, f"{name}_lower", f"{name}_upper"[, f"{name}_std"]}`` (a vector metric gives
        ``f"{name}_{i}"``, ``f"{name}_{i}_lower"``, ... as :func:`to_log_dict` names them). Each value is a
        stateless ``Metric`` whose ``compute()`` is one 0-d entry of :meth:`compute`; the bootstrap runs once
        per epoch however many views are logged, and the first view reset resets this metric. In
        ``validation_step``: ``self.val_acc.update(preds, target)`` then
        ``self.log_dict(self.val_acc.loggable("val_acc"), on_epoch=True)``. Log on epoch only (a view has no
        per-step value), and do not reset the metric yourself.

        Args:
            name: the logging name, e.g. ``"val_acc"``.
            include_std: also return the ``f"{name}_std"`` view(s).

        Returns:
            An ordered ``dict`` of names to stateless ``Metric`` views (the same objects on every call).

        Raises:
            TypeError: if ``name`` is not a non-empty string or ``include_std`` not a bool.

        Example:
            >>> import torch
            >>> from torchmetrics.classification import BinaryAccuracy
            >>> metric = BootstrapMetric(BinaryAccuracy(), num_bootstraps=200, seed=0)
            >>> metric.update(torch.tensor([0.9, 0.2, 0.7, 0.4, 0.6, 0.3]), torch.tensor([1, 0, 1, 1, 0, 0]))
            >>> views = metric.loggable("val_acc")
            >>> list(views)
            ['val_acc', 'val_acc_lower', 'val_acc_upper']
            >>> bool(views["val_acc"].compute() == metric.compute()["value"])
            True
        """
        from lightning_ci.bootstrap.views import loggable_views

        return loggable_views(self, name, include_std)

    def named_modules(self, memo: Optional[set] = None, prefix: str = "", remove_duplicate: bool = True) -> Any:
        """``torch.nn.Module.named_modules``, after creating the :meth:`loggable` views (Lightning looks them up)."""
        from lightning_ci.bootstrap.views import prepare_views

        prepare_views(self)
        return super().named_modules(memo, prefix, remove_duplicate)


def to_log_dict(result: dict[str, Tensor], name: str, include_std: bool = False) -> dict[str, Tensor]:
    """Flatten a :class:`BootstrapMetric` result into 0-d tensors for ``LightningModule.log_dict``.

    A scalar metric gives ``{name, f"{name}_lower", f"{name}_upper"}``; a vector metric (e.g.
    ``average=None``) gives per-element entries suffixed with the (flattened) class index:
    ``f"{name}_{i}"``, ``f"{name}_{i}_lower"``, ``f"{name}_{i}_upper"``.

    Args:
        result: the dict returned by :meth:`BootstrapMetric.compute`.
        name: the logging name, e.g. ``"val_acc"``.
        include_std: also add ``f"{name}_std"`` (``f"{name}_{i}_std"``) entries.

    Returns:
        A flat dict of 0-d tensors.

    Example:
        >>> import torch
        >>> result = {"value": torch.tensor([0.5, 0.7]), "lower": torch.tensor([0.4, 0.6]),
        ...           "upper": torch.tensor([0.6, 0.8]), "std": torch.tensor([0.05, 0.05])}
        >>> list(to_log_dict(result, "f1"))
        ['f1_0', 'f1_0_lower', 'f1_0_upper', 'f1_1', 'f1_1_lower', 'f1_1_upper']
    """
    keys = ("value", "lower", "upper", "std") if include_std else ("value", "lower", "upper")
    missing = [k for k in keys if k not in result]
    if missing:
        raise ValueError(f"Expected a BootstrapMetric result with keys {keys} but the keys {missing} are missing")
    parts = {k: torch.as_tensor(result[k]).detach().reshape(-1) for k in keys}
    suffix = {"value": "", "lower": "_lower", "upper": "_upper", "std": "_std"}
    out: dict[str, Tensor] = {}
    if parts["value"].numel() == 1:
        for k in keys:
            out[f"{name}{suffix[k]}"] = parts[k][0]
        return out
    for i in range(parts["value"].numel()):
        for k in keys:
            out[f"{name}_{i}{suffix[k]}"] = parts[k][i]
    return out
