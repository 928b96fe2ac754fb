"""Prometheus metrics of the store process (prometheus-client), flushed once per round."""

from .registry import StoreMetrics, exposition

__all__ = ["StoreMetrics", "exposition"]
