"""lightning-ci: exact scheduled gradient accumulation and bootstrap confidence intervals for Lightning."""
__version__ = "0.1.0"
