"""Bootstrap confidence intervals for torchmetrics metrics: wrapper, engines, loggable views."""

from lightning_ci.bootstrap._engine import BootstrapEngine, EngineOutput
from lightning_ci.bootstrap.generic import GenericEngine
from lightning_ci.bootstrap.metric import BootstrapMetric, select_engine, to_log_dict
from lightning_ci.bootstrap.paired import PairedBootstrapMetric, PairedVerdict, interval_p_value, paired_verdict
from lightning_ci.bootstrap.views import BootstrapView, loggable

__all__ = [
    "BootstrapEngine",
    "BootstrapMetric",
    "BootstrapView",
    "EngineOutput",
    "GenericEngine",
    "PairedBootstrapMetric",
    "PairedVerdict",
    "interval_p_value",
    "loggable",
    "paired_verdict",
    "select_engine",
    "to_log_dict",
]
