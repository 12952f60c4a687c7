"""Load search: the highest closed-loop concurrency a config serves within the SLO.

An exponential probe (1, 2, 4, ...) until a level breaks the SLO, fails, or stops paying: where
two doublings in a row add under ``knee`` of throughput to the best so far, more load only
queues (two, because one noisy measurement must not end the probe: a config stopped early is
raced at a level too low for it, and loses for the wrong reason). Between the last
level within the SLO and the first beyond it, bisection. The config's level is then the
highest level measured within the SLO (with no SLO, the highest measured): in a closed loop,
more requests in flight never serve fewer, so a single reading that says otherwise is noise.
Picking a lower level "as fast" on single readings puts configs at levels that noise chose,
several per cent below their capacity, and the race then ranks levels rather than settings.

A measurement Triton's exit cut short is measured once more on the fresh server
(``measure_again``): one crash at concurrency 1 would otherwise strike the config from the
sweep. A config that crashes Triton twice at the same level is given up there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from perf.results import OK
from perf.search import History, Outcome, Trial, measure_again

KNEE = 0.05
KNEE_SHARE = 0.9  # with no SLO, a config is compared at the lowest load that gives this share of its peak


@dataclass
class LoadSearch:
    """One config's search."""

    point_id: str
    history: History
    slo_p99_ms: float | None
    knee: float = KNEE
    max_level: int = 256
    bisect_steps: int = 3
    _pending: Trial | None = None
    _low: int = 0  # highest level within the SLO
    _high: int | None = None  # lowest level beyond it (or failing)
    _probing: bool = True
    _bisections: int = 0
    _flat: int = 0  # doublings in a row that added under ``knee``
    _again: int | None = None  # a level whose measurement a crash cut short, measured once more
    done: bool = False
    reason: str = ""

    def propose(self) -> list[Trial]:
        if self.done:
            return []
        level = self._next_level()
        if level is None:
            self.done = True
            return []
        self._pending = self.history.trial(self.point_id, level, "probe" if self._probing else "bisect")
        return [self._pending]

    def _next_level(self) -> int | None:
        if self._pending is None:
            return 1
        if self._again is not None:
            level, self._again = self._again, None
            return level
        if self._probing:
            return self._low * 2
        if self._high is None or self._bisections >= self.bisect_steps or self._high - self._low <= 1:
            return None
        self._bisections += 1
        return (self._low + self._high) // 2

    def tell(self, trial: Trial, outcome: Outcome) -> None:
        self.history.add(trial, outcome)
        level = int(trial.level)
        if measure_again(self.history, trial, outcome):
            self._again = level
            return
        if not outcome.meets(self.slo_p99_ms):
            self._high = level
            if self._low == 0:  # not even one request at a time
                self.done = True
                self.reason = _why_not(outcome, level, self.slo_p99_ms)
            self._probing = False
            return
        if not self._probing:
            self._low = level
            return
        best = max((o.throughput for o in self.history.outcomes(self.point_id)[:-1] if o.ok), default=None)
        self._low = level
        if best is not None and outcome.throughput < best * (1 + self.knee):
            self._flat += 1  # doubling did not pay
        else:
            self._flat = 0
        if self._flat >= 2 or level * 2 > self.max_level:
            self._probing = False  # the knee, or as far as the search goes

    @property
    def level(self) -> float | None:
        """The config's operating level, once searched: None if none meets the SLO."""
        return operating_level(self.history, self.point_id, self.slo_p99_ms, SEARCH_PHASES)[0]

    def estimate(self) -> int:
        return 0 if self.done else 5

    def record(self) -> dict[str, Any]:
        return {"level": self.level, "reason": self.reason}


SEARCH_PHASES = ("probe", "bisect")


def operating_level(
    history: History, point_id: str, slo_p99_ms: float | None, phases: tuple[str, ...], step_down: bool = False
) -> tuple[float | None, list[float]]:
    """A config's level from the levels measured in ``phases``: the highest within the SLO;
    and the lower levels within it, highest first, where a race moves the config if its level
    turns out over the SLO. ``step_down`` (searched concurrencies) puts the level just below
    first, measured or not: moving from 6 to the next measured level, 4, would cost a third of
    the load for a p99 a little over."""
    within = {
        trial.level
        for trial, outcome in history.told
        if trial.point_id == point_id and trial.phase in phases and outcome.meets(slo_p99_ms)
    }
    if not within:
        return None, []
    level = max(within) if slo_p99_ms is not None else knee(history, point_id, phases)
    lower = {lvl for lvl in within if lvl < level} | ({level - 1} if step_down and level > 1 else set())
    return level, sorted(lower, reverse=True)


def knee(history: History, point_id: str, phases: tuple[str, ...], share: float = KNEE_SHARE) -> float:
    """With no SLO, a config's level: the lowest load whose mean throughput reaches ``share`` of
    the highest it measured. Past it more load buys a few per cent at a latency that grows
    with every request in flight (issue 29 saw a sweep with no SLO ship p99 500 ms at concurrency 64
    for 10 % over concurrency 8's 90 ms). ``--peak`` asks for the highest instead."""
    readings: dict[float, list[float]] = {}
    for trial, outcome in history.told:
        if trial.point_id == point_id and trial.phase in phases and outcome.ok:
            readings.setdefault(trial.level, []).append(outcome.throughput)
    means = {level: sum(values) / len(values) for level, values in readings.items()}
    top = max(means.values())
    return min(level for level, mean in means.items() if mean >= share * top)


def levels_of(
    history: History, points: list[str], slo_p99_ms: float | None, phases: tuple[str, ...], step_down: bool = False
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Every config's level and fallbacks, for those that have a level: a race's entrants."""
    found = {p: operating_level(history, p, slo_p99_ms, phases, step_down=step_down) for p in points}
    return {p: lvl for p, (lvl, _) in found.items() if lvl is not None}, {p: low for p, (_, low) in found.items()}


def _why_not(outcome: Outcome, level: int, slo_p99_ms: float | None) -> str:
    if outcome.status != OK:
        return f"{outcome.status} at concurrency {level}: {outcome.error}"
    if slo_p99_ms is not None:
        return f"p99 {outcome.p99_ms:.1f} ms at concurrency {level} is over the SLO of {slo_p99_ms:g} ms"
    return f"no measurement at concurrency {level}"


@dataclass
class EachPoint:
    """The load search of every config, one config after another (each applied once), or
    ``width`` at a time, each on its own server."""

    points: list[str]
    history: History
    slo_p99_ms: float | None
    width: int = 1  # configs searched at once (one a server)
    searches: list[LoadSearch] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.searches = [LoadSearch(p, self.history, self.slo_p99_ms) for p in self.points]

    def propose(self) -> list[Trial]:
        """The next trial of each of the first ``width`` configs not yet searched."""
        trials: list[Trial] = []
        for search in self.searches:
            if len(trials) == self.width:
                break
            trials += search.propose()
        return trials

    def tell(self, trial: Trial, outcome: Outcome) -> None:
        next(s for s in self.searches if s.point_id == trial.point_id).tell(trial, outcome)

    def estimate(self) -> int:
        return sum(s.estimate() for s in self.searches)

    def entrants(self) -> tuple[dict[str, float], dict[str, list[float]]]:
        """Each config's level and fallbacks, for a race."""
        return levels_of(self.history, self.points, self.slo_p99_ms, SEARCH_PHASES, step_down=True)

    def record(self) -> dict[str, Any]:
        return {"load_search": {s.point_id: s.record() for s in self.searches}}
