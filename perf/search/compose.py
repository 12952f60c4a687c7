"""The strategy a sweep runs: the grid where the user names load levels; otherwise each
config's load searched (every config, or those a budgeted search chooses), then the configs
raced at their levels."""

from __future__ import annotations

from collections.abc import Callable

from perf.search import History, Strategy, Then
from perf.search.budget import RACED, Budget, Budgeted, Chooser, default_budget
from perf.search.cost import Cost, cheapest
from perf.search.grid import Grid
from perf.search.guided import Guided
from perf.search.load import EachPoint
from perf.search.race import MARGIN, MAX_ROUNDS, Race
from perf.search.space import Space
from perf.search.tpe import Tpe

SEARCHES = ("grid", "optuna", "guided")  # every config; Optuna's sampler; the bottleneck rules


def strategy(
    points: list[str],
    levels: tuple[float, ...] | None,
    repeats: int | None,
    slo_p99_ms: float | None,
    costs: dict[str, Cost],
    margin: float = MARGIN,
    max_rounds: int = MAX_ROUNDS,
    search: str = "grid",
    space: Space | None = None,
    budget: Budget | None = None,
    seed: int = 0,
    width: int = 1,
    alike: Callable[[str, float], str] | None = None,
    prefer: str | None = None,
) -> Strategy:
    """``levels`` given: every config at each, once, then a race at each config's best level;
    with ``repeats``, every config at each level that often and no race (a fixed grid). No
    levels: each config's load searched (``search`` other than grid: only the configs its
    chooser picks within ``budget``, over ``space``), then a race; ``repeats`` then fixes how
    often each config is measured at its level in all, decided once at the end. ``width``:
    configs whose load is searched at once, one a server (the race is on one server).
    ``alike``: which configs run alike at a level (the race keeps the cheapest of each).
    ``prefer``: the repository's own config, which the race keeps unless it is shown behind."""
    history = History()
    if levels and repeats:
        return Grid(points, levels, repeats, history, slo_p99_ms)
    first: EachPoint | Grid | Budgeted
    until = None  # a budget in time: the race's end too
    if search != "grid":
        assert space is not None and not levels, "a budgeted search searches each config's load"
        chooser: Chooser = Tpe(space, seed) if search == "optuna" else Guided(space)
        least = cheapest(list(space.positions), costs, {}, {}) if space.positions else None
        limit = budget or default_budget(space)
        first = Budgeted(space, chooser, history, slo_p99_ms, limit, margin, width=width, cheapest=least)
        until = limit.seconds
    elif levels:
        first = Grid(points, levels, 1, history, slo_p99_ms)
    else:
        first = EachPoint(points, history, slo_p99_ms, width)

    def race(done: Strategy) -> Strategy:
        assert done is first
        entrants, fallbacks = first.entrants()
        fixed = repeats is not None
        return Race(entrants, fallbacks, costs, history, slo_p99_ms, margin=margin,
                    max_rounds=max(0, repeats - 1) if repeats else max_rounds, sequential=not fixed,
                    alike=alike, climb=not levels, until=until, prefer=prefer)  # fmt: skip

    return Then(first, race, guess=3 * (len(points) if search == "grid" else RACED + 1))
