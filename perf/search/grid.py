"""The grid: every config at every given load level, a fixed number of times. What a sweep
does when the user names its levels."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from perf.search import History, Outcome, Trial


@dataclass
class Grid:
    points: list[str]
    levels: tuple[float, ...]
    repeats: int
    history: History = field(default_factory=History)
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

    def record(self) -> dict[str, Any]:
        return {"strategy": "grid"}
