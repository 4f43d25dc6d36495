"""lightning-ci: exact scheduled gradient accumulation and bootstrap confidence intervals for Lightning."""

from lightning_ci.accumulation import AccumulationScheduler, total_optimizer_steps
from lightning_ci.bootstrap import BootstrapMetric, to_log_dict

__version__ = "0.1.0"

__all__ = ["AccumulationScheduler", "BootstrapMetric", "__version__", "to_log_dict", "total_optimizer_steps"]
