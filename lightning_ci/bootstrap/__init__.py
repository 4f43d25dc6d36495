"""Bootstrap confidence intervals for torchmetrics metrics: the wrapper, its engines and a logging helper."""

from lightning_ci.bootstrap._engine import BootstrapEngine, EngineOutput
from lightning_ci.bootstrap.generic import GenericEngine
from lightning_ci.bootstrap.metric import BootstrapMetric, select_engine, to_log_dict

__all__ = ["BootstrapEngine", "BootstrapMetric", "EngineOutput", "GenericEngine", "select_engine", "to_log_dict"]
