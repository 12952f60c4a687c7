"""The configs a budgeted search moves among: each config a position along every swept
setting's ordered values, so a strategy can ask for "one step more of this setting" and an
optimizer can sample indices. Pure: built from a plan, it holds no config, only names."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from perf import params
from perf.plan import Plan


@dataclass(frozen=True)
class Setting:
    """A swept setting: its column, what it is (a canonical ModelConfig path), the models it
    changes, and its values in the order the plan gives them (ascending where generated)."""

    column: str
    path: str
    models: tuple[str, ...]
    values: tuple[Any, ...]

    def describe(self, value: Any) -> str:
        return "none" if value == [] else str(value[0] if isinstance(value, list) and len(value) == 1 else value)


@dataclass(frozen=True)
class Space:
    settings: tuple[Setting, ...]
    positions: dict[str, tuple[int, ...]]  # point id -> index of its value of each setting
    baseline: str | None = None  # the repository's own config, measured first
    models: tuple[str, ...] = ()  # the models whose per-model times rows carry
    _at: dict[tuple[int, ...], str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._at.update({position: point for point, position in self.positions.items()})

    def at(self, position: tuple[int, ...]) -> str | None:
        """The point at ``position``; None where the plan has none (off the grid)."""
        return self._at.get(tuple(position))

    def step(self, point: str, setting: int, by: int) -> str | None:
        """The point one setting ``by`` steps away from ``point``; None past either end, or
        from a point off the grid."""
        position = self.positions.get(point)
        if position is None:
            return None
        index = position[setting] + by
        if not 0 <= index < len(self.settings[setting].values):
            return None
        return self.at((*position[:setting], index, *position[setting + 1 :]))

    def value(self, point: str, setting: int) -> Any:
        return self.settings[setting].values[self.positions[point][setting]]

    @property
    def size(self) -> int:
        return len(self.positions) + (self.baseline is not None and self.baseline not in self.positions)


def of_plan(plan: Plan) -> Space:
    """A plan's points as positions. A baseline whose values are not on the grid (a value the
    sweep does not try, or a tied setting whose models differ) is measured, but not a position."""
    settings = tuple(Setting(p.column, params.canonical_path(p.path), p.models, tuple(p.values)) for p in plan.params)
    positions: dict[str, tuple[int, ...]] = {}
    for point in plan.points:
        try:
            positions[point.id] = tuple(s.values.index(point.values[s.column]) for s in settings)
        except ValueError:
            continue
    baseline = next((p.id for p in plan.points if p.baseline), None)
    return Space(settings, positions, baseline, tuple(plan.models))
