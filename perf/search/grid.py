"""The grid: every config at every given load level, a fixed number of times. What a sweep
does when the user names its levels; without repeats, a race follows from each config's best
level. A measurement Triton's exit cut short is measured once more (``measure_again``): the
grid promises every cell its repeats."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from perf.search import History, Outcome, Trial, measure_again
from perf.search.load import levels_of


@dataclass
class Grid:
    points: list[str]
    levels: tuple[float, ...]
    repeats: int
    history: History = field(default_factory=History)
    slo_p99_ms: float | None = None
    _proposed: bool = False
    _again: list[Trial] = field(default_factory=list)

    def propose(self) -> list[Trial]:
        if self._proposed:
            again, self._again = self._again, []
            return again
        self._proposed = True
        return [
            self.history.trial(point, level, "grid")
            for point in self.points
            for level in self.levels
            for _ in range(self.repeats)
        ]

    def tell(self, trial: Trial, outcome: Outcome) -> None:
        self.history.add(trial, outcome)
        if measure_again(self.history, trial, outcome):
            self._again.append(self.history.trial(trial.point_id, trial.level, "grid"))

    def estimate(self) -> int:
        return len(self._again) if self._proposed else len(self.points) * len(self.levels) * self.repeats

    def entrants(self) -> tuple[dict[str, float], dict[str, list[float]]]:
        """Each config's best level within the SLO and the lower ones, for a race."""
        return levels_of(self.history, self.points, self.slo_p99_ms, ("grid",))

    def record(self) -> dict[str, Any]:
        levels, _ = self.entrants()
        return {"grid": {p: {"level": levels.get(p)} for p in self.points}}
