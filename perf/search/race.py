"""Racing: measure again only the configs still in contention with the leader.

Each round measures every survivor once at its operating level, in an order that rotates from
round to round (so no config always runs first after a reload). After each round, with at least
``min_samples`` throughputs per survivor:

- a survivor whose p99 at its level is over the SLO on average moves down to the next lower
  level its load search found within the SLO (its samples there count), and leaves the race
  only when there is none: one lucky probe at the SLO's edge must not decide the race;
- a survivor is dropped when Welch's one-sided test says the leader is faster (p below
  ``alpha`` divided by the number of comparisons: Bonferroni);
- the race stops when one survivor is left, or when every survivor's difference from the
  leader has a confidence interval inside +-``margin`` of the leader's throughput (two
  one-sided tests at the same corrected alpha): they are equivalent, and the cheapest wins by
  the declared cost order (fewer instances, less memory, a shorter queue delay, smaller
  batches), so the same survivors give the same answer run after run;
- after ``max_rounds`` rounds the survivors are declared not separable, and the cheapest
  of them wins, said as such: none of them was shown slower than the leader.

Then the winner is measured once more, last, to catch drift over the race.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from scipy import stats

from perf.search import History, Outcome, Trial
from perf.search.cost import Cost, cheapest

ALPHA = 0.05
MARGIN = 0.05
MIN_SAMPLES = 3
MAX_ROUNDS = 5
CLEAR, EQUIVALENT, UNDECIDED, ALONE, NONE = "clear", "equivalent", "undecided", "alone", "none"


@dataclass(frozen=True)
class Comparison:
    """A survivor against the leader: the difference of mean throughputs with its interval
    (relative to the leader's mean), and the one-sided p that the leader is faster."""

    point_id: str
    difference: float
    low: float
    high: float
    p_behind: float


def compare(leader: list[float], other: list[float], point_id: str, alpha: float) -> Comparison:
    """Welch's test and the (1 - 2 alpha) interval of ``other - leader``, relative to the leader."""
    mean_l, mean_o = statistics.fmean(leader), statistics.fmean(other)
    var_l, var_o = statistics.variance(leader) / len(leader), statistics.variance(other) / len(other)
    se = math.sqrt(var_l + var_o)
    difference = (mean_o - mean_l) / mean_l
    if se == 0:
        p = 0.0 if mean_l > mean_o else 1.0
        return Comparison(point_id, difference, difference, difference, p)
    df = (var_l + var_o) ** 2 / (var_l**2 / (len(leader) - 1) + var_o**2 / (len(other) - 1))
    half = float(stats.t.ppf(1 - alpha, df)) * se / mean_l
    p = float(stats.ttest_ind(leader, other, equal_var=False, alternative="greater").pvalue)
    return Comparison(point_id, difference, difference - half, difference + half, p)


@dataclass
class Race:
    entrants: dict[str, float]  # point id -> operating level
    fallbacks: dict[str, list[float]]  # point id -> lower levels within the SLO, highest first
    costs: dict[str, Cost]
    history: History
    slo_p99_ms: float | None = None
    margin: float = MARGIN
    alpha: float = ALPHA
    min_samples: int = MIN_SAMPLES
    max_rounds: int = MAX_ROUNDS
    sequential: bool = True  # False: decide once, after max_rounds rounds (--repeats N)
    survivors: list[str] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)  # point id -> why
    rounds: int = 0
    verdict: str = ""
    winner: str | None = None
    comparisons: list[Comparison] = field(default_factory=list)
    moves: dict[str, list[str]] = field(default_factory=dict)  # point id -> levels it moved down, why
    recheck: float | None = None  # the winner's last measurement
    _rechecked: bool = False

    def __post_init__(self) -> None:
        self.survivors = list(self.entrants)
        if not self.survivors:
            self.verdict = NONE

    def propose(self) -> list[Trial]:
        if self.verdict:
            return self._recheck()
        self._decide()
        if self.verdict:
            return self._recheck()
        self.rounds += 1
        start = self.rounds % len(self.survivors)
        order = self.survivors[start:] + self.survivors[:start]
        return [self.history.trial(p, self.entrants[p], "race") for p in order]

    def _recheck(self) -> list[Trial]:
        if self._rechecked or self.verdict in (ALONE, NONE):
            return []  # nothing to have drifted against
        self._rechecked = True
        return [self.history.trial(self.winner, self.entrants[self.winner], "recheck")]

    def tell(self, trial: Trial, outcome: Outcome) -> None:
        self.history.add(trial, outcome)
        if trial.phase == "recheck" and outcome.ok:
            self.recheck = outcome.throughput

    def _samples(self, point_id: str) -> list[float]:
        return self.history.samples(point_id, self.entrants[point_id])

    def _decide(self) -> None:
        """Drop, stop, or go on, from the samples so far."""
        for point in list(self.survivors):
            outcomes = self.history.outcomes(point, self.entrants[point])
            failures = sum(not o.ok for o in outcomes)
            if failures >= self.min_samples:
                self._drop(point, f"{failures} measurements failed: {outcomes[-1].error}")
        if len(self.survivors) <= 1:
            self._finish(ALONE if len(self.entrants) == 1 else CLEAR)
            return
        last = self.rounds >= self.max_rounds
        if self._over_slo() and not last:
            return
        if len(self.survivors) <= 1:
            self._finish(CLEAR if self.survivors else NONE)
            return
        enough = all(len(self._samples(p)) >= self.min_samples for p in self.survivors)
        if enough and (self.sequential or last):
            self._eliminate()
            if len(self.survivors) == 1:
                self._finish(CLEAR)
                return
            if all(self.margin > max(-c.low, c.high) for c in self.comparisons):
                self._finish(EQUIVALENT)
                return
        if last:
            self._finish(UNDECIDED)

    def _over_slo(self) -> bool:
        """Move each survivor whose mean p99 breaks the SLO one level down (or drop it); True
        if any moved, so samples at the new level are needed before comparing."""
        moved = False
        for point in list(self.survivors):
            level = self.entrants[point]
            p99 = [o.p99_ms for o in self.history.outcomes(point, level) if o.ok]
            if self.slo_p99_ms is None or statistics.fmean(p99) <= self.slo_p99_ms:
                continue
            why = f"p99 {statistics.fmean(p99):.1f} ms on average at concurrency {level:g}, over the SLO"
            if self.fallbacks.get(point):
                self.entrants[point] = self.fallbacks[point].pop(0)
                self.moves[point] = [
                    *self.moves.get(point, []),
                    f"round {self.rounds}: {why}: to {self.entrants[point]:g}",
                ]
                moved = True
            else:
                self._drop(point, why)
        return moved

    def _eliminate(self) -> None:
        leader = self.leader
        corrected = self.alpha / (len(self.survivors) - 1)
        self.comparisons = [
            compare(self._samples(leader), self._samples(p), p, corrected) for p in self.survivors if p != leader
        ]
        for c in self.comparisons:
            if c.p_behind < corrected:
                self._drop(c.point_id, f"behind {leader} by {-c.difference:.1%} (Welch p = {c.p_behind:.2g})")
        self.comparisons = [c for c in self.comparisons if c.point_id in self.survivors]

    def _drop(self, point: str, why: str) -> None:
        self.survivors.remove(point)
        self.dropped[point] = f"round {self.rounds}: {why}"

    @property
    def leader(self) -> str:
        return max(self.survivors, key=lambda p: statistics.fmean(self._samples(p) or [0.0]))

    def _finish(self, verdict: str) -> None:
        self.verdict = verdict
        if not self.survivors:
            self.verdict = NONE
            return
        memory = {p: _mean([o.memory_mb for o in self.history.outcomes(p) if o.ok]) for p in self.survivors}
        speed = {p: statistics.fmean(self._samples(p) or [0.0]) for p in self.survivors}
        self.winner = cheapest(self.survivors, self.costs, memory, speed)

    def estimate(self) -> int:
        if self.verdict:
            return 0 if self._rechecked else 1
        return len(self.survivors) * max(1, self.min_samples - self.rounds) + 1

    def record(self) -> dict[str, Any]:
        return {
            "race": {
                "entrants": self.entrants,
                "survivors": self.survivors,
                "dropped": self.dropped,
                "moves": self.moves,
                "rounds": self.rounds,
                "verdict": self.verdict,
                "winner": self.winner,
                "margin": self.margin,
                "alpha": self.alpha,
                "comparisons": [c.__dict__ for c in self.comparisons],
                "recheck": self.recheck,
            }
        }


def _mean(values: list[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return statistics.fmean(kept) if kept else math.nan
