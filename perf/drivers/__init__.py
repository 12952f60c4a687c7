"""Load drivers: each runs one load level against a model and returns one row with the same
names (``throughput`` in inferences per second, latencies in ms), so the sweep loop does not
know which one it drives and their rows can be plotted side by side."""

from __future__ import annotations

from typing import Protocol

DRIVERS = ("perf_analyzer", "locust")


class DriverError(RuntimeError):
    """A load level could not be measured; the message carries the driver's own explanation."""


class Driver(Protocol):
    def warm_up(self, level: float, kind: str = "concurrency") -> None:
        """A short unmeasured run before a point's first level; its failures are ignored."""

    def run(self, level: float, kind: str = "concurrency") -> dict[str, float]:
        """Measure one level: a concurrency, or a request rate per second."""
