"""Racing: the cheapest config within ``margin`` of the best, told apart with as few
measurements as the noise allows.

The target is stated before the race: among configs whose throughput is within ``margin`` of
the fastest, the one that costs least (fewer instances, less memory, a shorter queue delay,
smaller batches). Only two things can change that answer: the cheapest config still in the race
is shown more than ``margin`` behind the leader (it leaves, the next cheapest takes its place),
or it is shown within ``margin`` of the leader (it wins). So the race measures only what can
decide them:

- first, every config at its operating level until it has ``min_samples`` throughputs (the
  load search's own measurement at that level counts), the order rotating from round to round;
- a config whose race measurements show its level over the SLO (their mean p99 above it, by
  a one-sided t-test at ``alpha``) moves down to the next lower level within the SLO, and
  leaves only when there is none: one lucky probe at the SLO's edge must not decide the race.
  A mean a little over, within the noise of p99 readings, is not shown over: were it enough,
  configs with the same latency at the SLO's edge would be moved down or not by the flip of
  a coin, and a config a level down loses the race for its level, not its settings. The load
  search's own reading is left out of the test: it was chosen for meeting the SLO;
- a config is dropped when Welch's one-sided test says the leader is faster by more than the
  margin (p below ``alpha`` divided by the number of comparisons: Bonferroni). A config within
  the margin is never dropped for being a little slower: it may be the answer;
- then a duel: the cheapest survivor and the leader, measured in turn, until the cheapest is
  dropped (the next cheapest duels), is shown within the margin (the interval of its
  difference from the leader lies above ``-margin``: it wins, EQUIVALENT), or leads itself
  (LEADS), or going on could no longer change the answer: the race has spent ``max_rounds``
  rounds' worth of measurements, or the rest of that budget gives under ``FUTILE`` chance of
  dropping the cheapest and two more steps are unlikely to show it within the margin, were the
  measured means and spreads to hold (UNDECIDED: it wins, not having been shown behind, and the
  report says so). Proving a near-tie equivalent at a noise above the margin takes more
  measurements than the answer is worth: they would change the verdict's words, not the config.

Near-ties cost two measurements a step instead of a round of every config, and the answer
does not follow the noise: the cheapest survivor wins unless it is shown clearly slower. The
winner is measured once more, last, to catch drift over the race. With ``sequential`` off
(``--repeats N``) every config is measured in full rounds and the same rule decides once.
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
FUTILE = 0.2  # a duel goes on only while the chance that it drops the cheapest is at least this,
SOON, LIKELY = 2, 0.5  # or while two more steps would likely show it within the margin
MARGIN = 0.05
MIN_SAMPLES = 3
MAX_ROUNDS = 5
CLEAR, EQUIVALENT, LEADS, UNDECIDED = "clear", "equivalent", "leads", "undecided"
RACED = ("race", "recheck")  # the phases of a race's own measurements
ALONE, NONE = "alone", "none"


@dataclass(frozen=True)
class Comparison:
    """A survivor against the leader: the difference of mean throughputs with its interval
    (relative to the leader's mean), and the one-sided p that the leader is faster by more
    than the margin."""

    point_id: str
    difference: float
    low: float
    high: float
    p_behind: float


def compare(leader: list[float], other: list[float], point_id: str, alpha: float, margin: float = 0.0) -> Comparison:
    """Welch's test that ``other`` is behind ``leader`` by more than ``margin`` (the leader's
    samples scaled by 1 - margin), and the (1 - 2 alpha) interval of ``other - leader``,
    relative to the leader."""
    mean_l, mean_o = statistics.fmean(leader), statistics.fmean(other)
    var_l, var_o = statistics.variance(leader) / len(leader), statistics.variance(other) / len(other)
    se = math.sqrt(var_l + var_o)
    difference = (mean_o - mean_l) / mean_l
    if se == 0:
        p = 0.0 if difference < -margin else 1.0
        return Comparison(point_id, difference, difference, difference, p)
    df = (var_l + var_o) ** 2 / (var_l**2 / (len(leader) - 1) + var_o**2 / (len(other) - 1))
    half = float(stats.t.ppf(1 - alpha, df)) * se / mean_l
    shifted = [value * (1 - margin) for value in leader]
    p = float(stats.ttest_ind(shifted, other, equal_var=False, alternative="greater").pvalue)
    return Comparison(point_id, difference, difference - half, difference + half, p)


def shown_over(p99_ms: list[float], slo_p99_ms: float, alpha: float) -> bool:
    """Whether readings show the mean p99 over the SLO: a one-sided t-test at ``alpha``, so
    from two readings on (equal readings: their mean over it)."""
    if len(p99_ms) < 2 or statistics.fmean(p99_ms) <= slo_p99_ms:
        return False
    if statistics.stdev(p99_ms) == 0:
        return True
    return float(stats.ttest_1samp(p99_ms, slo_p99_ms, alternative="greater").pvalue) < alpha


def chances(leader: list[float], other: list[float], margin: float, alpha: float, more: int) -> tuple[float, float]:
    """The chances that ``more`` further measurements of each would show ``other`` behind
    ``leader`` by more than ``margin``, and within it, at ``alpha``, were their means and
    spreads to hold (normal approximation): what going on could still settle."""
    shifted = [value * (1 - margin) for value in leader]
    gap = statistics.fmean(shifted) - statistics.fmean(other)
    se = math.sqrt(
        statistics.variance(shifted) / (len(shifted) + more) + statistics.variance(other) / (len(other) + more)
    )
    if se == 0:
        return (1.0, 0.0) if gap > 0 else (0.0, 1.0)
    z = stats.norm.ppf(1 - alpha)
    return float(stats.norm.cdf(gap / se - z)), float(stats.norm.cdf(-gap / se - z))


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
    max_rounds: int = MAX_ROUNDS  # the race's budget: this many rounds' worth of measurements
    sequential: bool = True  # False: full rounds, decided once after max_rounds (--repeats N)
    survivors: list[str] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)  # point id -> why
    rounds: int = 0  # steps taken: rounds of the configs short of samples, then duels
    measured: int = 0  # race measurements proposed
    verdict: str = ""
    winner: str | None = None
    comparisons: list[Comparison] = field(default_factory=list)
    duels: list[str] = field(default_factory=list)  # the cheapest survivors that dueled the leader, in turn
    moves: dict[str, list[str]] = field(default_factory=dict)  # point id -> levels it moved down, why
    recheck: float | None = None  # the winner's last measurement
    ahead: str | None = None  # the leader when the race was decided (the recheck may change who leads)
    _rechecked: bool = False

    def __post_init__(self) -> None:
        self.survivors = list(self.entrants)
        if not self.survivors:
            self.verdict = NONE

    @property
    def budget(self) -> int:
        return self.max_rounds * len(self.entrants)

    def propose(self) -> list[Trial]:
        if not self.verdict:
            order = self._next()
            if order:
                self.rounds += 1
                self.measured += len(order)
                return [self.history.trial(p, self.entrants[p], "race") for p in order]
        return self._recheck()

    def _next(self) -> list[str]:
        """The configs to measure next, in order; none when the race is decided."""
        for point in list(self.survivors):
            outcomes = self.history.outcomes(point, self.entrants[point])
            failures = sum(not o.ok for o in outcomes)
            if failures >= self.min_samples:
                self._drop(point, f"{failures} measurements failed: {outcomes[-1].error}")
        if len(self.survivors) <= 1:
            return self._finish(ALONE if len(self.entrants) == 1 else CLEAR)
        spent = self.measured >= self.budget if self.sequential else self.rounds >= self.max_rounds
        moved = self._over_slo() and not spent
        if len(self.survivors) <= 1:
            return self._finish(CLEAR if self.survivors else NONE)
        if not self.sequential and not spent:
            return self._rotated(self.survivors)
        short = [p for p in self.survivors if len(self._samples(p)) < self.min_samples]
        if (moved or short) and not spent:
            return self._rotated(short or self.survivors)
        self._eliminate()
        if len(self.survivors) == 1:
            return self._finish(CLEAR)
        candidate, leader = cheapest(self.survivors, self.costs, self._memory(), self._speed()), self.leader
        if not self.duels or self.duels[-1] != candidate:
            self.duels.append(candidate)
        if candidate == leader:
            return self._finish(LEADS, candidate)
        samples = self._samples(leader), self._samples(candidate)
        if min(map(len, samples)) < 2:
            return self._finish(UNDECIDED, candidate)  # the budget ran out before two samples each
        if compare(*samples, candidate, self.alpha, self.margin).low > -self.margin:
            return self._finish(EQUIVALENT, candidate)
        corrected = self.alpha / (len(self.survivors) - 1)
        drop, _ = chances(*samples, self.margin, corrected, (self.budget - self.measured) // 2)
        _, within = chances(*samples, self.margin, self.alpha, SOON)
        if spent or not self.sequential or (drop < FUTILE and within < LIKELY):
            return self._finish(UNDECIDED, candidate)
        return [candidate, leader] if self.rounds % 2 else [leader, candidate]

    def _rotated(self, points: list[str]) -> list[str]:
        start = self.rounds % len(points)
        return points[start:] + points[:start]

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

    def _memory(self) -> dict[str, float]:
        return {p: _mean([o.memory_mb for o in self.history.outcomes(p) if o.ok]) for p in self.survivors}

    def _speed(self) -> dict[str, float]:
        return {p: statistics.fmean(self._samples(p) or [0.0]) for p in self.survivors}

    def _over_slo(self) -> bool:
        """Move each survivor whose race measurements show its level over the SLO one level
        down (or drop it); True if any moved, so samples at the new level are needed before
        comparing."""
        moved = False
        for point in list(self.survivors):
            level = self.entrants[point]
            p99 = [o.p99_ms for t, o in self.history.told
                   if t.point_id == point and t.level == level and t.phase in RACED and o.ok]  # fmt: skip
            if self.slo_p99_ms is None or not shown_over(p99, self.slo_p99_ms, self.alpha):
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
        """Drop every survivor shown behind the leader by more than the margin."""
        leader = self.leader
        corrected = self.alpha / (len(self.survivors) - 1)
        if len(self._samples(leader)) < 2:
            return
        self.comparisons = [
            compare(self._samples(leader), self._samples(p), p, corrected, self.margin)
            for p in self.survivors
            if p != leader and len(self._samples(p)) >= 2
        ]
        for c in self.comparisons:
            if c.p_behind < corrected:
                self._drop(c.point_id, f"behind {leader} by {-c.difference:.1%}, more than the "
                                       f"{self.margin:.0%} margin (Welch p = {c.p_behind:.2g})")  # fmt: skip
        self.comparisons = [c for c in self.comparisons if c.point_id in self.survivors]

    def _drop(self, point: str, why: str) -> None:
        self.survivors.remove(point)
        self.dropped[point] = f"round {self.rounds}: {why}"

    @property
    def leader(self) -> str:
        return max(self.survivors, key=lambda p: statistics.fmean(self._samples(p) or [0.0]))

    def _finish(self, verdict: str, winner: str | None = None) -> list[str]:
        self.verdict = verdict
        if not self.survivors:
            self.verdict = NONE
        else:
            self.winner = winner or cheapest(self.survivors, self.costs, self._memory(), self._speed())
            self.ahead = self.leader
        return []

    def estimate(self) -> int:
        if self.verdict:
            return 0 if self._rechecked else 1
        if not self.sequential:
            return len(self.survivors) * (self.max_rounds - self.rounds) + 1
        short = sum(max(0, self.min_samples - len(self._samples(p))) for p in self.survivors)
        return short + min(4, self.budget - self.measured) + 1

    def record(self) -> dict[str, Any]:
        return {
            "race": {
                "entrants": self.entrants,
                "survivors": self.survivors,
                "dropped": self.dropped,
                "moves": self.moves,
                "rounds": self.rounds,
                "measured": self.measured,
                "budget": self.budget,
                "duels": self.duels,
                "leader": self.ahead,
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
