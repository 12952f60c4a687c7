"""A budgeted search: configs chosen one at a time, each load-searched, until the budget is
spent or further configs stop helping; then the best few are raced, with the repository's own
config and the space's cheapest.

Which config comes next is a ``Chooser``'s decision (Optuna's sampler in ``tpe.py``, the
bottleneck rules in ``guided.py``); everything else is the same for every chooser: each
config's load search, its score (its throughput at its level within the SLO, 0 with none),
the budget and the early stop, and what is raced. A config's score is one load-search
reading, so it only ranks configs for the race; the race's repeated measurements decide.

The budget counts configs (``--budget 12``) or seconds of measuring (``--budget 10m``: the
rows' own apply and measurement times, so a resumed search spends what the interrupted one
had spent, not the wall time between). A budget in time is the whole sweep's, the race's
included, as a user who types ``10m`` means: the search stops choosing while what is left
still pays for the cheapest config's load search (if it is to come) and a race's first rounds,
and the race ends where the time does. The search stops early when ``patience`` configs in a
row have not beaten the best by more than the margin.
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass, field
from typing import Any, Protocol

from perf.search import History, Outcome, Trial
from perf.search.load import SEARCH_PHASES, LoadSearch, levels_of, operating_level
from perf.search.race import MARGIN, MIN_SAMPLES
from perf.search.space import Space

PATIENCE = 10  # configs in a row that add under the margin to the best: the search has stopped helping
RACED = 3  # the best configs raced at the end (with the baseline)
# The rows a budget in time keeps for the race: every entrant (the best, the baseline, the
# cheapest) brought to MIN_SAMPLES (its load-search reading counts), one duel step, the recheck.
RACE_ROWS = (MIN_SAMPLES - 1) * (RACED + 2) + 3


class Chooser(Protocol):
    """Decides which config to measure next from the scores so far."""

    name: str

    def next(self, scores: dict[str, float], busy: set[str]) -> tuple[str, str] | None:
        """The next config (neither scored nor ``busy``: under way) and why it was chosen; None
        when the chooser has nothing left to try."""

    def tell(self, point_id: str, score: float, reading: Outcome | None) -> None:
        """A config's score and the reading at its level (None without one)."""

    def exhausted(self) -> str:
        """Why ``next`` gave None, in words."""


@dataclass(frozen=True)
class Budget:
    configs: int | None = None
    seconds: float | None = None

    def describe(self) -> str:
        if self.seconds is not None:
            return f"{self.seconds / 60:g} min of measuring"
        return f"{self.configs} configs"


def parse_budget(text: str) -> Budget:
    """``12`` (configs), ``600s``, ``10m`` or ``1.5h`` (measuring time). ValueError, in words."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not match:
        raise ValueError(f"--budget {text}: give a number of configs (12) or a time (600s, 10m, 1.5h)")
    number, unit = float(match[1]), match[2]
    if not unit:
        if number != int(number) or number < 1:
            raise ValueError(f"--budget {text}: a number of configs is a whole number, 1 or more")
        return Budget(configs=int(number))
    seconds = number * {"s": 1, "m": 60, "h": 3600}[unit]
    if seconds <= 0:
        raise ValueError(f"--budget {text}: a time above 0")
    return Budget(seconds=seconds)


def default_budget(space: Space) -> Budget:
    """A quarter of the configs, at least 6: big spaces are what a budget is for."""
    return Budget(configs=max(6, math.ceil(space.size / 4)))


@dataclass
class Budgeted:
    space: Space
    chooser: Chooser
    history: History
    slo_p99_ms: float | None
    budget: Budget
    margin: float = MARGIN
    patience: int = PATIENCE
    width: int = 1  # configs searched at once (one a server)
    cheapest: str | None = None  # the space's cheapest config by the cost order: measured and raced
    searches: list[LoadSearch] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)  # point id -> throughput at its level
    trail: list[dict[str, Any]] = field(default_factory=list)  # each config: why chosen, its score
    stopped: str = ""
    _best: float = 0.0
    _since_best: int = 0  # configs since the best improved by more than the margin

    def propose(self) -> list[Trial]:
        """The next trial of each config under way; as they finish, new configs, up to ``width``
        at once (one a server)."""
        trials: list[Trial] = []
        for search in [s for s in self.searches if s.point_id not in self.scores]:
            if proposed := search.propose():
                trials += proposed
            else:
                self._score(search)
        while len(trials) < self.width and not self.stopped:
            self._choose()
            if not self.stopped:
                trials += self.searches[-1].propose()
        return trials

    def _choose(self) -> None:
        """Start the next config's search, or say why the search stops. The space's cheapest
        config is searched last if the search has not chosen it: the race ships it wherever it
        is within the margin of the best, so on a flat space it is the answer (Model Analyzer's
        quick search starts from its smallest config for the same reason). It comes when the
        chooser's part ends (the budget in configs keeps it a place; a budget in time may run
        over by its search), so it does not change what the chooser picks before; where it
        beats the best, the search goes on from it within the budget."""
        pending = self._cheapest_pending()
        chosen = self._first()
        limit = "" if chosen else self._limit(pending)
        if chosen is None and not limit and (chosen := self.chooser.next(dict(self.scores), self._busy())) is None:
            limit = self.chooser.exhausted()
        if chosen is None and pending:
            chosen = self.cheapest, "the cheapest config, which the race ships wherever it is within the margin"
        if chosen is None:
            self.stopped = limit
            return
        point, why = chosen
        self.searches.append(LoadSearch(point, self.history, self.slo_p99_ms))
        self.trail.append({"point": point, "why": why})

    def _cheapest_pending(self) -> bool:
        return self.cheapest is not None and self.cheapest not in {s.point_id for s in self.searches}

    def _limit(self, pending: bool) -> str:
        """Why no more configs are chosen (the budget, or patience run out); "" while they are."""
        if self.budget.configs is not None and len(self.searches) + pending >= self.budget.configs:
            return f"the budget: {self.budget.configs} configs"
        if self.budget.seconds is not None:
            spent, kept = sum(outcome.seconds for _, outcome in self.history.told), self._kept(pending)
            if spent + kept >= self.budget.seconds:
                what = "the cheapest config and the race" if pending else "the race"
                return (f"the budget: {spent / 60:.1f} of {self.budget.seconds / 60:g} min of measuring spent, "
                        f"{kept / 60:.1f} kept for {what}")  # fmt: skip
        if self.searches and self._since_best >= self.patience:
            return f"{self._since_best} configs in a row did not beat the best by more than {self.margin:.0%}"
        return ""

    def _kept(self, pending: bool) -> float:
        """The seconds a budget in time keeps back from the chooser, at this search's own costs
        so far: the cheapest config's load search where it is still to come, and the race."""
        rows = [outcome.seconds for _, outcome in self.history.told]
        searched = [sum(o.seconds for o in self.history.outcomes(point)) for point in self.scores]
        config = statistics.fmean(searched) if searched and pending else 0.0
        return config + RACE_ROWS * (statistics.fmean(rows) if rows else 0.0)

    def _busy(self) -> set[str]:
        """The configs under way: chosen, not yet scored."""
        return {s.point_id for s in self.searches} - set(self.scores)

    def _first(self) -> tuple[str, str] | None:
        """The repository's own config comes first: every gain is measured against it."""
        if self.searches or self.space.baseline is None:
            return None
        return self.space.baseline, "the repository's own config"

    def _score(self, search: LoadSearch) -> None:
        point = search.point_id
        level, _ = operating_level(self.history, point, self.slo_p99_ms, SEARCH_PHASES)
        readings = [o for o in self.history.outcomes(point, level) if o.ok] if level is not None else []
        score = statistics.fmean(o.throughput for o in readings) if readings else 0.0
        self.scores[point] = score
        self.chooser.tell(point, score, readings[-1] if readings else None)
        if score > self._best * (1 + self.margin):
            self._best, self._since_best = score, 0
        else:
            self._since_best += 1
            self._best = max(self._best, score)
        step = next(step for step in self.trail if step["point"] == point)
        step.update(level=level, score=round(score, 1), reason=search.reason)

    def tell(self, trial: Trial, outcome: Outcome) -> None:
        next(s for s in self.searches if s.point_id == trial.point_id).tell(trial, outcome)

    def estimate(self) -> int:
        if self.stopped:
            return 0
        left = self.patience - self._since_best
        if self.budget.configs is not None:
            left = min(left, self.budget.configs - len(self.searches))
        under_way = sum(s.estimate() for s in self.searches if s.point_id not in self.scores)
        return 5 * max(int(self._cheapest_pending()), left) + under_way

    def entrants(self) -> tuple[dict[str, float], dict[str, list[float]]]:
        """The best ``RACED`` configs by score, the baseline and the cheapest, at their levels."""
        ranked = sorted((p for p, s in self.scores.items() if s > 0), key=lambda p: -self.scores[p])
        anchors = dict.fromkeys([self.space.baseline, self.cheapest])
        chosen = ranked[:RACED] + [p for p in anchors if p in ranked[RACED:]]
        return levels_of(self.history, chosen, self.slo_p99_ms, SEARCH_PHASES, step_down=True)

    def record(self) -> dict[str, Any]:
        return {
            "load_search": {s.point_id: s.record() for s in self.searches},
            "budgeted": {
                "strategy": self.chooser.name,
                "budget": self.budget.describe(),
                "space": self.space.size,
                "measured": len(self.searches),
                "stopped": self.stopped,
                "trail": self.trail,
            },
        }
