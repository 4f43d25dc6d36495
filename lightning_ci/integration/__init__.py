"""The Lightning layer of lightning-ci: callbacks that read what the metrics log (imports lightning)."""

from lightning_ci.integration.report import IntervalReport

__all__ = ["IntervalReport"]
