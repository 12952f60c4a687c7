"""Search strategies: what to measure next, decided from what was measured.

A strategy proposes trials (a config at a load level) and is told each one's outcome; it
never touches a server, and the sweep loop that measures never decides. Strategies are
deterministic functions of the outcomes they are told, so a resumed sweep replays the rows it
recorded through a fresh strategy and arrives where the interrupted one stood.

The grid (``grid.py``), the load search (``load.py``) and racing (``race.py``) are
strategies; ``Then`` composes them, and ``compose.strategy`` picks the composition a sweep asks for.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from perf.results import CRASHED, OK


@dataclass(frozen=True)
class Trial:
    """One measurement to make. ``repeat`` counts earlier measurements of the same config at the
    same level, so (point_id, level, repeat) names a row of the table."""

    point_id: str
    level: float
    repeat: int
    phase: str  # grid, probe, bisect, race, recheck


@dataclass(frozen=True)
class Outcome:
    """What a strategy learns from a row."""

    status: str
    throughput: float = math.nan
    p99_ms: float = math.nan
    memory_mb: float = math.nan
    error: str = ""
    seconds: float = 0.0  # what the row cost: applying its config (if it had to), warming up, measuring
    times: dict[str, tuple[float, float]] = field(default_factory=dict)  # model -> (queue ms, compute ms)
    server: int = 0  # which of the sweep's servers measured it

    @property
    def ok(self) -> bool:
        return self.status == OK and not math.isnan(self.throughput)

    def meets(self, slo_p99_ms: float | None) -> bool:
        """Measured, and within the SLO (an unknown p99 meets no SLO)."""
        return self.ok and (slo_p99_ms is None or (not math.isnan(self.p99_ms) and self.p99_ms <= slo_p99_ms))


@dataclass
class History:
    """Every trial told so far, shared by composed strategies: they count repeats and read
    samples from the same record."""

    told: list[tuple[Trial, Outcome]] = field(default_factory=list)
    _counts: dict[tuple[str, float], int] = field(default_factory=lambda: defaultdict(int))

    def trial(self, point_id: str, level: float, phase: str) -> Trial:
        """The next trial of a config at a level (its repeat number follows those proposed)."""
        key = (point_id, float(level))
        repeat = self._counts[key]
        self._counts[key] += 1
        return Trial(point_id, float(level), repeat, phase)

    def add(self, trial: Trial, outcome: Outcome) -> None:
        self.told.append((trial, outcome))

    def outcomes(self, point_id: str, level: float | None = None) -> list[Outcome]:
        return [o for t, o in self.told if t.point_id == point_id and (level is None or t.level == level)]

    def samples(self, point_id: str, level: float) -> list[float]:
        """The throughputs measured for a config at a level: what races compare."""
        return [o.throughput for o in self.outcomes(point_id, level) if o.ok]


def measure_again(history: History, trial: Trial, outcome: Outcome) -> bool:
    """Whether a told trial that crashed Triton is measured once more, on the fresh server. A
    crash may come from outside the config (Triton exited once in CI mid reload-sweep, cause
    unknown; a server may be killed, the host short of memory for a moment), and one crash
    must not cost a config its measurement at a level; a second crash at the same level is
    the config's."""
    if outcome.status != CRASHED:
        return False
    return sum(o.status == CRASHED for o in history.outcomes(trial.point_id, trial.level)) == 1


class Strategy(Protocol):
    def propose(self) -> list[Trial]:
        """The trials to measure next, in order; an empty list when the strategy is done."""

    def tell(self, trial: Trial, outcome: Outcome) -> None:
        """The outcome of a proposed trial."""

    def estimate(self) -> int:
        """About how many trials are left (for the progress bar's ETA)."""

    def record(self) -> dict[str, Any]:
        """What the strategy decided and why, for the run folder and the report."""


@dataclass
class Then:
    """``first``, then the strategy ``make`` builds from what ``first`` found."""

    first: Strategy
    make: Callable[[Strategy], Strategy]
    guess: int = 0  # trials the second is expected to take, before it exists
    _second: Strategy | None = None

    def propose(self) -> list[Trial]:
        if self._second is None:
            if trials := self.first.propose():
                return trials
            self._second = self.make(self.first)
        return self._second.propose()

    def tell(self, trial: Trial, outcome: Outcome) -> None:
        (self._second or self.first).tell(trial, outcome)

    def estimate(self) -> int:
        return self._second.estimate() if self._second else self.first.estimate() + self.guess

    def record(self) -> dict[str, Any]:
        return {**self.first.record(), **(self._second.record() if self._second else {})}
