"""Optuna's TPE sampler as a budgeted search's chooser (``--search optuna``).

Each setting is an integer index into its ordered values, so the sampler can learn that
"more instances" or "a longer delay" helps, not only which value did. The sampler is seeded
and told the scores in the order they were measured, so a resumed sweep replays its rows and
is asked the same configs again. A config it proposes twice is told its score at once and
not measured again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import optuna

from perf.search import Outcome
from perf.search.space import Space

ATTEMPTS = 100  # proposals of measured configs in a row before the sampler is taken to be done


@dataclass
class Tpe:
    space: Space
    seed: int = 0
    startup: int = 4  # random configs before the sampler models the scores
    name: str = "Optuna's TPE sampler"
    _study: optuna.Study = field(init=False)
    _asked: dict[str, optuna.trial.Trial] = field(default_factory=dict)
    _why_none: str = ""

    def __post_init__(self) -> None:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = optuna.samplers.TPESampler(seed=self.seed, n_startup_trials=self.startup)
        self._study = optuna.create_study(direction="maximize", sampler=sampler)

    def next(self, scores: dict[str, float], busy: set[str]) -> tuple[str, str] | None:
        if len(scores) + len(busy & set(self.space.positions)) >= len(self.space.positions):
            self._why_none = "every config was measured"
            return None
        self._why_none = f"Optuna's sampler proposed only measured configs {ATTEMPTS} times in a row"
        for _ in range(ATTEMPTS):
            trial = self._study.ask()
            position = tuple(
                trial.suggest_int(setting.column, 0, len(setting.values) - 1) for setting in self.space.settings
            )
            point = self.space.at(position)
            if point is None or point in busy:  # a combination the plan does not have, or one under way
                self._study.tell(trial, state=optuna.trial.TrialState.FAIL)
            elif point in scores:
                self._study.tell(trial, scores[point])
            else:
                self._asked[point] = trial
                complete = self._study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
                how = "at random" if len(complete) < self.startup else "sampled from the scores so far"
                return point, f"Optuna trial {trial.number}, {how}"
        return None

    def exhausted(self) -> str:
        return self._why_none

    def tell(self, point_id: str, score: float, reading: Outcome | None) -> None:
        trial = self._asked.pop(point_id, None)
        if trial is not None:
            self._study.tell(trial, score)
            return
        if point_id in self.space.positions:  # the baseline or the cheapest, measured before the sampler asked
            values = dict(zip((s.column for s in self.space.settings), self.space.positions[point_id], strict=True))
            distributions = {
                s.column: optuna.distributions.IntDistribution(0, len(s.values) - 1) for s in self.space.settings
            }
            self._study.add_trial(optuna.trial.create_trial(params=values, distributions=distributions, value=score))
