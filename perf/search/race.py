"""Racing: the cheapest config within ``margin`` of the best, told apart with as few
measurements as the noise allows.

The target is stated before the race: among configs whose throughput is within ``margin`` of
the fastest, the one that costs least (fewer instances, less memory, a shorter queue delay,
smaller batches). Only two things can change that answer: the cheapest config still in the race
is shown more than ``margin`` behind the leader (it leaves, the next cheapest takes its place),
or it is shown within ``margin`` of the leader (it wins). So the race measures only what can
decide them:

- configs that run alike at their level (``alike``: settings no batch there can reach, such
  as max_batch_size 8 and 16 with four requests in flight) are one config twice: the cheapest
  of them races, the others leave before the first round, and the budget stays theirs too;
- first, every config at its operating level until it has ``min_samples`` throughputs (the
  load search's own measurement at that level counts), the order rotating from round to round;
- a config whose race measurements show its level over the SLO (their mean p99 above it, by
  a one-sided t-test at ``alpha``) moves down to the next lower level within the SLO, and
  leaves only when there is none: one lucky probe at the SLO's edge must not decide the race.
  A mean a little over, within the noise of p99 readings, is not shown over: were it enough,
  configs with the same latency at the SLO's edge would be moved down or not by the flip of
  a coin, and a config a level down loses the race for its level, not its settings. The load
  search's own reading is left out of the test: it was chosen for meeting the SLO;
- the other way too, where perf searched the concurrency (``climb``): a config whose readings
  at its level put the next level up within the SLO (their mean p99, raised by what one more
  request in flight adds on the config's own curve from concurrency 1) moves up one level,
  if what held it below was the load search's single reading over the SLO and one more
  request still adds throughput. That reading caps the config for the whole race otherwise,
  and it is as noisy as any: one config's load search read p99 65 ms at 4 and left it at 3,
  where the race read 32 to 39 ms, and it lost by a third to a config it had led by 17 % at
  the same level an hour later. The climb is a trial judged on means both ways: the level
  tried goes back down when its race readings' mean p99 is over the SLO, no test needed.
  The two errors are not alike: raced a level low, a config loses a quarter of its
  throughput at 3 or 4 requests in flight; raced a level high at a p99 a little over, it
  gains the few per cent between the SLO and that level (and its readings are carried to the
  SLO where a level above is measured). A t-test on p99 readings that scatter 15 % needed
  six readings to show a level within, more than a ``--repeats 6`` race has before its
  budget is spent. The load search's reading at the level counts here, so the question is
  asked by the second round, before any drop. A level the race measured is never climbed
  back to: a config moves between two levels once;
- a config is dropped when a one-sided test says the leader is faster by more than the margin
  (p below ``alpha`` divided by the number of comparisons: Bonferroni). A config within the
  margin is never dropped for being a little slower: it may be the answer;
- then a duel: the cheapest survivor and the leader, measured in turn, until the cheapest is
  dropped (the next cheapest duels), is shown within the margin (the interval of its
  difference from the leader lies above ``-margin``: it wins, EQUIVALENT), or leads itself
  (LEADS), or going on could no longer change the answer: the race has spent ``max_rounds``
  rounds' worth of measurements (those that re-found a moved config's level not counted: they
  redo the load search's work) or, under a budget in time (``until``), the measurements the
  time left pays for, those included: the user's ``--budget 10m`` is the whole sweep's, not
  only its search's; or the rest of that budget gives under ``FUTILE`` chance of
  dropping the cheapest and two more steps are unlikely to show it within the margin, were the
  measured means and spreads to hold (UNDECIDED: it wins, not having been shown behind, and the
  report says so, unless its readings make it more likely than not, corrected for the
  survivors, that it is behind by more than the margin: the next cheapest is then asked).
  Proving a near-tie equivalent at a noise above the margin takes more measurements than the
  answer is worth: they would change the verdict's words, not the config.

Near-ties cost two measurements a step instead of a round of every config, and the answer
does not follow the noise: the cheapest survivor wins unless it is shown clearly slower. The
winner is measured once more, last, to catch drift over the race. With ``sequential`` off
(``--repeats N``) every config is measured in full rounds and the same rule decides once.

**Duels compared within steps, not across the race.** A shared machine drifts: on these two
cores a config's throughput moves 7 to 10 % between measurements a minute apart, against 2 to 3
% within one, and readings taken one after another move together (their correlation up to 0.7
in the recorded races). So log throughput is fitted as a config effect plus a block effect
(least squares, statsmodels), and a comparison is the difference of two config effects. The
load search's readings are one block (spread over minutes, nothing to pair); each of the race's
steps (a round, a duel's two, or a config moved a level measured beside the leader) is a block
of its own, so the drift its readings share cancels as in a paired test, while every reading
still counts. The two kinds scatter differently (in three of five recorded races of Model
Analyzer's grid, 5 to 9 % against 3 to 5 %), so each has its own variance where its readings
leave enough to estimate it: a comparison's spread is figured from both, and its degrees of
freedom follow both (Welch-Satterthwaite). Load-search readings taken on other servers
(``--servers``, several ``--url``) are a block per server: a server's speed is a factor, so it
cancels from the comparisons of configs it measured and never ranks one config against another
measured elsewhere; the race's own readings are all the first server's.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from perf.search import History, Outcome, Trial
from perf.search.cost import MEMORY_TOLERANCE, Cost, cheapest
from perf.search.load import KNEE

ALPHA = 0.05
FUTILE = 0.2  # a duel goes on only while the chance that it drops the cheapest is at least this,
SOON, LIKELY = 2, 0.5  # or while two more steps would likely show it within the margin
MARGIN = 0.05
PASS = 0.5  # an unsettled duel passes over a cheaper survivor likely behind by more than the margin
MIN_SAMPLES = 3
OPENING = 0  # the block of the first server's load-search readings (other servers': OPENING - server)
MAX_ROUNDS = 5
MIN_DF = 2  # the residual degrees of freedom each kind of reading needs for a variance of its own
CLEAR, EQUIVALENT, LEADS, UNDECIDED = "clear", "equivalent", "leads", "undecided"
RACED = ("race", "recheck")  # the phases of a race's own measurements
ALONE, NONE = "alone", "none"


@dataclass(frozen=True)
class Comparison:
    """A survivor against the leader: the difference of their throughputs with its interval
    (relative to the leader), and the one-sided p that the leader is faster by more than the
    margin. ``log_difference`` and ``se`` are on the log scale the fit works in, ``steps`` the
    steps that measured both: what a chance of settling it later is figured from."""

    point_id: str
    difference: float
    low: float
    high: float
    p_behind: float
    log_difference: float = 0.0
    se: float = 0.0
    steps: int = 0


@dataclass(frozen=True)
class Fit:
    """Each config's effect on log throughput, with the step each reading was taken in as a
    block (the drift both of a step's readings share), and the readings' spread by kind."""

    result: Any  # statsmodels' RegressionResults
    points: list[str]  # the design's first columns, in order
    steps: dict[str, set[int]]  # point -> the steps that measured it
    kinds: np.ndarray  # each reading's kind: 0 the opening, 1 a step's (one kind where pooled)
    variances: np.ndarray  # each kind's residual variance
    dfs: np.ndarray  # and its residual degrees of freedom

    def effect(self, point: str) -> float:
        return float(self.result.params[self.points.index(point)])

    def contrast(self, other: str, leader: str) -> tuple[float, float, float]:
        """``other``'s effect less ``leader``'s: the difference, its standard error and its
        degrees of freedom (Welch-Satterthwaite over the kinds' variances: a spread estimated
        from few readings counts for little)."""
        c = np.zeros(len(self.result.params))
        c[self.points.index(other)], c[self.points.index(leader)] = 1, -1
        influence = self.result.model.exog @ (self.result.normalized_cov_params @ c)
        parts = np.bincount(self.kinds, influence**2, minlength=len(self.variances)) * self.variances
        variance = float(parts.sum())
        df = variance**2 / float(np.sum(parts**2 / self.dfs)) if variance > 0 else float(self.dfs.sum())
        return float(c @ self.result.params), math.sqrt(variance), df


def fit(readings: list[tuple[str, int, float]]) -> Fit | None:
    """Least squares of log throughput on a config and a step factor, over ``readings``
    (point, step, throughput). Steps with one reading say nothing of a difference and are left
    out; None where no spread is left to judge by (no residual degree of freedom).

    The opening's readings (the load search's, spread over minutes) scatter more than a step's,
    taken one after the other (in three of five recorded races of Model Analyzer's grid; in
    the other two the steps scattered as much or more). One spread for both judges every
    duel by the opening's drift: in one of those races a config 11 % behind was dropped
    after eight duel steps where six would have done. So each kind has its own variance,
    estimated from its residuals with the degrees of freedom its readings leave, where each
    kind leaves at least ``MIN_DF``; else one variance is pooled. The effects stay those of
    plain least squares: weighing the readings by variances estimated from a few residuals
    made the drop test reject 6 to 8 % of the time at alpha = 0.05 (a config exactly at the
    margin, 2,000 draws), where this rejects 4.4 to 5.6 %."""
    from statsmodels.regression.linear_model import OLS  # 0.1 s to import: only where a race runs
    from statsmodels.tools.sm_exceptions import SingularMatrixWarning

    sizes = Counter(step for _, step, _ in readings)
    kept = [(p, s, t) for p, s, t in readings if sizes[s] > 1 and t > 0]
    points = sorted({p for p, _, _ in kept})
    steps = sorted({s for _, s, _ in kept})
    if not kept or len(kept) <= len(points) + len(steps) - 1:
        return None
    design = np.zeros((len(kept), len(points) + len(steps) - 1))
    for row, (point, step, _) in enumerate(kept):
        design[row, points.index(point)] = 1
        if step != steps[0]:
            design[row, len(points) + steps.index(step) - 1] = 1
    y = np.log([t for _, _, t in kept])
    measured: dict[str, set[int]] = {p: set() for p in points}
    for point, step, _ in kept:
        measured[point].add(step)
    kinds = np.array([int(s > OPENING) for _, s, _ in kept])
    with warnings.catch_warnings():
        # Every survivor moved a level in one step: their new readings share no step with the
        # old levels', so the two sets' offsets are one unknown. The fit (a pseudo-inverse)
        # still gives every difference within a set, and the race compares only survivors.
        warnings.simplefilter("ignore", SingularMatrixWarning)
        result = OLS(y, design).fit()
    variances, dfs = _spread(result, kinds)
    if len(dfs) < 2 or dfs.min() < MIN_DF or variances.min() <= 0:
        kinds = np.zeros(len(kept), dtype=int)  # one variance, pooled
        variances, dfs = _spread(result, kinds)
    return Fit(result, points, measured, kinds, variances, dfs)


def _spread(result: Any, kinds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each kind's residual variance and degrees of freedom (its readings less their leverage)."""
    design = result.model.exog
    leverage = np.einsum("ij,jk,ik->i", design, result.normalized_cov_params, design)
    dfs = np.bincount(kinds, 1 - leverage)
    squares = np.bincount(kinds, result.resid**2)
    return np.divide(squares, dfs, out=np.zeros_like(squares), where=dfs > 0), dfs


def compare(model: Fit, leader: str, other: str, alpha: float, margin: float = 0.0) -> Comparison:
    """The one-sided test that ``other`` is behind ``leader`` by more than ``margin`` (its
    throughput under 1 - margin of the leader's), and the (1 - 2 alpha) interval of their
    difference, relative to the leader."""
    d, se, df = model.contrast(other, leader)
    steps = len(model.steps[leader] & model.steps[other])
    bound = math.log(1 - margin)
    if se == 0:
        p = 0.0 if d < bound else 1.0
        return Comparison(other, math.expm1(d), math.expm1(d), math.expm1(d), p, d, se, steps)
    half = float(stats.t.ppf(1 - alpha, df)) * se
    p = float(stats.t.cdf((d - bound) / se, df))
    return Comparison(other, math.expm1(d), math.expm1(d - half), math.expm1(d + half), p, d, se, steps)


def shown_over(p99_ms: list[float], slo_p99_ms: float, alpha: float) -> bool:
    """Whether readings show the mean p99 over the SLO: a one-sided t-test at ``alpha``, so
    from two readings on (equal readings: their mean over it)."""
    if len(p99_ms) < 2 or statistics.fmean(p99_ms) <= slo_p99_ms:
        return False
    if statistics.stdev(p99_ms) == 0:
        return True
    return float(stats.ttest_1samp(p99_ms, slo_p99_ms, alternative="greater").pvalue) < alpha


def chances(c: Comparison, margin: float, alpha: float, more: int) -> tuple[float, float]:
    """The chances that ``more`` further steps measuring both would show the compared config
    behind the leader by more than ``margin``, and within it, at ``alpha``, were the difference
    and the spread to hold (normal approximation, the error shrinking with the steps that
    measured both): what going on could still settle."""
    gap = math.log(1 - margin) - c.log_difference  # > 0: behind by more than the margin
    se = c.se * math.sqrt(max(1, c.steps) / (max(1, c.steps) + more))
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
    # (point id, level) -> a key equal for configs that run alike there (perf.search.alike);
    # None: every entrant is raced (a level that is not a closed loop's concurrency)
    alike: Callable[[str, float], str] | None = None
    climb: bool = False  # the levels are concurrencies perf searched: one shown within the SLO may move up
    # a budget in time (--budget 10m): the race ends once the sweep's rows, the load search's
    # included, have cost this many seconds, whatever is left of ``max_rounds``
    until: float | None = None
    # the repository's own config: the first choice, before the cheapest, of configs not told
    # apart. It runs in production today; changing it for no measured gain is churn
    prefer: str | None = None
    survivors: list[str] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)  # point id -> why
    rounds: int = 0  # steps taken: rounds of the configs short of samples, then duels
    measured: int = 0  # race measurements proposed
    releveled: int = 0  # of them, those that re-found a moved config's level: the load search's work, not the budget's
    verdict: str = ""
    winner: str | None = None
    comparisons: list[Comparison] = field(default_factory=list)
    duels: list[str] = field(default_factory=list)  # the cheapest survivors that dueled the leader, in turn
    passed: dict[str, float] = field(default_factory=dict)  # unsettled: cheaper survivors likely behind, by this
    folded: dict[str, str] = field(default_factory=dict)  # point id -> the config alike at its level that raced
    moves: dict[str, list[str]] = field(default_factory=dict)  # point id -> levels it moved to, why
    recheck: float | None = None  # the winner's last measurement
    ahead: str | None = None  # the leader when the race was decided (the recheck may change who leads)
    _rechecked: bool = False
    _climbed: set[tuple[str, float]] = field(default_factory=set)  # (point, level) a climb tried
    _steps: dict[Trial, int] = field(default_factory=dict)  # each reading's block: its step, or OPENING
    _steps_up: dict[tuple[str, float, int], tuple[float, float] | None] = field(default_factory=dict)
    _fitted: tuple[tuple[int, tuple[float, ...]], Fit | None] | None = None  # the last fit, and what it was of

    def __post_init__(self) -> None:
        self.survivors = list(self.entrants)
        for trial, outcome in self.history.told:  # the load search's readings at the levels raced open the race
            if trial.level == self.entrants.get(trial.point_id):
                self._steps[trial] = OPENING - outcome.server  # each server's readings a block: its speed cancels
        if self.alike is not None:
            self._fold(self.alike)
        if not self.survivors:
            self.verdict = NONE

    def _fold(self, alike: Callable[[str, float], str]) -> None:
        """Entrants that run alike at their level: the cheapest races for them all. The budget
        stays the entrants', so the contests left get the measurements."""
        groups: dict[tuple[str, float], list[str]] = {}
        for point in self.survivors:
            level = self.entrants[point]
            groups.setdefault((alike(point, level), level), []).append(point)
        for (_, level), points in groups.items():
            kept = self._first_choice(points)
            for point in points:
                if point != kept:
                    self.folded[point] = kept
                    why = "the repository's own config raced for it" if kept == self.prefer else "it costs more"
                    self._drop(point, f"runs as {kept} does at {level:g}: no batch there reaches the batch "
                                      f"sizes that tell them apart; {why}")  # fmt: skip

    @property
    def budget(self) -> int:
        return self.max_rounds * len(self.entrants)

    @property
    def left(self) -> int:
        """What is left of the budget: of ``max_rounds``' measurements, and of those the time left
        pays for at the mean cost of a row so far."""
        left = self.budget + self.releveled - self.measured
        return left if self.until is None else min(left, self._paid_for())

    def _paid_for(self) -> int:
        """The measurements the budget in time still pays for (a large number without one)."""
        seconds = [o.seconds for _, o in self.history.told]
        per_row = statistics.fmean(seconds) if seconds else 0.0
        if self.until is None or per_row <= 0:
            return self.budget
        return math.floor((self.until - sum(seconds)) / per_row)

    def propose(self) -> list[Trial]:
        if not self.verdict:
            order = self._next()
            if order:
                self.rounds += 1
                self.measured += len(order)
                trials = [self.history.trial(p, self.entrants[p], "race") for p in order]
                self._steps.update(dict.fromkeys(trials, self.rounds))
                return trials
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
        spent = self.left <= 0 if self.sequential else self.rounds >= self.max_rounds
        self._over_slo()
        if self.climb and not spent:
            self._under_slo()
        if len(self.survivors) <= 1:
            return self._finish(CLEAR if self.survivors else NONE)
        if not self.sequential and not spent:
            return self._rotated(self.survivors)
        short = [p for p in self.survivors if len(self._samples(p)) < self.min_samples]
        relevel = any(p in self.moves for p in short) and self._paid_for() > 0  # a budget in time ends even this
        if short and (not spent or relevel):  # the first rounds, or a level moved
            leader = self.leader
            moved = [p for p in short if p in self.moves]
            self.releveled += len(moved) + (leader not in short and len(moved) == len(short))
            return self._rotated(short + ([leader] if leader not in short else []))
        model = self._eliminate()
        if len(self.survivors) == 1:
            return self._finish(CLEAR)
        candidate, leader = self._first_choice(self.survivors), self.leader
        if not self.duels or self.duels[-1] != candidate:
            self.duels.append(candidate)
        if candidate == leader:
            return self._finish(LEADS, candidate)
        if model is None or min(len(self._samples(p)) for p in (leader, candidate)) < 2:
            return self._finish(UNDECIDED, candidate)  # the budget ran out before two samples each
        duel = compare(model, leader, candidate, self.alpha, self.margin)
        if duel.low > -self.margin:
            return self._finish(EQUIVALENT, candidate)
        if not self.sequential:  # every config measured alike: the drop test alone decides
            return self._finish(UNDECIDED, candidate)
        corrected = self.alpha / (len(self.survivors) - 1)
        drop, _ = chances(duel, self.margin, corrected, max(0, self.left) // 2)
        _, within = chances(duel, self.margin, self.alpha, SOON)
        if spent or (drop < FUTILE and within < LIKELY):
            return self._undecided(model, leader)
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
        """A config's throughputs at its level, carried to the SLO: the race's, and the load search's reading there."""
        level = self.entrants[point_id]
        return [self._at_slo(t, o) for t, o in self._readings() if t.point_id == point_id and t.level == level]

    def _readings(self) -> list[tuple[Trial, Outcome]]:
        return [(t, o) for t, o in self.history.told if t in self._steps and o.ok]

    def _fit(self) -> Fit | None:
        """The fit of every race reading: those of dropped configs and of levels left count
        too, for they share steps with the others and so tell the drift (a config at a level it
        left is another config here)."""
        key = (len(self.history.told), tuple(self.entrants.values()))
        if self._fitted is None or self._fitted[0] != key:
            readings = [(self._key(t), self._steps[t], self._at_slo(t, o)) for t, o in self._readings()]
            self._fitted = key, fit(readings)
        return self._fitted[1]

    def _at_slo(self, trial: Trial, outcome: Outcome) -> float:
        """A reading's throughput carried to the SLO: what the race compares where an SLO bounds
        the load. Concurrency comes in whole requests, and one more in flight is worth 10 to 20 %
        of throughput near the SLO here: two configs alike, one raced at 6 and one at 5 because a
        single reading at 6 came out at 50.3 ms instead of 49.9, would be ranked by their levels.
        So each reading moves along the line from its own level to the next one measured above
        (the load search's readings there, which broke the SLO, or the race's, a level moved
        down from): by its p99's distance from the SLO, at most one such step either way."""
        if self.slo_p99_ms is None:
            return outcome.throughput
        above = self._above(trial.point_id, trial.level)
        if above is None:
            return outcome.throughput
        step, slope = above
        shift = max(-step, min(step, slope * (self.slo_p99_ms - outcome.p99_ms)))
        return outcome.throughput + shift if not math.isnan(shift) else outcome.throughput

    def _carried(self) -> dict[str, tuple[float, float]]:
        """The configs whose readings are carried to the SLO: the step to their next level up."""
        steps = {p: self._above(p, level) for p, level in self.entrants.items()} if self.slo_p99_ms else {}
        return {p: step for p, step in steps.items() if step is not None}

    def _above(self, point: str, level: float) -> tuple[float, float] | None:
        """From ``level`` to the next level measured above it: the throughput it adds, and that
        per millisecond of p99 (the means of each level's readings); None with no level above,
        or where it adds under ``KNEE`` of throughput (past the knee, where a step adds only
        noise) or no latency."""
        key = (point, level, len(self.history.told))
        if key not in self._steps_up:
            self._steps_up[key] = self._step_up(point, level)
        return self._steps_up[key]

    def _step_up(self, point: str, level: float) -> tuple[float, float] | None:
        readings: dict[float, list[Outcome]] = {}
        for t, o in self.history.told:
            if t.point_id == point and t.level >= level and o.ok and not math.isnan(o.p99_ms):
                readings.setdefault(t.level, []).append(o)
        higher = [lvl for lvl in readings if lvl > level]
        if level not in readings or not higher:
            return None
        low, high = readings[level], readings[min(higher)]
        served = statistics.fmean(o.throughput for o in low)
        gain = statistics.fmean(o.throughput for o in high) - served
        later = statistics.fmean(o.p99_ms for o in high) - statistics.fmean(o.p99_ms for o in low)
        return (gain, gain / later) if gain > KNEE * served and later > 0 else None

    def _key(self, trial: Trial) -> str:
        left = trial.level != self.entrants[trial.point_id]
        return f"{trial.point_id} at {trial.level:g}" if left else trial.point_id

    def _same_cost(self) -> list[str]:
        """The survivors that cost what the winner costs, by every measure of the declared order
        (memory within its tolerance): a tie among them has no order, and the report says so."""
        if self.winner is None:
            return []
        memory, mine = self._memory(), self.costs.get(self.winner)

        def close(a: float, b: float) -> bool:
            return math.isnan(a) or math.isnan(b) or max(a, b) <= MEMORY_TOLERANCE * min(a, b)

        return [p for p in self.survivors if p != self.winner and self.costs.get(p) == mine
                and close(memory.get(p, math.nan), memory.get(self.winner, math.nan))]  # fmt: skip

    def _memory(self) -> dict[str, float]:
        return {p: _mean([o.memory_mb for o in self.history.outcomes(p) if o.ok]) for p in self.survivors}

    def _speed(self) -> dict[str, float]:
        model = self._fit()
        return {p: self._effect(model, p) for p in self.survivors}

    def _effect(self, model: Fit | None, point: str) -> float:
        """How fast a config is, for ranking: its fitted effect (the steps' drift taken out),
        else the log of its mean; minus infinity with no race measurement yet."""
        if model is not None and point in model.points:
            return model.effect(point)
        samples = self._samples(point)
        return math.log(statistics.fmean(samples)) if samples else -math.inf

    def _raced(self, point: str, level: float) -> list[tuple[Trial, Outcome]]:
        return [(t, o) for t, o in self.history.told
                if t.point_id == point and t.level == level and t.phase in RACED and o.ok]  # fmt: skip

    def _over_slo(self) -> None:
        """Move each survivor whose race measurements show its level over the SLO one level
        down (or drop it): it is then short of samples at its new level."""
        for point in list(self.survivors):
            level = self.entrants[point]
            p99 = [o.p99_ms for _, o in self._raced(point, level)]
            if self.slo_p99_ms is None:
                continue
            tried = (point, level) in self._climbed  # a level tried on the means goes back on them
            if not (len(p99) >= 2 and statistics.fmean(p99) > self.slo_p99_ms if tried else
                    shown_over(p99, self.slo_p99_ms, self.alpha)):  # fmt: skip
                continue
            why = f"p99 {statistics.fmean(p99):.1f} ms on average at concurrency {level:g}, over the SLO"
            if self.fallbacks.get(point):
                self._move(point, self.fallbacks[point].pop(0), f"{why}: down to")
            else:
                self._drop(point, why)

    def _under_slo(self) -> None:
        """Move each survivor one level up whose readings at its level put that level within
        the SLO, where only the load search's single reading said otherwise and one more
        request in flight still adds throughput (see the module's docstring); it is then short
        of samples at its new level."""
        for point in self.survivors:
            level, up = self.entrants[point], self.entrants[point] + 1
            at = [o for t, o in self.history.told if t.point_id == point and t.level == level and o.ok]
            if self.slo_p99_ms is None or len(at) < 3 or self._raced(point, up) or not self._capped(point, up):
                continue
            p99 = statistics.fmean(o.p99_ms for o in at)
            served = statistics.fmean(o.throughput for o in at)
            added_ms, adds = self._per_level(point, level, p99, served)
            if adds > KNEE * served and p99 + added_ms < self.slo_p99_ms:
                self._climbed.add((point, up))
                self.fallbacks[point] = [level, *self.fallbacks.get(point, [])]
                self._move(point, up, f"p99 {p99:.1f} ms on average at concurrency {level:g}, "
                                      f"{p99 + added_ms:.1f} expected at {up:g}: up to")  # fmt: skip

    def _capped(self, point: str, level: float) -> bool:
        """Whether a load-search reading over the SLO at ``level`` or above is what keeps the
        config below it."""
        return any(t.point_id == point and t.level >= level and t.phase not in RACED and o.ok
                   and o.p99_ms > (self.slo_p99_ms or math.inf) for t, o in self.history.told)  # fmt: skip

    def _per_level(self, point: str, level: float, p99: float, served: float) -> tuple[float, float]:
        """What one more request in flight adds near ``level``, to p99 and to throughput
        (``p99`` and ``served`` there). p99: the chord from the lowest level measured, its
        readings the steadiest (one request at a time). Throughput: the lesser of that chord's
        and the one from the next level measured below, so that a config at its knee, where
        a level adds nothing, is not taken for a climber by one low reading at concurrency 1.
        With no level below, ``p99 / level`` and ``served / level`` (in proportion to the
        requests in flight, as p99 at saturation and throughput before it)."""
        below: dict[float, list[Outcome]] = {}
        for t, o in self.history.told:
            if t.point_id == point and t.level < level and o.ok and not math.isnan(o.p99_ms):
                below.setdefault(t.level, []).append(o)
        if not below:
            return p99 / level, served / level
        lowest = min(below)
        adds = min((served - statistics.fmean(o.throughput for o in below[at])) / (level - at)
                   for at in (lowest, max(below)))  # fmt: skip
        return max(0.0, p99 - statistics.fmean(o.p99_ms for o in below[lowest])) / (level - lowest), adds

    def _move(self, point: str, level: float, why: str) -> None:
        self.entrants[point] = level
        self.moves[point] = [*self.moves.get(point, []), f"round {self.rounds}: {why} {level:g}"]

    def _eliminate(self) -> Fit | None:
        """Drop every survivor shown behind the leader by more than the margin; the fit of the
        survivors left."""
        model, leader = self._fit(), self.leader
        corrected = self.alpha / (len(self.survivors) - 1)
        if model is None or len(self._samples(leader)) < 2:
            return model
        self.comparisons = [
            compare(model, leader, p, corrected, self.margin)
            for p in self.survivors
            if p != leader and len(self._samples(p)) >= 2
        ]
        for c in self.comparisons:
            if c.p_behind < corrected:
                self._drop(c.point_id, f"behind {leader} by {-c.difference:.1%}, more than the "
                                       f"{self.margin:.0%} margin (p = {c.p_behind:.2g})")  # fmt: skip
        self.comparisons = [c for c in self.comparisons if c.point_id in self.survivors]
        return self._fit() if len(self.survivors) > 1 else model

    def _undecided(self, model: Fit, leader: str) -> list[str]:
        """The duel ends unsettled: the cheapest survivor wins, unless its readings make it more
        likely than not (one-sided p under ``PASS``, Bonferroni-corrected as the drop test is)
        that it is behind the leader by more than the margin; then the next cheapest is asked
        the same. The duels run one after another on one budget: of two one-instance configs
        alike, the first dueled could be shown behind while the second, its budget spent after
        a step or two, won for being cheaper (in 73 of 400 synthetic races of Model Analyzer's
        grid). Not shown behind is not enough where the readings point behind; a near-tie's
        readings do not (eight configs within 3 %: the cheapest still wins as often)."""
        pool = list(self.survivors)
        while True:
            candidate = self._first_choice(pool)
            if candidate == leader or len(self._samples(candidate)) < 2:
                return self._finish(UNDECIDED, candidate)
            c = compare(model, leader, candidate, self.alpha, self.margin)
            if c.p_behind >= PASS / (len(self.survivors) - 1):
                return self._finish(UNDECIDED, candidate)
            self.passed[candidate] = c.difference
            pool.remove(candidate)

    def _first_choice(self, points: list[str]) -> str:
        """The config the race keeps among ``points`` unless it is shown behind: the user's own
        where it is one of them, else the cheapest."""
        if self.prefer in points:
            return self.prefer
        return cheapest(points, self.costs, self._memory(), self._speed())

    def _drop(self, point: str, why: str) -> None:
        self.survivors.remove(point)
        self.dropped[point] = f"round {self.rounds}: {why}"

    @property
    def leader(self) -> str:
        speed = self._speed()
        return max(self.survivors, key=lambda p: speed[p])

    def _finish(self, verdict: str, winner: str | None = None) -> list[str]:
        self.verdict = verdict
        if not self.survivors:
            self.verdict = NONE
        else:
            self.winner = winner or self._first_choice(self.survivors)
            self.ahead = self.leader
        return []

    def estimate(self) -> int:
        if self.verdict:
            return 0 if self._rechecked else 1
        if not self.sequential:
            return len(self.survivors) * (self.max_rounds - self.rounds) + 1
        short = sum(max(0, self.min_samples - len(self._samples(p))) for p in self.survivors)
        return short + min(4, self.left) + 1

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
                "releveled": self.releveled,
                "duels": self.duels,
                "passed": self.passed,
                "folded": self.folded,
                "leader": self.ahead,
                "verdict": self.verdict,
                "winner": self.winner,
                "margin": self.margin,
                "alpha": self.alpha,
                "comparisons": [c.__dict__ for c in self.comparisons],
                "recheck": self.recheck,
                "same_cost": self._same_cost(),
                "to_slo": self._carried(),
                "spread": self.spread(),
            }
        }

    def spread(self) -> dict[str, float]:
        """How much readings vary about the fit (relative: the log scale's standard deviation):
        the load search's and the race's steps' apart where each has its own, else pooled."""
        model = self._fit()
        if model is None:
            return {}
        sd = np.sqrt(model.variances)
        return {"search": float(sd[0]), "steps": float(sd[1])} if len(sd) == 2 else {"pooled": float(sd[0])}


def _mean(values: list[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return statistics.fmean(kept) if kept else math.nan
