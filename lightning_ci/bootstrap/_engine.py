"""The contract every replicate engine follows.

An *engine* is a private torchmetrics ``Metric`` that knows how to make bootstrap replicates for one
family of metrics (confusion counts, ranking scores, or anything through the generic path). Because it
is a ``Metric``, its states are declared with ``add_state`` and torchmetrics syncs them under DDP when
``compute()`` runs: one collective per state.

``BootstrapMetric`` (``lightning_ci/bootstrap/metric.py``) picks an engine with ``supports`` and then only
calls ``update``, ``compute`` and ``reset`` on it. Engines never import lightning.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, ClassVar, Optional

import torch
from torch import Tensor
from torchmetrics import Metric

RESAMPLING_MODES = ("multinomial", "poisson", "bayesian")


@dataclass
class EngineOutput:
    """What an engine's ``compute()`` returns.

    Attributes:
        value: the wrapped metric on all the data seen, shape ``S`` (``()`` for a scalar metric).
            Must equal ``base_metric.compute()`` on the same data.
        replicates: the metric on each bootstrap replicate, shape ``[B, *S]``. Entries may be NaN where
            the metric is undefined for that replicate; the interval code drops them with a warning.
        jackknife: leave-one-out values for BCa, shape ``[m, *S]``, or ``None`` when not requested.
            Only the *distinct* leave-one-out values are needed: ``jackknife_weights[j]`` says how many
            samples give value ``jackknife[j]`` (for the confusion family m <= C², weight = cell count).
        jackknife_weights: shape ``[m]``, non-negative, summing to n. ``None`` means all ones.
    """

    value: Tensor
    replicates: Tensor
    jackknife: Optional[Tensor] = None
    jackknife_weights: Optional[Tensor] = None


def _stream_seed(seed: int, stream: int) -> int:
    """A 63-bit seed for stream ``stream`` of a base seed, stable across processes and platforms."""
    digest = hashlib.blake2b(f"{seed}:{stream}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


class BootstrapEngine(Metric):
    """Base class of the replicate engines.

    Subclasses implement ``supports`` (classmethod), ``update`` and ``compute`` (returning
    :class:`EngineOutput`), and declare their states in ``__init__`` with ``add_state``.

    Randomness comes only from :meth:`generator`, never from the global RNG:

    - ``generator(device, stream)`` returns a fresh ``torch.Generator`` on ``device`` seeded from
      ``(self.seed, stream)``. ``compute`` uses ``stream=0`` so that the result is a pure function of the
      synced state and the seed.
    - Streaming modes (Poisson) draw at update time from ``self._update_generator(device)``, a persistent
      generator seeded from ``(seed, 1 + rank)`` so ranks draw independent streams; ``reset()`` reseeds it.
    """

    full_state_update: ClassVar[bool] = False
    is_differentiable: ClassVar[bool] = False

    def __init__(
        self,
        base_metric: Metric,
        num_bootstraps: int,
        resampling: str,
        seed: int,
        need_jackknife: bool,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.base_metric = base_metric
        self.num_bootstraps = int(num_bootstraps)
        self.resampling = resampling
        self.seed = int(seed)
        self.need_jackknife = bool(need_jackknife)
        self._upd_gen: Optional[torch.Generator] = None

    @classmethod
    def supports(cls, base_metric: Metric, resampling: str) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def generator(self, device: torch.device, stream: int = 0) -> torch.Generator:
        gen = torch.Generator(device=device)
        gen.manual_seed(_stream_seed(self.seed, stream))
        return gen

    def _update_generator(self, device: torch.device) -> torch.Generator:
        if self._upd_gen is None or self._upd_gen.device != torch.device(device):
            distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
            rank = torch.distributed.get_rank() if distributed else 0
            self._upd_gen = self.generator(device, stream=1 + rank)
        return self._upd_gen

    def reset(self) -> None:
        super().reset()
        self._upd_gen = None

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state["_upd_gen"] = None  # torch.Generator does not pickle; it is reseeded on first use
        return state
