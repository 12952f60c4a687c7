"""The strategy a sweep runs: the grid where the user names load levels; otherwise each
config's load searched, then the configs raced at their levels."""

from __future__ import annotations

from perf.search import History, Strategy, Then
from perf.search.cost import Cost
from perf.search.grid import Grid
from perf.search.load import EachPoint
from perf.search.race import MARGIN, MAX_ROUNDS, Race


def strategy(
    points: list[str],
    levels: tuple[float, ...] | None,
    repeats: int | None,
    slo_p99_ms: float | None,
    costs: dict[str, Cost],
    margin: float = MARGIN,
    max_rounds: int = MAX_ROUNDS,
) -> Strategy:
    """``levels`` given: every config at each, ``repeats`` times (1 by default). None: load
    search, then a race; ``repeats`` then fixes how often each config is measured at its level
    in all, decided once at the end, instead of a race that stops when it can."""
    history = History()
    if levels:
        return Grid(points, levels, repeats or 1, history)

    def race(first: Strategy) -> Strategy:
        assert isinstance(first, EachPoint)
        fixed = repeats is not None
        return Race(first.levels, first.fallbacks, costs, history, slo_p99_ms, margin=margin,
                    max_rounds=max(0, repeats - 1) if fixed else max_rounds,
                    min_samples=min(3, max(2, repeats or 3)), sequential=not fixed)  # fmt: skip

    return Then(EachPoint(points, history, slo_p99_ms), race, guess=3 * len(points))
