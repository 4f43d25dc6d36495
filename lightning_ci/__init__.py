"""lightning-ci: exact scheduled gradient accumulation and bootstrap confidence intervals for Lightning."""

from lightning_ci.accumulation import AccumulationScheduler, total_optimizer_steps

__version__ = "0.1.0"

__all__ = ["AccumulationScheduler", "__version__", "total_optimizer_steps"]
