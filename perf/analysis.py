"""From the tidy table to decisions: means with confidence intervals, the best config under a
latency SLO, and whether it is really better than the runner-up. Pure functions of tables."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
from scipy import stats

CONFIDENCE = 0.95


def ci_halfwidth(values: pd.Series) -> float:
    """Half-width of the 95 % confidence interval of the mean (Student's t); NaN for one value."""
    values = values.dropna()
    n = len(values)
    if n < 2:
        return math.nan
    return float(stats.t.ppf((1 + CONFIDENCE) / 2, n - 1) * values.std(ddof=1) / math.sqrt(n))


def summarize(table: pd.DataFrame, param_columns: list[str]) -> pd.DataFrame:
    """One row per point and load level over its successful repeats: mean and CI of
    throughput and p99, mean of the other latencies."""
    ok = table[table["status"] == "ok"]
    if ok.empty:
        return pd.DataFrame()
    keys = ["point_id", "load_kind", "load_level"]
    grouped = ok.groupby(keys, sort=False)
    summary = grouped.agg(
        repeats=("repeat", "count"),
        throughput=("throughput", "mean"),
        p50_ms=("p50_ms", "mean"),
        p99_ms=("p99_ms", "mean"),
    )
    summary["throughput_ci"] = grouped["throughput"].agg(ci_halfwidth)
    summary["p99_ci"] = grouped["p99_ms"].agg(ci_halfwidth)
    firsts = grouped[[*param_columns, "is_baseline"]].first()
    return firsts.join(summary).reset_index()


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


def best_per_point(summary: pd.DataFrame, slo_p99_ms: float | None) -> pd.DataFrame:
    """Each point's highest mean throughput at a load level whose mean p99 meets the SLO."""
    eligible = summary if slo_p99_ms is None else summary[summary["p99_ms"] <= slo_p99_ms]
    if eligible.empty:
        return eligible
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
        (table["status"] == "ok")
        & (table["point_id"] == choice.point_id)
        & (table["load_level"].astype(str) == choice.load_level)
    ]
    return rows["throughput"].dropna().tolist()
