"""Load drivers: each runs one load level against a model and returns one row with the same
names (``throughput`` in inferences per second, latencies in ms), so the sweep loop does not
know which one it drives and their rows can be plotted side by side."""

from __future__ import annotations

from typing import Protocol

DRIVERS = ("perf_analyzer", "locust")


class DriverError(RuntimeError):
    """A load level could not be measured; the message carries the driver's own explanation."""


class DriverTimeout(DriverError):
    """A load level did not finish by its deadline and was stopped: a model that never answers,
    or answers a request with more responses than can be sent. ``seen`` is what the driver had
    measured by then (windows, requests), for the row."""

    def __init__(self, message: str, seen: dict[str, float] | None = None) -> None:
        super().__init__(message)
        self.seen = seen or {}


GRACE_S = 10.0  # a measurement's start (connecting, the first requests) and its end


def deadline_s(measuring_s: float, grace_s: float = GRACE_S) -> float:
    """How long a measurement of ``measuring_s`` seconds of windows may take before it is
    stopped: twice its windows, for windows a busy machine stretches, plus a fixed grace (a
    driver that takes longer to start says how long). A measurement has no reason to take
    longer, and a sweep must never wait on one for ever."""
    return 2 * measuring_s + grace_s


class Driver(Protocol):
    def warm_up(self, level: float, kind: str = "concurrency") -> None:
        """A short unmeasured run before a point's first level; its failures are ignored."""

    def run(self, level: float, kind: str = "concurrency") -> dict[str, float]:
        """Measure one level: a concurrency, or a request rate per second."""
