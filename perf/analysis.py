"""From the tidy table to decisions: means with confidence intervals, the best config under a
latency SLO, and whether it is really better than the runner-up. Pure functions of tables."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd
from scipy import stats

from perf.results import OK
from perf.search.load import KNEE_SHARE
from perf.search.race import CLEAR

CONFIDENCE = 0.95


def ci_halfwidth(values: pd.Series) -> float:
    """Half-width of the 95 % confidence interval of the mean (Student's t); NaN for one value."""
    values = values.dropna()
    n = len(values)
    if n < 2:
        return math.nan
    return float(stats.t.ppf((1 + CONFIDENCE) / 2, n - 1) * values.std(ddof=1) / math.sqrt(n))


MEASURES = ("throughput", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "avg_ms")


def summarize(table: pd.DataFrame, param_columns: list[str]) -> pd.DataFrame:
    """One row per point and load level over its successful repeats: the mean of every
    measured column, and the confidence intervals of throughput and p99."""
    ok = table[table["status"] == OK]
    if ok.empty:
        return pd.DataFrame()
    keys = ["point_id", "load_kind", "load_level"]
    fixed = {*keys, *param_columns, "point", "is_baseline", "repeat", "status", "error", "apply", "started_at"}
    measured = [c for c in ok.columns if c not in fixed and pd.api.types.is_numeric_dtype(ok[c])]
    grouped = ok.groupby(keys, sort=False)
    summary = grouped[measured].mean()
    summary["repeats"] = grouped["repeat"].count()
    summary["throughput_ci"] = grouped["throughput"].agg(ci_halfwidth)
    summary["p99_ci"] = grouped["p99_ms"].agg(ci_halfwidth)
    firsts = grouped[[*param_columns, "is_baseline"]].first()
    return firsts.join(summary).reset_index()


def pareto_front(summary: pd.DataFrame) -> pd.Series:
    """Rows no other row beats on both throughput (higher) and p99 (lower): the only
    operating points worth shipping; everything else is dominated."""
    throughput, p99 = summary["throughput"].to_numpy(), summary["p99_ms"].to_numpy()
    front = [
        not any((throughput >= t) & (p99 <= q) & ((throughput > t) | (p99 < q)))
        for t, q in zip(throughput, p99, strict=True)
    ]
    return pd.Series(front, index=summary.index)


@dataclass(frozen=True)
class Choice:
    point_id: str
    load_level: str
    throughput: float
    throughput_ci: float
    p99_ms: float


@dataclass(frozen=True)
class Recommendation:
    best: Choice | None
    runner_up: Choice | None
    distinguishable: bool | None  # None: too few repeats to tell
    p_value: float | None
    slo_p99_ms: float | None
    race: dict[str, Any] | None = None  # a raced run: verdict, survivors, why the others left


def at_levels(summary: pd.DataFrame, levels: dict[str, float]) -> pd.DataFrame:
    """Each point's summary row at the level its load search chose (a searched run)."""
    chosen = {(point, f"{level:g}") for point, level in levels.items()}
    keep = [(p, str(lvl)) in chosen for p, lvl in zip(summary["point_id"], summary["load_level"], strict=True)]
    return summary[keep]


def from_race(summary: pd.DataFrame, race: dict[str, Any], slo_p99_ms: float | None) -> Recommendation:
    """The race's winner, and the survivor closest behind it, at their searched levels."""
    ranked = best_per_point(at_levels(summary, race["entrants"]), None)
    choices = {r.point_id: Choice(r.point_id, str(r.load_level), r.throughput, r.throughput_ci, r.p99_ms)
               for r in ranked.itertuples()}  # fmt: skip
    best = choices.get(race["winner"]) if race.get("winner") else None
    others = [p for p in ranked["point_id"] if p != race.get("winner") and p in race["survivors"]]
    runner_up = choices[others[0]] if others else None
    return Recommendation(best, runner_up, race["verdict"] == CLEAR, None, slo_p99_ms, race)


def noise_floor(table: pd.DataFrame) -> float | None:
    """The same config measured again at the same level: the pooled coefficient of variation
    of throughput (None with no config measured twice). Differences below it are noise."""
    ok = table[(table["status"] == OK) & table["throughput"].notna()]
    groups = [g["throughput"] for _, g in ok.groupby(["point_id", "load_level"]) if len(g) > 1]
    if not groups:
        return None
    variance = sum(g.var(ddof=1) / g.mean() ** 2 * (len(g) - 1) for g in groups) / sum(len(g) - 1 for g in groups)
    return math.sqrt(variance)


def best_per_point(summary: pd.DataFrame, slo_p99_ms: float | None) -> pd.DataFrame:
    """Each point's highest mean throughput at a load level whose mean p99 meets the SLO; with
    no SLO, its knee: the lowest level whose throughput reaches ``KNEE_SHARE`` of its highest."""
    eligible = summary if slo_p99_ms is None else summary[summary["p99_ms"] <= slo_p99_ms]
    if eligible.empty:
        return eligible
    if slo_p99_ms is None:
        peak = eligible.groupby("point_id", sort=False)["throughput"].transform("max")
        knees = eligible[eligible["throughput"] >= KNEE_SHARE * peak]
        level = knees["load_level"].astype(float)
        best = knees.loc[level.groupby(knees["point_id"], sort=False).idxmin()]
        return best.sort_values("throughput", ascending=False).reset_index(drop=True)
    best = eligible.loc[eligible.groupby("point_id", sort=False)["throughput"].idxmax()]
    return best.sort_values("throughput", ascending=False).reset_index(drop=True)


def recommend(table: pd.DataFrame, summary: pd.DataFrame, slo_p99_ms: float | None) -> Recommendation:
    """The best config, the runner-up, and a Welch t-test between their repeated throughputs."""
    ranked = best_per_point(summary, slo_p99_ms)
    choices = [
        Choice(r.point_id, str(r.load_level), r.throughput, r.throughput_ci, r.p99_ms) for r in ranked.itertuples()
    ]
    best = choices[0] if choices else None
    runner_up = choices[1] if len(choices) > 1 else None
    if best is None or runner_up is None:
        return Recommendation(best, runner_up, None, None, slo_p99_ms)
    a, b = (_samples(table, c) for c in (best, runner_up))
    if len(a) < 2 or len(b) < 2:
        return Recommendation(best, runner_up, None, None, slo_p99_ms)
    p_value = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    if math.isnan(p_value):  # identical samples
        p_value = 1.0
    return Recommendation(best, runner_up, p_value < 1 - CONFIDENCE, p_value, slo_p99_ms)


def _samples(table: pd.DataFrame, choice: Choice) -> list[float]:
    rows = table[
        (table["status"] == OK)
        & (table["point_id"] == choice.point_id)
        & (table["load_level"].astype(str) == choice.load_level)
    ]
    return rows["throughput"].dropna().tolist()


@dataclass(frozen=True)
class Gain:
    """The best config's throughput against the baseline's, both at their best level under
    the SLO: relative gain with its 95 % interval (None where repeats are too few)."""

    baseline: Choice
    ratio: float  # best / baseline - 1
    low: float | None
    high: float | None


def gain_over_baseline(
    table: pd.DataFrame, summary: pd.DataFrame, best: Choice, slo_p99_ms: float | None
) -> Gain | None:
    """None when the run has no baseline point or the baseline meets the SLO at no level.
    The interval is Welch's for the difference of means, relative to the baseline's mean."""
    ranked = best_per_point(summary[summary["is_baseline"].astype(bool)], slo_p99_ms)
    if ranked.empty:
        return None
    r = ranked.iloc[0]
    base = Choice(r.point_id, str(r.load_level), r.throughput, r.throughput_ci, r.p99_ms)
    ratio = best.throughput / base.throughput - 1
    a, b = _samples(table, best), _samples(table, base)
    if best.point_id == base.point_id or len(a) < 2 or len(b) < 2:
        return Gain(base, ratio, None, None)
    va, vb = pd.Series(a).var(ddof=1) / len(a), pd.Series(b).var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return Gain(base, ratio, ratio, ratio)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = stats.t.ppf((1 + CONFIDENCE) / 2, df) * se
    diff = best.throughput - base.throughput
    return Gain(base, ratio, (diff - half) / base.throughput, (diff + half) / base.throughput)


def throughput_grid(summary: pd.DataFrame, rows: str, columns: str, slo_p99_ms: float | None) -> pd.DataFrame:
    """For a two-parameter sweep: each combination's best throughput under the SLO (NaN
    where no level meets it), rows and columns in the order the values were swept."""
    grid_points = summary[~summary["is_baseline"].astype(bool)]
    grid_points = grid_points if not grid_points.empty else summary
    best = best_per_point(grid_points, slo_p99_ms)
    table = best.pivot_table(index=rows, columns=columns, values="throughput", aggfunc="max")
    order = lambda column: list(dict.fromkeys(grid_points[column]))  # noqa: E731
    return table.reindex(index=order(rows), columns=order(columns))
