"""Load shapes chosen by option (``--shape steps|ramp --steps 2,4,8 --hold 10s``) instead of by
a class in the locustfile, so one locustfile serves every shape. The shape is installed on the
master (or the single process) when Locust starts; workers only follow it."""

from __future__ import annotations

import bisect
import math
from typing import Any

from locust import LoadTestShape, events
from locust.env import Environment
from locust.runners import WorkerRunner

from perf.locust.options import hold_seconds, user_counts


class StepShape(LoadTestShape):
    """Each count of users for ``hold_s`` seconds, in order; then the run ends."""

    def __init__(self, counts: tuple[int, ...], hold_s: float) -> None:
        super().__init__()
        self.counts, self.hold_s = counts, hold_s

    def users_at(self, seconds: float) -> int | None:
        stage = int(seconds // self.hold_s)
        return self.counts[stage] if stage < len(self.counts) else None

    def tick(self) -> tuple[int, float] | None:
        users = self.users_at(self.get_run_time())
        # Each step's users start at once: the step is measured at its count, not on the way.
        return None if users is None else (users, float(max(1, *self.counts)))


class RampShape(StepShape):
    """Linearly from each count to the next over ``hold_s`` seconds; ends at the last count."""

    def users_at(self, seconds: float) -> int | None:
        if len(self.counts) < 2:
            return super().users_at(seconds)
        ends = [i * self.hold_s for i in range(len(self.counts))]
        if seconds >= ends[-1]:
            return None
        i = bisect.bisect_right(ends, seconds) - 1
        low, high = self.counts[i], self.counts[i + 1]
        return math.floor(low + (high - low) * (seconds - ends[i]) / self.hold_s)


SHAPE_CLASSES = {"steps": StepShape, "ramp": RampShape}


def shape_from(options: Any) -> LoadTestShape | None:
    if not getattr(options, "shape", None):
        return None
    return SHAPE_CLASSES[options.shape](user_counts(options.steps), hold_seconds(options))


@events.init.add_listener
def _install(environment: Environment, **_: object) -> None:
    if isinstance(environment.runner, WorkerRunner) or environment.shape_class is not None:
        return
    shape = shape_from(environment.parsed_options)
    if shape is not None:
        shape.runner = environment.runner
        environment.shape_class = shape
