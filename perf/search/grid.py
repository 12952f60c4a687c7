"""The grid: every config at every given load level, a fixed number of times. What a sweep
does when the user names its levels; without repeats, a race follows from each config's best
level."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from perf.search import History, Outcome, Trial
from perf.search.load import levels_of


@dataclass
class Grid:
    points: list[str]
    levels: tuple[float, ...]
    repeats: int
    history: History = field(default_factory=History)
    slo_p99_ms: float | None = None
    _proposed: bool = False

    def propose(self) -> list[Trial]:
        if self._proposed:
            return []
        self._proposed = True
        return [
            self.history.trial(point, level, "grid")
            for point in self.points
            for level in self.levels
            for _ in range(self.repeats)
        ]

    def tell(self, trial: Trial, outcome: Outcome) -> None:
        self.history.add(trial, outcome)

    def estimate(self) -> int:
        return 0 if self._proposed else len(self.points) * len(self.levels) * self.repeats

    def entrants(self) -> tuple[dict[str, float], dict[str, list[float]]]:
        """Each config's best level within the SLO and the lower ones, for a race."""
        return levels_of(self.history, self.points, self.slo_p99_ms, ("grid",))

    def record(self) -> dict[str, Any]:
        levels, _ = self.entrants()
        return {"grid": {p: {"level": levels.get(p)} for p in self.points}}
