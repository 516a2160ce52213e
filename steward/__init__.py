"""Steward: the lifecycle of ML models on Kubernetes, for regulated services."""

__version__ = "0.1.0"
