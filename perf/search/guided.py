"""The bottleneck-guided chooser (``--search guided``): each step reads where the best config's
requests spend their time, model by model, and changes the setting that time points at.

Triton's statistics split a request's time in each composing model into queueing and
computing. At the best config's level:

- the model whose queue is the longest is the bottleneck: it gets more instances, larger
  preferred batches, a higher batch limit, a longer queue delay (to batch more), in that order;
  but where its queue is mostly its own queue delay, the delay comes down first;
- with no queue worth the name (under a tenth of the time), the model that computes longest
  is the bottleneck, and batches first: larger batches are how one instance does more;
- a model that computes alone (its queue under a tenth of the bottleneck's) while the
  bottleneck waits gets fewer instances: on shared cores its idle instances only take the
  bottleneck's CPU;
- then the best config's other neighbours (one setting one step), so the search ends where no
  single step helps, not where the rules run out.

A step that reads faster than the best becomes the best, and the next steps start from it (a
step up the slope a little under the noise is still a step up it; the race at the end sorts
out what noise promoted); the budget's patience ends a run of steps that do not beat the best
by more than the margin. Each step says why it was taken ("preprocessor queue 7.4 ms of 12:
preprocessor.instance_count 1 -> 2"), for the report.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from perf.params import ALIASES
from perf.search import Outcome
from perf.search.space import Space

INSTANCES, PREFERRED, DELAY, BATCH = (ALIASES[name] for name in
                                      ("instance_count", "preferred_batch_size", "max_queue_delay_microseconds",
                                       "max_batch_size"))  # fmt: skip
SMALL = 0.1  # a queue under this share of the time is no queue


@dataclass
class Guided:
    space: Space
    name: str = "the bottleneck rules"
    best: str | None = None  # the best config on the grid so far: where steps start
    _best_score: float = 0.0
    _readings: dict[str, Outcome | None] = field(default_factory=dict)

    def next(self, scores: dict[str, float], busy: set[str]) -> tuple[str, str] | None:
        taken = set(scores) | busy
        if self.best is None:
            start = self.space.at((0,) * len(self.space.settings)) or next(iter(self.space.positions), None)
            if start is None or start in taken:
                return None
            return start, "the first config on the grid: each setting's first value"
        return next(((point, why) for point, why in self.moves(self.best) if point not in taken), None)

    def exhausted(self) -> str:
        return f"every single step from the best config ({self.best}) was measured: none is left to try"

    def tell(self, point_id: str, score: float, reading: Outcome | None) -> None:
        self._readings[point_id] = reading
        if point_id in self.space.positions and (self.best is None or score > self._best_score):
            self.best, self._best_score = point_id, score

    def moves(self, point: str) -> Iterator[tuple[str, str]]:
        """The steps from ``point``, the bottleneck's first, each with why."""
        reading = self._readings.get(point)
        ruled = list(self._ruled(point, reading)) if reading is not None and reading.times else []
        if reading is None:  # no level met the SLO: shorter waits first
            ruled = [(s, -1, "no level met the SLO: a shorter wait") for s in self._settings(DELAY, None)]
        others = [(s, by, "a neighbour") for s in range(len(self.space.settings)) for by in (1, -1)]
        seen = set()
        for setting, by, why in [*ruled, *others]:
            to = self.space.step(point, setting, by)
            if to is None or (setting, by) in seen:
                continue
            seen.add((setting, by))
            named = self.space.settings[setting]
            before, after = (named.describe(self.space.value(p, setting)) for p in (point, to))
            yield to, f"{why}: {named.column} {before} -> {after}"

    def _ruled(self, point: str, reading: Outcome) -> Iterator[tuple[int, int, str]]:
        stages = {m: t for m, t in reading.times.items() if m in self.space.models[1:] or len(self.space.models) == 1}
        if not stages:
            return
        total = sum(q + c for q, c in stages.values())
        queue_bound = max(stages, key=lambda m: stages[m][0])
        queue, _ = stages[queue_bound]
        if queue >= SMALL * total:
            bottleneck = queue_bound
            said = f"{bottleneck} queue {queue:.1f} ms of {total:.1f}"
            delays = [s for s in self._settings(DELAY, bottleneck) if self._delay_ms(point, s) * 1.5 >= queue > 0]
            for s in delays:
                yield s, -1, f"{said}, mostly its own queue delay"
            for path in (INSTANCES, PREFERRED, BATCH, DELAY):
                for s in self._settings(path, bottleneck):
                    yield s, 1, said
            for model, (queue_ms, _) in stages.items():
                if model != bottleneck and queue_ms < SMALL * queue:
                    for s in self._settings(INSTANCES, model):
                        if bottleneck not in self.space.settings[s].models:
                            yield s, -1, f"{model} computes alone (queue {queue_ms:.1f} ms) while {bottleneck} waits"
        else:
            bottleneck = max(stages, key=lambda m: stages[m][1])
            said = f"{bottleneck} computes {stages[bottleneck][1]:.1f} ms of {total:.1f}, no queue to speak of"
            for path in (PREFERRED, DELAY, BATCH, INSTANCES):
                for s in self._settings(path, bottleneck):
                    yield s, 1, said

    def _settings(self, path: str, model: str | None) -> list[int]:
        """The indices of the settings of kind ``path`` that change ``model`` (any model: None)."""
        return [i for i, s in enumerate(self.space.settings) if s.path == path and (model is None or model in s.models)]

    def _delay_ms(self, point: str, setting: int) -> float:
        value = self.space.value(point, setting)
        return float(value) / 1000 if isinstance(value, int | float) else 0.0
