"""lightning-ci: exact scheduled gradient accumulation and bootstrap confidence intervals for Lightning."""

from lightning_ci.accumulation import AccumulationScheduler, total_optimizer_steps
from lightning_ci.bootstrap import (
    BootstrapMetric,
    PairedBootstrapMetric,
    PairedVerdict,
    loggable,
    paired_verdict,
    to_log_dict,
)
from lightning_ci.integration import IntervalReport

__version__ = "0.1.0"

__all__ = [
    "AccumulationScheduler",
    "BootstrapMetric",
    "IntervalReport",
    "PairedBootstrapMetric",
    "PairedVerdict",
    "__version__",
    "loggable",
    "paired_verdict",
    "to_log_dict",
    "total_optimizer_steps",
]
